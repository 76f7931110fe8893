"""How the online store holds values: one growable column buffer per column.

Every column lives in one contiguous, growable numpy buffer (strings as a small
dictionary of distinct values plus integer codes, or as UTF-8 bytes plus offsets when
they have many distinct values), with a validity array only for columns holding nulls.
A column appends in place when its buffers have room, else into a grown copy that the
next snapshot uses.

Also here: the stored form of each type that request keys are coerced to as well
(``EPOCH``, ``EPOCH_ORDINAL``, ``INT_RANGES``, ``polars_type``). The key hashes are in
:mod:`microfs.online.hashing`, request keys in
:mod:`microfs.online.keys`, the index over the rows in :mod:`microfs.online.index`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa

from microfs.online.hashing import Array, float_codes, string_pieces
from microfs.schema import polars_dtype

__all__ = [
    "EPOCH",
    "EPOCH_ORDINAL",
    "INT_RANGES",
    "Reader",
    "arrow_strings",
    "Column",
    "column_of",
    "FixedColumn",
    "polars_type",
    "raw_reader",
]

Reader = Callable[[int], Any]

_DICT_LIMIT = 65_536  # most distinct values a string column keeps as a dictionary
_UTC = ZoneInfo("UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

INT_RANGES = {
    f"{sign}int{bits}": (
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if sign == "" else (0, (1 << bits) - 1)
    )
    for sign in ("", "u")
    for bits in (8, 16, 32, 64)
}
_NUMPY_TYPES: dict[str, Any] = {
    **{name: np.dtype(name) for name in INT_RANGES},
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


# -- columns -------------------------------------------------------------------------------


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


class Column:
    """One column's rows ``0..n-1`` in growable numpy buffers (capacity beyond ``n``)."""

    name: str
    dtype: pl.DataType
    n: int
    valid: Array | None

    def extended(self, series: pl.Series) -> Column:
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

    def _extend_valid(self, target: Column, valid: Array | None, m: int) -> None:
        if target.valid is not None:
            target.valid[self.n : self.n + m] = True if valid is None else valid

    def _valid_reader(self, read: Reader) -> Reader:
        if self.valid is None:
            return read
        valid = self.valid.data
        return lambda i: read(i) if valid[i] else None


def column_of(series: pl.Series, canonical: str) -> Column:
    """A column holding exactly ``series`` (numeric buffers are shared, not copied)."""
    if canonical != "string":
        return FixedColumn.of(series, canonical)
    distinct = series.drop_nulls().unique()
    if distinct.len() <= _DICT_LIMIT:
        return _DictColumn.of(series, distinct)
    return _BytesColumn.of(series)


