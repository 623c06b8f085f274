"""Server-side update rules: one contract every registered rule meets, then the maths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kafka_ps.tables.codec import ParamRecord, decode_record, encode_record
from kafka_ps.tables.update_rules import (
    UPDATE_RULES,
    BadDeltaError,
    UpdateRule,
    ftrl_step,
    ftrl_weights,
    make_rule,
)

#: Hyper-parameters the contract uses for each rule; a new rule must be added here.
HYPER: dict[str, dict[str, float]] = {
    "add": {},
    "sgd": {"lr": 0.5},
    "adagrad": {"lr": 0.5},
    "adagrad_additive": {"lr": 0.5},
    "adam": {"lr": 0.05},
    "ftrl": {"alpha": 0.5, "beta": 1.0, "l1": 0.1, "l2": 0.1},
    "ftrl_additive": {"alpha": 0.5, "beta": 1.0, "l1": 0.1, "l2": 0.1},
}
RULES = sorted(UPDATE_RULES)
DIM = 8


def _rule(name: str) -> UpdateRule:
    return make_rule(name, **HYPER[name])


def _read_only(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Copies marked read-only, as decoded records are."""
    out = []
    for a in arrays:
        a = a.copy()
        a.flags.writeable = False
        out.append(a)
    return tuple(out)


def _stream(seed: int = 0, n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    """A fixed logistic-regression stream."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM))
    w_true = rng.standard_normal(DIM) * 2.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-x @ w_true))).astype(np.float64)
    return x, y


def _logloss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-x @ w)), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = 1.0 / (1.0 + np.exp(-x @ w))
    return x.T @ (p - y) / len(y)


def _worker_push(rule: UpdateRule, slots: tuple[np.ndarray, ...], x, y) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The delta a worker pushes after a mini-batch ``(x, y)`` against pulled ``slots``."""
    w = slots[0].astype(np.float64)
    if rule.name == "ftrl_additive":
        # Learn record by record on a local copy of (z, n); push the accumulated change.
        z0, n0 = slots[1].astype(np.float64), slots[2].astype(np.float64)
        z, n = z0, n0
        hyper = HYPER[rule.name]
        for xi, yi in zip(x, y, strict=True):
            w = ftrl_weights(z, n, **hyper)
            z, n = ftrl_step(z, n, w, _grad(w, xi[None], yi[None]), hyper["alpha"])
        return np.stack([z - z0, n - n0])
    if rule.name == "adagrad_additive":
        # AdaGrad steps record by record on a local copy of (w, G); push the change.
        acc0 = slots[1].astype(np.float64)
        w0, acc = w, acc0
        for xi, yi in zip(x, y, strict=True):
            g = _grad(w, xi[None], yi[None])
            acc = acc + g * g
            w = w - HYPER[rule.name]["lr"] * g / (np.sqrt(acc) + 1e-8)
        return np.stack([w - w0, acc - acc0])
    g = _grad(w, x, y)
    if rule.name == "add":
        return (-0.5 * g)[None]
    return g[None]


# The contract: every registered rule, the same checks.


def test_every_rule_is_covered_and_ids_are_unique() -> None:
    assert set(HYPER) == set(UPDATE_RULES)
    ids = [cls.rule_id for cls in UPDATE_RULES.values()]
    assert len(set(ids)) == len(ids) and all(0 < i < 2**16 for i in ids)
    for name, cls in UPDATE_RULES.items():
        assert cls.name == name and cls.n_state >= 0 and cls.delta_slots >= 1


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(DIM,), (3, 4)])
def test_contract_shapes_immutability_and_codec(
    name: str, dtype: type, shape: tuple[int, ...]
) -> None:
    rule = _rule(name)
    rng = np.random.default_rng(1)
    slots = rule.init_state((rng.standard_normal(shape) * 0.1).astype(dtype))
    assert len(slots) == 1 + rule.n_state
    for _ in range(3):
        delta = rng.standard_normal((rule.delta_slots, *shape)).astype(dtype)
        if name in ("ftrl_additive", "adagrad_additive"):
            delta[1] = np.abs(delta[1])
        before, frozen_delta = _read_only(slots), _read_only((delta,))[0]
        new = rule.apply(before, frozen_delta)
        assert len(new) == 1 + rule.n_state
        for slot in new:
            assert slot.shape == shape and slot.dtype == np.dtype(dtype)
            assert np.isfinite(slot).all()
            assert not any(np.shares_memory(slot, a) for a in (*before, frozen_delta))
        for a, b in zip(slots, before, strict=True):
            assert a.tobytes() == b.tobytes()
        rec = ParamRecord(new, offset=11, clock=3, rule_id=rule.rule_id)
        out = decode_record(encode_record(rec))
        assert out.rule_id == rule.rule_id and len(out.slots) == len(new)
        for a, b in zip(new, out.slots, strict=True):
            assert a.tobytes() == b.tobytes()
        slots = out.slots  # Keep going from the decoded, read-only record.


