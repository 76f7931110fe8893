"""The online store: the latest row per online key of each served feature group, in memory.

Every feature group with ``online_keys`` is served online. Its :class:`OnlineTable` holds,
for each online key, the row with the greatest event time. Two rows with the same online
key and event time (possible when the online keys are a subset of the primary keys) are
ordered by the remaining primary key columns, in primary-key order: the greatest wins. A
static group (no event time) orders by those remaining columns alone; when its online keys
cover its primary keys every row is its own latest. Rows with a null online key are not
served (a null key matches nothing, as in the point-in-time join).

Layout: every column lives in one contiguous, growable numpy buffer (strings as a small
dictionary of distinct values plus integer codes, or as UTF-8 bytes plus offsets when they
have many distinct values), with a validity array only for columns holding nulls. An
open-addressing hash index (linear probing, Fibonacci hashing, an ``int32`` slot per
entry, load at most 0.7) maps a key to its row position; a single integer-like key is
compared against its own column, other keys against a stored 64-bit row hash first and
their values second. Both lookups of one key (in Python) and of many keys (vectorised in
numpy, no Python loop) use the same hash.

Freshness: an insert made in this process marks the table stale, and the next lookup
applies what was committed since: only the appended rows when every commit since was an
append (``FeatureGroup.added_since``), else a rebuild from the latest snapshot.
:meth:`OnlineStore.refresh` does the same for commits made by other processes. Updates
append the newer rows and repoint the index; stale rows are dropped by a compaction once
they outnumber live ones. Lookups take no lock: an update that must grow a buffer builds
a new snapshot and swaps it in, so a concurrent lookup sees the old or the new row.
"""

from __future__ import annotations

import math
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray

from microfs.errors import DefinitionError, NotFoundError, SchemaError, TimestampError
from microfs.feature_group import FeatureGroup, InsertResult
from microfs.schema import polars_dtype

if TYPE_CHECKING:
    from microfs.store import FeatureStore

__all__ = ["OnlineStore", "OnlineTable"]

