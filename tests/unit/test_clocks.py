"""Vector clocks, consistency models and held pulls (invariant 5), without a broker."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import pytest

from kafka_ps.tables.clocks import (
    CLOCK_PREFIX,
    Consistency,
    PendingPulls,
    PendingPullsFull,
    VectorClock,
    clock_key,
    decode_clock,
    encode_clock,
    is_reserved,
)
from kafka_ps.tables.codec import CodecError
from kafka_ps.tables.keys import param_key

BSP = Consistency.bsp()
ASP = Consistency.asp()

# --- Consistency ----------------------------------------------------------------------


def test_constructors() -> None:
    assert BSP.staleness == 0
    assert Consistency.ssp(4).staleness == 4
    assert ASP.staleness is None
    assert Consistency.ssp(0) == BSP
    assert not ASP.bounded and BSP.bounded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bsp", BSP),
        ("asp", ASP),
        ("ssp:4", Consistency.ssp(4)),
        ("ssp:0", BSP),
        ("SSP:12", Consistency.ssp(12)),
        (" asp\n", ASP),
    ],
)
def test_parse(text: str, expected: Consistency) -> None:
    assert Consistency.parse(text) == expected


@pytest.mark.parametrize("consistency", [BSP, ASP, Consistency.ssp(1), Consistency.ssp(7)])
def test_str_round_trips_through_parse(consistency: Consistency) -> None:
    assert Consistency.parse(str(consistency)) == consistency


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssp",
        "ssp:",
        "ssp:-1",
        "ssp:1.5",
        "ssp: 4",
        "ssp:4:5",
        "ssp:x",
        "ssp:٣",  # a non-ASCII digit
        "bsp:0",
        "asp:3",
        "sync",
        "bspx",
    ],
)
def test_parse_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="consistency must be"):
        Consistency.parse(text)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(ValueError, match="consistency must be"):
        Consistency.parse(4)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, True])
def test_bad_staleness(bad: int) -> None:
    with pytest.raises((ValueError, TypeError)):
        Consistency.ssp(bad)
    with pytest.raises((ValueError, TypeError)):
        Consistency(bad)


def test_float_staleness_is_refused() -> None:
    with pytest.raises(TypeError):
        Consistency.ssp(1.0)  # type: ignore[arg-type]


# --- Storage --------------------------------------------------------------------------


def test_clock_encoding_is_int64_little_endian() -> None:
    assert encode_clock(1) == b"\x01" + b"\x00" * 7
    assert decode_clock(encode_clock(2**40 + 3)) == 2**40 + 3
    assert clock_key(12) == b"__clock__:12"


@pytest.mark.parametrize("data", [b"", b"\x01" * 7, b"\x01" * 9, b"\xff" * 8])
def test_malformed_stored_clock_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_clock(data)


def test_reserved_keys_never_collide_with_parameter_keys() -> None:
    assert is_reserved(clock_key(0))
    assert clock_key(0).startswith(CLOCK_PREFIX)
    assert not is_reserved(param_key("w", 0))
    assert not is_reserved(param_key("_private", 3))


@pytest.mark.parametrize("bad", [-1, True, 1.0, "1"])
def test_bad_worker_ids(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        clock_key(bad)  # type: ignore[arg-type]


# --- VectorClock ----------------------------------------------------------------------


def test_unseen_worker_is_at_zero_and_reads_write_nothing() -> None:
    table: dict[bytes, bytes] = {}
    clocks = VectorClock(table)
    assert clocks.get(3) == 0
    assert clocks.minimum({0, 1, 2}) == 0
    assert table == {}


def test_advance_is_monotonic() -> None:
    table: dict[bytes, bytes] = {}
    clocks = VectorClock(table)
    assert clocks.advance(0, 3)
    assert clocks.get(0) == 3
    before = dict(table)
    assert not clocks.advance(0, 2)  # a replayed older push
    assert not clocks.advance(0, 3)  # the same push again
    assert clocks.get(0) == 3
    assert table == before
    assert clocks.advance(0, 7)
    assert clocks.get(0) == 7


def test_advance_to_zero_is_a_no_op() -> None:
    table: dict[bytes, bytes] = {}
    assert not VectorClock(table).advance(1, 0)
    assert table == {}


@pytest.mark.parametrize("bad", [-1, True, 2.0])
def test_advance_rejects_bad_clocks(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        VectorClock({}).advance(0, bad)  # type: ignore[arg-type]


def test_clocks_survive_a_new_instance_over_the_same_table() -> None:
    table: dict[bytes, bytes] = {param_key("w", 1): b"not a clock"}
    first = VectorClock(table)
    first.advance(0, 5)
    first.advance(2, 9)
    again = VectorClock(dict(table))  # as if rebuilt from the changelog
    assert [again.get(w) for w in range(4)] == [5, 0, 9, 0]
    assert table[clock_key(0)] == encode_clock(5)
    assert table[param_key("w", 1)] == b"not a clock"


def test_minimum_over_sets() -> None:
    clocks = VectorClock({})
    clocks.advance(0, 4)
    clocks.advance(1, 2)
    clocks.advance(2, 6)
    assert clocks.minimum([0, 1, 2]) == 2
    assert clocks.minimum({0, 2}) == 4
    assert clocks.minimum(frozenset({2})) == 6
    assert clocks.minimum(range(4)) == 0  # worker 3 never seen
    with pytest.raises(ValueError, match="empty"):
        clocks.minimum(set())


def _clocks_at(values: dict[int, int]) -> VectorClock:
    clocks = VectorClock({})
    for worker, clock in values.items():
        clocks.advance(worker, clock)
    return clocks


# (worker clock, minimum clock of the other workers) -> ready?
READINESS = [
    # BSP: only when everyone has pushed as many batches as this worker.
    (BSP, 0, 0, True),
    (BSP, 1, 0, False),
    (BSP, 3, 2, False),
    (BSP, 3, 3, True),
    (BSP, 3, 5, True),
    # SSP 2: up to two batches ahead of the slowest.
    (Consistency.ssp(2), 2, 0, True),
    (Consistency.ssp(2), 3, 0, False),
    (Consistency.ssp(2), 5, 3, True),
    (Consistency.ssp(2), 6, 3, False),
    (Consistency.ssp(2), 1, 5, True),
    # ASP: always.
    (ASP, 0, 0, True),
    (ASP, 10**6, 0, True),
]


@pytest.mark.parametrize(("consistency", "worker_clock", "minimum", "ready"), READINESS)
def test_readiness_truth_table(
    consistency: Consistency, worker_clock: int, minimum: int, ready: bool
) -> None:
    clocks = _clocks_at({0: worker_clock, 1: minimum, 2: minimum + 1})
    workers = {0, 1, 2}
    assert clocks.minimum(workers) == min(worker_clock, minimum)
    # The requesting worker is itself at worker_clock, so only a lower minimum matters.
    assert clocks.ready(worker_clock, workers, consistency) is ready
    assert consistency.allows(worker_clock, minimum) is ready


def test_readiness_counts_unseen_workers_as_zero() -> None:
    clocks = _clocks_at({0: 3, 1: 3})
    assert clocks.ready(3, {0, 1}, BSP)
    assert not clocks.ready(3, {0, 1, 2}, BSP)
    assert not clocks.ready(3, {0, 1, 2}, Consistency.ssp(2))
    assert clocks.ready(3, {0, 1, 2}, Consistency.ssp(3))
    assert clocks.ready(3, {0, 1, 2}, ASP)


def test_asp_readiness_reads_nothing() -> None:
    class Exploding(dict[bytes, bytes]):
        def __getitem__(self, key: bytes) -> bytes:
            raise AssertionError("ASP must not read clocks")

    assert VectorClock(Exploding()).ready(5, {0, 1}, ASP)


# --- PendingPulls ---------------------------------------------------------------------


def test_release_returns_allowed_pulls_in_arrival_order() -> None:
    pending: PendingPulls[str] = PendingPulls()
    for clock, name in [(3, "a"), (1, "b"), (2, "c"), (1, "d"), (5, "e")]:
        pending.add(clock, name)
    assert len(pending) == 5
    assert pending.release(0, BSP) == []
    assert pending.release(1, BSP) == ["b", "d"]
    assert pending.release(1, BSP) == []
    assert pending.release(3, BSP) == ["a", "c"]
    assert len(pending) == 1
    assert pending.release(4, BSP) == []
    assert pending.release(5, BSP) == ["e"]
    assert len(pending) == 0


def test_release_under_ssp_and_asp() -> None:
    pending: PendingPulls[int] = PendingPulls()
    for i, clock in enumerate([4, 6, 3, 5, 9]):
        pending.add(clock, i)
    assert pending.release(2, Consistency.ssp(2)) == [0, 2]
    assert pending.release(3, Consistency.ssp(2)) == [3]
    assert pending.release(3, ASP) == [1, 4]
    assert len(pending) == 0


def test_release_interleaved_with_arrivals_keeps_arrival_order() -> None:
    pending: PendingPulls[str] = PendingPulls()
    pending.add(2, "first")
    pending.add(4, "second")
    assert pending.release(1, BSP) == []
    pending.add(1, "third")
    pending.add(2, "fourth")
    assert pending.release(2, BSP) == ["first", "third", "fourth"]
    assert pending.release(9, BSP) == ["second"]


def test_pending_pulls_are_bounded() -> None:
    pending: PendingPulls[int] = PendingPulls(limit=2)
    pending.add(1, 1)
    pending.add(1, 2)
    with pytest.raises(PendingPullsFull):
        pending.add(1, 3)
    assert len(pending) == 2
    assert pending.release(1, BSP) == [1, 2]
    pending.add(1, 3)
    assert len(pending) == 1


@pytest.mark.parametrize("limit", [0, -1])
def test_pending_pulls_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError):
        PendingPulls(limit=limit)


def test_payloads_are_opaque() -> None:
    pending: PendingPulls[object] = PendingPulls()
    payloads = [object(), None, {"x": 1}, object()]
    for payload in payloads:
        pending.add(1, payload)
    released = pending.release(1, BSP)
    assert [id(p) for p in released] == [id(p) for p in payloads]


# --- StalenessTrace -------------------------------------------------------------------


class TraceEntry(NamedTuple):
    worker: int
    worker_clock: int
    shard_min_clock: int


class StalenessTrace:
    """What a shard knew each time it answered a pull, to check invariant 5."""

    def __init__(self) -> None:
        self.entries: list[TraceEntry] = []

    def record(self, worker: int, worker_clock: int, shard_min_clock: int) -> None:
        self.entries.append(TraceEntry(worker, worker_clock, shard_min_clock))

    def violations(self, consistency: Consistency) -> list[TraceEntry]:
        """Answers given while the slowest worker was further behind than allowed."""
        return [
            e for e in self.entries if not consistency.allows(e.worker_clock, e.shard_min_clock)
        ]

    def max_lag(self) -> int | None:
        """The largest ``worker_clock - shard_min_clock`` answered; None if no answers."""
        return max((e.worker_clock - e.shard_min_clock for e in self.entries), default=None)


def test_trace_violations() -> None:
    trace = StalenessTrace()
    trace.record(0, 3, 3)
    trace.record(1, 4, 2)
    trace.record(2, 7, 2)
    assert trace.violations(ASP) == []
    assert trace.violations(Consistency.ssp(5)) == []
    assert trace.violations(Consistency.ssp(2)) == [TraceEntry(2, 7, 2)]
    assert trace.violations(BSP) == [TraceEntry(1, 4, 2), TraceEntry(2, 7, 2)]
    assert trace.max_lag() == 5
    assert StalenessTrace().max_lag() is None


# --- A randomized simulation of shards and workers ------------------------------------


@dataclass
class SimShard:
    clocks: VectorClock
    pending: PendingPulls[tuple[int, int]]
    trace: StalenessTrace = field(default_factory=StalenessTrace)
    inbox: deque[tuple[str, int, int]] = field(default_factory=deque)
    #: Ground truth kept apart from VectorClock: highest clock pushed per worker.
    pushed: dict[int, int] = field(default_factory=dict)
    held: int = 0


def simulate(
    seed: int, consistency: Consistency, n_workers: int, n_shards: int, final: int
) -> list[SimShard]:
    """Workers pull at clock c from every shard, wait for every reply, then push c + 1.

    Each shard's inbox is one ordered shard-topic partition. Every step runs one enabled
    action chosen at random: a worker sends its pulls or its pushes, or a shard handles the
    head of its inbox. Workers run at uneven speeds. Some pushes are delivered again later,
    as after a crash.
    """
    rng = random.Random(seed)
    workers = range(n_workers)
    shards = [SimShard(VectorClock({}), PendingPulls(limit=n_workers)) for _ in range(n_shards)]
    clock = dict.fromkeys(workers, 0)
    waiting: dict[int, set[int]] = {}  # worker -> shards whose reply is outstanding
    answered: dict[int, set[int]] = {w: set() for w in workers}
    replies = 0

    def answer(shard_id: int, worker: int, worker_clock: int) -> None:
        nonlocal replies
        shard = shards[shard_id]
        truth = min(shard.pushed.get(w, 0) for w in workers)
        shard.trace.record(worker, worker_clock, truth)
        assert clock[worker] == worker_clock
        waiting[worker].remove(shard_id)
        answered[worker].add(shard_id)
        replies += 1

    def handle(shard_id: int) -> None:
        shard = shards[shard_id]
        kind, worker, worker_clock = shard.inbox.popleft()
        if kind == "pull":
            if shard.clocks.ready(worker_clock, workers, consistency):
                answer(shard_id, worker, worker_clock)
            else:
                shard.pending.add(worker_clock, (worker, worker_clock))
                shard.held += 1
            return
        shard.pushed[worker] = max(shard.pushed.get(worker, 0), worker_clock)
        shard.clocks.advance(worker, worker_clock)
        assert shard.clocks.get(worker) == shard.pushed[worker]
        if rng.random() < 0.1:
            shard.inbox.append(("push", worker, rng.randint(1, worker_clock)))
        for w, c in shard.pending.release(shard.clocks.minimum(workers), consistency):
            answer(shard_id, w, c)

    def actions() -> list[tuple[str, int]]:
        enabled = [("shard", s) for s, shard in enumerate(shards) if shard.inbox]
        for w in workers:
            if clock[w] < final and w not in waiting:
                enabled.append(("pull", w))
            elif w in waiting and not waiting[w] and len(answered[w]) == n_shards:
                enabled.append(("push", w))
        return enabled

    # Uneven speeds make stragglers, so fast workers reach the bound and must wait.
    speed = {w: rng.choice([0.05, 0.3, 1.0]) for w in workers}
    while enabled := actions():
        weights = [1.0 if kind == "shard" else speed[target] for kind, target in enabled]
        [(action, target)] = rng.choices(enabled, weights)
        if action == "shard":
            handle(target)
        elif action == "pull":
            waiting[target] = set(range(n_shards))
            answered[target] = set()
            for shard in shards:
                shard.inbox.append(("pull", target, clock[target]))
        else:
            del waiting[target]
            clock[target] += 1
            for shard in shards:
                shard.inbox.append(("push", target, clock[target]))

    assert all(c == final for c in clock.values()), f"stalled at {clock}"
    assert not waiting
    assert replies == n_workers * n_shards * final
    for shard in shards:
        assert len(shard.pending) == 0
        assert shard.clocks.minimum(workers) == final
    return shards


CONSISTENCIES = [BSP, Consistency.ssp(1), Consistency.ssp(2), Consistency.ssp(4), ASP]


@pytest.mark.parametrize("consistency", CONSISTENCIES, ids=str)
def test_random_interleavings_respect_the_bound_and_finish(consistency: Consistency) -> None:
    lags = []
    held = 0
    for seed in range(40):
        rng = random.Random(seed)
        shards = simulate(
            seed,
            consistency,
            n_workers=rng.randint(1, 5),
            n_shards=rng.randint(1, 3),
            final=rng.randint(1, 12),
        )
        for shard in shards:
            assert shard.trace.violations(consistency) == []
            lags.append(shard.trace.max_lag())
            held += shard.held
    # The bound is tight, not merely safe: workers do run as far ahead as allowed, and
    # pulls were held only when the bound demanded it.
    if consistency.staleness is None:
        assert held == 0
        assert max(lags) > 2
    else:
        assert held > 0
        assert max(lags) == consistency.staleness


def test_held_pulls_wait_for_the_slowest_worker_then_all_go() -> None:
    """Final clock reached by everyone: every pull held at any clock is released."""
    clocks = VectorClock({})
    pending: PendingPulls[int] = PendingPulls()
    workers = {0, 1, 2}
    ssp = Consistency.ssp(1)
    for i, c in enumerate([2, 3, 3, 4]):
        assert not clocks.ready(c, workers, ssp)
        pending.add(c, i)
    clocks.advance(0, 4)
    clocks.advance(1, 4)
    assert pending.release(clocks.minimum(workers), ssp) == []
    clocks.advance(2, 2)
    assert pending.release(clocks.minimum(workers), ssp) == [0, 1, 2]
    clocks.advance(2, 4)
    assert pending.release(clocks.minimum(workers), ssp) == [3]
    assert len(pending) == 0


def test_a_workers_pull_beyond_its_k_supersedes_its_oldest_held_pull() -> None:
    pending: PendingPulls[str] = PendingPulls(per_worker=2)
    pending.add(3, "a1", worker=0)
    pending.add(3, "b1", worker=1)
    pending.add(3, "a2", worker=0)
    pending.add(4, "a3", worker=0)  # a1 timed out and was asked again: never answer it
    assert len(pending) == 3
    assert pending.release(3, BSP) == ["b1", "a2"]
    pending.add(5, "a4", worker=0)
    assert len(pending) == 2
    assert pending.release(10, BSP) == ["a3", "a4"]
    assert len(pending) == 0


@pytest.mark.parametrize("per_worker", [0, -2])
def test_per_worker_bound_must_be_positive(per_worker: int) -> None:
    with pytest.raises(ValueError):
        PendingPulls(per_worker=per_worker)
