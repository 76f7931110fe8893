"""How the online store holds values: column buffers, key hashes and request keys.

Every column lives in one contiguous, growable numpy buffer (strings as a small
dictionary of distinct values plus integer codes, or as UTF-8 bytes plus offsets when
they have many distinct values), with a validity array only for columns holding nulls.
A column appends in place when its buffers have room, else into a grown copy that the
next snapshot uses.

A key's hash combines one 64-bit code per key column (see the hashing section); it is
computed the same way for a whole column (vectorised in numpy) and for one request value
(in Python). ``_Keys`` turns request values into the stored form, or raises an error
that names the value and the column's type.

The index over the rows, the snapshots and the freshness logic are in
:mod:`microfs.online`, the only user of this module.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray

from microfs.errors import SchemaError, TimestampError
from microfs.schema import polars_dtype

__all__ = [
    "_GOLDEN",
    "_INT_RANGES",
    "_M64",
    "Array",
    "Reader",
    "_Column",
    "_column",
    "_FixedColumn",
    "_hash",
    "_Keys",
    "_numpy",
    "_arrow_strings",
    "_raw_reader",
    "_series_codes",
]

Array = NDArray[Any]
Reader = Callable[[int], Any]

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_DICT_LIMIT = 65_536  # most distinct values a string column keeps as a dictionary
_UTC = ZoneInfo("UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_US = timedelta(microseconds=1)

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
        return _float_codes(series.cast(pl.Float64).to_numpy())
    # not Series.to_physical: numpy's view of dates and datetimes costs nothing
    values = _numpy(series)
    if values.dtype.kind == "M":
        values = values.view(np.int64)
    codes: Array = values.astype(np.int64, copy=False)
    return codes


def _numpy(series: pl.Series) -> Array:
    """The values of a column without nulls, joined by numpy when it has several chunks.

    ``Series.to_numpy`` joins chunks into a new Polars buffer, which Polars' allocator
    keeps for seconds after it is freed; numpy's copy goes back as soon as it is freed.
    """
    if series.n_chunks() == 1:
        return np.asarray(series.to_numpy())
    return np.concatenate([np.asarray(chunk.to_numpy()) for chunk in series.get_chunks()])


def _float_codes(values: Array) -> Array:
    """IEEE bits (int64) of floats, with one NaN pattern and -0.0 as 0.0 (as ``_float_code``)."""
    values = values.astype(np.float64, copy=False) + 0.0
    codes: Array = np.where(np.isnan(values), np.nan, values).view(np.int64)
    return codes


def _hash(codes: Sequence[Array]) -> Array:
    h = np.zeros(len(codes[0]), dtype=np.uint64)
    golden = np.uint64(_GOLDEN)
    for code in codes:
        h ^= code.view(np.uint64)
        h *= golden
    return h


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

    def strings_at(self, positions: Array) -> pa.Array:
        """A string column's values at ``positions`` (-1 gives null) as an Arrow array."""
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

    def codes_at(self, positions: Array) -> Array:
        """Hash codes (int64) of the values at ``positions`` (all stored rows, no nulls)."""
        values = self.data[positions]
        if self.canonical.startswith("float"):
            return _float_codes(values)
        codes: Array = values.astype(np.int64, copy=False)
        return codes

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
        self.arrow = _arrow_strings(self.series)

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
            self.arrow = _arrow_strings(self.series)
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
        return pl.Series(self.name, self.strings_at(positions), dtype=pl.String)

    def strings_at(self, positions: Array) -> pa.Array:
        # Arrow's take: a third of the time of Series.gather, which runs a query per call
        codes = self.codes[np.where(positions >= 0, positions, 0)]
        return self.arrow.take(_with_nulls(codes, self._valid_at(positions)))

    def nbytes(self) -> int:
        held = sum(sys.getsizeof(v) + 8 for v in self.values) + int(self.series.estimated_size())
        valid = int(self.valid.nbytes) if self.valid is not None else 0
        return int(self.codes.nbytes) + valid + held


def _arrow_strings(series: pl.Series) -> pa.Array:
    array = series.rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


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
        return pl.Series(self.name, self.strings_at(positions), dtype=pl.String)

    def strings_at(self, positions: Array) -> pa.Array:
        valid = self._valid_at(positions)
        rows = np.where(positions >= 0, positions, 0)
        starts = self.offsets[rows]
        lengths = np.where(valid, self.offsets[rows + 1] - starts, 0)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        return pa.Array.from_buffers(
            pa.large_string(),
            len(rows),
            [bitmap, pa.py_buffer(offsets), pa.py_buffer(self.data[index])],
        )

    def nbytes(self) -> int:
        valid = int(self.valid.nbytes) if self.valid is not None else 0
        return int(self.offsets.nbytes) + int(self.data.nbytes) + valid


def _raw_reader(column: _Column) -> Reader:
    """Stored values as compared with coerced request values (dates as days, ...)."""
    if isinstance(column, _FixedColumn):
        read: Reader = column.data.data.__getitem__
        return read
    return column.reader()


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

    def cast(self, frame: pl.DataFrame) -> list[pl.Series]:
        """The request's key columns cast to the stored types, where that loses nothing."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise SchemaError(
                f"the request frame lacks online key column(s) {', '.join(map(repr, missing))} "
                f"of feature group {self.group!r}; it has {', '.join(frame.columns) or 'none'}"
            )
        return [
            _cast_key(frame.get_column(n), c, self.group)
            for n, c in zip(self.names, self.canonicals, strict=True)
        ]


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
