"""Parameter keys, the key-to-shard function, feature hashing and dense block layouts.

A parameter key names a parameter and an index within it. On the wire it is the UTF-8
string ``"<name>:<index>"``: ``b"w:123456"`` is bucket 123456 of a hashed sparse weight
vector, ``b"fc1.weight:3"`` is block 3 of a dense tensor. Names may contain colons, indexes
may not, so a key splits on its last colon.

Everything here must give the same answer in every process and every Python run
(invariant 1), so the only hash used is CRC-32, never Python's ``hash()``. CRC-32 of the key
modulo the partition count is also what librdkafka's ``consistent`` partitioner computes, so
a non-Python producer can route a key to its shard without this package.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEPARATOR = ":"


def param_key(name: str, index: int | str) -> bytes:
    """The wire key of element or block ``index`` of parameter ``name``.

    ``index`` is a non-negative integer (numpy integers too) or a non-empty string
    without a colon.
    """
    if not name:
        raise ValueError("parameter name must not be empty")
    if isinstance(index, str):
        text = index
    else:
        try:
            if isinstance(index, bool):
                raise TypeError
            number = operator.index(index)
        except TypeError:
            raise ValueError(
                f"parameter index must be an integer or a str, not {type(index).__name__}"
            ) from None
        if number < 0:
            raise ValueError(f"parameter index must be a non-negative integer, got {index!r}")
        text = str(number)
    if not text or SEPARATOR in text:
        raise ValueError(f"parameter index must be non-empty and have no {SEPARATOR!r}: {text!r}")
    return f"{name}{SEPARATOR}{text}".encode()


def parse_key(key: bytes) -> tuple[str, str]:
    """Split a wire key into ``(name, index)``; the index is returned as text."""
    try:
        text = bytes(key).decode("utf-8")
    except (TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"parameter key is not UTF-8 bytes: {key!r}") from error
    name, sep, index = text.rpartition(SEPARATOR)
    if not sep:
        raise ValueError(f"parameter key has no {SEPARATOR!r} separator: {key!r}")
    if not name:
        raise ValueError(f"parameter key has an empty name: {key!r}")
    if not index:
        raise ValueError(f"parameter key has an empty index: {key!r}")
    return name, index


def stable_hash(data: bytes) -> int:
    """CRC-32 of ``data``: stable across processes, runs, platforms and languages."""
    return zlib.crc32(data)


def shard_of(key: bytes, partitions: int) -> int:
    """The shard (shard-topic partition) that owns ``key``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return stable_hash(key) % partitions


def shards_of(keys: Sequence[bytes], partitions: int) -> np.ndarray:
    """The shard of each key (:func:`shard_of`), as one integer array."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    crc32 = zlib.crc32
    return np.fromiter((crc32(key) for key in keys), dtype=np.int64, count=len(keys)) % partitions


def group_by_shard(keys: Sequence[bytes], partitions: int) -> dict[int, list[bytes]]:
    """Keys grouped by owning shard, keeping their order within each shard."""
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(shard_of(key, partitions), []).append(key)
    return groups


def _bucket(text: str, buckets: int) -> int:
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    return stable_hash(text.encode()) % buckets


def hash_feature(name: str, value: str | int | float | None, buckets: int) -> int:
    """The bucket in ``[0, buckets)`` of the categorical feature ``name=value``.

    The hashed text is ``f"{name}={value}"``, so ``1`` and ``"1"`` share a bucket while
    ``1`` and ``1.0`` do not; convert values consistently before hashing.
    """
    return _bucket(f"{name}={value}", buckets)


def hash_cross(parts: Sequence[tuple[str, object]], buckets: int) -> int:
    """The bucket of a feature cross: ``"a=1&b=x"`` for ``[("a", 1), ("b", "x")]``.

    Order matters: the parts are joined as given. A one-part cross hashes like
    :func:`hash_feature`.
    """
    if not parts:
        raise ValueError("a feature cross needs at least one part")
    return _bucket("&".join(f"{name}={value}" for name, value in parts), buckets)


@dataclass(frozen=True)
class DenseLayout:
    """How a dense tensor is cut into blocks, each stored under its own key.

    The tensor is flattened in C order and cut into consecutive blocks of ``block_size``
    elements; the last block may be shorter. Block ``i`` is stored under
    ``param_key(name, i)``.

    Parameters
    ----------
    name
        The tensor's parameter name, the name part of each block's key; not empty.
    shape
        The tensor's shape; every dimension >= 1.
    block_size
        Elements per block (per key), >= 1; the last block may hold fewer.
    """

    name: str
    shape: tuple[int, ...]
    block_size: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("layout name must not be empty")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 1 for d in self.shape):
            raise ValueError(f"every dimension must be >= 1, got shape {self.shape}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")

    @property
    def size(self) -> int:
        """Number of elements of the whole tensor."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def n_blocks(self) -> int:
        return -(-self.size // self.block_size)

    def block_len(self, i: int) -> int:
        """Number of elements of block ``i``."""
        if not 0 <= i < self.n_blocks:
            raise ValueError(f"block {i} out of range for {self.n_blocks} blocks")
        return min(self.block_size, self.size - i * self.block_size)

    def keys(self) -> list[bytes]:
        return [param_key(self.name, i) for i in range(self.n_blocks)]

    def split(self, array: np.ndarray) -> list[np.ndarray]:
        """The 1-D blocks of ``array``; they are views of it when it is C-contiguous."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise ValueError(f"{self.name}: expected shape {self.shape}, got {array.shape}")
        flat = np.ascontiguousarray(array).reshape(-1)
        return [flat[i : i + self.block_size] for i in range(0, self.size, self.block_size)]

    def join(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """The tensor rebuilt from its blocks (a new array)."""
        if len(blocks) != self.n_blocks:
            raise ValueError(f"{self.name}: expected {self.n_blocks} blocks, got {len(blocks)}")
        arrays = [np.asarray(block) for block in blocks]
        dtypes = {a.dtype for a in arrays}
        if len(dtypes) != 1:
            raise ValueError(f"{self.name}: blocks have mixed dtypes {sorted(map(str, dtypes))}")
        for i, block in enumerate(arrays):
            if block.size != self.block_len(i):
                raise ValueError(
                    f"{self.name}: block {i} has {block.size} elements, "
                    f"expected {self.block_len(i)}"
                )
        return np.concatenate([a.reshape(-1) for a in arrays]).reshape(self.shape)