Array = NDArray[Any]
Reader = Callable[[int], Any]
RowReader = Callable[[int], tuple[Any, ...]]
Finder = Callable[[Any], "int | None"]

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MAX_LOAD = 0.7
_DICT_LIMIT = 65_536  # most distinct values a string column keeps as a dictionary
_MIN_COMPACT = 4_096  # stale rows tolerated before a compaction is considered
_UTC = ZoneInfo("UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_US = timedelta(microseconds=1)
_FOUND = "__found"

_INT_RANGES = {
    f"{sign}int{bits}": (
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if sign == "" else (0, (1 << bits) - 1)
    )
    for sign in ("", "u")
    for bits in (8, 16, 32, 64)
}
_NUMPY_TYPES: dict[str, Any] = {
    **{name: np.dtype(name) for name in _INT_RANGES},
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "bool": np.dtype(np.bool_),
    "date": np.dtype(np.int32),
    "datetime": np.dtype(np.int64),
}
_ARROW_TYPES: dict[str, pa.DataType] = {
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def _crc_table() -> Array:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc_table()


# -- hashing -------------------------------------------------------------------------------
# A key's hash: h = 0, then for each key column h = (h ^ code) * GOLDEN (mod 2**64), where a
# column's code is its integer value (dates as days, datetimes as microseconds, booleans as
# 0/1), a float's IEEE bits, or a string's CRC-32. The slot is the top bits of h.


def _float_code(value: float) -> int:
    if value != value:  # NaN: one canonical pattern
        value = math.nan
    code: int = struct.unpack("<q", struct.pack("<d", value + 0.0))[0]
    return code


def _string_code(value: str) -> int:
    return zlib.crc32(value.encode())


def _crc32(offsets: Array, data: Array) -> Array:
    """CRC-32 of each string given as Arrow-style offsets and UTF-8 bytes (zlib's CRC)."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    starts = offsets[:-1][order]
    descending = lengths[order]
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for j in range(int(descending[0]) if n else 0):
        k = int(np.searchsorted(-descending, -j, side="left"))
        current = crc[:k]
        byte = data[starts[:k] + j].astype(np.uint32)
        crc[:k] = _CRC_TABLE[(current ^ byte) & 0xFF] ^ (current >> np.uint32(8))
    out = np.empty(n, dtype=np.uint32)
    out[order] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def _series_codes(series: pl.Series, canonical: str) -> Array:
    """Hash codes (int64) of a key column without nulls."""
    if canonical == "string":
        offsets, data, _ = _string_pieces(series)
        return _crc32(offsets, data).astype(np.int64)
    if canonical.startswith("float"):
        values = series.cast(pl.Float64).to_numpy() + 0.0
        values = np.where(np.isnan(values), np.nan, values)
        return values.view(np.int64)
    return np.asarray(series.to_physical().to_numpy()).astype(np.int64, copy=False)


def _hash(codes: Sequence[Array]) -> Array:
    h = np.zeros(len(codes[0]), dtype=np.uint64)
    golden = np.uint64(_GOLDEN)
    for code in codes:
        h ^= code.view(np.uint64)
        h *= golden
    return h


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


# -- columns -------------------------------------------------------------------------------


def _string_pieces(series: pl.Series) -> tuple[Array, Array, Array | None]:
    """Arrow-style int64 offsets, UTF-8 bytes and validity (None without nulls)."""
    array = series.cast(pl.String).rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=array.offset * 8)
    raw = buffers[2]
    data = np.frombuffer(raw, dtype=np.uint8) if raw is not None else np.zeros(0, np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    if start:
        offsets = offsets - start
    valid = series.is_not_null().to_numpy() if series.null_count() else None
    return offsets, data[start:end], valid


def _capacity(needed: int, current: int) -> int:
    return max(needed, current + current // 2 + 16)


def _grown(array: Array, capacity: int, fill: Any = 0) -> Array:
    out = np.full(capacity, fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


def _with_nulls(values: Array, valid: Array, arrow_type: pa.DataType | None = None) -> pa.Array:
    """An Arrow array over ``values`` with nulls where ``valid`` is false.

    Built from buffers: ``pa.array`` on numpy input imports pandas, a second's pause on
    the first lookup.
    """
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    if values.dtype == np.bool_:
        data, arrow_type = pa.py_buffer(np.packbits(values, bitorder="little")), pa.bool_()
    else:
        data = pa.py_buffer(np.ascontiguousarray(values))
        arrow_type = arrow_type or pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(arrow_type, len(values), [bitmap, data])


class _Column:
    """One column's rows ``0..n-1`` in growable numpy buffers (capacity beyond ``n``)."""

    name: str
    dtype: pl.DataType
    n: int
    valid: Array | None

    def extended(self, series: pl.Series) -> _Column:
        """Append ``series``: in place when it fits, else into a grown copy (returned)."""
        raise NotImplementedError

    def reader(self) -> Reader:
        """A function from row position to the Python value (None for null)."""
        raise NotImplementedError

    def gather(self, positions: Array) -> pl.Series:
        """Values at ``positions`` (-1 gives null) as a Series of the stored dtype."""
        raise NotImplementedError

    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        raise NotImplementedError

    def _valid_at(self, positions: Array) -> Array:
        found = positions >= 0
        if self.valid is None:
            return found
        valid: Array = found & self.valid[np.where(found, positions, 0)]
        return valid

    def _grown_valid(self, capacity: int, incoming: Array | None) -> Array | None:
        """Validity for a grown copy: None as long as no row is null."""
        if self.valid is None and incoming is None:
            return None
        old = self.valid[: self.n] if self.valid is not None else np.ones(self.n, dtype=np.bool_)
        return _grown(old, capacity, True)

    def _extend_valid(self, target: _Column, valid: Array | None, m: int) -> None:
        if target.valid is not None:
            target.valid[self.n : self.n + m] = True if valid is None else valid

    def _valid_reader(self, read: Reader) -> Reader:
        if self.valid is None:
            return read
        valid = self.valid.data
        return lambda i: read(i) if valid[i] else None


def _column(series: pl.Series, canonical: str) -> _Column:
    """A column holding exactly ``series`` (numeric buffers are shared, not copied)."""
    if canonical != "string":
        return _FixedColumn.of(series, canonical)
    distinct = series.drop_nulls().unique()
    if distinct.len() <= _DICT_LIMIT:
        return _DictColumn.of(series, distinct)
    return _BytesColumn.of(series)


class _FixedColumn(_Column):
    """Numbers, booleans, dates (days) and datetimes (microseconds, UTC)."""

    def __init__(self, name: str, canonical: str, data: Array, valid: Array | None, n: int) -> None:
        self.name, self.canonical, self.data, self.valid, self.n = name, canonical, data, valid, n
        self.dtype = _polars_type(canonical)

    @classmethod
    def of(cls, series: pl.Series, canonical: str) -> _FixedColumn:
        data, valid = _fixed_pieces(series, canonical)
        return cls(series.name, canonical, data, valid, len(data))

    def extended(self, series: pl.Series) -> _FixedColumn:
        data, valid = _fixed_pieces(series, self.canonical)
        m, need = len(data), self.n + len(data)
        target = self
        if (
            need > len(self.data)
            or not self.data.flags.writeable
            or (valid is not None and self.valid is None)
        ):
            capacity = _capacity(need, len(self.data))
            target = _FixedColumn(
                self.name,
                self.canonical,
                _grown(self.data[: self.n], capacity),
                self._grown_valid(capacity, valid),
                0,
            )
        target.data[self.n : need] = data
        self._extend_valid(target, valid, m)
        target.n = need
        return target

    def reader(self) -> Reader:
        view = self.data.data
        read: Reader = view.__getitem__
        if self.canonical == "date":
            ordinal = date.fromordinal
            read = lambda i: ordinal(_EPOCH_ORDINAL + view[i])  # noqa: E731
        elif self.canonical == "datetime":
            read = lambda i: _EPOCH + timedelta(0, 0, view[i])  # noqa: E731
        return self._valid_reader(read)

    def gather(self, positions: Array) -> pl.Series:
        values = self.data[np.where(positions >= 0, positions, 0)]
        array = _with_nulls(values, self._valid_at(positions), _ARROW_TYPES.get(self.canonical))
        return pl.Series(self.name, array, dtype=self.dtype)

    def nbytes(self) -> int:
        return int(self.data.nbytes) + (int(self.valid.nbytes) if self.valid is not None else 0)


def _polars_type(canonical: str) -> pl.DataType:
    return polars_dtype(canonical) if canonical != "hash" else pl.UInt64()


def _fixed_pieces(series: pl.Series, canonical: str) -> tuple[Array, Array | None]:
    valid = series.is_not_null().to_numpy() if series.null_count() else None
    physical = series.to_physical()
    if valid is not None:
        physical = physical.fill_null(False if canonical == "bool" else 0)
    values = np.asarray(physical.to_numpy())
    wanted = _NUMPY_TYPES.get(canonical, np.dtype(np.uint64))
    return (values if values.dtype == wanted else values.astype(wanted)), valid


class _DictColumn(_Column):
    """Strings with few distinct values: the distinct values once, an int32 code per row."""

    def __init__(
        self, name: str, values: list[str], codes: Array, valid: Array | None, n: int
    ) -> None:
        self.name, self.values, self.codes, self.valid, self.n = name, values, codes, valid, n
        self.dtype = pl.String()
        self.series = pl.Series(name, values, dtype=pl.String)

    @classmethod
    def of(cls, series: pl.Series, distinct: pl.Series) -> _DictColumn:
        values = distinct.sort()
        codes = _codes(series, values)
        valid = series.is_not_null().to_numpy() if series.null_count() else None
        return cls(series.name, values.to_list(), codes, valid, len(codes))

    def extended(self, series: pl.Series) -> _Column:
        distinct = series.drop_nulls().unique()
        new = distinct.filter(~distinct.is_in(self.series.implode()))
        if len(self.values) + new.len() > _DICT_LIMIT:
            return _BytesColumn.of(pl.concat([self.gather(np.arange(self.n)), series]))
        if new.len():
            self.values.extend(new.sort().to_list())  # readers share the list: append only
            self.series = pl.Series(self.name, self.values, dtype=pl.String)
        codes = _codes(series, self.series)
        valid = series.is_not_null().to_numpy() if series.null_count() else None
        m, need = len(codes), self.n + len(codes)
        target = self
        if (
            need > len(self.codes)
            or not self.codes.flags.writeable
            or (valid is not None and self.valid is None)
        ):
            capacity = _capacity(need, len(self.codes))
            target = _DictColumn(
                self.name,
                self.values,
                _grown(self.codes[: self.n], capacity),
                self._grown_valid(capacity, valid),
                0,
            )
        target.codes[self.n : need] = codes
        self._extend_valid(target, valid, m)
        target.n = need
        return target

    def reader(self) -> Reader:
        codes, values = self.codes.data, self.values
        return self._valid_reader(lambda i: values[codes[i]])

    def gather(self, positions: Array) -> pl.Series:
        codes = self.codes[np.where(positions >= 0, positions, 0)]
        index = pl.Series(_with_nulls(codes, self._valid_at(positions)))
        return self.series.gather(index).alias(self.name)

    def nbytes(self) -> int:
        held = sum(sys.getsizeof(v) + 8 for v in self.values) + int(self.series.estimated_size())
        valid = int(self.valid.nbytes) if self.valid is not None else 0
        return int(self.codes.nbytes) + valid + held


def _codes(series: pl.Series, values: pl.Series) -> Array:
    physical = series.cast(pl.String).cast(pl.Enum(values)).to_physical().fill_null(0)
    return np.asarray(physical.to_numpy()).astype(np.int32)


class _BytesColumn(_Column):
    """Strings with many distinct values: UTF-8 bytes and int64 offsets (Arrow layout)."""

    def __init__(self, name: str, offsets: Array, data: Array, valid: Array | None, n: int) -> None:
        self.name, self.offsets, self.data, self.valid, self.n = name, offsets, data, valid, n
        self.dtype = pl.String()

    @classmethod
    def of(cls, series: pl.Series) -> _BytesColumn:
        offsets, data, valid = _string_pieces(series)
        return cls(series.name, offsets, data, valid, len(offsets) - 1)

    def extended(self, series: pl.Series) -> _Column:
        offsets, data, valid = _string_pieces(series)
        m, need = len(offsets) - 1, self.n + len(offsets) - 1
        used = int(self.offsets[self.n])
        target = self
        if (
            need + 1 > len(self.offsets)
            or used + len(data) > len(self.data)
            or not self.offsets.flags.writeable
            or not self.data.flags.writeable
            or (valid is not None and self.valid is None)
        ):
            capacity = _capacity(need, len(self.offsets) - 1)
            target = _BytesColumn(
                self.name,
                _grown(self.offsets[: self.n + 1], capacity + 1),
                _grown(self.data[:used], _capacity(used + len(data), len(self.data))),
                self._grown_valid(capacity, valid),
                0,
            )
        target.data[used : used + len(data)] = data
        target.offsets[self.n + 1 : need + 1] = offsets[1:] + used
        self._extend_valid(target, valid, m)
        target.n = need
        return target

    def reader(self) -> Reader:
        offsets, data = self.offsets.data, self.data.data
        return self._valid_reader(lambda i: str(data[offsets[i] : offsets[i + 1]], "utf-8"))

    def gather(self, positions: Array) -> pl.Series:
        valid = self._valid_at(positions)
        rows = np.where(positions >= 0, positions, 0)
        starts = self.offsets[rows]
        lengths = np.where(valid, self.offsets[rows + 1] - starts, 0)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        array = pa.Array.from_buffers(
            pa.large_string(),
            len(rows),
            [bitmap, pa.py_buffer(offsets), pa.py_buffer(self.data[index])],
        )
        return pl.Series(self.name, array, dtype=pl.String)

    def nbytes(self) -> int:
        valid = int(self.valid.nbytes) if self.valid is not None else 0
        return int(self.offsets.nbytes) + int(self.data.nbytes) + valid


# -- keys ------------------------------------------------------------------------------------


def _coercer(group: str, column: str, canonical: str) -> Callable[[Any], Any]:
    """Turn one request value into the comparable stored form, or raise SchemaError.

    Integers (also numpy's, and integral floats) for integer columns, days for dates,
    microseconds for datetimes, 0/1 for booleans, floats for floats, text for strings.
    None gives None (no stored row has a null key).
    """

    def wrong(value: Any, why: str = "") -> SchemaError:
        return SchemaError(
            f"online key column {column!r} of feature group {group!r} has type {canonical}; "
            f"the request gives {value!r} ({type(value).__name__}){why}"
        )

    if canonical in _INT_RANGES:
        lo, hi = _INT_RANGES[canonical]

        def to_int(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, np.integer, float, np.floating)
            ):
                raise wrong(value)
            if isinstance(value, (float, np.floating)):
                if not float(value).is_integer():
                    raise wrong(value, ", which is not a whole number")
                value = int(value)
            value = int(value)
            if not lo <= value <= hi:
                raise wrong(value, f", outside the range {lo}..{hi}")
            return value

        return to_int
    if canonical.startswith("float"):
        single = canonical == "float32"

        def to_float(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise wrong(value)
            number = float(value)
            inexact = number != value or (single and float(np.float32(number)) != number)
            if inexact and number == number:  # NaN is never equal to itself; it is kept
                raise wrong(value, ", which it cannot hold exactly")
            return number

        return to_float
    if canonical == "bool":

        def to_bool(value: Any) -> Any:
            if value is None:
                return None
            if not isinstance(value, (bool, np.bool_)):
                raise wrong(value)
            return int(value)

        return to_bool
    if canonical == "string":

        def to_str(value: Any) -> Any:
            if value is None or type(value) is str:
                return value
            if not isinstance(value, str):
                raise wrong(value)
            return str(value)

        return to_str
    if canonical == "date":

        def to_days(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, datetime) or not isinstance(value, date):
                raise wrong(value, "; give a datetime.date")
            return value.toordinal() - _EPOCH_ORDINAL

        return to_days

    def to_micros(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise wrong(value, "; give a timezone-aware datetime.datetime")
        if value.tzinfo is None or value.utcoffset() is None:
            raise TimestampError(
                f"online key column {column!r} of feature group {group!r} holds instants; the "
                f"request gives the naive datetime {value!r}: attach a zone, e.g. "
                "value.replace(tzinfo=datetime.timezone.utc)"
            )
        if getattr(value, "nanosecond", 0):
            raise wrong(value, ", finer than a microsecond")
        micros: int = (value - _EPOCH) // _US
        return micros

    return to_micros


def _hash_code(canonical: str) -> Callable[[Any], int]:
    """The hash code (unsigned 64-bit) of a coerced value, matching ``_series_codes``."""
    if canonical == "string":
        return _string_code
    if canonical.startswith("float"):
        return lambda value: _float_code(value) & _M64
    return lambda value: int(value) & _M64


class _Keys:
    """The online key columns of one table and how request values become lookups."""

    def __init__(self, group: str, names: Sequence[str], canonicals: Sequence[str]) -> None:
        self.group = group
        self.names = tuple(names)
        self.canonicals = tuple(canonicals)
        self.coercers = [
            _coercer(group, n, c) for n, c in zip(self.names, self.canonicals, strict=True)
        ]
        self.hash_codes = [_hash_code(c) for c in self.canonicals]
        # one integer-like key: its hash is a bijection of its value, so equal hash = equal key
        self.exact = len(self.names) == 1 and canonicals[0] not in ("string", "float32", "float64")

    def codes(self, frame: pl.DataFrame) -> list[Array]:
        return [
            _series_codes(frame.get_column(n), c)
            for n, c in zip(self.names, self.canonicals, strict=True)
        ]

    def as_tuple(self, key: Any) -> tuple[Any, ...]:
        if isinstance(key, tuple):
            values = key
        elif isinstance(key, list):
            values = tuple(key)
        else:
            values = (key,)
        if len(values) != len(self.names):
            raise SchemaError(
                f"feature group {self.group!r} is served by the online key "
                f"({', '.join(self.names)}): give a tuple of {len(self.names)} value(s), "
                f"not {key!r}"
            )
        return values

    def cast(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The request's key columns cast to the stored types, where that loses nothing."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise SchemaError(
                f"the request frame lacks online key column(s) {', '.join(map(repr, missing))} "
                f"of feature group {self.group!r}; it has {', '.join(frame.columns) or 'none'}"
            )
        return pl.DataFrame(
            [
                _cast_key(frame.get_column(n), c, self.group)
                for n, c in zip(self.names, self.canonicals, strict=True)
            ]
        )


def _cast_key(series: pl.Series, canonical: str, group: str) -> pl.Series:
    target = _polars_type(canonical)
    dtype = series.dtype
    if dtype == target:
        return series
    problem = f"the request gives {dtype}"
    if dtype == pl.Null:
        return series.cast(target)
    if canonical == "string" and isinstance(dtype, (pl.Categorical, pl.Enum)):
        return series.cast(pl.String)
    if canonical == "datetime" and isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise TimestampError(
                f"online key column {series.name!r} of feature group {group!r} holds instants; "
                "the request gives naive datetimes: attach a zone, e.g. "
                f"pl.col({series.name!r}).dt.replace_time_zone('UTC')"
            )
        utc = series.dt.convert_time_zone("UTC")
        cast = utc.cast(target)
        if bool((cast.cast(utc.dtype) == utc).all()):
            return cast
        problem = "the request holds times finer than a microsecond"
    elif dtype.is_numeric() and target.is_numeric() and canonical != "bool":
        cast = series.cast(target, strict=False)
        back = cast.cast(dtype, strict=False)
        same = back == series
        if dtype.is_float():
            same = same | series.is_nan()
        if cast.null_count() == series.null_count() and bool(same.fill_null(True).all()):
            return cast
        problem = f"the request holds {dtype} values that {canonical} cannot hold exactly"
    raise SchemaError(
        f"online key column {series.name!r} of feature group {group!r} has type {canonical}; "
        f"{problem}"
    )


# -- the index and one consistent snapshot ------------------------------------------------


def _never(a: Array, b: Array) -> Array:
    return np.zeros(len(a), dtype=np.bool_)


class _State:
    """Columns, the slot array and the lookup function over them, as one snapshot.

    Rows ``0..n-1`` are stored; ``count`` of them are live (pointed to by a slot), the
    other ``stale`` ones were superseded by a newer row of the same key.
    """

    def __init__(
        self,
        keys: _Keys,
        columns: dict[str, _Column],
        hashes: _FixedColumn | None,
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
        cls, keys: _Keys, canonical: dict[str, str], frame: pl.DataFrame, order: Sequence[str]
    ) -> _State:
        """Index ``frame``: per key, the last row in ``order`` is kept."""
        frame, h, slots, bits = _latest(keys, frame, order)
        columns = {c: _column(frame.get_column(c), canonical[c]) for c in frame.columns}
        hashes = None if keys.exact else _FixedColumn("hash", "hash", h, None, len(h))
        return cls(keys, columns, hashes, slots, bits, frame.height, 0)

    def _finder(self) -> Finder:
        keys, table, mask, shift = (
            self.keys,
            self.slots.data,
            (1 << self.bits) - 1,
            64 - self.bits,
        )
        coercers, hash_codes, as_tuple = keys.coercers, keys.hash_codes, keys.as_tuple
        if keys.exact:
            column = self.columns[keys.names[0]]
            assert isinstance(column, _FixedColumn)
            data = column.data.data
            coerce = coercers[0]
            # the fast path takes a plain int for an integer column (an empty range otherwise)
            lo, hi = _INT_RANGES.get(keys.canonicals[0], (1, 0))
            m64, golden = _M64, _GOLDEN

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
        hashes = self.hashes.data.data
        raws = [_raw_reader(self.columns[n]) for n in keys.names]
        pairs = list(zip(coercers, hash_codes, strict=True))

        def find(key: Any) -> int | None:
            values = []
            h = 0
            for (coerce, code), value in zip(pairs, as_tuple(key), strict=True):
                value = coerce(value)
                if value is None:
                    return None
                values.append(value)
                h = ((h ^ code(value)) * _GOLDEN) & _M64
            s = h >> shift
            while True:
                p: int = table[s]
                if p < 0:
                    return None
                if hashes[p] == h and all(r(p) == v for r, v in zip(raws, values, strict=True)):
                    return p
                s = (s + 1) & mask

        return find

    def hash_at(self, positions: Array) -> Array:
        """The stored rows' key hashes."""
        if self.hashes is not None:
            stored: Array = self.hashes.data[positions]
            return stored
        column = self.columns[self.keys.names[0]]
        assert isinstance(column, _FixedColumn)
        return _hash([column.data[positions].astype(np.int64)])

    def probe(self, frame: pl.DataFrame, h: Array) -> tuple[Array, Array]:
        """Positions (-1: unknown) and slots of the keys of ``frame`` (no nulls), vectorised."""
        m = frame.height
        positions = np.full(m, -1, dtype=np.int64)
        found_slots = np.full(m, -1, dtype=np.int64)
        mask = (1 << self.bits) - 1
        slot = _slots_of(h, self.bits)
        rows = np.arange(m, dtype=np.int64)
        while rows.size:
            stored = self.slots[slot].astype(np.int64)
            occupied = stored >= 0
            hit = occupied.copy()
            hit[occupied] = self.hash_at(stored[occupied]) == h[rows[occupied]]
            if not self.keys.exact and hit.any():
                hit[hit] = _equal_rows(frame, self.keys.names, rows[hit], self, stored[hit])
            positions[rows[hit]] = stored[hit]
            found_slots[rows[hit]] = slot[hit]
            more = occupied & ~hit
            rows, slot = rows[more], (slot[more] + 1) & mask
        return positions, found_slots

    def compacted(self, canonical: dict[str, str]) -> _State:
        """The same live rows without the stale ones (slots keep their places)."""
        occupied = self.slots >= 0
        live = np.sort(self.slots[occupied]).astype(np.int64)
        remap = np.zeros(self.n, dtype=self.slots.dtype)
        remap[live] = np.arange(len(live), dtype=self.slots.dtype)
        slots = self.slots.copy()
        slots[occupied] = remap[self.slots[occupied]]
        columns = {c: _column(col.gather(live), canonical[c]) for c, col in self.columns.items()}
        hashes = None
        if self.hashes is not None:
            hashes = _FixedColumn("hash", "hash", self.hashes.data[live], None, len(live))
        return _State(self.keys, columns, hashes, slots, self.bits, len(live), 0)

    def nbytes(self) -> int:
        held = sum(c.nbytes() for c in self.columns.values()) + int(self.slots.nbytes)
        return held + (self.hashes.nbytes() if self.hashes is not None else 0)


def _latest(
    keys: _Keys, frame: pl.DataFrame, order: Sequence[str]
) -> tuple[pl.DataFrame, Array, Array, int]:
    """The winning row of each key of ``frame``, with their hashes and an index over them.

    Rows are placed in the index in ``order`` (the last row of a key in that order wins);
    only the order columns are sorted (an argsort), not the frame. When keys repeat, the
    result holds the winners in that order, else the frame as it was.
    """
    n = frame.height
    h = _hash(keys.codes(frame)) if n else np.zeros(0, dtype=np.uint64)
    rank: Array | None = None
    if order and n > 1 and not (len(order) == 1 and frame.get_column(order[0]).is_sorted()):
        rank = frame.select(pl.arg_sort_by(list(order))).to_series().to_numpy().astype(np.int64)
        h = h[rank]
    bits = _bits_for(n)
    slots = _empty_slots(bits, n)

    def same(a: Array, b: Array) -> Array:
        equal: Array = h[a] == h[b]
        if not keys.exact and equal.any():
            rows_a, rows_b = (a, b) if rank is None else (rank[a], rank[b])
            equal[equal] = _equal_rows(frame, keys.names, rows_a[equal], frame, rows_b[equal])
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


def _empty_slots(bits: int, rows: int) -> Array:
    return np.full(1 << bits, -1, dtype=np.int32 if rows < 2**31 - 1 else np.int64)


def _row_reader(readers: Sequence[Reader]) -> RowReader:
    """One function reading a row's values as a tuple.

    Generated like the stdlib's namedtuple and dataclass methods: a literal tuple of calls
    costs half of a comprehension over the readers, and this is the hot path. The source
    text holds only generated names, never user input.
    """
    names = [f"read{j}" for j in range(len(readers))]
    source = f"lambda i: ({''.join(f'{name}(i), ' for name in names)})"
    row: RowReader = eval(source, dict(zip(names, readers, strict=True)))
    return row


def _raw_reader(column: _Column) -> Reader:
    """Stored values as compared with coerced request values (dates as days, ...)."""
    if isinstance(column, _FixedColumn):
        read: Reader = column.data.data.__getitem__
        return read
    return column.reader()


def _equal_rows(
    frame: pl.DataFrame, names: Sequence[str], rows: Array, other: pl.DataFrame | _State, at: Array
) -> Array:
    """Whether the key columns of ``frame`` at ``rows`` equal those of ``other`` at ``at``."""
    equal = np.ones(len(rows), dtype=np.bool_)
    for name in names:
        left = frame.get_column(name).gather(rows)
        right = (
            other.get_column(name).gather(at)
            if isinstance(other, pl.DataFrame)
            else other.columns[name].gather(at)
        )
        equal &= (left == right).fill_null(False).to_numpy()
    return equal


# -- the public classes --------------------------------------------------------------------


class OnlineTable:
    """Latest row per online key of one feature group, in compact columnar form + a hash index.

    Get one from :meth:`OnlineStore.table`. Lookups take a key as a tuple of values in
    ``key_columns`` order (a bare value for a one-column key); values are compared as typed
    values, so ``(1, 102)`` never matches ``("1", "102")``.

    Attributes:
        group_name: the feature group's name.
        group_version: the feature group's definition version.
        table_version: the Delta table version the rows reflect.
        key_columns: the online key columns.
        columns: the other columns held (features and the event time), in schema order.

    >>> import tempfile, microfs
    >>> fs = microfs.FeatureStore(tempfile.mkdtemp())
    >>> fg = fs.create_feature_group(
    ...     name="user_profile", primary_keys=["user_id"], online_keys=["user_id"],
    ...     schema={"user_id": "int64", "age": "int64", "level": "string"})
    >>> _ = fg.insert(pl.DataFrame({"user_id": [1, 2], "age": [34, 51], "level": ["gold", None]}))
    >>> table = fs.online.table(fg)
    >>> table.get((1,), ["age", "level"]), table.get((2,), ["level"]), table.get((3,), ["age"])
    ((34, 'gold'), (None,), None)
    """

    def __init__(self, group: FeatureGroup) -> None:
        online = group.online_keys
        if not online:
            raise DefinitionError(
                f"feature group {group.name!r} has no online_keys, so it is not served online; "
                "create a version with online_keys=[...] to serve it"
            )
        definition = group.definition
        self.group_name = group.name
        self.group_version = group.version
        self.key_columns = tuple(online)
        self.columns = tuple(c for c in definition.schema if c not in self.key_columns)
        self._group = group
        self._canonical = dict(definition.schema)
        self._keys = _Keys(group.name, online, [self._canonical[k] for k in online])
        # rows of one online key are ordered by event time, then the other primary keys
        self._order = (
            *([definition.event_time] if definition.event_time else []),
            *(k for k in definition.primary_keys if k not in online),
        )
        self._nullable = [k for k in online if k not in definition.primary_keys]
        self._lock = threading.RLock()
        self._pending = False
        self._version = -1
        self._state: _State
        self._rebuild()

    def __repr__(self) -> str:
        return (
            f"OnlineTable(group={self.group_name!r}, version={self.group_version}, "
            f"table_version={self._version}, keys={len(self)})"
        )

    @property
    def table_version(self) -> int:
        """The Delta table version the rows reflect."""
        if self._pending:
            self._sync()
        return self._version

    def __len__(self) -> int:
        if self._pending:
            self._sync()
        return self._state.count

    def row_index(self, key: tuple[Any, ...]) -> int | None:
        """The row position holding ``key``'s latest row, or None for an unknown key.

        Raises:
            SchemaError: a key value of a type the key column cannot hold.

        >>> table.row_index((1,))  # doctest: +SKIP
        0
        """
        if self._pending:
            self._sync()
        return self._state.find(key)

    def get(self, key: tuple[Any, ...], columns: Sequence[str]) -> tuple[Any, ...] | None:
        """Python values of ``columns`` in ``key``'s latest row, or None for an unknown key.

        Nulls come back as None, datetimes as UTC datetimes, dates as dates.

        Raises:
            SchemaError: an unknown column, or a key value of the wrong type.

        >>> table.get((1,), ("age", "level"))  # doctest: +SKIP
        (34, 'gold')
        """
        if self._pending:
            self._sync()
        state = self._state
        position = state.find(key)
        if position is None:
            return None
        names = columns if type(columns) is tuple else self._checked(columns)
        read = state.rows.get(names)
        if read is None:
            read = self._row_reader(state, names)
        return read(position)

    def get_many(self, keys: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
        """One row per row of ``keys``, in order: ``columns`` and a boolean ``__found``.

        Unknown keys (and keys with a null) give nulls and ``__found`` false. Request key
        columns are cast to the stored types when that loses nothing. Vectorised: one
        hash probe per round over all keys, no Python loop over rows.

        >>> table.get_many(pl.DataFrame({"user_id": [2, 3]}), ["age"]).rows()  # doctest: +SKIP
        [(51, True), (None, False)]
        """
        if self._pending:
            self._sync()
        state = self._state
        names = self._checked(columns)
        if not isinstance(keys, pl.DataFrame):
            raise SchemaError(
                f"get_many takes a polars.DataFrame of key columns, not {type(keys).__name__}"
            )
        request = self._keys.cast(keys)
        positions = np.full(request.height, -1, dtype=np.int64)
        known = ~request.select(pl.any_horizontal(pl.all().is_null())).to_series().to_numpy()
        if request.height and known.any():
            rows = np.flatnonzero(known)
            present = request if len(rows) == request.height else request[rows]
            found, _ = state.probe(present, _hash(self._keys.codes(present)))
            positions[rows] = found
        series = [state.columns[name].gather(positions) for name in names]
        return pl.DataFrame([*series, pl.Series(_FOUND, positions >= 0)])

    def memory_bytes(self) -> int:
        """Bytes held by the column buffers and the index (Python object overhead aside).

        >>> table.memory_bytes()  # doctest: +SKIP
        1234
        """
        if self._pending:
            self._sync()
        return self._state.nbytes()

    # -- internals ---------------------------------------------------------------------

    def _checked(self, columns: Sequence[str]) -> tuple[str, ...]:
        names = (columns,) if isinstance(columns, str) else tuple(columns)
        unknown = [c for c in names if c not in self._canonical]
        if unknown or len(set(names)) != len(names):
            problem = (
                f"has no column(s) {', '.join(map(repr, unknown))}"
                if unknown
                else f"was asked for a column twice: {list(names)}"
            )
            raise SchemaError(
                f"feature group {self.group_name!r} {problem}; its columns are "
                f"{', '.join(self._canonical)}"
            )
        return names

    def _row_reader(self, state: _State, columns: Sequence[str]) -> RowReader:
        names = self._checked(columns)
        read = _row_reader([state.columns[name].reader() for name in names])
        if len(state.rows) < 256:
            state.rows[names] = read
        return read

    def _committed(self, result: InsertResult) -> None:
        if result.mode != "noop" and result.version > self._version:
            self._pending = True

    def _sync(self) -> None:
        with self._lock:
            if self._pending:
                self._pending = False
                self._catch_up()

    def _refresh(self) -> None:
        with self._lock:
            if self._group.table_version() != self._version:
                self._pending = False
                self._catch_up()

    def _catch_up(self) -> None:
        try:
            added = self._group.added_since(self._version)
        except NotFoundError:
            added = None
        if added is None:
            self._rebuild()
            return
        latest, rows = added
        if latest == self._version:
            return
        try:
            appended = rows.collect()
        except pl.exceptions.PolarsError:  # files the reader cannot take alone: read it all
            self._rebuild()
            return
        self._apply(appended, latest)

    def _prepared(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows with non-null online keys, in the group's schema."""
        if self._nullable:
            frame = frame.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in self._nullable))
        frame = frame.select(list(self._canonical))
        schema = self._group.schema
        if frame.schema != schema:  # Delta keeps unsigned integers as signed ones
            frame = frame.cast(schema)
        return frame

    def _rebuild(self) -> None:
        version = self._group.table_version()
        frame = self._prepared(self._group.scan(version=version).collect())
        self._state = _State.build(self._keys, self._canonical, frame, self._order)
        self._version = version

    def _apply(self, frame: pl.DataFrame, version: int) -> None:
        """Merge appended rows: a row replaces its key's row only if it is not older."""
        state, keys = self._state, self._keys
        batch, h, _, _ = _latest(keys, self._prepared(frame), self._order)
        if not batch.height:
            self._version = version
            return
        positions, slots_found = state.probe(batch, h)
        found = positions >= 0
        wins = np.ones(batch.height, dtype=np.bool_)
        if found.any() and self._order:
            wins[found] = self._newer(batch.filter(pl.Series(found)), state, positions[found])
        take = np.flatnonzero(wins)
        if not take.size:
            self._version = version
            return
        rows = batch[take]
        added = np.arange(state.n, state.n + len(take), dtype=np.int64)
        replaced = found[take]
        columns = {c: col.extended(rows.get_column(c)) for c, col in state.columns.items()}
        hashes = None
        if state.hashes is not None:
            hashes = state.hashes.extended(pl.Series("hash", h[take]))
        count = state.count + int((~replaced).sum())
        grow = count > (1 << state.bits) * _MAX_LOAD
        moved = hashes is not state.hashes or any(
            columns[c] is not col for c, col in state.columns.items()
        )
        stale = state.stale + int(replaced.sum())
        if grow:
            bits = _bits_for(count)
            slots = _empty_slots(bits, state.n + len(take))
            live = state.slots[state.slots >= 0].astype(np.int64)
            dropped = np.zeros(state.n, dtype=np.bool_)
            dropped[positions[take[replaced]]] = True
            everything = np.concatenate([live[~dropped[live]], added])
            fresh = _State(keys, columns, hashes, slots, bits, count, stale)
            _place(slots, bits, fresh.hash_at(everything), everything, _never)
            self._state = fresh
        else:
            slots = state.slots.copy() if moved else state.slots
            slots[slots_found[take[replaced]]] = added[replaced]
            _place(slots, state.bits, h[take[~replaced]], added[~replaced], _never)
            if moved:
                self._state = _State(keys, columns, hashes, slots, state.bits, count, stale)
            else:
                state.n, state.count, state.stale = state.n + len(take), count, stale
        if self._state.stale > max(_MIN_COMPACT, self._state.count):
            self._state = self._state.compacted(self._canonical)
        self._version = version

    def _newer(self, batch: pl.DataFrame, state: _State, positions: Array) -> Array:
        """Whether each batch row orders at or after the stored row (ties: the batch wins)."""
        result: pl.Series | None = None
        for name in reversed(self._order):
            new = batch.get_column(name)
            old = state.columns[name].gather(positions)
            result = (new >= old) if result is None else (new > old) | ((new == old) & result)
        assert result is not None
        return np.asarray(result.to_numpy())


class OnlineStore:
    """The in-process online store: one :class:`OnlineTable` per served feature group version.

    Tables are built from a group's latest Delta snapshot the first time they are needed
    and kept up to date: inserts made in this process reach the next lookup, commits of
    other processes arrive with :meth:`refresh`.

    >>> import tempfile, microfs
    >>> store = microfs.FeatureStore(tempfile.mkdtemp()).online
    >>> store.refresh()
    """

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._tables: dict[tuple[str, int], OnlineTable] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OnlineStore({self._store!r}, tables={sorted(self._tables)})"

    def table(self, group: FeatureGroup) -> OnlineTable:
        """The online table of ``group`` (built on first use, then cached per name and version).

        Raises:
            DefinitionError: the group has no ``online_keys``.

        >>> fs.online.table(fs.get_feature_group("user_profile")).key_columns  # doctest: +SKIP
        ('user_id',)
        """
        table = self._tables.get((group.name, group.version))
        if table is None:
            with self._lock:
                table = self._tables.get((group.name, group.version))
                if table is None:
                    table = OnlineTable(group)
                    self._tables[(group.name, group.version)] = table
        return table

    def committed(self, group: FeatureGroup, result: InsertResult) -> None:
        """Note an insert made in this process: the next lookup of the group applies it.

        Called by the feature store after each insert; cheap (nothing is read here).

        >>> fs.online.committed(fg, fg.insert(batch))  # doctest: +SKIP
        """
        table = self._tables.get((group.name, group.version))
        if table is not None:
            table._committed(result)

    def refresh(self) -> None:
        """Catch up with every commit since each table was built (other processes' too).

        Reads only the files added since when every commit since was an append, else
        rebuilds the table from the latest snapshot.

        >>> fs.online.refresh()  # doctest: +SKIP
        """
        for table in list(self._tables.values()):
            table._refresh()
