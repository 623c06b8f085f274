"""The training-record wire format: round trips, strict validation and a fuzz test."""

from __future__ import annotations

import json
import pickle
import random

import msgpack
import numpy as np
import pytest

from kafka_ps.agents import records
from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.records import (
    MAX_FEATURES,
    BadRecordError,
    _plain,
    encode_fields,
    encode_record,
    parse_record,
)
from kafka_ps.tables.dead_letters import RECORD_REASONS

FORMATS = ["json", "msgpack"]


def reason_of(data: bytes, **kw: int | bool) -> str:
    with pytest.raises(BadRecordError) as info:
        parse_record(data, **kw)
    assert info.value.reason in RECORD_REASONS
    return info.value.reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt: str) -> None:
    data = encode_record(
        features={"carrier": "UA", "hour": 5, "weight": 0.5, "caf\u00e9": "\u00e9t\u00e9"},
        dense=[1, 2.5, -3e-9],
        label=1,
        key="flight-1",
        ts=1357035300,
        fmt=fmt,  # type: ignore[arg-type]
    )
    record = parse_record(data, partition=3, offset=42)
    assert record.features == {
        "carrier": "UA",
        "hour": 5,
        "weight": 0.5,
        "caf\u00e9": "\u00e9t\u00e9",
    }
    assert type(record.features["hour"]) is int  # 1 and 1.0 hash apart, so ints stay ints
    assert record.dense is not None and record.dense.dtype == np.float64
    np.testing.assert_array_equal(record.dense, [1.0, 2.5, -3e-9])
    assert record.label == 1.0 and record.key == b"flight-1" and record.timestamp == 1357035300.0
    assert (record.partition, record.offset) == (3, 42)


@pytest.mark.parametrize("fmt", FORMATS)
def test_prediction_only_and_numpy_inputs(fmt: str) -> None:
    data = encode_record(
        features={"a": np.int64(7), "b": np.float32(0.25)},
        dense=np.arange(3, dtype=np.int32),
        ts=np.float64(1.5),
        fmt=fmt,  # type: ignore[arg-type]
    )
    record = parse_record(data)
    assert record.label is None and record.key is None
    assert record.features == {"a": 7, "b": 0.25}
    np.testing.assert_array_equal(record.dense, [0.0, 1.0, 2.0])
    assert parse_record(encode_record(dense=[], fmt=fmt)).features == {}  # type: ignore[arg-type]


def test_format_detection() -> None:
    assert parse_record(b' \t\r\n{"features": {"a": 1}}\n').features == {"a": 1}
    body = msgpack.packb("features") + msgpack.packb({"a": 1})
    assert parse_record(b"\xde\x00\x01" + body).features == {"a": 1}  # map16
    assert parse_record(b"\xdf\x00\x00\x00\x01" + body).features == {"a": 1}  # map32


def test_null_fields_are_absent() -> None:
    record = parse_record(b'{"features":{"a":"x"},"label":null,"key":null,"ts":null,"dense":null}')
    assert record.label is None and record.key is None and record.dense is None


