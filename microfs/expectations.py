"""Expectations: declarative rules a feature group's batches must meet, and their report.

An expectation is a dict with ``column``, ``kind`` and the kind's options, stored in the
group's definition as JSON a person can read::

    {"column": "age", "kind": "between", "min": 0, "max": 120}

========================  ==============================  =================================
kind                      options                         a row fails when
========================  ==============================  =================================
``not_null``              (none)                          the value is null
``between``               ``min``, ``max`` (inclusive,    the value is below ``min``, above
                          either may be left out)         ``max``, or NaN
``in_set``                ``values`` (a list)             the value is not in ``values``
``matches``               ``pattern`` (a regex)           the pattern does not match the
                                                          whole string
``unique``                (none)                          the value occurs twice or more in
                                                          the batch
``max_null_fraction``     ``value`` (0 to 1)              the value is null and the batch's
                                                          null fraction exceeds ``value``
``row_count_between``     ``min``, ``max``; no column     every row, when the batch's row
                                                          count is outside [min, max]
========================  ==============================  =================================

Nulls pass every kind but ``not_null`` and ``max_null_fraction``. An optional ``name``
labels an expectation (default ``<column>_<kind>``, or ``row_count_between``).

:func:`evaluate` checks a batch with one Polars query (a second one, over the failing rows
only, collects samples when something fails) and returns a :class:`ValidationReport`;
:func:`split` parts a batch into passing rows and failing rows with a ``reason`` column.
This module is pure logic over data frames: what a policy does with a failing batch is
the feature group's business.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, get_args

import polars as pl

from microfs.errors import DefinitionError
from microfs.schema import DATETIME, polars_dtype

__all__ = [
    "KINDS",
    "POLICIES",
    "REASON",
    "SAMPLE_SIZE",
    "Expectation",
    "Kind",
    "Policy",
    "ValidationReport",
    "ValidationWarning",
    "check_policy",
    "evaluate",
    "parse_expectations",
    "split",
]

Kind = Literal[
    "not_null",
    "between",
    "in_set",
    "matches",
    "unique",
    "max_null_fraction",
    "row_count_between",
]
KINDS: tuple[str, ...] = get_args(Kind)
Policy = Literal["strict", "warn", "quarantine"]
POLICIES: tuple[str, ...] = get_args(Policy)
SAMPLE_SIZE = 5
"""Sample values a report keeps per failing expectation."""
REASON = "reason"
"""The column of rejected rows that names the expectations they failed."""

_OPTIONS: dict[str, tuple[str, ...]] = {
    "not_null": (),
    "between": ("min", "max"),
    "in_set": ("values",),
    "matches": ("pattern",),
    "unique": (),
    "max_null_fraction": ("value",),
    "row_count_between": ("min", "max"),
}
_NUMERIC = ("int8", "int16", "int32", "int64", "float32", "float64")
_ORDERED = (*_NUMERIC, "string", "date", "datetime")
_SETTABLE = (*_NUMERIC, "string", "bool")
_RESULTS_SCHEMA = pl.Schema(
    {
        "expectation": pl.String(),
        "kind": pl.String(),
        "column": pl.String(),
        "failing_rows": pl.Int64(),
        "sample": pl.List(pl.String()),
    }
)


class ValidationWarning(UserWarning):
    """A batch that failed its feature group's expectations and was written anyway."""


