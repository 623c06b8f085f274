"""A write-back view of a table: writes wait in memory until :meth:`WriteBack.flush`.

A shard's bookkeeping (clocks, high-water marks, held BSP pushes) must never reach the
changelog ahead of the parameter pages it vouches for: a durable mark over pages a crash
lost would drop the replayed push that should restore them. So the shard writes its
bookkeeping through this view and flushes it after the pages, in one flush, in order.

Within the bookkeeping the same holds: a high-water mark vouches for the held BSP pushes
and their index, and the read position for everything before it. Write order alone does
not keep them behind: a key written again moves to the end, so an index rewritten by a
later push landed after the mark that vouched for its earlier entry, and a SIGKILL between
the two left a durable mark over a held push the table had lost: the replayed push was
dropped and never applied (found by the BSP chaos benchmark, 10 server kills). So the keys
under ``last`` are written after all others, group by group.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import suppress

_DELETED = object()


class WriteBack(MutableMapping[bytes, bytes]):
    """Reads see pending writes first; ``flush`` sends them to the table in write order.

    Parameters
    ----------
    table
        The durable mapping (one shard partition's view of a Faust table, or a dict).
    last
        Key prefixes whose keys a flush writes after every other key, in this order
        (each group in write order).
    """

    def __init__(self, table: MutableMapping[bytes, bytes], last: Sequence[bytes] = ()) -> None:
        self.table = table
        self.last = tuple(last)
        self.pending: dict[bytes, object] = {}

    def __getitem__(self, key: bytes) -> bytes:
        value = self.pending.get(key)
        if value is None:
            return self.table[key]
        if value is _DELETED:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.pending.pop(key, None)  # keep write order: a rewritten key moves to the end
        self.pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        self[key]
        self.pending.pop(key, None)
        self.pending[key] = _DELETED

    def __iter__(self) -> Iterator[bytes]:
        raise TypeError("a write-back view is not iterable; read keys you know")

    def __len__(self) -> int:
        raise TypeError("a write-back view has no length; read keys you know")

    def flush(self) -> int:
        """Write every pending change to the table; return how many."""
        pending, self.pending = self.pending, {}
        for key, value in sorted(pending.items(), key=self._rank):
            if value is _DELETED:
                with suppress(KeyError):  # written and deleted between two flushes
                    # Read first: a key like __deferred__:<offset> can exist in several
                    # partitions, and Faust's RocksDB store deletes in the partition it last
                    # read or wrote the key in; a read inside this partition's event pins it
                    # here (and raises KeyError when this partition never had the key).
                    self.table[key]
                    del self.table[key]
            else:
                self.table[key] = value  # type: ignore[assignment]
        return len(pending)

    def _rank(self, item: tuple[bytes, object]) -> int:
        """0 for a key under none of ``last``; else 1 + the index of its prefix (sorting is
        stable, so write order holds within a group)."""
        key = item[0]
        return next((i + 1 for i, prefix in enumerate(self.last) if key.startswith(prefix)), 0)