BAD = [
    (b"", "empty"),
    (b" \n\t", "empty"),
    (b"{}", "empty"),
    (b'{"label":1}', "empty"),
    (b"[1, 2]", "not_object"),
    (b'"features"', "not_object"),
    (b"\x93\x01\x02\x03", "not_object"),  # a msgpack array
    (b"\xef\xbb\xbf{}", "not_object"),  # a UTF-8 byte-order mark
    (b'{"features":{"a":1}', "malformed"),
    (b'{"features":{"a":1}} {}', "malformed"),
    (b'{"features":{"a":"\xff"}}', "malformed"),
    (b'{"features":{"a":"\\ud800"}}', "malformed"),  # a lone surrogate
    (b'{"features":{"a":1},"features":{"b":2}}', "malformed"),
    (b'{"features":{"a":1,"a":2}}', "malformed"),
    (b'{"features":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "malformed"),
    (b"\x81\xa1a" * 100_000 + b"\xc0", "malformed"),  # msgpack nested too deep
    (b"\x81\xa8features\xdf\xff\xff\xff\xff", "malformed"),  # map longer than the buffer
    (b"\x81\xc1", "malformed"),  # a byte msgpack never uses
    (b'{"features":{"a":1},"lable":1}', "unknown_field"),
    (b'{"features":[1, 2]}', "wrong_type"),
    (b'{"features":{"a":true}}', "wrong_type"),
    (b'{"features":{"a":null}}', "wrong_type"),
    (b'{"features":{"a":[1]}}', "wrong_type"),
    (b'{"features":{"a":1},"label":true}', "wrong_type"),
    (b'{"features":{"a":1},"label":"1"}', "wrong_type"),
    (b'{"features":{"a":1},"key":7}', "wrong_type"),
    (b'{"features":{"a":1},"key":""}', "wrong_type"),
    (b'{"features":{"a":1},"ts":"2024-01-01"}', "wrong_type"),
    (b'{"dense":[1, false]}', "wrong_type"),
    (b'{"dense":{"0":1}}', "wrong_type"),
    (b'{"features":{"a":NaN}}', "non_finite"),
    (b'{"features":{"a":1},"label":Infinity}', "non_finite"),
    (b'{"dense":[1, -Infinity]}', "non_finite"),
    (b'{"dense":[1e999]}', "non_finite"),
    (b'{"features":{"a":1},"label":1' + b"0" * 400 + b"}", "non_finite"),
    (b'{"features":{"":1}}', "bad_feature_name"),
    (b'{"features":{"a:b":1}}', "bad_feature_name"),
    (b'{"features":{"a=b":1}}', "bad_feature_name"),
    (b'{"features":{"a&b":1}}', "bad_feature_name"),
    (b'{"features":{"' + b"n" * 257 + b'":1}}', "bad_feature_name"),
]


@pytest.mark.parametrize(("data", "reason"), BAD, ids=[f"{r}-{i}" for i, (_, r) in enumerate(BAD)])
def test_rejects(data: bytes, reason: str) -> None:
    assert reason_of(data) == reason


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"features": {"a": float("nan")}}, "non_finite"),
        ({"features": {"a": 1}, "label": float("inf")}, "non_finite"),
        ({"features": {"a": b"raw"}}, "wrong_type"),
        ({"features": {"a": msgpack.ExtType(5, b"x")}}, "wrong_type"),
        ({"features": {b"a": 1}}, "wrong_type"),
        ({b"features": {"a": 1}}, "unknown_field"),
        ({"features": {"a": 1}, "label": False}, "wrong_type"),
        ({"features": {"a": 1}, "key": b"k"}, "wrong_type"),
    ],
)
def test_rejects_msgpack(obj: dict, reason: str) -> None:
    assert reason_of(msgpack.packb(obj, use_bin_type=True)) == reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_label_is_rejected_only_where_one_is_required(fmt: str) -> None:
    unlabelled = encode_record(dense=[1.0], fmt=fmt)  # type: ignore[arg-type]
    labelled = encode_record(dense=[1.0], label=0.0, fmt=fmt)  # type: ignore[arg-type]
    assert parse_record(unlabelled).label is None
    assert reason_of(unlabelled, require_label=True) == "missing_label"
    assert reason_of(b'{"dense": [1.0], "label": null}', require_label=True) == "missing_label"
    assert parse_record(labelled, require_label=True).label == 0.0


def test_size_limit() -> None:
    data = encode_record(features={"a": "x" * 1000})
    assert parse_record(data, max_size=len(data)).features["a"] == "x" * 1000
    assert reason_of(data, max_size=len(data) - 1) == "too_large"
    assert reason_of(b'{"features":{"a":"' + b"x" * (1 << 20) + b'"}}') == "too_large"
    with pytest.raises(BadRecordError, match="too_large"):
        encode_record(features={"a": "x" * 1000}, max_size=100)


def test_feature_count_limit() -> None:
    features = {f"f{i}": i for i in range(MAX_FEATURES)}
    assert len(parse_record(encode_record(features, fmt="msgpack")).features) == MAX_FEATURES
    features["one_more"] = 1
    assert reason_of(json.dumps({"features": features}).encode()) == "too_many_features"


