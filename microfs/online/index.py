"""The hash index of an online table, and one consistent snapshot of it.

An open-addressing hash table maps an online key to the position of its latest row:
an array of ``1 << bits`` slots (``int32``; ``int64`` from 2**31 - 1 rows), each -1 or a
row position, kept at most 70% full (``_MAX_LOAD``). A key's 64-bit hash (see
:mod:`microfs.online.hashing`) picks its first slot by Fibonacci hashing: the hash is a
product with the golden ratio constant, and its top ``bits`` bits are the slot. Collisions
probe linearly, to the next slot, until a free one.

A single integer-like key (integers, dates, datetimes, booleans) is its own code, so the
index compares it against its own column; other keys (strings, floats, several columns)
keep the 64-bit row hash in a column of their own and are compared against it first and
their values second. One key is looked up in Python, many keys vectorised in numpy (a
probe round moves all unresolved keys at once, no Python loop over rows); both use the
same hash.

``Snapshot`` is what a lookup reads: the columns (:mod:`microfs.online.columns`), the row
hashes, the slots and the lookup function over them. ``Snapshot.merged`` appends rows:
in place when every buffer has room, else into a new ``Snapshot`` that the online table
swaps in, so lookups take no lock. ``latest_rows`` picks each key's winning row of a
frame (the table's build and each appended batch); ``Request`` holds the keys of a batch
lookup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from microfs.online.columns import (
    INT_RANGES,
    Column,
    FixedColumn,
    Reader,
    arrow_strings,
    column_of,
    raw_reader,
)
from microfs.online.hashing import GOLDEN, M64, Array, key_hashes, numpy_values, series_codes
from microfs.online.keys import Keys

__all__ = ["Request", "RowReader", "Snapshot", "latest_rows", "row_reader"]

RowReader = Callable[[int], tuple[Any, ...]]
Finder = Callable[[Any], "int | None"]
_MAX_LOAD = 0.7


def _slots_of(h: Array, bits: int) -> Array:
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def _bits_for(count: int) -> int:
    return max(4, math.ceil(math.log2(max(count, 1) / _MAX_LOAD)))


def _place(
    slots: Array, bits: int, h: Array, positions: Array, same: Callable[[Array, Array], Array]
) -> None:
    """Put ``positions`` into free slots by linear probing, vectorised round by round.

    Rows with equal keys follow the same probe sequence, so they meet in one round at one
    free slot: the greatest position wins it and ``same`` (key equality of two position
    arrays) drops the others.
    """
    mask = (1 << bits) - 1
    slot = _slots_of(h, bits)
    pos = positions.astype(slots.dtype, copy=False)
    while pos.size:
        free = slots[slot] < 0
        np.maximum.at(slots, slot[free], pos[free])
        winner = slots[slot]
        lost = winner != pos
        slot, pos, winner = slot[lost], pos[lost], winner[lost]
        if pos.size:
            keep = ~same(pos, winner)
            slot, pos = (slot[keep] + 1) & mask, pos[keep]


def _never(a: Array, b: Array) -> Array:
    return np.zeros(len(a), dtype=np.bool_)


class Snapshot:
    """Columns, the slot array and the lookup function over them, as one snapshot.

    Rows ``0..n-1`` are stored; ``count`` of them are live (pointed to by a slot), the
    other ``stale`` ones were superseded by a newer row of the same key.
    """

    def __init__(
        self,
        keys: Keys,
        columns: dict[str, Column],
        hashes: FixedColumn | None,
        slots: Array,
        bits: int,
        count: int,
        stale: int,
    ) -> None:
        self.keys, self.columns, self.hashes = keys, columns, hashes
        self.slots, self.bits, self.count, self.stale = slots, bits, count, stale
        self.n = next(iter(columns.values())).n
        self.rows: dict[tuple[str, ...], RowReader] = {}
        self.find = self._finder()

    @classmethod
    def build(
        cls, keys: Keys, canonical: dict[str, str], frame: pl.DataFrame, order: Sequence[str]
    ) -> Snapshot:
        """Index ``frame``: per key, the last row in ``order`` is kept."""
        frame, h, slots, bits = latest_rows(keys, frame, order)
        columns = {c: column_of(frame.get_column(c), canonical[c]) for c in frame.columns}
        hashes = None if keys.exact else FixedColumn("hash", "hash", h, None, len(h))
        return cls(keys, columns, hashes, slots, bits, frame.height, 0)

    def _finder(self) -> Finder:
        keys, table, mask, shift = (
            self.keys,
            self.slots.data,
            (1 << self.bits) - 1,
            64 - self.bits,
        )
        coercers, as_tuple = keys.coercers, keys.as_tuple
        if keys.exact:
            column = self.columns[keys.names[0]]
            assert isinstance(column, FixedColumn)
            data = column.data.data
            coerce = coercers[0]
            # the fast path takes a plain int for an integer column (an empty range otherwise)
            lo, hi = INT_RANGES.get(keys.canonicals[0], (1, 0))
            m64, golden = M64, GOLDEN

            def find_exact(key: Any) -> int | None:
                if type(key) is tuple and len(key) == 1:
                    key = key[0]
                elif type(key) is tuple or type(key) is list:
                    key = as_tuple(key)[0]
                if type(key) is not int or not lo <= key <= hi:
                    key = coerce(key)
                    if key is None:
                        return None
                s = (((key & m64) * golden) & m64) >> shift
                while True:
                    p: int = table[s]
                    if p < 0:
                        return None
                    if data[p] == key:
                        return p
                    s = (s + 1) & mask

            return find_exact
        assert self.hashes is not None
        readers = [raw_reader(self.columns[n]) for n in keys.names]
        return _hashed_finder(keys, readers, self.hashes.data.data, table, self.bits)

    def hash_at(self, positions: Array) -> Array:
        """The stored rows' key hashes."""
        if self.hashes is not None:
            stored: Array = self.hashes.data[positions]
            return stored
        column = self.columns[self.keys.names[0]]
        assert isinstance(column, FixedColumn)
        return key_hashes([column.data[positions].astype(np.int64)])

    def probe(self, request: Request, h: Array) -> tuple[Array, Array]:
        """Positions (-1: unknown) and slots of the request's keys (no nulls), vectorised.

        Each round moves every unresolved key one slot along its probe sequence. A stored
        row whose hash (an integer-like key: whose value) equals the key's is a candidate;
        the candidates' key values are compared once all keys stopped, and the rare
        candidate of another key (a string CRC collision) resumes probing after its slot.
        """
        m = len(h)
        positions = np.full(m, -1, dtype=np.int64)
        found_slots = np.full(m, -1, dtype=np.int64)
        mask = (1 << self.bits) - 1
        if self.keys.exact:
            column = self.columns[self.keys.names[0]]
            assert isinstance(column, FixedColumn)
            stored_keys, wanted = column.data, request.codes[0]
        else:
            assert self.hashes is not None
            stored_keys, wanted = self.hashes.data, h
        rows, slot = np.arange(m, dtype=np.int64), _slots_of(h, self.bits)
        while rows.size:
            hit_rows, hit_positions, hit_slots = [], [], []
            while rows.size:
                stored = self.slots[slot]
                occupied = stored >= 0
                hit = occupied.copy()
                at = stored[occupied]
                hit[occupied] = (
                    stored_keys[at].astype(wanted.dtype, copy=False) == wanted[rows[occupied]]
                )
                hit_rows.append(rows[hit])
                hit_positions.append(stored[hit])
                hit_slots.append(slot[hit])
                more = occupied & ~hit
                rows, slot = rows[more], (slot[more] + 1) & mask
            found, at, slot = (np.concatenate(a) for a in (hit_rows, hit_positions, hit_slots))
            at = at.astype(np.int64, copy=False)
            same = (
                np.ones(len(found), dtype=np.bool_)
                if self.keys.exact
                else _equal_rows(request, found, self, at)
            )
            positions[found[same]] = at[same]
            found_slots[found[same]] = slot[same]
            rows, slot = found[~same], (slot[~same] + 1) & mask
        return positions, found_slots

    def merged(self, rows: pl.DataFrame, h: Array, positions: Array, slots: Array) -> Snapshot:
        """The snapshot with ``rows`` appended and indexed: this one, or a grown copy.

        ``h`` holds the rows' key hashes, ``positions`` and ``slots`` where :meth:`probe`
        found each row's key (-1 for a new key): a found key's slot is repointed to its new
        row, which leaves the old row stale. When every buffer has room and the index stays
        under its load limit, the rows are written in place past ``n`` and the slots are
        repointed last, so a concurrent lookup reads the old row or the new one; otherwise
        a new snapshot is built and returned (the caller swaps it in).
        """
        added = np.arange(self.n, self.n + rows.height, dtype=np.int64)
        replaced = positions >= 0
        columns = {c: col.extended(rows.get_column(c)) for c, col in self.columns.items()}
        hashes = None
        if self.hashes is not None:
            hashes = self.hashes.extended(pl.Series("hash", h))
        count = self.count + int((~replaced).sum())
        stale = self.stale + int(replaced.sum())
        moved = hashes is not self.hashes or any(
            columns[c] is not col for c, col in self.columns.items()
        )
        if count > (1 << self.bits) * _MAX_LOAD:
            bits = _bits_for(count)
            table = _empty_slots(bits, self.n + rows.height)
            live = self.slots[self.slots >= 0].astype(np.int64)
            dropped = np.zeros(self.n, dtype=np.bool_)
            dropped[positions[replaced]] = True
            everything = np.concatenate([live[~dropped[live]], added])
            grown = Snapshot(self.keys, columns, hashes, table, bits, count, stale)
            _place(table, bits, grown.hash_at(everything), everything, _never)
            return grown
        table = self.slots.copy() if moved else self.slots
        table[slots[replaced]] = added[replaced]
        _place(table, self.bits, h[~replaced], added[~replaced], _never)
        if moved:
            return Snapshot(self.keys, columns, hashes, table, self.bits, count, stale)
        self.n, self.count, self.stale = self.n + rows.height, count, stale
        return self

    def key_codes(self, j: int, positions: Array) -> Array:
        """Hash codes of key column ``j`` at stored ``positions`` (not a string column)."""
        column = self.columns[self.keys.names[j]]
        assert isinstance(column, FixedColumn)
        return column.codes_at(positions)

    def key_strings(self, j: int, positions: Array) -> pa.Array:
        """Values of string key column ``j`` at stored ``positions``."""
        return self.columns[self.keys.names[j]].strings_at(positions)

    def compacted(self, canonical: dict[str, str]) -> Snapshot:
        """The same live rows without the stale ones (slots keep their places)."""
        occupied = self.slots >= 0
        live = np.sort(self.slots[occupied]).astype(np.int64)
        remap = np.zeros(self.n, dtype=self.slots.dtype)
        remap[live] = np.arange(len(live), dtype=self.slots.dtype)
        slots = self.slots.copy()
        slots[occupied] = remap[self.slots[occupied]]
        columns = {c: column_of(col.gather(live), canonical[c]) for c, col in self.columns.items()}
        hashes = None
        if self.hashes is not None:
            hashes = FixedColumn("hash", "hash", self.hashes.data[live], None, len(live))
        return Snapshot(self.keys, columns, hashes, slots, self.bits, len(live), 0)

    def nbytes(self) -> int:
        """Bytes held by the column buffers, the row hashes and the slots."""
        held = sum(c.nbytes() for c in self.columns.values()) + int(self.slots.nbytes)
        return held + (self.hashes.nbytes() if self.hashes is not None else 0)


