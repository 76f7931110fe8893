"""Online key columns: how request values become the stored form of a lookup.

``Keys`` holds a table's online key columns, a coercer per column (one request value to
the comparable stored form: integers, days for dates, microseconds for datetimes, 0/1 for
booleans, floats, text) and the matching hash code function of
:mod:`microfs.online.hashing`. A value of the wrong type raises an error that names the
value and the column's type; a request frame's key columns are cast to the stored types
when that loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from microfs.errors import SchemaError, TimestampError
from microfs.online.columns import EPOCH, EPOCH_ORDINAL, INT_RANGES, polars_type
from microfs.online.hashing import hash_code
from microfs.schema import aware_utc

__all__ = ["Keys"]

_US = timedelta(microseconds=1)


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

    if canonical in INT_RANGES:
        lo, hi = INT_RANGES[canonical]

        def to_int(value: Any) -> Any:
            if type(value) is int and lo <= value <= hi:  # the common case, first
                return value
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
            return value.toordinal() - EPOCH_ORDINAL

        return to_days

    def to_micros(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise wrong(value, "; give a timezone-aware datetime.datetime")
        aware_utc(value, what=f"the request's {column} (a key of feature group {group!r})")
        if getattr(value, "nanosecond", 0):
            raise wrong(value, ", finer than a microsecond")
        micros: int = (value - EPOCH) // _US
        return micros

    return to_micros


class Keys:
    """The online key columns of one table and how request values become lookups."""

    def __init__(self, group: str, names: Sequence[str], canonicals: Sequence[str]) -> None:
        self.group = group
        self.names = tuple(names)
        self.canonicals = tuple(canonicals)
        self.coercers = [
            _coercer(group, n, c) for n, c in zip(self.names, self.canonicals, strict=True)
        ]
        self.hash_codes = [hash_code(c) for c in self.canonicals]
        # one integer-like key: its hash is a bijection of its value, so equal hash = equal key
        self.exact = len(self.names) == 1 and canonicals[0] not in ("string", "float32", "float64")

    def as_tuple(self, key: Any) -> tuple[Any, ...]:
        """A request key as a tuple with one value per key column (a bare value: one).

        Raises:
            SchemaError: the key has another number of values than there are key columns.
        """
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
    target = polars_type(canonical)
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