def test_not_bytes() -> None:
    with pytest.raises(BadRecordError, match="wrong_type"):
        parse_record('{"features": {}}')  # type: ignore[arg-type]
    assert parse_record(bytearray(b'{"features":{}}')).features == {}


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({}, "empty"),
        ({"features": {"a": True}}, "wrong_type"),
        ({"features": {"a": np.bool_(True)}}, "wrong_type"),
        ({"features": {"a": float("nan")}}, "non_finite"),
        ({"features": {"a:b": 1}}, "bad_feature_name"),
        ({"features": {"a": "\ud800"}}, "malformed"),
        ({"dense": np.zeros((2, 2))}, "wrong_type"),
        ({"dense": np.array([1.0, np.inf])}, "non_finite"),
        ({"dense": [1, "2"]}, "wrong_type"),
        ({"features": {"a": 1}, "label": np.nan}, "non_finite"),
        ({"features": {"a": 1}, "key": b"k"}, "wrong_type"),
        ({"features": {"a": 2**70}, "fmt": "msgpack"}, "wrong_type"),
    ],
)
def test_encode_validates(kw: dict, reason: str) -> None:
    with pytest.raises(BadRecordError) as info:
        encode_record(**kw)
    assert info.value.reason == reason
    fields = {name: value for name, value in kw.items() if name != "fmt"}
    with pytest.raises(BadRecordError) as info:
        encode_fields(fields, kw.get("fmt", "json"))
    assert info.value.reason == reason


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "fields",
    [
        {"features": {"carrier": "UA", "hour": 5}, "label": 0.0, "key": "k", "ts": 1.5e9},
        {"ts": 2.0, "features": {"weight": 0.25}, "label": 1},  # another field order
        {"features": {"a": "x"}, "label": None},  # None is absent, not null
        {"features": {"a": np.float32(0.5)}, "label": np.int64(1)},  # numpy scalars
        {"dense": [1, 2.5], "label": 1.0},
        {"dense": np.array([1.0, 2.0]), "features": {"b": "y"}},
    ],
)
def test_encode_fields_is_encode_record(fields: dict, fmt: str) -> None:
    """A mapping of fields encodes to the record its keyword arguments encode to, whether
    it takes the uncopied fast path or not."""
    got = parse_record(encode_fields(fields, fmt))
    want = parse_record(encode_record(**fields, fmt=fmt))
    assert (got.features, got.label, got.key) == (want.features, want.label, want.key)
    assert got.timestamp == want.timestamp
    assert (got.dense is None) == (want.dense is None)
    assert got.dense is None or np.array_equal(got.dense, want.dense)
    with pytest.raises(TypeError):
        encode_fields({**fields, "labels": 1}, fmt)


def test_encode_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="fmt"):
        encode_record(features={"a": 1}, fmt="xml")  # type: ignore[arg-type]


def test_error_carries_reason() -> None:
    error = BadRecordError("wrong_type", "label must be a number")
    assert isinstance(error, ValueError)
    assert str(error) == "wrong_type: label must be a number"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.detail) == ("wrong_type", "label must be a number")


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-5, 5)
    if kind == 2:
        return rng.choice([float("nan"), float("inf"), True, False, None, "", "a:b", "\x00"])
    if kind == 3:
        return "".join(rng.choice("ab:=&\u00e9") for _ in range(rng.randrange(4)))
    if kind == 4:
        return b"\x00\xff"
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return _random_object(rng, depth + 1)


def _random_object(rng: random.Random, depth: int = 0) -> dict[object, object]:
    names = ["features", "features", "dense", "label", "key", "ts", "x", "a", ""]
    return {rng.choice(names): _random_value(rng, depth) for _ in range(rng.randrange(6))}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(3)
        if op == 0 and buffer:
            buffer[rng.randrange(len(buffer))] = rng.getrandbits(8)
        elif op == 1:
            del buffer[rng.randrange(len(buffer) + 1) :]
        else:
            buffer.insert(rng.randrange(len(buffer) + 1), rng.getrandbits(8))
    return bytes(buffer)


def test_fuzz_raises_only_bad_record_error() -> None:
    rng = random.Random(20240607)
    seeds = [
        encode_record({"a": 1, "b": "x", "c": 2.5}, dense=[1, 2], label=1, key="k", ts=3, fmt=fmt)
        for fmt in ("json", "msgpack")
    ]
    outcomes: dict[str, int] = {}
    for i in range(60_000):
        kind = i % 3
        if kind == 0:
            data = _mutate(rng, rng.choice(seeds))
        elif kind == 1:
            head = bytes([rng.choice([0x7B, 0x81, 0x85, 0x8F, 0xDE, 0xDF, 0x20])])
            data = head + rng.randbytes(rng.randrange(48))
        else:
            obj = _random_object(rng)
            try:
                if rng.random() < 0.5:
                    data = msgpack.packb(obj, use_bin_type=True)
                else:
                    data = json.dumps(obj).encode()
            except (TypeError, ValueError):  # bytes or bytes keys, which JSON cannot carry
                continue
            if rng.random() < 0.5:
                data = _mutate(rng, data)
        try:
            record = parse_record(data)
        except BadRecordError as error:
            assert error.reason in RECORD_REASONS
            outcomes[error.reason] = outcomes.get(error.reason, 0) + 1
        else:
            outcomes["ok"] = outcomes.get("ok", 0) + 1
            for name, value in record.features.items():
                assert isinstance(name, str) and name and ":" not in name
                assert type(value) is str or np.isfinite(float(value))  # type: ignore[arg-type]
            assert record.dense is None or np.isfinite(record.dense).all()
            assert record.label is None or np.isfinite(record.label)
    assert outcomes.get("ok", 0) > 100 and len(outcomes) >= 6