def latest_rows(
    keys: Keys, frame: pl.DataFrame, order: Sequence[str]
) -> tuple[pl.DataFrame, Array, Array, int]:
    """The winning row of each key of ``frame``, with their hashes and an index over them.

    Rows are placed in the index in ``order`` (the last row of a key in that order wins);
    only the order columns are sorted (an argsort), not the frame. When keys repeat, the
    result holds the winners in that order, else the frame as it was.
    """
    n = frame.height
    request = Request(keys, [frame.get_column(name) for name in keys.names])
    h = key_hashes(request.codes) if n else np.zeros(0, dtype=np.uint64)
    rank = _rank(frame, order)
    if rank is not None:
        h = h[rank]
    bits = _bits_for(n)
    slots = _empty_slots(bits, n)

    def same(a: Array, b: Array) -> Array:
        equal: Array = h[a] == h[b]
        if not keys.exact and equal.any():
            rows_a, rows_b = (a, b) if rank is None else (rank[a], rank[b])
            equal[equal] = _equal_rows(request, rows_a[equal], request, rows_b[equal])
        return equal

    _place(slots, bits, h, np.arange(n, dtype=slots.dtype), same)
    occupied = slots >= 0
    if rank is not None and occupied.sum() == n:  # no repeated key: keep the frame's order
        slots[occupied] = rank[slots[occupied]]
        h[rank] = h.copy()
        return frame, h, slots, bits
    live = np.sort(slots[occupied]).astype(np.int64)
    if len(live) == n:
        return frame, h, slots, bits
    frame, h = frame[live if rank is None else rank[live]], h[live]
    if _bits_for(len(live)) < bits - 1:  # far too many slots for the winners: place anew
        bits = _bits_for(len(live))
        slots = _empty_slots(bits, len(live))
        _place(slots, bits, h, np.arange(len(live), dtype=slots.dtype), _never)
    else:
        remap = np.zeros(n, dtype=slots.dtype)
        remap[live] = np.arange(len(live), dtype=slots.dtype)
        slots[occupied] = remap[slots[occupied]]
    return frame, h, slots, bits


