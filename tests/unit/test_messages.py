"""Pull, reply and push messages round-trip, and malformed bytes give MessageError only."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest

from kafka_ps.tables.messages import Kind, MessageError, PsMessage, decode_message, encode_message


def test_push_round_trip_keeps_every_field() -> None:
    keys = [b"w:1", b"fc1.weight:12", b"u:alice"]
    values = [np.array([[0.5]]), np.arange(6.0).reshape(2, 3), np.array([-1.0, 2.0])]
    message = PsMessage(
        Kind.PUSH, 3, keys, values, clock=7, request_id=2**62, first_offset=100, last_offset=355
    )
    decoded = decode_message(encode_message(message))
    assert (decoded.kind, decoded.worker, decoded.clock) == (Kind.PUSH, 3, 7)
    assert (decoded.request_id, decoded.first_offset, decoded.last_offset) == (2**62, 100, 355)
    assert decoded.keys == keys
    for got, sent in zip(decoded.values, values, strict=True):
        np.testing.assert_array_equal(got, sent.ravel())


def test_reply_round_trip_keeps_the_worker_clock_and_mark() -> None:
    reply = PsMessage(Kind.REPLY, 2, [], clock=4, request_id=9, worker_clock=6, mark=1234)
    decoded = decode_message(encode_message(reply))
    assert (decoded.kind, decoded.worker, decoded.clock, decoded.request_id) == (
        Kind.REPLY,
        2,
        4,
        9,
    )
    assert (decoded.worker_clock, decoded.mark) == (6, 1234)
    assert (decoded.first_offset, decoded.last_offset) == (-1, -1)


@pytest.mark.parametrize(
    "message",
    [
        PsMessage(Kind.REPLY, 0, [], first_offset=3),
        PsMessage(Kind.PUSH, 0, [], mark=3),
        PsMessage(Kind.PULL, 0, [], worker_clock=3),
    ],
)
def test_a_field_the_kind_does_not_carry_is_refused_not_dropped(message: PsMessage) -> None:
    with pytest.raises(MessageError, match="carries no"):
        encode_message(message)


def test_pull_without_values_and_empty_message() -> None:
    pull = decode_message(encode_message(PsMessage(Kind.PULL, 0, [b"w:9", b"w:10"])))
    assert pull.keys == [b"w:9", b"w:10"] and list(pull.values) == []
    empty = decode_message(encode_message(PsMessage(Kind.PUSH, 1, [])))
    assert empty.keys == [] and empty.kind is Kind.PUSH


def test_values_must_match_keys() -> None:
    with pytest.raises(MessageError):
        encode_message(PsMessage(Kind.PUSH, 0, [b"a:1"], [np.ones(1), np.ones(1)]))


def test_malformed_bytes_only_raise_message_error() -> None:
    good = encode_message(PsMessage(Kind.REPLY, 1, [b"w:1", b"w:2"], [np.ones(3), np.ones(3)]))
    rng = random.Random(7)
    samples = [good[:cut] for cut in range(len(good))]
    samples += [good + b"x"]
    for _ in range(2000):
        corrupt = bytearray(good)
        corrupt[rng.randrange(len(good))] = rng.randrange(256)
        samples.append(bytes(corrupt))
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(80))) for _ in range(500)]
    for sample in samples:
        with contextlib.suppress(MessageError):
            decode_message(sample)


def test_half_precision_pushes_round_trip_within_float16_and_fall_back_beyond_it() -> None:
    values = np.array([[0.1, -2.5, 1000.0], [3e-3, 0.0, 7.0]])
    push = PsMessage(Kind.PUSH, 1, [b"w:1", b"w:2"], values, clock=3)
    half = encode_message(push, half=True)
    assert len(half) < len(encode_message(push))
    decoded = decode_message(half)
    assert decoded.values.dtype == np.float64
    np.testing.assert_allclose(decoded.values, values, rtol=1e-3)
    big = PsMessage(Kind.PUSH, 1, [b"w:1"], np.array([[1e6, 0.0, 0.0]]))
    assert decode_message(encode_message(big, half=True)).values[0][0] == 1e6