class FixedColumn(Column):
    """Numbers, booleans, dates (days) and datetimes (microseconds, UTC)."""

    def __init__(self, name: str, canonical: str, data: Array, valid: Array | None, n: int) -> None:
        self.name, self.canonical, self.data, self.valid, self.n = name, canonical, data, valid, n
        self.dtype = polars_type(canonical)

    @classmethod
    def of(cls, series: pl.Series, canonical: str) -> FixedColumn:
        """A column holding exactly ``series``, sharing its numeric buffer when it can."""
        data, valid = _fixed_pieces(series, canonical)
        return cls(series.name, canonical, data, valid, len(data))

    def extended(self, series: pl.Series) -> FixedColumn:
        """Append ``series``: in place when it fits, else into a grown copy (returned)."""
        data, valid = _fixed_pieces(series, self.canonical)
        m, need = len(data), self.n + len(data)
        target = self
        if (
            need > len(self.data)
            or not self.data.flags.writeable
            or (valid is not None and self.valid is None)
        ):
            capacity = _capacity(need, len(self.data))
            target = FixedColumn(
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
        """A function from row position to the Python value: dates, UTC datetimes, None."""
        view = self.data.data
        read: Reader = view.__getitem__
        if self.canonical == "date":
            ordinal = date.fromordinal
            read = lambda i: ordinal(EPOCH_ORDINAL + view[i])  # noqa: E731
        elif self.canonical == "datetime":
            read = lambda i: EPOCH + timedelta(0, 0, view[i])  # noqa: E731
        return self._valid_reader(read)

    def codes_at(self, positions: Array) -> Array:
        """Hash codes (int64) of the values at ``positions`` (all stored rows, no nulls)."""
        values = self.data[positions]
        if self.canonical.startswith("float"):
            return float_codes(values)
        codes: Array = values.astype(np.int64, copy=False)
        return codes

    def gather(self, positions: Array) -> pl.Series:
        """Values at ``positions`` (-1 gives null) as a Series of the stored dtype."""
        values = self.data[np.where(positions >= 0, positions, 0)]
        array = _with_nulls(values, self._valid_at(positions), _ARROW_TYPES.get(self.canonical))
        return pl.Series(self.name, array, dtype=self.dtype)

    def nbytes(self) -> int:
        """Bytes held by the value and validity buffers."""
        return int(self.data.nbytes) + (int(self.valid.nbytes) if self.valid is not None else 0)


def polars_type(canonical: str) -> pl.DataType:
    """The Polars type of a canonical type name (``"hash"``: the row hashes, ``UInt64``)."""
    return polars_dtype(canonical) if canonical != "hash" else pl.UInt64()


def _fixed_pieces(series: pl.Series, canonical: str) -> tuple[Array, Array | None]:
    valid = series.is_not_null().to_numpy() if series.null_count() else None
    physical = series.to_physical()
    if valid is not None:
        physical = physical.fill_null(False if canonical == "bool" else 0)
    values = np.asarray(physical.to_numpy())
    wanted = _NUMPY_TYPES.get(canonical, np.dtype(np.uint64))
    return (values if values.dtype == wanted else values.astype(wanted)), valid


class _DictColumn(Column):
    """Strings with few distinct values: the distinct values once, an int32 code per row."""

    def __init__(
        self, name: str, values: list[str], codes: Array, valid: Array | None, n: int
    ) -> None:
        self.name, self.values, self.codes, self.valid, self.n = name, values, codes, valid, n
        self.dtype = pl.String()
        self.series = pl.Series(name, values, dtype=pl.String)
        self.arrow = arrow_strings(self.series)

    @classmethod
    def of(cls, series: pl.Series, distinct: pl.Series) -> _DictColumn:
        values = distinct.sort()
        codes = _codes(series, values)
        valid = series.is_not_null().to_numpy() if series.null_count() else None
        return cls(series.name, values.to_list(), codes, valid, len(codes))

    def extended(self, series: pl.Series) -> Column:
        distinct = series.drop_nulls().unique()
        new = distinct.filter(~distinct.is_in(self.series.implode()))
        if len(self.values) + new.len() > _DICT_LIMIT:
            return _BytesColumn.of(pl.concat([self.gather(np.arange(self.n)), series]))
        if new.len():
            self.values.extend(new.sort().to_list())  # readers share the list: append only
            self.series = pl.Series(self.name, self.values, dtype=pl.String)
            self.arrow = arrow_strings(self.series)
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


def arrow_strings(series: pl.Series) -> pa.Array:
    """A string column as one Arrow array (one chunk), for Arrow's take and compare."""
    array = series.rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _codes(series: pl.Series, values: pl.Series) -> Array:
    physical = series.cast(pl.String).cast(pl.Enum(values)).to_physical().fill_null(0)
    return np.asarray(physical.to_numpy()).astype(np.int32)


class _BytesColumn(Column):
    """Strings with many distinct values: UTF-8 bytes and int64 offsets (Arrow layout)."""

    def __init__(self, name: str, offsets: Array, data: Array, valid: Array | None, n: int) -> None:
        self.name, self.offsets, self.data, self.valid, self.n = name, offsets, data, valid, n
        self.dtype = pl.String()

    @classmethod
    def of(cls, series: pl.Series) -> _BytesColumn:
        offsets, data, valid = string_pieces(series)
        return cls(series.name, offsets, data, valid, len(offsets) - 1)

    def extended(self, series: pl.Series) -> Column:
        offsets, data, valid = string_pieces(series)
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


def raw_reader(column: Column) -> Reader:
    """Stored values as compared with coerced request values (dates as days, ...)."""
    if isinstance(column, FixedColumn):
        read: Reader = column.data.data.__getitem__
        return read
    return column.reader()
