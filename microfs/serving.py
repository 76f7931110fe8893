"""Online feature vectors of a feature view: online tables in, transformed vectors out.

A :class:`VectorServer` is compiled once per feature view and parameter set. For one
entity it looks up each source group's latest row in the online store (the label group by
its online keys, each joined group by its join keys), places the raw values in the view's
feature order and runs the compiled single-row transformation, which computes exactly
what the offline expressions compute. Many entities go through the same lookups
vectorised (a numpy hash probe and gather per table, one frame of raw values) and through
the offline transformation expressions themselves, in one query.

A joined group can serve a view only when its online keys are the join's ``on`` columns:
then "latest row per online key" is the row the point-in-time join picks for a label
after every event. ``max_age`` is measured from the entity's event time when the request
carries the label group's event-time column, else from now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl

from microfs.errors import DefinitionError, NotFoundError, SchemaError
from microfs.feature_group import FeatureGroup
from microfs.online import OnlineStore, OnlineTable
from microfs.schema import aware_utc
from microfs.transformations import (
    FittedParams,
    apply_transforms,
    compile_row_transform,
    output_columns,
)
from microfs.view_definition import FeatureViewDefinition

__all__ = ["ReturnType", "VectorServer", "VectorsReturnType"]

ReturnType = Literal["list", "dict", "polars", "pandas", "numpy"]
"""What one vector comes back as."""
VectorsReturnType = Literal["polars", "pandas", "numpy"]
"""What a batch of vectors comes back as."""


@dataclass(frozen=True)
class _Source:
    """One group the vector reads: which keys, which columns, which features they become.

    The sources' ``names``, one source after the other, are the view's features in order,
    so a raw vector is the sources' rows one after the other (nulls for a missing row).
    """

    group: FeatureGroup
    keys: tuple[str, ...]
    columns: tuple[str, ...]  # stored column names read from the online table
    names: tuple[str, ...]  # the view's feature names they become
    max_age: timedelta | None
    event_time: str | None


class _Lookup(NamedTuple):
    """What a vector needs of one source, unpacked once per vector (cheaper than attributes)."""

    source: _Source
    table: OnlineTable
    key_of: Callable[[Mapping[str, Any]], tuple[Any, ...]]  # KeyError for a missing key
    columns: tuple[str, ...]
    max_age: timedelta | None
    nulls: tuple[None, ...]  # the source's features when it has no (recent) row


class VectorServer:
    """Builds online vectors for one feature view with one set of fitted parameters.

    Args:
        definition: The view's definition.
        label: Its label group.
        groups: Its joined groups, one per join, in join order.
        online: The online store whose tables the vectors read.
        params: The fitted transformation parameters.
    """

    def __init__(
        self,
        definition: FeatureViewDefinition,
        label: FeatureGroup,
        groups: Sequence[FeatureGroup],
        online: OnlineStore,
        params: FittedParams,
    ) -> None:
        self._schema = definition.feature_schema(label.definition, [g.definition for g in groups])
        self.features = list(self._schema)
        self.params = params
        self.columns = output_columns(self.features, params)
        self.label_time = label.event_time
        self._row = compile_row_transform(self.features, params)
        self._index = {name: i for i, name in enumerate(self.features)}
        self._output_schema = (
            pl.LazyFrame(schema=self._schema)
            .pipe(apply_transforms, self.features, params)
            .select(self.columns)
            .collect_schema()
        )
        self.sources = _sources(definition, label, groups)
        # each source's features follow the previous one's: raw vectors are concatenated
        assert [n for s in self.sources for n in s.names] == self.features
        # Online tables are built once per store and kept fresh in place, so the server
        # holds on to them instead of asking the store on every lookup.
        self._tables = [online.table(source.group) for source in self.sources]
        self._lookups = [
            _Lookup(s, t, _key_reader(s.keys), s.columns, s.max_age, (None,) * len(s.names))
            for s, t in zip(self.sources, self._tables, strict=True)
        ]
        self.required_keys = tuple(dict.fromkeys(k for s in self.sources for k in s.keys))

    # -- one entity ---------------------------------------------------------------------

    def raw(
        self,
        entity: Mapping[str, Any],
        passed_features: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
    ) -> list[Any]:
        """Untransformed feature values for one entity, in the view's feature order."""
        raw: list[Any] = []
        now: datetime | None = None
        for source, table, key_of, columns, max_age, nulls in self._lookups:
            try:
                key = key_of(entity)
            except KeyError:
                raise self._missing(entity) from None
            row = table.get(key, columns)
            if row is None:
                if strict:
                    raise self._not_found(source, key)
                raw += nulls
                continue
            if max_age is not None:
                if now is None:
                    now = self._entity_time(entity)
                row = _recent(row, now, max_age, nulls)
            raw += row
        if passed_features:
            for name, value in passed_features.items():
                slot = self._index.get(name)
                if slot is None:
                    raise SchemaError(
                        f"passed feature {name!r} is not a feature of the view; its features: "
                        f"{', '.join(self.features)}"
                    )
                raw[slot] = _passed_value(name, value, self._schema[name])
        return raw

    def vector(
        self,
        entity: Mapping[str, Any],
        *,
        passed_features: Mapping[str, Any] | None = None,
        return_type: ReturnType = "list",
        strict: bool = False,
    ) -> Any:
        """The transformed vector for one entity, in ``X``'s column order."""
        if type(return_type) is not str:  # before comparing: a frame compares by element
            raise DefinitionError(
                f"return_type must be a string such as 'list', got {return_type!r}"
            )
        values = self._row(self.raw(entity, passed_features, strict=strict))
        if return_type == "list":
            return values
        if return_type == "dict":
            return dict(zip(self.columns, values, strict=True))
        if return_type == "polars":
            return pl.DataFrame([values], schema=self._output_schema, orient="row")
        if return_type == "pandas":
            frame = pl.DataFrame([values], schema=self._output_schema, orient="row")
            return _to_pandas(frame)
        if return_type == "numpy":
            self._check_numeric()
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        raise DefinitionError(
            "return_type must be 'list', 'dict', 'polars', 'pandas' or 'numpy', got "
            f"{return_type!r}"
        )

    def rows(
        self, entities: Sequence[Mapping[str, Any]], *, strict: bool = False
    ) -> list[list[Any]]:
        """The transformed vectors of many entities as lists, in request order.

        Each is what :meth:`vector` gives for its entity; the loop runs table by table
        rather than entity by entity, so each table's freshness check, column check and
        row reader are paid once per call, and every entity reads the same snapshot of a
        table. Cheaper than :meth:`vectors` for up to a few hundred entities (no frame,
        no query). With ``strict``, the first table lacking an entity's row is reported.
        """
        if len(entities) == 1:  # the loop's set-up per table costs more than it saves
            return [self._row(self.raw(entities[0], strict=strict))]
        raws: list[list[Any]] = [[] for _ in entities]
        times: list[datetime | None] = [None] * len(entities)
        for source, table, key_of, columns, max_age, nulls in self._lookups:
            get = table.getter(columns)
            for i, (entity, raw) in enumerate(zip(entities, raws, strict=True)):
                try:
                    key = key_of(entity)
                except KeyError:
                    raise self._missing(entity) from None
                row = get(key)
                if row is None:
                    if strict:
                        raise self._not_found(source, key)
                    raw += nulls
                    continue
                if max_age is not None:
                    now = times[i]
                    if now is None:
                        now = times[i] = self._entity_time(entity)
                    row = _recent(row, now, max_age, nulls)
                raw += row
        transform = self._row
        return [transform(raw) for raw in raws]

    def _not_found(self, source: _Source, key: tuple[Any, ...]) -> NotFoundError:
        return NotFoundError(
            f"no online row in feature group {source.group.name!r} for key "
            f"{dict(zip(source.keys, key, strict=True))}; pass strict=False to get nulls "
            "instead"
        )

    def _check_numeric(self) -> None:
        """Refuse numpy output for an ``X`` with a column that is not a number."""
        text = [
            name
            for name, dtype in self._output_schema.items()
            if not (dtype.is_numeric() or dtype == pl.Boolean)
        ]
        if text:
            example = {"type": "label_encode", "column": text[0]}
            raise DefinitionError(
                f"return_type='numpy' needs numeric features, but X's column(s) {text} hold "
                f"{', '.join(sorted({str(self._output_schema[c]) for c in text}))}; encode "
                f"each with a transform of the view, e.g. {example} (or one_hot_encode), or "
                "ask for return_type='list', 'dict', 'polars' or 'pandas'"
            )

    def _entity_time(self, entity: Mapping[str, Any]) -> datetime:
        value = entity.get(self.label_time) if self.label_time else None
        if value is None:
            return datetime.now(timezone.utc)
        moment: datetime = aware_utc(value, what=f"the request's {self.label_time}")
        return moment

    def _missing(self, entity: Mapping[str, Any]) -> DefinitionError:
        missing = [k for k in self.required_keys if k not in entity]
        return DefinitionError(
            f"the request lacks key(s) {missing}; the view needs {list(self.required_keys)}"
        )

    # -- many entities --------------------------------------------------------------------

    def vectors(
        self,
        entities: Sequence[Mapping[str, Any]] | pl.DataFrame,
        *,
        passed_features: pl.DataFrame | None = None,
        return_type: VectorsReturnType = "polars",
        strict: bool = False,
    ) -> Any:
        """Transformed vectors for many entities: one row each, in request order."""
        if return_type not in ("polars", "pandas", "numpy"):
            raise DefinitionError(
                f"return_type must be 'polars', 'pandas' or 'numpy', got {return_type!r}"
            )
        if return_type == "numpy":
            self._check_numeric()
        requests = entities if isinstance(entities, pl.DataFrame) else _frame(entities)
        missing = [k for k in self.required_keys if k not in requests.columns]
        if missing:
            raise DefinitionError(
                f"the requests lack key column(s) {missing}; the view needs "
                f"{list(self.required_keys)}"
            )
        # One gather per feature column from the rows each table found, one frame, and
        # the offline transformation expressions over it in a single query.
        raw: dict[str, pl.Series] = {}
        times: pl.Series | None = None
        for source, table in zip(self.sources, self._tables, strict=True):
            rows = table.find_many(requests)
            found = rows.found
            if strict and not found.all():
                first = requests.select(source.keys).row(int(np.argmin(found)), named=True)
                raise NotFoundError(
                    f"no online row in feature group {source.group.name!r} for key {first}; "
                    "pass strict=False to get nulls instead"
                )
            if source.max_age is not None and source.event_time is not None:
                times = self._request_times(requests) if times is None else times
                fresh = rows.column(source.event_time) >= times - source.max_age
                rows = rows.where(fresh.fill_null(False).to_numpy())
            for column, name in zip(source.columns, source.names, strict=False):
                raw[name] = rows.column(column).alias(name)
        if passed_features is not None:
            raw.update(self._passed(passed_features, requests.height))
        n = requests.height
        frame = pl.DataFrame(
            [
                _as(raw[name], dtype) if name in raw else pl.Series(name, [None] * n, dtype)
                for name, dtype in self._schema.items()
            ]
        )
        out = (
            apply_transforms(frame.lazy(), self.features, self.params)
            .select(self.columns)
            .collect()
        )
        if return_type == "pandas":
            return _to_pandas(out)
        if return_type == "numpy":
            return out.cast(pl.Float64).to_numpy()
        return out

    def _passed(self, passed_features: pl.DataFrame, height: int) -> dict[str, pl.Series]:
        unknown = [c for c in passed_features.columns if c not in self._index]
        if unknown:
            raise SchemaError(
                f"passed feature(s) {unknown} are not features of the view; its features: "
                f"{', '.join(self.features)}"
            )
        if passed_features.height != height:
            raise SchemaError(
                f"passed_features has {passed_features.height} row(s) for {height} entities; "
                "give one row per entity, in request order"
            )
        return {
            c: _passed_column(c, passed_features.get_column(c), self._schema[c])
            for c in passed_features.columns
        }

    def _request_times(self, requests: pl.DataFrame) -> pl.Series:
        if self.label_time and self.label_time in requests.columns:
            times = requests[self.label_time]
            dtype = times.dtype
            if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
                raise SchemaError(
                    f"{self.label_time!r} in the requests must hold timezone-aware datetimes, "
                    f"got {dtype}"
                )
            # a request without a time is measured from now, as a single entity's is
            return times.fill_null(datetime.now(timezone.utc))
        return pl.Series(
            [datetime.now(timezone.utc)] * requests.height, dtype=pl.Datetime("us", "UTC")
        )