@dataclass(frozen=True)
class Expectation:
    """One checked rule of a feature group. Build it with :meth:`parse`.

    >>> e = Expectation.parse({"column": "age", "kind": "between", "min": 0},
    ...                       {"age": "int64"})
    >>> e.name, e.to_dict()
    ('age_between', {'kind': 'between', 'column': 'age', 'name': 'age_between', 'min': 0})
    """

    kind: Kind
    column: str | None
    name: str
    dtype: str | None = None
    min: Any = None
    max: Any = None
    values: tuple[Any, ...] | None = None
    pattern: str | None = None
    value: float | None = None

    @classmethod
    def parse(
        cls, spec: Mapping[str, Any] | Expectation, schema: Mapping[str, str], *, group: str = "?"
    ) -> Expectation:
        """Check one expectation dict against a canonical schema; return it parsed.

        Raises:
            DefinitionError: an unknown kind or option, a column not in the schema, an
                option of the wrong type, or a kind that does not fit the column's type.
        """
        if isinstance(spec, Expectation):
            spec = spec.to_dict()
        if not isinstance(spec, Mapping):
            raise DefinitionError(
                f"an expectation of feature group {group!r} must be a dict such as "
                f"{{'column': 'age', 'kind': 'not_null'}}, got {spec!r}"
            )
        kind = spec.get("kind")
        if kind not in KINDS:
            raise DefinitionError(
                f"expectation {dict(spec)!r} of feature group {group!r} has kind {kind!r}; "
                f"kinds: {', '.join(KINDS)}"
            )
        allowed = {"kind", "column", "name", *_OPTIONS[kind]}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise DefinitionError(
                f"expectation {dict(spec)!r} of feature group {group!r} has unknown option(s) "
                f"{', '.join(map(repr, unknown))}; a {kind!r} expectation takes "
                f"{', '.join(sorted(allowed))}"
            )
        column = spec.get("column")
        dtype: str | None = None
        if kind == "row_count_between":
            if column is not None:
                raise DefinitionError(
                    f"a 'row_count_between' expectation of feature group {group!r} checks "
                    f"the whole batch: leave out column={column!r}"
                )
        else:
            if not isinstance(column, str) or column not in schema:
                raise DefinitionError(
                    f"expectation {dict(spec)!r} of feature group {group!r} names column "
                    f"{column!r}, which is not in the schema; columns: {', '.join(schema)}"
                )
            dtype = schema[column]
        name = spec.get("name", f"{column}_{kind}" if column is not None else kind)
        if not isinstance(name, str) or not name.strip() or ";" in name:
            raise DefinitionError(
                f"expectation name {name!r} of feature group {group!r} must be a non-empty "
                "string without ';'"
            )
        where = f"expectation {name!r} of feature group {group!r}"
        options = _parse_options(kind, spec, dtype, where)
        return cls(kind=kind, column=column, name=name, dtype=dtype, **options)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what :meth:`parse` reads back)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.column is not None:
            out["column"] = self.column
        out["name"] = self.name
        for option in _OPTIONS[self.kind]:
            value = getattr(self, option)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            out[option] = value
        return out

    def failing(self, rows: int) -> pl.Expr:
        """A boolean expression per row: True where the row fails (never null).

        Args:
            rows: the batch's row count (what ``row_count_between`` checks).
        """
        if self.kind == "row_count_between":
            return pl.lit(_outside(self, rows))
        assert self.column is not None
        assert self.dtype is not None
        col = pl.col(self.column)
        if self.kind == "not_null":
            return col.is_null()
        if self.kind == "max_null_fraction":
            assert self.value is not None
            too_many = col.null_count() > self.value * pl.len()
            return col.is_null() & too_many
        if self.kind == "between":
            parts = []
            if self.min is not None:
                parts.append(col < _literal(self.min, self.dtype))
            if self.max is not None:
                parts.append(col > _literal(self.max, self.dtype))
            if self.dtype.startswith("float"):
                parts.append(col.is_nan())
            fails = pl.any_horizontal(parts)
        elif self.kind == "in_set":
            assert self.values is not None
            values = pl.Series(list(self.values), dtype=polars_dtype(self.dtype), strict=False)
            fails = ~col.is_in(values.implode())
        elif self.kind == "matches":
            assert self.pattern is not None
            fails = ~col.str.contains(_whole(self.pattern))
        else:  # unique
            fails = col.is_duplicated()
        return (fails & col.is_not_null()).fill_null(False)


