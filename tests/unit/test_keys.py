"""Keys, shards, feature hashing, dense layouts and key-seeded initialisers."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from kafka_ps.tables.init import Constant, Normal, ParamInit, Uniform, Zeros
from kafka_ps.tables.keys import (
    DenseLayout,
    group_by_shard,
    hash_cross,
    hash_feature,
    param_key,
    parse_key,
    shard_of,
    stable_hash,
)

KEYS = [param_key("w", i) for i in range(50)] + [b"fc1.weight:0", b"fc1.weight:1"]


def test_param_key_wire_form() -> None:
    assert param_key("w", 123456) == b"w:123456"
    assert param_key("fc1.weight", 3) == b"fc1.weight:3"
    assert param_key("emb", "user_7") == b"emb:user_7"
    assert param_key("w", np.int64(42)) == param_key("w", np.uint32(42)) == b"w:42"
    assert param_key("caf\u00e9", 1) == "caf\u00e9:1".encode()


@pytest.mark.parametrize(
    ("name", "index"), [("", 1), ("w", -1), ("w", ""), ("w", "a:b"), ("w", True), ("w", 1.5)]
)
def test_param_key_rejects(name: str, index: object) -> None:
    with pytest.raises(ValueError):
        param_key(name, index)  # type: ignore[arg-type]


def test_parse_key_splits_on_last_colon() -> None:
    assert parse_key(b"w:123456") == ("w", "123456")
    assert parse_key(b"ns:fc1.weight:3") == ("ns:fc1.weight", "3")
    assert parse_key(param_key("caf\u00e9", 9)) == ("caf\u00e9", "9")


@pytest.mark.parametrize("key", [b"w", b":3", b"w:", b"", b"\xff:1", "w:1"])
def test_parse_key_rejects(key: bytes) -> None:
    with pytest.raises(ValueError):
        parse_key(key)


def test_stable_hash_is_crc32() -> None:
    # Known CRC-32 check values, independent of zlib.
    assert stable_hash(b"123456789") == 0xCBF43926
    assert stable_hash(b"") == 0
    assert stable_hash(b"w:123456") == zlib.crc32(b"w:123456")


def test_shard_of() -> None:
    assert shard_of(b"123456789", 4) == 0xCBF43926 % 4
    assert all(0 <= shard_of(k, 7) < 7 for k in KEYS)
    assert shard_of(b"anything", 1) == 0
    with pytest.raises(ValueError):
        shard_of(b"w:1", 0)


def test_shards_do_not_depend_on_python_hash_seed() -> None:
    code = (
        "from tables.keys import param_key, shard_of, hash_feature;"
        "print([shard_of(param_key('w', i), 12) for i in range(40)],"
        " hash_feature('city', 'Oslo', 2**20))"
    )
    outputs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    expected = f"{[shard_of(param_key('w', i), 12) for i in range(40)]} "
    expected += f"{hash_feature('city', 'Oslo', 2**20)}\n"
    assert outputs == {expected}


def test_group_by_shard_keeps_order() -> None:
    groups = group_by_shard(KEYS, 5)
    assert sorted(k for ks in groups.values() for k in ks) == sorted(KEYS)
    for shard, keys in groups.items():
        assert keys == [k for k in KEYS if shard_of(k, 5) == shard]
    assert group_by_shard([], 5) == {}


def test_hash_feature() -> None:
    assert hash_feature("city", "Oslo", 2**20) == zlib.crc32(b"city=Oslo") % 2**20
    assert hash_feature("n", 1, 1000) == hash_feature("n", "1", 1000)
    assert hash_feature("n", None, 1000) == zlib.crc32(b"n=None") % 1000
    assert hash_feature("a", "b", 1) == 0
    with pytest.raises(ValueError):
        hash_feature("a", "b", 0)


def test_hash_cross() -> None:
    assert hash_cross([("a", 1), ("b", "x")], 2**20) == zlib.crc32(b"a=1&b=x") % 2**20
    assert hash_cross([("city", "Oslo")], 997) == hash_feature("city", "Oslo", 997)
    with pytest.raises(ValueError):
        hash_cross([], 10)


@pytest.mark.parametrize(
    ("shape", "block_size", "n_blocks"),
    [((10,), 4, 3), ((3, 4), 6, 2), ((2, 3, 5), 7, 5), ((), 3, 1)],
)
def test_layout_round_trip(shape: tuple[int, ...], block_size: int, n_blocks: int) -> None:
    layout = DenseLayout("fc1.weight", shape, block_size)
    array = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    blocks = layout.split(array)
    assert layout.n_blocks == len(blocks) == n_blocks
    assert layout.keys() == [f"fc1.weight:{i}".encode() for i in range(n_blocks)]
    assert [b.size for b in blocks] == [layout.block_len(i) for i in range(n_blocks)]
    assert np.concatenate(blocks).tolist() == array.ravel().tolist()
    joined = layout.join(blocks)
    assert joined.shape == shape and joined.dtype == array.dtype
    np.testing.assert_array_equal(joined, array)


def test_layout_split_follows_c_order_of_non_contiguous_input() -> None:
    array = np.arange(12.0).reshape(3, 4).T  # Fortran-ordered view of shape (4, 3).
    layout = DenseLayout("t", (4, 3), 5)
    np.testing.assert_array_equal(np.concatenate(layout.split(array)), array.ravel(order="C"))


def test_layout_errors() -> None:
    layout = DenseLayout("w", (2, 5), 4)
    with pytest.raises(ValueError, match="shape"):
        layout.split(np.zeros((5, 2)))
    blocks = layout.split(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="blocks"):
        layout.join(blocks[:-1])
    with pytest.raises(ValueError, match="elements"):
        layout.join([blocks[0], blocks[1], np.zeros(3)])
    with pytest.raises(ValueError, match="dtypes"):
        layout.join([blocks[0], blocks[1], blocks[2].astype(np.float32)])
    with pytest.raises(ValueError):
        layout.block_len(3)
    for bad in [("", (2,), 1), ("w", (0, 2), 1), ("w", (2,), 0)]:
        with pytest.raises(ValueError):
            DenseLayout(*bad)


# Initialisers are seeded by the key, so they are tested with the keys.


@pytest.mark.parametrize(("make_init", "kw"), [(Normal, {"std": 0.1}), (Uniform, {"scale": 0.1})])
def test_random_init_is_deterministic_per_key(
    make_init: type[ParamInit], kw: dict[str, float]
) -> None:
    a = make_init(**kw)(b"w:1", (64,), np.float32)
    assert a.shape == (64,) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, make_init(**kw)(b"w:1", (64,), np.float32))
    assert not np.array_equal(a, make_init(**kw)(b"w:2", (64,), np.float32))
    assert not np.array_equal(a, make_init(seed=7, **kw)(b"w:1", (64,), np.float32))
    assert make_init(**kw)(b"w:1", (2, 3), np.float64).shape == (2, 3)


def test_random_init_is_the_same_in_another_process() -> None:
    code = (
        "from kafka_ps.tables.init import Normal;"
        "print(Normal(std=1.0)(b'w:9', (4,), 'f8').tolist())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "3"},
        capture_output=True,
        text=True,
        check=True,
    )
    here = Normal(std=1.0)(b"w:9", (4,), "f8").tolist()
    assert result.stdout.strip() == str(here)


def test_random_init_statistics() -> None:
    normal = Normal(std=2.0)(b"emb:0", (20000,), np.float64)
    assert abs(normal.mean()) < 0.05 and abs(normal.std() - 2.0) < 0.05
    uniform = Uniform(scale=0.5)(b"emb:0", (20000,), np.float64)
    assert uniform.min() >= -0.5 and uniform.max() < 0.5 and abs(uniform.mean()) < 0.01


def test_constant_and_zeros() -> None:
    np.testing.assert_array_equal(Zeros()(b"c:0", (3,), np.int64), [0, 0, 0])
    np.testing.assert_array_equal(Constant(c=0.5)(b"c:0", (2,)), [0.5, 0.5])


def test_init_errors() -> None:
    with pytest.raises(ValueError):
        Normal(std=-1.0)
    with pytest.raises(TypeError):
        Normal(sigma=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Uniform(scale=1.0)(b"w:0", (2,), np.int64)