FAST_CASES = [
    b'{"features":{"a":"x","b":2,"c":1.5},"label":1,"key":"k","ts":3}',
    b'{"features":{"a":"x","a":"y"},"label":1}',
    b'{"features":{"a" :"x","a":"y"},"label":1}',
    b'{"features":{"a":"\\":","b":"y"},"label":1}',
    b'{"features":{"a":123456789012345678901234567890},"label":1}',
    b'{"features":{"a":1e300},"label":true}',
    b'{"dense":[1,2.5,-3],"label":0}',
    b'{"dense":[1,"x"],"label":0}',
    b'{"features":{},"label":null,"key":""}',
    b'{"features":null,"dense":null}',
    b'{"features":{"a":"x"},"extra":1}',
    b'{"features":{"a=b":"x"}}',
    b'{"features":{"a":"\\ud800"}}',
    b'{"features":{"a":null}}',
    b'{"features":{"a":"x"}} ',
    msgpack.packb({"features": {"a": "x", "b": 2.5}, "label": 1.0}),
    msgpack.packb({"features": {"a": "x"}, "label": 1.0}, use_single_float=True),
    msgpack.packb({"features": {b"a": "x"}, "label": 1}),
]


@pytest.mark.parametrize("data", FAST_CASES)
def test_fast_path_takes_only_what_the_exact_path_takes_the_same_way(data: bytes) -> None:
    from kafka_ps.agents import records

    parse_record(b'{"features":{"a":"x","b":1,"c":1}}')  # names now known
    fast = records._fast_record(data, 1, 7)
    try:
        exact = records.record_from_object(records._decode(data), 1, 7)
    except BadRecordError:
        assert fast is None
        return
    if fast is not None:
        assert fast.features == exact.features
        assert [type(v) for v in fast.features.values()] == [
            type(v) for v in exact.features.values()
        ]
        assert (fast.label, fast.key, fast.timestamp) == (exact.label, exact.key, exact.timestamp)
        assert (fast.dense is None) == (exact.dense is None)
        if fast.dense is not None:
            assert np.array_equal(fast.dense, exact.dense)


def test_fast_path_takes_the_common_records() -> None:
    from kafka_ps.agents import records

    parse_record(b'{"features":{"a":"x","b":1}}')
    assert records._fast_record(FAST_CASES[0].replace(b'"c":1.5,', b""), 0, 0) is not None
    assert records._fast_record(FAST_CASES[15], 0, 0) is not None
    # Duplicate names are left to the exact path, which rejects them.
    assert records._fast_record(FAST_CASES[1], 0, 0) is None
    with pytest.raises(BadRecordError, match="duplicate"):
        parse_record(FAST_CASES[1])


@pytest.mark.parametrize(
    "fields",
    [
        {"features": {"a": "x", "b": 1, "c": 1e-7}, "label": 1.0, "key": "k", "ts": 1e16},
        {"features": {"a": 2**70}, "label": 0.0},  # beyond orjson: the standard library writes it
        {"dense": np.arange(3.0), "label": np.float32(0.5)},
        {"features": {"a": "y", "b": np.int64(3)}},
    ],
)
def test_encoding_accepts_what_parsing_takes_back_as_the_same_record(fields: dict) -> None:
    data = encode_record(**fields)
    record = parse_record(data)
    exact = records.record_from_object(json.loads(data))
    assert (record.features, record.label, record.key) == (exact.features, exact.label, exact.key)
    assert record.features == {name: _plain(v) for name, v in fields.get("features", {}).items()}
    assert record.label == fields.get("label")
    if "dense" in fields:
        assert np.array_equal(record.dense, fields["dense"])


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"features": {"a": "\ud800"}}, "malformed"),
        ({"features": {"a": float("nan")}}, "non_finite"),
        ({"features": {"a": True}}, "wrong_type"),
    ],
)
def test_encoding_refuses_what_parsing_would_refuse(fields: dict, reason: str) -> None:
    with pytest.raises(BadRecordError) as refused:
        encode_record(**fields)
    assert refused.value.reason.value == reason


