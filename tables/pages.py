"""Parameter pages: how a shard keeps its parameters in memory and in its table.

A shard holds every key of one parameter in a :class:`Slab`: one array of all their slots,
``(rows, n_slots, *shape)``, cut into pages of ``page_size`` rows. A key keeps its row for
life, so a page is a fixed range of rows. Each page has one **stamp**, the shard-topic
offset of the last push applied to any of its rows; a push replayed after a crash
(offset <= stamp) is skipped for that page, which is exactly-once because a page is
written to the table whole, stamp and values in one record.

The table holds one record per page, key ``__page__:<shard>:<parameter>:<n>`` (the
shard number keeps pages of different partitions apart in Faust's one table object).
Value, little-endian (docs/formats.md):

    header   magic "KG", version u8, page_size u32, n_keys u32
    keys     (n_keys + 1) u32 end positions into the key blob, then the key blob
    record   a tables.codec record whose offset is the page's stamp and whose slots
             are arrays of shape (n_keys, *shape): row i belongs to key i
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, MutableMapping, Sequence

import numpy as np

from kafka_ps.tables.codec import CodecError, ParamRecord, decode_record, encode_record
from kafka_ps.tables.params import ParamSpec

PAGE_PREFIX = b"__page__:"
MAGIC = b"KG"
VERSION = 1
HEADER = struct.Struct("<2sBII")
DEFAULT_PAGE_SIZE = 1024


def page_key(shard: int, name: str, page: int) -> bytes:
    return b"%s%d:%s:%d" % (PAGE_PREFIX, shard, name.encode(), page)


def encode_page(
    keys: Sequence[bytes], slots: np.ndarray, stamp: int, page_size: int, rule_id: int = 0
) -> bytes:
    """One page's table value: ``slots`` is ``(len(keys), n_slots, *shape)``."""
    ends = np.cumsum([0, *map(len, keys)], dtype="<u4")
    arrays = tuple(np.moveaxis(slots, 1, 0))
    record = encode_record(ParamRecord(arrays, offset=stamp, rule_id=rule_id))
    return b"".join(
        (HEADER.pack(MAGIC, VERSION, page_size, len(keys)), ends.tobytes(), *keys, record)
    )


def decode_page(data: bytes) -> tuple[list[bytes], np.ndarray, int, int]:
    """Keys, slots ``(n_keys, n_slots, *shape)``, stamp and page size of a page value."""
    view = memoryview(data)
    if len(view) < HEADER.size:
        raise CodecError(f"a page of {len(view)} bytes is shorter than its header")
    magic, version, page_size, n_keys = HEADER.unpack_from(view)
    if magic != MAGIC or version != VERSION:
        raise CodecError(f"not a v{VERSION} page (magic {magic!r} v{version})")
    start = HEADER.size + 4 * (n_keys + 1)
    if len(view) < start:
        raise CodecError("page truncated in its key positions")
    ends = np.frombuffer(view, dtype="<u4", count=n_keys + 1, offset=HEADER.size).tolist()
    blob = bytes(view[start : start + ends[-1]])
    keys = [blob[ends[i] : ends[i + 1]] for i in range(n_keys)]
    record = decode_record(view[start + ends[-1] :])
    if record.shape[:1] != (n_keys,):
        raise CodecError(f"page of {n_keys} keys holds {record.shape[:1]} rows")
    return keys, np.stack(record.slots, axis=1), record.offset, page_size