def parse_expectations(
    specs: Sequence[Mapping[str, Any] | Expectation] | None,
    schema: Mapping[str, str],
    *,
    group: str = "?",
) -> tuple[Expectation, ...]:
    """Parse a list of expectation dicts; names must be unique within the list."""
    if specs is None:
        return ()
    if isinstance(specs, Mapping | str) or not isinstance(specs, Sequence):
        raise DefinitionError(
            f"expectations of feature group {group!r} must be a list of dicts, got {specs!r}"
        )
    parsed = tuple(Expectation.parse(spec, schema, group=group) for spec in specs)
    seen: set[str] = set()
    for expectation in parsed:
        if expectation.name in seen:
            raise DefinitionError(
                f"two expectations of feature group {group!r} are named {expectation.name!r}; "
                "give one of them another 'name'"
            )
        seen.add(expectation.name)
    return parsed


def check_policy(policy: object, *, group: str = "?") -> Policy:
    """Return ``policy`` if it is a validation policy, else raise :class:`DefinitionError`."""
    if policy not in POLICIES:
        raise DefinitionError(
            f"validation={policy!r} of feature group {group!r} is not a policy; use one of "
            f"{', '.join(map(repr, POLICIES))}"
        )
    return policy  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """What checking one batch against a group's expectations found.

    Attributes:
        passed: True when no row fails any expectation.
        results: one row per expectation: ``expectation, kind, column, failing_rows,
            sample`` (up to five distinct failing values, as text, in batch order).
        rows: the batch's row count.
    """

    passed: bool
    results: pl.DataFrame
    rows: int

    @property
    def failures(self) -> pl.DataFrame:
        """The rows of :attr:`results` whose expectation failed."""
        return self.results.filter(pl.col("failing_rows") > 0)

    def summary(self) -> str:
        """One line naming every failing expectation, its count and a sample."""
        if self.passed:
            return f"all {self.results.height} expectation(s) passed on {self.rows:,} rows"
        parts = []
        for row in self.failures.iter_rows(named=True):
            if row["kind"] == "row_count_between":
                parts.append(
                    f"{row['expectation']} (row_count_between): the batch has {self.rows:,} rows"
                )
                continue
            where = f" on {row['column']}" if row["column"] is not None else ""
            sample = f", e.g. {', '.join(row['sample'])}" if row["sample"] else ""
            parts.append(
                f"{row['expectation']} ({row['kind']}{where}): {row['failing_rows']:,} of "
                f"{self.rows:,} rows fail{sample}"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "passed": self.passed,
            "rows": self.rows,
            "results": self.results.to_dicts(),
        }

    def __repr__(self) -> str:
        return f"ValidationReport(passed={self.passed}, rows={self.rows}, {self.summary()!r})"


def evaluate(frame: pl.DataFrame, expectations: Sequence[Expectation]) -> ValidationReport:
    """Check ``frame`` against ``expectations`` in one query.

    A second query runs only when something fails: it collects the samples, and the rows
    a ``unique`` expectation fails.

    >>> e = parse_expectations([{"column": "x", "kind": "between", "min": 0}], {"x": "int64"})
    >>> evaluate(pl.DataFrame({"x": [1, -2, None, -3]}), e).summary()
    'x_between (between on x): 2 of 4 rows fail, e.g. -2, -3'
    """
    rows = frame.height
    if not expectations:
        return ValidationReport(True, pl.DataFrame(schema=_RESULTS_SCHEMA), rows)
    fails = [e.failing(rows) for e in expectations]
    # First query: a failing-row count per expectation; for `unique`, the cheaper count of
    # repeated values (values minus distinct values), which is 0 exactly when it passes.
    first = {
        i: (
            (pl.col(e.column or "").count() - pl.col(e.column or "").drop_nulls().n_unique())
            if e.kind == "unique"
            else fails[i].sum()
        )
        .cast(pl.Int64)
        .alias(f"\x00{i}")
        for i, e in enumerate(expectations)
        if e.kind != "row_count_between"
    }
    row = frame.select(list(first.values())).row(0) if first else ()
    found = dict(zip(first, row, strict=True))
    # a batch outside its row count range fails as a whole
    counts = [
        found[i] if i in found else rows if _outside(e, rows) else 0
        for i, e in enumerate(expectations)
    ]
    failing = [i for i, n in enumerate(counts) if n]
    sampled = [i for i in failing if expectations[i].kind not in _WHOLE_BATCH]
    samples: dict[int, list[str]] = {}
    if sampled:
        # Second query, only for a failing batch: samples, and `unique`'s failing rows.
        recount = [i for i in sampled if expectations[i].kind == "unique"]
        second = frame.select(
            [
                pl.col(expectations[i].column or "")
                .filter(fails[i])
                .unique(maintain_order=True)
                .head(SAMPLE_SIZE)
                .cast(pl.String)
                .implode()
                .alias(f"\x00{i}")
                for i in sampled
            ]
            + [fails[i].sum().cast(pl.Int64).alias(f"\x00n{i}") for i in recount]
        ).row(0, named=True)
        samples = {i: [v if v is not None else "null" for v in second[f"\x00{i}"]] for i in sampled}
        for i in recount:
            counts[i] = second[f"\x00n{i}"]
    results = pl.DataFrame(
        {
            "expectation": [e.name for e in expectations],
            "kind": [e.kind for e in expectations],
            "column": [e.column for e in expectations],
            "failing_rows": list(counts),
            "sample": [samples.get(i, []) for i in range(len(expectations))],
        },
        schema=_RESULTS_SCHEMA,
    )
    return ValidationReport(not failing, results, rows)