def _same(fast: TrainingRecord, exact: TrainingRecord) -> bool:
    """Field for field the same record, value types included."""
    if (fast.dense is None) != (exact.dense is None):
        return False
    if fast.dense is not None and not np.array_equal(fast.dense, exact.dense):
        return False
    return (
        fast.features == exact.features
        and [type(v) for v in fast.features.values()] == [type(v) for v in exact.features.values()]
        and (fast.label, fast.key, fast.timestamp, fast.partition, fast.offset)
        == (exact.label, exact.key, exact.timestamp, exact.partition, exact.offset)
        and (type(fast.label), type(fast.timestamp)) == (type(exact.label), type(exact.timestamp))
    )


def _good_values() -> list[bytes]:
    fields = [
        {"features": {"a": "x", "b": "y"}, "label": 1.0, "key": "k1", "ts": 3.0},
        {"features": {"a": "z", "c": 2}, "label": 0, "ts": 4},
        {"features": {"a": "x", "c": -1.5}, "label": None, "key": "k2"},
        {"features": {"b": "q"}, "dense": [1.0, 2, -3.5], "label": 1.0},
        {"features": {}, "label": 0.0},
    ]
    return [encode_record(**f, fmt=fmt) for f in fields for fmt in ("json", "msgpack")]


@pytest.mark.parametrize("require_label", [False, True])
def test_a_group_parsed_at_once_is_what_parsing_one_by_one_gives_or_left_to_it(
    require_label: bool,
) -> None:
    rng = random.Random(11)
    parse_record(b'{"features":{"a":"x","b":1,"c":1}}')  # names now known
    good = _good_values()
    bad = FAST_CASES + [data for data, _ in BAD if len(data) < 1000]
    taken = left = 0
    for _ in range(4000):
        size = rng.randrange(1, 7)
        values = [rng.choice(good) if rng.random() < 0.85 else rng.choice(bad) for _ in range(size)]
        if rng.random() < 0.2:
            values = [v for v in values if v[:1] == b"{"] or values  # one format only
        offsets = [rng.randrange(100) for _ in values]
        group = records.parse_records(values, 3, offsets, require_label=require_label)
        try:
            exact = [
                parse_record(v, 3, o, require_label=require_label)
                for v, o in zip(values, offsets, strict=True)
            ]
        except BadRecordError:
            assert group is None, values
            left += 1
            continue
        if group is None:
            left += 1
            continue
        taken += 1
        assert len(group) == len(exact)
        assert all(_same(f, e) for f, e in zip(group, exact, strict=True)), values
    assert taken > 400 and left > 400, (taken, left)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_group_of_common_records_is_parsed_at_once(fmt: str) -> None:
    fields = [
        {"features": {"a": "x", "b": "y"}, "label": 1.0, "key": "k", "ts": 3.0},
        {"features": {"a": "z", "b": "w"}, "label": 0.0, "key": "j", "ts": 4.0},
    ]
    values = [encode_record(**f, fmt=fmt) for f in fields]
    for value in values:
        parse_record(value)  # the names are checked once, then known
    group = records.parse_records(values, 0, [5, 6])
    assert group is not None
    assert [(r.features, r.label, r.key, r.offset) for r in group] == [
        ({"a": "x", "b": "y"}, 1.0, b"k", 5),
        ({"a": "z", "b": "w"}, 0.0, b"j", 6),
    ]
    # One record with a name twice, or a missing label where one is required: one by one.
    twice = b'{"features":{"a":"x","a":"y"},"label":1}'
    if fmt == "msgpack":
        twice = b"\x82\xa8features\x82\xa1a\xa1x\xa1a\xa1y\xa5label\x01"
    assert records.parse_records([values[0], twice], 0, [1, 2]) is None
    unlabelled = encode_record({"a": "x"}, fmt=fmt)
    assert records.parse_records([values[0], unlabelled], 0, [1, 2]) is not None
    assert records.parse_records([values[0], unlabelled], 0, [1, 2], require_label=True) is None