@pytest.mark.parametrize("name", RULES)
def test_contract_learning_lowers_the_loss(name: str) -> None:
    rule = _rule(name)
    x, y = _stream()
    slots = rule.init_state(np.zeros(DIM))
    start = _logloss(slots[0], x, y)
    for step in range(200):
        batch = slice(4 * step, 4 * step + 4)
        slots = rule.apply(slots, _worker_push(rule, slots, x[batch], y[batch]))
    end = _logloss(slots[0], x, y)
    assert end < 0.5 * start, (start, end)


@pytest.mark.parametrize("name", RULES)
def test_contract_bad_deltas_are_rejected_before_touching_state(name: str) -> None:
    rule = _rule(name)
    slots = _read_only(rule.init_state(np.full(4, 0.25)))
    good = np.ones((rule.delta_slots, 4))
    nan, inf = good.copy(), good.copy()
    nan[0, 1], inf[-1, 2] = np.nan, -np.inf
    bad = [
        nan,
        inf,
        np.ones(4),
        np.ones((rule.delta_slots + 1, 4)),
        np.ones((rule.delta_slots, 5)),
        good.astype(np.complex128),
        np.full((rule.delta_slots, 4), "x"),
        np.array([[1.0, 2.0], [3.0]], dtype=object),
    ]
    for delta in bad:
        with pytest.raises(BadDeltaError):
            rule.apply(slots, delta)
    for a, b in zip(slots, rule.init_state(np.full(4, 0.25)), strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", RULES)
def test_contract_rejects_slots_that_do_not_fit(name: str) -> None:
    rule = _rule(name)
    slots = rule.init_state(np.zeros(3))
    delta = np.zeros((rule.delta_slots, 3))
    with pytest.raises(ValueError):
        rule.apply((*slots, np.zeros(3)), delta)
    if rule.n_state:
        with pytest.raises(ValueError):
            rule.apply((slots[0], *(np.zeros(2) for _ in slots[1:])), delta)


# The maths, against scalar references.

GRADS = [0.5, -1.2, 2.0, 0.0, -0.3]


def test_add_counts_exactly_in_int64() -> None:
    rule = make_rule("add")
    slots = rule.init_state(np.zeros(3, np.int64))
    for _ in range(1000):
        slots = rule.apply(slots, np.array([[1, 0, 2]]))
    assert slots[0].tolist() == [1000, 0, 2000] and slots[0].dtype == np.int64
    with pytest.raises(BadDeltaError):
        rule.apply(slots, np.array([[0.5, 0.0, 0.0]]))
    with pytest.raises(ValueError):
        make_rule("sgd", lr=0.1).init_state(np.zeros(3, np.int64))


def test_sgd_reference() -> None:
    rule = make_rule("sgd", lr=0.1)
    (w,) = rule.apply(rule.init_state(np.array([1.0])), np.array([[2.0]]))
    assert w[0] == pytest.approx(0.8, abs=1e-15)


def test_adagrad_reference() -> None:
    lr, eps, acc0, w0 = 0.3, 1e-8, 0.1, 0.7
    rule = make_rule("adagrad", lr=lr, eps=eps, initial_accumulator=acc0)
    slots = rule.init_state(np.array([w0]))
    w, acc = w0, acc0
    for g in GRADS:
        acc += g * g
        w -= lr * g / (math.sqrt(acc) + eps)
        slots = rule.apply(slots, np.array([[g]]))
        assert abs(slots[0][0] - w) < 1e-12 and abs(slots[1][0] - acc) < 1e-12


def test_adam_reference_with_per_element_steps() -> None:
    lr, b1, b2, eps = 0.01, 0.8, 0.99, 1e-8
    rule = make_rule("adam", lr=lr, beta1=b1, beta2=b2, eps=eps)
    slots = rule.init_state(np.array([0.2, -0.4]))
    w, m, v = 0.2, 0.0, 0.0
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w -= lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
        slots = rule.apply(slots, np.array([[g, 1.0]]))
        assert abs(slots[0][0] - w) < 1e-12
        assert abs(slots[1][0] - m) < 1e-12 and abs(slots[2][0] - v) < 1e-12
        assert slots[3].tolist() == [t, t]


def _ftrl_reference(grads: list[float], alpha: float, beta: float, l1: float, l2: float):  # type: ignore[no-untyped-def]
    """McMahan et al. (2013), algorithm 1, for one coordinate."""
    z = n = 0.0
    out = []
    for g in grads:
        w = (
            0.0
            if abs(z) <= l1
            else -(z - math.copysign(l1, z)) / ((beta + math.sqrt(n)) / alpha + l2)
        )
        sigma = (math.sqrt(n + g * g) - math.sqrt(n)) / alpha
        z += g - sigma * w
        n += g * g
        w = (
            0.0
            if abs(z) <= l1
            else -(z - math.copysign(l1, z)) / ((beta + math.sqrt(n)) / alpha + l2)
        )
        out.append((w, z, n))
    return out


def test_ftrl_reference() -> None:
    hyper = {"alpha": 0.2, "beta": 1.0, "l1": 0.3, "l2": 0.5}
    rule = make_rule("ftrl", **hyper)
    slots = rule.init_state(np.zeros(1))
    assert [s.tolist() for s in slots] == [[0.0], [0.0], [0.0]]
    for g, expected in zip(GRADS, _ftrl_reference(GRADS, **hyper), strict=True):
        slots = rule.apply(slots, np.array([[g]]))
        for got, want in zip(slots, expected, strict=True):
            assert abs(got[0] - want) < 1e-12


def test_ftrl_additive_matches_ftrl_for_one_worker() -> None:
    hyper = {"alpha": 0.2, "beta": 1.0, "l1": 0.3, "l2": 0.5}
    ftrl, additive = make_rule("ftrl", **hyper), make_rule("ftrl_additive", **hyper)
    grads = np.random.default_rng(3).standard_normal((12, 5))
    per_record = ftrl.init_state(np.zeros(5))
    for g in grads:
        per_record = ftrl.apply(per_record, g[None])
    # One worker learns the same 12 records on its local copy and pushes once.
    pulled = additive.init_state(np.zeros(5))
    z, n = pulled[1], pulled[2]
    for g in grads:
        z, n = ftrl_step(z, n, ftrl_weights(z, n, **hyper), g, hyper["alpha"])
    pushed = additive.apply(pulled, np.stack([z - pulled[1], n - pulled[2]]))
    for a, b in zip(per_record, pushed, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_ftrl_additive_sums_pushes_from_many_workers() -> None:
    rule = make_rule("ftrl_additive")
    slots = rule.init_state(np.zeros(3))
    d1 = np.array([[2.0, -0.5, 0.0], [1.0, 0.25, 0.0]])
    d2 = np.array([[-4.0, 3.0, 0.0], [4.0, 0.5, 0.0]])
    both = rule.apply(rule.apply(slots, d1), d2)
    np.testing.assert_allclose(both[1], d1[0] + d2[0], atol=1e-15)
    np.testing.assert_allclose(both[2], d1[1] + d2[1], atol=1e-15)
    np.testing.assert_array_equal(both[0], ftrl_weights(both[1], both[2], 0.1, 1.0, 1.0, 1.0))
    with pytest.raises(BadDeltaError, match="negative"):
        rule.apply(slots, np.array([[0.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))


def test_adagrad_additive_matches_adagrad_for_one_worker_and_sums_pushes() -> None:
    adagrad, additive = make_rule("adagrad", lr=0.3), make_rule("adagrad_additive", lr=0.3)
    grads = np.random.default_rng(5).standard_normal((12, 4))
    per_record = adagrad.init_state(np.zeros(4))
    for g in grads:
        per_record = adagrad.apply(per_record, g[None])
    # One worker takes the same 12 steps on its local copy and pushes once.
    pulled = additive.init_state(np.zeros(4))
    w, acc = pulled
    for g in grads:
        acc = acc + g * g
        w = w - 0.3 * g / (np.sqrt(acc) + 1e-8)
    pushed = additive.apply(pulled, np.stack([w - pulled[0], acc - pulled[1]]))
    for a, b in zip(per_record, pushed, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    twice = additive.apply(pushed, np.stack([w - pulled[0], acc - pulled[1]]))
    np.testing.assert_allclose(twice[1], 2 * acc, rtol=0, atol=1e-12)
    with pytest.raises(BadDeltaError, match="negative"):
        additive.apply(pulled, np.array([[0.0] * 4, [0.0, -1.0, 0.0, 0.0]]))


def test_ftrl_large_l1_gives_exact_zeros() -> None:
    rule = make_rule("ftrl", l1=1e6)
    slots = rule.init_state(np.zeros(50))
    grads = np.random.default_rng(4).standard_normal((100, 50)) * 10
    for g in grads:
        slots = rule.apply(slots, g[None])
    assert np.all(slots[0] == 0.0) and np.any(slots[1] != 0.0)
    assert np.all(ftrl_weights(np.array([0.5, -0.5]), np.ones(2), 0.1, 1.0, 1.0, 1.0) == 0.0)


def test_ftrl_init_state_reproduces_a_nonzero_value() -> None:
    rule = make_rule("ftrl", alpha=0.3, beta=0.5, l1=2.0, l2=1.5)
    value = np.array([0.0, 0.75, -1.25])
    w, z, n = rule.init_state(value)
    np.testing.assert_allclose(w, value, rtol=0, atol=1e-15)
    assert n.tolist() == [0.0, 0.0, 0.0] and z[0] == 0.0


def test_non_finite_results_are_rejected() -> None:
    rule = make_rule("add")
    slots = rule.init_state(np.array([3e38], np.float32))
    with pytest.raises(BadDeltaError, match="non-finite"):
        rule.apply(slots, np.array([[3e38]], np.float32))


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("nope", {}),
        ("sgd", {}),
        ("sgd", {"lr": 0.0}),
        ("sgd", {"lr": -0.1}),
        ("sgd", {"lr": math.nan}),
        ("sgd", {"lr": "0.1"}),
        ("sgd", {"lr": True}),
        ("sgd", {"lr": 0.1, "momentum": 0.9}),
        ("adagrad", {"lr": 0.1, "eps": 0.0}),
        ("adagrad", {"lr": 0.1, "initial_accumulator": -1.0}),
        ("adagrad_additive", {"lr": 0.0}),
        ("adam", {"lr": 0.1, "beta1": 1.0}),
        ("adam", {"lr": 0.1, "beta2": -0.1}),
        ("ftrl", {"alpha": 0.0}),
        ("ftrl_additive", {"l1": -1.0}),
    ],
)
def test_make_rule_rejects_bad_hyper_parameters(name: str, hyper: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_rule(name, **hyper)  # type: ignore[arg-type]