def _rank(frame: pl.DataFrame, order: Sequence[str]) -> Array | None:
    """Row positions that sort ``frame`` by ``order`` (None when it is sorted already).

    One integer-like column without nulls (the event time) is sorted by numpy: a stable
    sort runs in a tenth of the memory of Polars' ``arg_sort_by`` (16 MB against about
    100 MB for 2M rows, memory Polars' allocator keeps for seconds) and takes sorted runs,
    such as appended files, in one pass.
    """
    if not order or frame.height < 2:
        return None
    first = frame.get_column(order[0])
    if len(order) == 1 and first.is_sorted():
        return None
    numeric = first.dtype.is_integer() or isinstance(first.dtype, (pl.Date, pl.Datetime))
    if len(order) == 1 and numeric and not first.null_count():
        values = numpy_values(first)
        if values.dtype.kind == "M":
            values = values.view(np.int64)
        rank: Array = np.argsort(values, kind="stable")
        return rank
    return frame.select(pl.arg_sort_by(list(order))).to_series().to_numpy().astype(np.int64)


def _empty_slots(bits: int, rows: int) -> Array:
    return np.full(1 << bits, -1, dtype=np.int32 if rows < 2**31 - 1 else np.int64)


def row_reader(readers: Sequence[Reader]) -> RowReader:
    """One function reading a row's values as a tuple.

    Generated like the stdlib's namedtuple and dataclass methods: a literal tuple of calls
    costs half of a comprehension over the readers, and this is the hot path. The source
    text holds only generated names, never user input.
    """
    names = [f"read{j}" for j in range(len(readers))]
    source = f"lambda i: ({''.join(f'{name}(i), ' for name in names)})"
    row: RowReader = eval(source, dict(zip(names, readers, strict=True)))
    return row


