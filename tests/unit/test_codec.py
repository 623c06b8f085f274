"""The parameter value codec: round trips, exact byte layout and malformed input."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest

from kafka_ps.tables.codec import (
    HEADER,
    CodecError,
    ParamRecord,
    decode_record,
    encode_record,
    encode_value,
    encode_values,
)

DTYPES = [np.float32, np.float64, np.int64, np.int32]
SHAPES = [(5,), (3, 4), (2, 3, 2), (1,), ()]


def _slots(dtype: type, shape: tuple[int, ...], n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(np.asarray(rng.standard_normal(shape) * 1000).astype(dtype) for _ in range(n))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_slots", [1, 2, 4])
def test_round_trip(dtype: type, shape: tuple[int, ...], n_slots: int) -> None:
    rec = ParamRecord(_slots(dtype, shape, n_slots), offset=123, clock=7, rule_id=4)
    data = encode_record(rec)
    assert len(data) == HEADER.size + 4 * len(shape) + n_slots * rec.value.nbytes
    out = decode_record(data)
    assert (out.offset, out.clock, out.rule_id) == (123, 7, 4)
    assert out.shape == shape and out.dtype == np.dtype(dtype) and len(out.slots) == n_slots
    for a, b in zip(rec.slots, out.slots, strict=True):
        assert a.tobytes() == b.tobytes()
    assert encode_record(out) == data


def test_defaults_and_large_values() -> None:
    out = decode_record(encode_value(np.array([1.0, 2.0])))
    assert (out.offset, out.clock, out.rule_id) == (-1, -1, 0)
    big = decode_record(encode_value(np.zeros(2, np.int64), offset=2**63 - 1, clock=0))
    assert (big.offset, big.clock) == (2**63 - 1, 0)


def test_special_floats_survive() -> None:
    value = np.array([np.nan, np.inf, -0.0, 5e-324])
    out = decode_record(encode_value(value)).value
    assert out.tobytes() == value.tobytes()


def test_little_endian_layout_by_hand() -> None:
    w = np.array([[1.5, -2.0, 3.25]], dtype=np.float32)
    g = np.array([[0.5, 4.0, 8.0]], dtype=np.float32)
    data = encode_record(ParamRecord((w, g), offset=42, clock=7, rule_id=3))
    expected = (
        b"KP"
        + struct.pack("<BBBBH", 1, 1, 2, 2, 3)
        + struct.pack("<qq", 42, 7)
        + struct.pack("<II", 1, 3)
        + struct.pack("<3f", 1.5, -2.0, 3.25)
        + struct.pack("<3f", 0.5, 4.0, 8.0)
    )
    assert data == expected
    assert encode_value(np.array([-1], np.int64), offset=-1, clock=9) == (
        b"KP" + bytes([1, 3, 1, 1, 0, 0]) + struct.pack("<qqIq", -1, 9, 1, -1)
    )
    assert encode_value(np.array(2**31 - 1, np.int32))[3:5] == bytes([4, 0])


def test_big_endian_input_is_stored_little_endian() -> None:
    value = np.array([1.0, 2.0], dtype=">f8")
    data = encode_value(value)
    assert data[-16:] == struct.pack("<2d", 1.0, 2.0)
    np.testing.assert_array_equal(decode_record(data).value, value)


def test_decoded_arrays_are_read_only_views() -> None:
    data = encode_record(ParamRecord(_slots(np.float64, (4,), 2)))
    for source in (data, bytearray(data), memoryview(data)):
        out = decode_record(source)
        for slot in out.slots:
            assert not slot.flags.writeable
            with pytest.raises(ValueError):
                slot[0] = 1.0
    out = decode_record(data)
    assert np.shares_memory(out.slots[0], np.frombuffer(data, np.uint8))


@pytest.mark.parametrize(
    "slots",
    [
        (),
        (np.zeros(2), np.zeros(3)),
        (np.zeros(2), np.zeros(2, np.float32)),
        (np.zeros(2, np.complex128),),
        (np.zeros(2, np.bool_),),
        ([1.0, 2.0],),
        5,
    ],
)
def test_bad_records_cannot_be_built(slots: tuple[np.ndarray, ...]) -> None:
    with pytest.raises(CodecError):
        ParamRecord(slots)


@pytest.mark.parametrize(
    "fields", [{"offset": -2}, {"clock": -5}, {"rule_id": -1}, {"rule_id": 2**16}, {"offset": 1.5}]
)
def test_bad_header_fields_cannot_be_built(fields: dict[str, object]) -> None:
    with pytest.raises(CodecError):
        ParamRecord((np.zeros(1),), **fields)  # type: ignore[arg-type]


def _valid() -> bytes:
    return encode_record(ParamRecord(_slots(np.float32, (2, 3), 3), offset=5, clock=1, rule_id=6))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"XP" + d[2:], "magic"),
        (lambda d: d[:2] + b"\x02" + d[3:], "version"),
        (lambda d: d[:3] + b"\x09" + d[4:], "dtype"),
        (lambda d: d[:5] + b"\x00" + d[6:], "slots"),
        (lambda d: d[:4] + b"\xff" + d[5:], "dims"),
        (lambda d: d[:8] + struct.pack("<q", -3) + d[16:], "offset"),
        (lambda d: d[:10], "header"),
        (lambda d: d[:-1], "bytes"),
        (lambda d: d + b"\x00", "bytes"),
        (lambda d: d[:24] + struct.pack("<I", 2**32 - 1) + d[28:], "bytes"),
    ],
)
def test_malformed_reasons(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CodecError, match=reason):
        decode_record(mutate(_valid()))


@pytest.mark.parametrize("data", [None, "KP", 12, [1, 2], object()])
def test_non_bytes_input(data: object) -> None:
    with pytest.raises(CodecError):
        decode_record(data)  # type: ignore[arg-type]


def _try_decode(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_record(data)


def test_fuzz_only_raises_codec_error() -> None:
    """Random bytes, every truncation and every single-byte corruption of valid records."""
    rng = np.random.default_rng(2024)
    valid = [
        _valid(),
        encode_value(np.arange(7, dtype=np.int64), offset=3),
        encode_record(ParamRecord(_slots(np.float64, (), 4))),
    ]
    for _ in range(2000):
        size = int(rng.integers(0, 120))
        noise = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        _try_decode(noise)
        _try_decode(b"KP\x01" + noise)  # Random headers that pass the magic and version checks.
        # Plausible headers (small codes, dims and slot counts) over random bodies.
        code, ndim, n_slots = (int(v) for v in rng.integers(0, 6, 3))
        dims = rng.integers(0, 5, ndim).tolist()
        fields = struct.pack(
            "<BBBBHqq", 1, code, ndim, n_slots, 0, *rng.integers(-3, 3, 2).tolist()
        )
        _try_decode(b"KP" + fields + struct.pack(f"<{ndim}I", *dims) + noise)
    for data in valid:
        for cut in range(len(data)):
            _try_decode(data[:cut])
        for pos in range(len(data)):
            for byte in (0x00, 0xFF, int(rng.integers(0, 256))):
                _try_decode(data[:pos] + bytes([byte]) + data[pos + 1 :])


@pytest.mark.parametrize("dtype", [*DTYPES, ">f8"])
@pytest.mark.parametrize("shape", [(), (1,), (2, 4)])
def test_many_values_encode_as_each_one_does(dtype: type | str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(5)
    values = (rng.normal(size=(7, *shape)) * 100).astype(dtype)
    offsets = np.array([-1, 0, 3, 3, 9, 2**40, 2**63 - 1])
    expected = [encode_value(v, offset=int(o)) for v, o in zip(values, offsets, strict=True)]
    assert encode_values(values, offsets) == expected
    assert encode_values(values[:0], offsets[:0]) == []