def split(
    frame: pl.DataFrame, expectations: Sequence[Expectation]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Part ``frame`` into passing rows and failing rows with a ``reason`` column.

    ``reason`` lists the names of the expectations a row fails, joined by ``"; "``.

    >>> e = parse_expectations([{"column": "x", "kind": "not_null"}], {"x": "int64"})
    >>> ok, bad = split(pl.DataFrame({"x": [1, None]}), e)
    >>> ok["x"].to_list(), bad.rows()
    ([1], [(None, 'x_not_null')])
    """
    fails = [e.failing(frame.height) for e in expectations]
    if not fails:
        return frame, frame.clear().with_columns(pl.lit(None, pl.String).alias(REASON))
    reason = pl.concat_str(
        [pl.when(f).then(pl.lit(e.name)) for f, e in zip(fails, expectations, strict=True)],
        separator="; ",
        ignore_nulls=True,
    )
    marked = frame.with_columns(pl.any_horizontal(fails).alias(REASON + "\x00"))
    flag = pl.col(REASON + "\x00")
    passing = marked.filter(~flag).drop(REASON + "\x00")
    rejected = (
        frame.with_columns(reason.alias(REASON))
        .filter(marked.get_column(REASON + "\x00"))
        .select([*frame.columns, REASON])
    )
    return passing, rejected


_WHOLE_BATCH = ("row_count_between", "max_null_fraction")


def _outside(expectation: Expectation, rows: int) -> bool:
    """Whether a batch of ``rows`` rows fails a ``row_count_between`` expectation."""
    low, high = expectation.min, expectation.max
    return (low is not None and rows < low) or (high is not None and rows > high)


def _parse_options(
    kind: str, spec: Mapping[str, Any], dtype: str | None, where: str
) -> dict[str, Any]:
    if kind == "between":
        if dtype not in _ORDERED:
            raise DefinitionError(
                f"{where}: 'between' needs a numeric, string, date or datetime column; "
                f"{spec.get('column')!r} is {dtype}"
            )
        assert dtype is not None
        low, high = spec.get("min"), spec.get("max")
        if low is None and high is None:
            raise DefinitionError(f"{where}: 'between' needs 'min', 'max' or both")
        low, high = _bound(low, dtype, where, "min"), _bound(high, dtype, where, "max")
        if low is not None and high is not None and _sortable(low, dtype) > _sortable(high, dtype):
            raise DefinitionError(f"{where}: min={low!r} is greater than max={high!r}")
        return {"min": low, "max": high}
    if kind == "row_count_between":
        low, high = spec.get("min"), spec.get("max")
        if low is None and high is None:
            raise DefinitionError(f"{where}: 'row_count_between' needs 'min', 'max' or both")
        for option, value in (("min", low), ("max", high)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise DefinitionError(
                    f"{where}: {option}={value!r} must be a non-negative whole number of rows"
                )
        if low is not None and high is not None and low > high:
            raise DefinitionError(f"{where}: min={low!r} is greater than max={high!r}")
        return {"min": low, "max": high}
    if kind == "in_set":
        if dtype not in _SETTABLE:
            raise DefinitionError(
                f"{where}: 'in_set' needs a numeric, string or bool column; "
                f"{spec.get('column')!r} is {dtype}"
            )
        assert dtype is not None
        values = spec.get("values")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | set | frozenset):
            raise DefinitionError(f"{where}: 'values' must be a list, got {values!r}")
        items = list(values)
        if not items:
            raise DefinitionError(f"{where}: 'values' is empty; list the allowed values")
        for item in items:
            if not _fits(item, dtype):
                raise DefinitionError(f"{where}: value {item!r} does not fit column type {dtype}")
        return {"values": tuple(items)}
    if kind == "matches":
        if dtype != "string":
            raise DefinitionError(
                f"{where}: 'matches' needs a string column; {spec.get('column')!r} is {dtype}"
            )
        pattern = spec.get("pattern")
        if not isinstance(pattern, str):
            raise DefinitionError(f"{where}: 'pattern' must be a regex string, got {pattern!r}")
        try:
            pl.Series([""], dtype=pl.String).str.contains(_whole(pattern))
        except pl.exceptions.PolarsError as exc:
            raise DefinitionError(f"{where}: pattern {pattern!r} is not a valid regex") from exc
        return {"pattern": pattern}
    if kind == "max_null_fraction":
        value = spec.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise DefinitionError(f"{where}: 'value' must be a fraction from 0 to 1, got {value!r}")
        return {"value": float(value)}
    return {}


def _bound(value: Any, dtype: str, where: str, option: str) -> Any:
    """A JSON-safe bound that fits ``dtype`` (dates and datetimes as ISO text)."""
    if value is None:
        return None
    if dtype in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise DefinitionError(f"{where}: {option}={value!r} must be a number")
        return value
    if dtype == "string":
        if not isinstance(value, str):
            raise DefinitionError(f"{where}: {option}={value!r} must be a string")
        return value
    if dtype == "date":
        if isinstance(value, datetime) or not isinstance(value, date | str):
            raise DefinitionError(
                f"{where}: {option}={value!r} must be a date or ISO date text, e.g. '2024-01-31'"
            )
        try:
            return (value if isinstance(value, date) else date.fromisoformat(value)).isoformat()
        except ValueError:
            raise DefinitionError(
                f"{where}: {option}={value!r} is not an ISO date, e.g. '2024-01-31'"
            ) from None
    # datetime
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise DefinitionError(
            f"{where}: {option}={value!r} must be a timezone-aware datetime or ISO text with "
            "a time zone, e.g. '2024-01-31T00:00:00+00:00'"
        )
    return moment.isoformat()


def _sortable(value: Any, dtype: str) -> Any:
    if dtype == "date":
        return date.fromisoformat(value)
    if dtype == "datetime":
        return datetime.fromisoformat(value)
    return value


def _literal(value: Any, dtype: str) -> pl.Expr:
    if dtype == "date":
        return pl.lit(date.fromisoformat(value), dtype=pl.Date)
    if dtype == "datetime":
        return pl.lit(datetime.fromisoformat(value), dtype=DATETIME)
    return pl.lit(value)


def _fits(item: Any, dtype: str) -> bool:
    if dtype == "string":
        return isinstance(item, str)
    if dtype == "bool":
        return isinstance(item, bool)
    if isinstance(item, bool) or not isinstance(item, int | float):
        return False
    if isinstance(item, float) and not math.isfinite(item):
        return False
    return not (dtype.startswith("int") and isinstance(item, float) and not item.is_integer())


def _whole(pattern: str) -> str:
    """A regex that matches only where ``pattern`` matches the whole string."""
    return rf"^(?:{pattern})$"