def _hashed_finder(
    keys: Keys, raws: Sequence[Reader], hashes: Any, table: Any, bits: int
) -> Finder:
    """The lookup of a key compared by its row hash first (strings, floats, several columns).

    Generated like :func:`row_reader`, for the key's number of columns: each value is
    coerced (a plain int in range for an integer column passes as it is) and hashed as
    ``key_hashes`` does, column by column; then linear probing from the hash's slot, a
    stored row matching the hash and every key value (a float NaN equals NaN, as in the
    batch codes and Polars' joins). Unrolled, it takes half the time of a loop over the
    columns for a two-column key. The source text holds only generated names, never user
    input.
    """
    n = len(keys.names)
    values = "".join(f"v{j}, " for j in range(n))
    lines = [
        "def find(key):",
        f"    if type(key) is tuple and len(key) == {n}:",
        f"        {values}= key",
        "    else:",
        f"        {values}= as_tuple(key)",
    ]
    same = []
    namespace: dict[str, Any] = {
        "as_tuple": keys.as_tuple,
        "hashes": hashes,
        "table": table,
        "M64": M64,
        "GOLDEN": GOLDEN,
    }
    for j, canonical in enumerate(keys.canonicals):
        v = f"v{j}"
        namespace[f"coerce{j}"] = keys.coercers[j]
        namespace[f"code{j}"] = keys.hash_codes[j]
        namespace[f"read{j}"] = raws[j]
        indent = "    "
        if canonical in INT_RANGES:
            namespace[f"lo{j}"], namespace[f"hi{j}"] = INT_RANGES[canonical]
            lines.append(f"    if type({v}) is not int or not lo{j} <= {v} <= hi{j}:")
            indent = "        "
        # a coerced value of a column that is neither text nor float is an int: its own code
        text_or_float = canonical == "string" or canonical.startswith("float")
        code = f"code{j}({v})" if text_or_float else f"({v} & M64)"
        lines += [
            f"{indent}{v} = coerce{j}({v})",
            f"{indent}if {v} is None:",
            f"{indent}    return None",
            f"    h = (({'h ^ ' if j else ''}{code}) * GOLDEN) & M64",  # the hash starts at 0
        ]
        if canonical.startswith("float"):
            same.append(f"((x{j} := read{j}(p)) == {v} or (x{j} != x{j} and {v} != {v}))")
        else:
            same.append(f"read{j}(p) == {v}")
    lines += [
        f"    s = h >> {64 - bits}",
        "    while True:",
        "        p = table[s]",
        "        if p < 0:",
        "            return None",
        f"        if hashes[p] == h and {' and '.join(same)}:",
        "            return p",
        f"        s = (s + 1) & {(1 << bits) - 1}",
    ]
    exec("\n".join(lines), namespace)
    find: Finder = namespace["find"]
    return find