def _passed_value(name: str, value: Any, dtype: pl.DataType) -> Any:
    """One passed feature value as the feature's type holds it (see :func:`_passed_column`)."""
    if value is None:
        return None
    shown = f"{value!r:.40} ({type(value).__name__})"
    try:
        column = pl.Series(name, [value], strict=False)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        raise _unfit(name, dtype, shown) from None
    try:
        return _passed_column(name, column, dtype)[0]
    except SchemaError:
        raise _unfit(name, dtype, shown) from None


def _passed_column(name: str, column: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Passed values of feature ``name`` cast to its type ``dtype``, without loss.

    Numbers pass for a numeric feature (a float for an integer one only when whole),
    text for a text feature, booleans for a boolean one, times with a time zone for a
    time; nulls for any. Anything else (text for a number, a number for text, a nested
    value, a time without a zone) raises :class:`SchemaError`, as a lookup would have its
    own type.
    """
    source = column.dtype
    fits = (
        source == pl.Null
        or source == dtype
        or (dtype.is_numeric() and source.is_numeric())
        or (dtype == pl.String and source == pl.Categorical)
        or (
            isinstance(dtype, pl.Datetime)
            and isinstance(source, pl.Datetime)
            and source.time_zone is not None
        )
    )
    if not fits:
        raise _unfit(name, dtype, str(source))
    try:
        out = column.cast(dtype, strict=True)
    except pl.exceptions.PolarsError:
        raise _unfit(name, dtype, str(source)) from None
    if dtype.is_integer() and source.is_float() and not (out.cast(source) == column).all():
        raise _unfit(name, dtype, "a number with a fraction")
    return out


def _unfit(name: str, dtype: pl.DataType, given: str) -> SchemaError:
    return SchemaError(
        f"passed_features: feature {name!r} holds {dtype} values, got {given}; pass a value "
        "of its type (or None)"
    )


def _to_pandas(frame: pl.DataFrame) -> Any:
    try:
        return frame.to_pandas()
    except ImportError as exc:
        raise DefinitionError(
            "return_type='pandas' needs pandas installed (pip install pandas)"
        ) from exc


def _as(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    return series if series.dtype == dtype else series.cast(dtype)


def _frame(entities: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    if not entities:
        raise DefinitionError("no entities given; pass a list of key dicts or a DataFrame")
    try:
        return pl.DataFrame(list(entities))
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise SchemaError(f"could not read the entities as a table: {exc}") from exc


def passed_rows(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Passed feature values given as one dict per entity, as a frame (nulls where absent)."""
    if not all(isinstance(row, Mapping) for row in rows):
        raise SchemaError(
            "passed_features must be one dict of feature values per entity, or a frame"
        )
    try:
        return pl.DataFrame(list(rows), strict=False)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
        raise SchemaError(f"could not read passed_features as a table: {exc}") from exc


def _recent(
    row: tuple[Any, ...], now: datetime, max_age: timedelta, nulls: tuple[None, ...]
) -> tuple[Any, ...]:
    """A row read with its event time last: its features, or nulls when older than max_age."""
    return nulls if row[-1] < now - max_age else row[:-1]


def _key_reader(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function taking an entity's ``keys`` values as a tuple (KeyError for a missing one)."""
    if len(keys) == 1:
        (name,) = keys
        return lambda entity: (entity[name],)
    reader: Callable[[Mapping[str, Any]], tuple[Any, ...]] = itemgetter(*keys)
    return reader


def _sources(
    definition: FeatureViewDefinition,
    label: FeatureGroup,
    groups: Sequence[FeatureGroup],
) -> list[_Source]:
    sources: list[_Source] = []
    label_features = definition.label_features(label.definition)
    if label_features:
        if label.online_keys is None:
            raise DefinitionError(
                f"label group {label.name!r} has features {label_features} but is not served "
                "online; create it with online_keys=<its primary keys>"
            )
        sources.append(
            _Source(
                label,
                tuple(label.online_keys),
                label_features,
                label_features,
                None,
                label.event_time,
            )
        )
    for join, group in zip(definition.joins, groups, strict=True):
        if not join.features:
            continue
        if group.online_keys is None or set(group.online_keys) != set(join.on):
            raise DefinitionError(
                f"feature group {group.name!r} cannot serve view {definition.name!r} online: it is "
                f"joined on {list(join.on)} but served by online keys {group.online_keys}; "
                f"create the group with online_keys={list(join.on)}"
            )
        columns = tuple(join.features)
        names = join.output_names()
        if join.max_age is not None and group.event_time is not None:
            columns = (*columns, group.event_time)
        sources.append(
            _Source(
                group,
                tuple(join.on),
                columns,
                names,
                join.max_age,
                group.event_time,
            )
        )
    return sources
