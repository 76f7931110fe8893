"""Feature group definitions: name, keys, event time, schema, online keys, expectations.

A definition is checked when it is created (a valid name, key and event-time columns in
the schema, an event time of type datetime, online keys among the columns, expectations
that fit their columns) and stored as JSON with canonical type names; it never changes
once a version exists. Expectations, the validation policy and ``statistics=False`` are
written only when set, so definitions stored before they existed read back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from microfs.arguments import column_names, mapping
from microfs.errors import DefinitionError
from microfs.expectations import Expectation, Policy, check_policy, parse_expectations
from microfs.schema import check_name, check_version, normalize_schema, polars_dtype

__all__ = ["FeatureGroupDefinition"]


@dataclass(frozen=True)
class FeatureGroupDefinition:
    """The immutable definition of one feature group version, stored as JSON.

    >>> d = FeatureGroupDefinition.build(
    ...     name="user_profile", primary_keys=["user_id"], event_time="timestamp",
    ...     schema={"user_id": "int64", "timestamp": "datetime64[ns, utc]", "age": "int64"})
    >>> d.features
    ('age',)
    """

    name: str
    version: int
    primary_keys: tuple[str, ...]
    event_time: str | None
    schema: Mapping[str, str]
    online_keys: tuple[str, ...] | None = None
    description: str = ""
    feature_descriptions: Mapping[str, str] = field(default_factory=dict)
    expectations: tuple[Expectation, ...] = ()
    validation: Policy = "strict"
    statistics: bool = True
    appended: tuple[str, ...] = ()
    """Columns added after creation by ``append_features`` (also in ``schema``, at its end).

    They are recorded beside the definition file, which never changes."""
    appended_expectations: tuple[str, ...] = ()
    """Names of the expectations added with those columns (also in ``expectations``)."""

    @classmethod
    def build(
        cls,
        *,
        name: str,
        primary_keys: Sequence[str],
        schema: Mapping[str, object],
        event_time: str | None = None,
        version: int = 1,
        online_keys: Sequence[str] | None = None,
        description: str = "",
        feature_descriptions: Mapping[str, str] | None = None,
        expectations: Sequence[Mapping[str, Any] | Expectation] | None = None,
        validation: Policy = "strict",
        statistics: bool = True,
    ) -> FeatureGroupDefinition:
        """Check a user-given definition and return it with canonical types."""
        check_name(name, what="feature group name")
        check_version(version)
        canonical = normalize_schema(schema)
        if event_time is not None and not isinstance(event_time, str):
            raise DefinitionError(f"event_time must be a column name or None, got {event_time!r}")
        keys = column_names(primary_keys, what="primary_keys")
        if not keys:
            raise DefinitionError(
                f"feature group {name!r} needs at least one primary key column, e.g. "
                "primary_keys=['user_id']"
            )
        _check_columns(name, "primary key", keys, canonical)
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"primary_keys {list(keys)} name a column twice")
        if event_time is not None:
            _check_columns(name, "event time", [event_time], canonical)
            if canonical[event_time] != "datetime":
                raise DefinitionError(
                    f"event time column {event_time!r} has type {canonical[event_time]}; "
                    "give it the type 'datetime64[ns, utc]'"
                )
            if event_time in keys:
                raise DefinitionError(
                    f"event time column {event_time!r} is also a primary key; the upsert key "
                    "is (primary keys, event time) already, so list it only as event_time"
                )
        online: tuple[str, ...] | None = None
        if online_keys is not None:
            online = column_names(online_keys, what="online_keys")
            _check_columns(name, "online key", online, canonical)
            if not online:
                raise DefinitionError(
                    "online_keys is empty; give the key columns to serve by, or None"
                )
        if not isinstance(description, str):
            raise DefinitionError(f"description must be a string, got {description!r}")
        descriptions = dict(
            mapping(
                {} if feature_descriptions is None else feature_descriptions,
                what="feature_descriptions",
                example="{'age': 'years since birth'}",
            )
        )
        if not all(isinstance(text, str) for text in descriptions.values()):
            raise DefinitionError(
                f"feature_descriptions must map column names to strings, got {descriptions!r}"
            )
        _check_columns(name, "described feature", list(descriptions), canonical)
        if not isinstance(statistics, bool):
            raise DefinitionError(f"statistics={statistics!r} must be True or False")
        return cls(
            name=name,
            version=version,
            primary_keys=keys,
            event_time=event_time,
            schema=canonical,
            online_keys=online,
            description=description,
            feature_descriptions=descriptions,
            expectations=parse_expectations(expectations, canonical, group=name),
            validation=check_policy(validation, group=name),
            statistics=statistics,
        )

    def with_appended(
        self,
        added: Mapping[str, str],
        expectations: Sequence[Mapping[str, Any] | Expectation] = (),
    ) -> FeatureGroupDefinition:
        """This definition with columns added by ``append_features`` (canonical types).

        ``expectations`` are expectations of added columns: each must name a column added
        by ``append_features`` (this call's or an earlier one's; not a
        ``row_count_between``), under a name the group does not use yet. A column already
        present keeps its first type.

        Raises:
            DefinitionError: an expectation that does not parse or names another column.
        """
        new = {c: t for c, t in added.items() if c not in self.schema}
        schema = {**self.schema, **new}
        have = {e.name for e in self.expectations}
        parsed = parse_expectations(expectations, schema, group=self.name)
        appended = (*self.appended, *new)
        for expectation in parsed:
            if expectation.column not in appended:
                raise DefinitionError(
                    f"expectation {expectation.to_dict()!r} given to append_features of feature "
                    f"group {self.name!r} must name a column it adds ({', '.join(added)}); "
                    "the other columns' expectations are fixed by the group's definition"
                )
            if expectation.name in have:
                raise DefinitionError(
                    f"feature group {self.name!r} has an expectation named "
                    f"{expectation.name!r} already; give the new one another 'name'"
                )
        if not new and not parsed:
            return self
        return replace(
            self,
            schema=schema,
            appended=appended,
            expectations=(*self.expectations, *parsed),
            appended_expectations=(*self.appended_expectations, *(e.name for e in parsed)),
        )

    def options(self) -> dict[str, Any]:
        """The options a caller gives when creating the group (for comparing definitions)."""
        return {
            "primary_keys": list(self.primary_keys),
            "event_time": self.event_time,
            "schema": {c: t for c, t in self.schema.items() if c not in self.appended},
            "online_keys": list(self.online_keys) if self.online_keys is not None else None,
            "description": self.description,
            "feature_descriptions": dict(self.feature_descriptions),
            "expectations": [
                e.to_dict() for e in self.expectations if e.name not in self.appended_expectations
            ],
            "validation": self.validation,
            "statistics": self.statistics,
        }

    @property
    def features(self) -> tuple[str, ...]:
        """Columns that are neither primary keys nor the event time, in schema order."""
        skip = {*self.primary_keys, self.event_time}
        return tuple(c for c in self.schema if c not in skip)

    @property
    def upsert_keys(self) -> tuple[str, ...]:
        """The columns that identify a row: primary keys and the event time."""
        return (*self.primary_keys, *([self.event_time] if self.event_time else []))

    def polars_schema(self) -> pl.Schema:
        """The stored Polars schema."""
        return pl.Schema({c: polars_dtype(t) for c, t in self.schema.items()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        quality: dict[str, Any] = {}
        if self.expectations:
            quality["expectations"] = [e.to_dict() for e in self.expectations]
        if self.expectations or self.validation != "strict":
            quality["validation"] = self.validation
        if not self.statistics:
            quality["statistics"] = False
        return {
            "name": self.name,
            "version": self.version,
            "primary_keys": list(self.primary_keys),
            "event_time": self.event_time,
            "schema": dict(self.schema),
            "column_order": list(self.schema),
            "online_keys": list(self.online_keys) if self.online_keys is not None else None,
            "description": self.description,
            "feature_descriptions": dict(self.feature_descriptions),
            **({"appended": list(self.appended)} if self.appended else {}),
            **(
                {"appended_expectations": list(self.appended_expectations)}
                if self.appended_expectations
                else {}
            ),
            **quality,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureGroupDefinition:
        """Read the form written by :meth:`to_dict`."""
        schema = data["schema"]
        order = data.get("column_order") or list(schema)
        online = data.get("online_keys")
        ordered = {c: schema[c] for c in order}
        return cls(
            name=data["name"],
            version=int(data["version"]),
            primary_keys=tuple(data["primary_keys"]),
            event_time=data.get("event_time"),
            schema=ordered,
            online_keys=tuple(online) if online is not None else None,
            description=data.get("description", ""),
            feature_descriptions=dict(data.get("feature_descriptions") or {}),
            appended=tuple(data.get("appended") or ()),
            appended_expectations=tuple(data.get("appended_expectations") or ()),
            expectations=parse_expectations(
                data.get("expectations") or (), ordered, group=data["name"]
            ),
            validation=check_policy(data.get("validation", "strict"), group=data["name"]),
            statistics=bool(data.get("statistics", True)),
        )


def _check_columns(
    group: str, what: str, columns: Sequence[str], schema: Mapping[str, str]
) -> None:
    for column in columns:
        if column not in schema:
            raise DefinitionError(
                f"{what} column {column!r} of feature group {group!r} is not in its schema; "
                f"schema columns: {', '.join(schema)}"
            )