class Request:
    """Key columns of many rows (no nulls): their hash codes and, for strings, their values."""

    def __init__(self, keys: Keys, series: Sequence[pl.Series]) -> None:
        self.keys = keys
        self.series = series
        self.codes = [series_codes(s, c) for s, c in zip(series, keys.canonicals, strict=True)]
        self._strings: dict[int, pa.Array] = {}

    def key_codes(self, j: int, rows: Array) -> Array:
        """Hash codes of key column ``j`` at request ``rows``."""
        codes: Array = self.codes[j][rows]
        return codes

    def key_strings(self, j: int, rows: Array) -> pa.Array:
        """Values of string key column ``j`` at request ``rows``, as an Arrow array."""
        strings = self._strings.get(j)
        if strings is None:
            strings = self._strings[j] = arrow_strings(self.series[j])
        return strings.take(pa.array(rows, type=pa.int64()))


def _equal_rows(
    left: Request | Snapshot, rows: Array, right: Request | Snapshot, at: Array
) -> Array:
    """Whether the keys of ``left`` at ``rows`` equal those of ``right`` at ``at``.

    Codes are compared for every column (a bijection of the value but for strings), and
    string values where their codes agree.
    """
    equal = np.ones(len(rows), dtype=np.bool_)
    for j, canonical in enumerate(left.keys.canonicals):
        if canonical != "string":
            equal &= left.key_codes(j, rows) == right.key_codes(j, at)
        elif equal.any():
            import pyarrow.compute as pc  # on first use (80 ms); Arrow's take needs it too

            both = np.flatnonzero(equal)
            same = pc.equal(left.key_strings(j, rows[both]), right.key_strings(j, at[both]))
            equal[both] = same.to_numpy(zero_copy_only=False)
    return equal