class Slab:
    """Every key of one parameter on one shard: rows of slots, pages of rows.

    Parameters
    ----------
    spec
        The parameter: shape, dtype, update rule and initialiser.
    page_size
        Rows per page, the unit of table writes and of exactly-once stamps.
    """

    def __init__(self, spec: ParamSpec, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.spec = spec
        self.page_size = page_size
        self.keys: list[bytes] = []
        self.index: dict[bytes, int] = {}
        self.slots = np.empty((0, *spec.slot_shape), dtype=spec.dtype)
        self.stamps = np.empty(0, dtype=np.int64)
        #: Pages changed since they were last written to the table.
        self.dirty: set[int] = set()
        #: Rows changed since they were last published to model-updates.
        self.changed = np.zeros(0, dtype=bool)
        self._initial: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, keys: Sequence[bytes]) -> np.ndarray:
        """Row of each key, -1 where the shard has never stored it."""
        get = self.index.get
        return np.fromiter((get(key, -1) for key in keys), dtype=np.intp, count=len(keys))

    def values(self, keys: Sequence[bytes]) -> np.ndarray:
        """Stored slots of ``keys``, initial ones for keys never pushed: ``(m, n_slots, ...)``."""
        rows = self.rows(keys)
        out = self.slots[np.maximum(rows, 0)] if len(self.keys) else self._empty(len(keys))
        new = np.flatnonzero(rows < 0)
        if len(new):
            out[new] = self.initial([keys[i] for i in new])
        return out

    def initial(self, keys: Sequence[bytes]) -> np.ndarray:
        """Initial slots of new ``keys``: one value for all when the initialiser allows."""
        if self.spec.init.same_for_every_key:
            if self._initial is None:
                self._initial = np.stack(self.spec.initial_slots(b""))
            return np.broadcast_to(self._initial, (len(keys), *self._initial.shape))
        out = self._empty(len(keys))
        for row, key in enumerate(keys):
            out[row] = np.stack(self.spec.initial_slots(key))
        return out

    def _empty(self, count: int) -> np.ndarray:
        return np.empty((count, *self.spec.slot_shape), dtype=self.spec.dtype)

    def add(self, keys: Sequence[bytes]) -> np.ndarray:
        """Rows for ``keys`` (unique), appending initialised rows for new ones."""
        rows = self.rows(keys)
        new = np.flatnonzero(rows < 0)
        if not len(new):
            return rows
        start = len(self.keys)
        added = [keys[i] for i in new]
        self.keys += added
        self.index.update(zip(added, range(start, start + len(added)), strict=True))
        self._grow(start + len(added))
        self.slots[start : start + len(added)] = self.initial(added)
        rows[new] = np.arange(start, start + len(added))
        self.dirty.update(
            range(start // self.page_size, (len(self.keys) - 1) // self.page_size + 1)
        )
        return rows

    def _grow(self, size: int) -> None:
        if size > len(self.slots):
            capacity = max(size, 2 * len(self.slots), self.page_size)
            slots = self._empty(capacity)
            slots[: len(self.slots)] = self.slots
            self.slots = slots
            changed = np.zeros(capacity, dtype=bool)
            changed[: len(self.changed)] = self.changed
            self.changed = changed
        pages = -(-size // self.page_size)
        if pages > len(self.stamps):
            self.stamps = np.concatenate(
                [self.stamps, np.full(pages - len(self.stamps), -1, dtype=np.int64)]
            )

    def fresh(self, rows: np.ndarray, offset: int) -> np.ndarray:
        """Which rows a push at ``offset`` has not reached yet (their page's stamp is older)."""
        return self.stamps[rows // self.page_size] < offset

    def write(self, rows: np.ndarray, slots: np.ndarray, offset: int) -> None:
        """Store new slots for ``rows`` applied by the push at ``offset``."""
        self.slots[rows] = slots
        pages = np.unique(rows // self.page_size)
        self.stamps[pages] = offset
        self.dirty.update(pages.tolist())
        self.changed[rows] = True

    def touch(self, rows: np.ndarray) -> None:
        """Write these rows' pages again at the next flush (a replay proved nothing new)."""
        self.dirty.update(np.unique(rows // self.page_size).tolist())

    def pages(self, pages: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """``(page, value)`` table records of ``pages``."""
        size = self.page_size
        for page in sorted(pages):
            rows = slice(page * size, min((page + 1) * size, len(self.keys)))
            stamp = int(self.stamps[page])
            rule_id = self.spec.rule.rule_id
            yield page, encode_page(self.keys[rows], self.slots[rows], stamp, size, rule_id)

    def take_changed(self) -> tuple[list[bytes], np.ndarray, np.ndarray]:
        """Keys, values (slot 0) and stamps of the rows changed since the last call."""
        rows = np.flatnonzero(self.changed[: len(self.keys)])
        self.changed[rows] = False
        return self.everything(rows)

    def everything(
        self, rows: np.ndarray | None = None
    ) -> tuple[list[bytes], np.ndarray, np.ndarray]:
        """Keys, values (slot 0) and page stamps of ``rows`` (default: every row)."""
        if rows is None:
            rows = np.arange(len(self.keys))
        keys = [self.keys[row] for row in rows.tolist()]
        return keys, self.slots[rows, 0], self.stamps[rows // self.page_size]

    def load_page(self, page: int, keys: list[bytes], slots: np.ndarray, stamp: int) -> None:
        """Put a page read from the table back in its place (pages load in order)."""
        start = page * self.page_size
        if start != len(self.keys):
            raise CodecError(
                f"page {page} of {self.spec.name!r} does not follow row {len(self.keys)}"
            )
        self._grow(start + len(keys))
        self.keys += keys
        self.index.update(zip(keys, range(start, start + len(keys)), strict=True))
        self.slots[start : start + len(keys)] = slots
        self.stamps[page] = stamp


def load_slab(table: Mapping[bytes, bytes], shard: int, spec: ParamSpec, page_size: int) -> Slab:
    """The slab of ``spec`` on ``shard`` as its table holds it (pages 0, 1, ... until one is
    missing: pages are created, and so written, in order)."""
    slab: Slab | None = None
    page = 0
    while True:
        try:
            stored = table[page_key(shard, spec.name, page)]
        except KeyError:
            return slab or Slab(spec, page_size)
        keys, slots, stamp, stored_size = decode_page(stored)
        if slab is None:
            slab = Slab(spec, stored_size)
        slab.load_page(page, keys, slots.astype(spec.dtype, copy=False), stamp)
        page += 1


def flush_slab(table: MutableMapping[bytes, bytes], shard: int, slab: Slab) -> tuple[int, int]:
    """Write the slab's dirty pages to ``table``; return how many, and their bytes."""
    dirty, slab.dirty = slab.dirty, set()
    size = 0
    for page, value in slab.pages(dirty):
        table[page_key(shard, slab.spec.name, page)] = value
        size += len(value)
    return len(dirty), size


def params_in_table(records: Mapping[bytes, bytes | None]) -> dict[bytes, np.ndarray]:
    """Every parameter's slots ``(n_slots, *shape)`` in a table's latest records (as read
    from its changelog): the pages, expanded key by key; bookkeeping records are left out."""
    params: dict[bytes, np.ndarray] = {}
    for key, value in records.items():
        if value is not None and key.startswith(PAGE_PREFIX):
            keys, slots, _, _ = decode_page(value)
            params.update(zip(keys, slots, strict=True))
    return params
