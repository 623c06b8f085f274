"""The layouts docs/formats.md gives, read or written by hand as a user of another language
would: table pages, kps-batch and kps-packed messages, prediction messages."""

from __future__ import annotations

import json
import re
import struct

import msgpack
import numpy as np

from kafka_ps.agents.api import Prediction, TrainingRecord
from kafka_ps.agents.batches import encode_batch, split_message
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.worker import Unit, predictions_message
from kafka_ps.tables.messages import Kind, PsMessage, decode_message, encode_message
from kafka_ps.tables.pages import page_key
from kafka_ps.tables.params import ParamRegistry, ParamSpec
from kafka_ps.tables.shard import Shard
from kafka_ps.tables.update_rules import make_rule


def test_a_table_page_reads_as_documented() -> None:
    shard = Shard(ParamRegistry([ParamSpec("w", (2,), make_rule("adagrad", lr=0.1))]), shard=3)
    shard.push([b"w:7", b"w:12"], [np.ones(2), np.full(2, 2.0)], offset=41)
    table: dict[bytes, bytes] = {}
    shard.flush(table)
    [(key, page)] = table.items()
    assert key == page_key(3, "w", 0) == b"__page__:3:w:0"
    magic, version, page_size, n = struct.unpack_from("<2sBII", page)
    assert (magic, version, page_size, n) == (b"KG", 1, 1024, 2)
    ends = struct.unpack_from(f"<{n + 1}I", page, 11)
    blob = page[15 + 4 * n : 15 + 4 * n + ends[-1]]
    assert [blob[ends[i] : ends[i + 1]] for i in range(n)] == [b"w:7", b"w:12"]
    record = page[15 + 4 * n + ends[-1] :]
    _, _, dtype, ndim, n_slots, rule, stamp, _ = struct.unpack_from("<2sBBBBHqq", record)
    shape = struct.unpack_from(f"<{ndim}I", record, 24)
    assert (dtype, n_slots, rule, stamp, shape) == (2, 2, 3, 41, (2, 2))
    slots = np.frombuffer(record, "<f8", offset=24 + 4 * ndim).reshape(n_slots, *shape)
    np.testing.assert_allclose(slots[1], [[1.0, 1.0], [4.0, 4.0]])  # AdaGrad's sums, row per key


def test_a_reply_and_a_push_header_read_as_documented() -> None:
    """A reply's offset slots carry the worker's clock and mark; a push's, its training
    offsets."""
    reply = PsMessage(Kind.REPLY, 5, [b"w:1"], [np.ones(2)], 3, 77, worker_clock=4, mark=90)
    push = PsMessage(Kind.PUSH, 5, [b"w:1"], [np.ones(2)], 4, first_offset=91, last_offset=95)
    header = "<2sBBiqQqqII"
    assert struct.calcsize(header) == 48
    assert struct.unpack_from(header, encode_message(reply)) == (b"KM", 1, 2, 5, 3, 77, 4, 90, 1, 1)
    assert struct.unpack_from(header, encode_message(push)) == (b"KM", 1, 3, 5, 4, 0, 91, 95, 1, 1)
    by_hand = struct.pack(header, b"KM", 1, 2, 0, 8, 6, 2, 41, 0, 0) + struct.pack("<I", 0)
    decoded = decode_message(by_hand)
    assert (decoded.clock, decoded.request_id, decoded.worker_clock, decoded.mark) == (8, 6, 2, 41)


def test_a_kps_batch_written_by_hand_splits_into_its_records() -> None:
    records = [{"features": {"a": "x"}, "label": 1}, {"features": {"a": "y"}, "label": 0}]
    data = msgpack.packb(["kps-batch", 1, *records])
    items = split_message(data, offset=9, key=b"k")
    assert [(i.offset, i.index, i.key) for i in items] == [(9, 0, b"k"), (9, 1, b"k")]
    assert [msgpack.unpackb(i.value) for i in items] == records
    assert encode_batch([msgpack.packb(r) for r in records]) == data


def test_a_kps_packed_message_keeps_each_source_offset_and_bytes() -> None:
    one = encode_record({"a": "x"}, label=1)
    batch = encode_batch([encode_record({"a": "y"}, label=0, fmt="msgpack")])
    data = msgpack.packb(["kps-packed", 1, [5, 6], [None, b"key"], one, batch], use_bin_type=True)
    items = split_message(data, offset=0)
    assert [(i.offset, i.index, i.key) for i in items] == [(5, None, None), (6, 0, b"key")]
    assert items[0].value == one


def test_a_predictions_message_has_one_entry_per_record() -> None:
    unit = Unit(40, [TrainingRecord(features={}, label=1.0)], [(b"", None, 0)])
    key, value = predictions_message(2, [unit], [Prediction(0.25, 1.0, b"r1")])
    assert key == b"2:40-40"
    assert json.loads(value) == {
        "partition": 2,
        "offsets": [40],
        "indexes": [0],
        "keys": ["r1"],
        "values": [0.25],
        "labels": [1.0],
    }


def test_the_documented_dead_letter_reasons_are_the_enum() -> None:
    """docs/formats.md's list of dead-letter reasons names every reason and no other."""
    from pathlib import Path

    from kafka_ps.tables.dead_letters import DeadLetterReason

    text = (Path(__file__).parents[2] / "docs" / "formats.md").read_text()
    section = text.split("## Dead letters", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert sorted(rows) == sorted(reason.value for reason in DeadLetterReason)


def test_a_predictions_message_takes_numpy_numbers() -> None:
    """Models output numpy scalars (mf clips with numpy): they are written as numbers."""
    import numpy as np

    unit = Unit(1, [TrainingRecord(features={}, label=1.0)], [(b"", None, None)])
    _, value = predictions_message(0, [unit], [Prediction(np.float64(0.5), np.float32(1.0))])
    assert json.loads(value)["values"] == [0.5] and json.loads(value)["labels"] == [1.0]
