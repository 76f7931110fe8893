"""Feature view definitions: the label group, its point-in-time joins and transformations.

A definition is checked when it is created against the definitions of the groups it
reads, found through a :data:`GroupLookup` (unknown groups or columns, joins that do not
cover the joined group's primary keys, name clashes, transformations on missing columns
are refused), and stored as JSON. It pins the definition version of every group it reads.
This module is the one place that says which columns a view's features are
(:meth:`FeatureViewDefinition.label_features`, :meth:`FeatureViewDefinition.feature_schema`,
:func:`output_names`), and what a training dataset pins (:class:`TrainingDatasetRecord`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import polars as pl

from microfs.arguments import column_names
from microfs.errors import DefinitionError
from microfs.group_definition import FeatureGroupDefinition
from microfs.known import Timeline, check_lag, check_timeline
from microfs.schema import aware_utc, check_name, check_version
from microfs.transformations import FittedParams, Transform, parse_transforms, validate_transforms

__all__ = [
    "FeatureViewDefinition",
    "GroupLookup",
    "Join",
    "PinnedGroup",
    "SplitMode",
    "TrainingDatasetRecord",
    "output_names",
]

SplitMode = Literal["time", "random"]

GroupLookup = Callable[[str, "int | None"], FeatureGroupDefinition]
"""Finds a feature group's definition by name and definition version (None: the latest)."""

_JOIN_KEYS = {"fg_name", "on", "fg_version", "features", "prefix", "max_age"}


@dataclass(frozen=True)
class Join:
    """One feature group joined onto the label spine.

    Attributes:
        fg_name: the joined group's name.
        fg_version: its definition version (the latest at view creation when not given).
        on: key columns, named alike in the label group and the joined group; they must
            cover the joined group's primary keys.
        features: the joined features (all the group's features when not given).
        prefix: put in front of each joined feature's name.
        max_age: matches older than ``t - max_age`` are dropped (exactly ``max_age``
            old still counts).
    """

    fg_name: str
    fg_version: int
    on: tuple[str, ...]
    features: tuple[str, ...]
    prefix: str = ""
    max_age: timedelta | None = None

    def output_names(self) -> tuple[str, ...]:
        """The joined features' names in the view."""
        return output_names(self.prefix, self.features)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (``max_age`` as whole microseconds)."""
        return {
            "fg_name": self.fg_name,
            "fg_version": self.fg_version,
            "on": list(self.on),
            "features": list(self.features),
            "prefix": self.prefix,
            "max_age_us": None if self.max_age is None else _micros(self.max_age),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Join:
        """Read the form written by :meth:`to_dict`."""
        max_age = data.get("max_age_us")
        return cls(
            fg_name=data["fg_name"],
            fg_version=int(data["fg_version"]),
            on=tuple(data["on"]),
            features=tuple(data["features"]),
            prefix=data.get("prefix", ""),
            max_age=None if max_age is None else timedelta(microseconds=int(max_age)),
        )


@dataclass(frozen=True)
class FeatureViewDefinition:
    """The immutable definition of one feature view version, stored as JSON.

    ``timeline`` and ``lag`` say which rows the joins see (see :mod:`microfs.known`); they
    are written to the JSON only for ``timeline="known"``, so event-time views keep the
    form they always had.
    """

    name: str
    version: int
    label_fg: str
    label_fg_version: int
    label_col: str
    joins: tuple[Join, ...]
    transforms: tuple[Transform, ...]
    description: str = ""
    selected_label_features: tuple[str, ...] | None = None
    """The label group's features in the view, stored as ``label_features``; None for a
    definition written before views stored them (see :meth:`label_features`)."""
    timeline: Timeline = "event"
    lag: timedelta = timedelta(0)

    @classmethod
    def build(
        cls,
        groups: GroupLookup,
        *,
        name: str,
        label_fg: str,
        label_col: str,
        joins: Sequence[Mapping[str, Any]] = (),
        transforms: Sequence[Mapping[str, Any] | Transform] = (),
        version: int = 1,
        description: str = "",
        label_features: Sequence[str] | None = None,
        timeline: Timeline = "event",
        lag: timedelta = timedelta(0),
    ) -> FeatureViewDefinition:
        """Check a user-given definition against the groups that ``groups`` finds.

        ``label_features`` selects the label group's features; by default they are its
        columns that are not primary keys, event time, the label, or the ``on`` column of
        any join (a foreign key is a key, not a feature).

        A view whose joined group has ``online_keys`` that do not match the join's ``on``
        could never be served online through that join, so it is refused here, naming the
        ``online_keys`` to give the group. Groups without ``online_keys`` make an
        offline-only view, which is allowed (vector calls then say what is missing).
        """
        check_name(name, what="feature view name")
        check_version(version)
        if not isinstance(label_col, str):
            raise DefinitionError(f"label_col must be a column name, got {label_col!r}")
        timeline = check_timeline(timeline)
        lag = check_lag(lag)
        if timeline == "event" and lag != timedelta(0):
            raise DefinitionError(
                f"lag={lag!r} applies to timeline='known' only; give timeline='known' or drop lag"
            )
        label = groups(label_fg, None)
        if label.event_time is None:
            raise DefinitionError(
                f"label group {label_fg!r} has no event time; the label group is the spine of "
                "point-in-time joins, so create it with event_time=<its timestamp column>"
            )
        if label_col not in label.features:
            raise DefinitionError(
                f"label column {label_col!r} is not a feature of label group {label_fg!r}; "
                f"its features are: {', '.join(label.features) or '(none)'}"
            )
        taken = {*label.primary_keys, label.event_time, *label.features}
        parsed: list[Join] = []
        joined: list[FeatureGroupDefinition] = []
        if isinstance(joins, (str, bytes, Mapping)) or not isinstance(joins, Sequence):
            raise DefinitionError(
                f"joins must be a list of joins like [{{'fg_name': 'user_profile', 'on': "
                f"['user_id']}}] (or [] for none), got {joins!r}"
            )
        if not isinstance(description, str):
            raise DefinitionError(f"description must be a string, got {description!r}")
        for number, spec in enumerate(joins):
            join, group = _build_join(groups, label, spec, number)
            joined.append(group)
            for out in join.output_names():
                if out in taken:
                    raise DefinitionError(
                        f"joined feature {out!r} from group {join.fg_name!r} clashes with "
                        "another column of the view; give the join a prefix, e.g. "
                        f"{{'fg_name': {join.fg_name!r}, ..., 'prefix': '{join.fg_name}_'}}"
                    )
                taken.add(out)
            parsed.append(join)
        _check_servable(name, label, parsed, joined)
        definition = cls(
            name=name,
            version=version,
            label_fg=label.name,
            label_fg_version=label.version,
            label_col=label_col,
            joins=tuple(parsed),
            transforms=parse_transforms(transforms),
            description=description,
            selected_label_features=_select_label_features(
                label, label_col, parsed, label_features
            ),
            timeline=timeline,
            lag=lag,
        )
        schema = definition.feature_schema(label, joined)
        for transform in definition.transforms:
            if transform.column == label_col:
                raise DefinitionError(
                    f"transform {transform.type!r} names the label column {label_col!r}; "
                    "transforms apply to features only"
                )
        validate_transforms(definition.transforms, schema)
        return definition

    def label_features(self, label: FeatureGroupDefinition) -> tuple[str, ...]:
        """The label group's columns that are features of the view.

        Those the definition stores (chosen when the view was created: by default the
        label group's columns that are not primary keys, event time, label or a join's
        ``on`` column). A definition written before views stored them keeps the rule it
        was made with, so an existing lake's ``X`` does not change: every column that is
        not a primary key, event time or the label (join ``on`` columns included), less
        columns appended to the group later.
        """
        if self.selected_label_features is not None:
            return self.selected_label_features
        return tuple(c for c in label.features if c != self.label_col and c not in label.appended)

    def spine_keys(self, label: FeatureGroupDefinition) -> tuple[str, ...]:
        """The joins' ``on`` columns of the label group that are not already in the spine.

        The spine reads them for the joins; they are keys, not features, so they are not
        carried into the frame.
        """
        taken = {*label.primary_keys, label.event_time, *self.label_features(label)}
        taken.add(self.label_col)
        return tuple(dict.fromkeys(c for j in self.joins for c in j.on if c not in taken))

    def spine_columns(self, label: FeatureGroupDefinition) -> tuple[str, ...]:
        """The label rows' columns a frame reads: keys, event time, join keys, features, label."""
        time = (label.event_time,) if label.event_time is not None else ()
        return (
            *label.primary_keys,
            *time,
            *self.spine_keys(label),
            *self.label_features(label),
            self.label_col,
        )

    def feature_schema(
        self, label: FeatureGroupDefinition, joined: Sequence[FeatureGroupDefinition]
    ) -> dict[str, pl.DataType]:
        """The view's untransformed feature columns and their dtypes, in ``X`` order.

        Args:
            label: The label group's definition.
            joined: The joined groups' definitions, one per join, in join order.
        """
        label_types = label.polars_schema()
        schema: dict[str, pl.DataType] = {c: label_types[c] for c in self.label_features(label)}
        for join, group in zip(self.joins, joined, strict=True):
            types = group.polars_schema()
            for feature, out in zip(join.features, join.output_names(), strict=True):
                schema[out] = types[feature]
        return schema

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "name": self.name,
            "version": self.version,
            "label_fg": self.label_fg,
            "label_fg_version": self.label_fg_version,
            "label_col": self.label_col,
            "joins": [j.to_dict() for j in self.joins],
            "transforms": [t.to_dict() for t in self.transforms],
            "description": self.description,
            **(
                {"label_features": list(self.selected_label_features)}
                if self.selected_label_features is not None
                else {}
            ),
            **(
                {"timeline": self.timeline, "lag_us": _micros(self.lag)}
                if self.timeline != "event"
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureViewDefinition:
        """Read the form written by :meth:`to_dict`."""
        return cls(
            timeline=check_timeline(data.get("timeline", "event")),
            lag=timedelta(microseconds=int(data.get("lag_us", 0))),
            name=data["name"],
            version=int(data["version"]),
            label_fg=data["label_fg"],
            label_fg_version=int(data["label_fg_version"]),
            label_col=data["label_col"],
            joins=tuple(Join.from_dict(j) for j in data["joins"]),
            transforms=parse_transforms(data["transforms"]),
            description=data.get("description", ""),
            selected_label_features=(
                None if data.get("label_features") is None else tuple(data["label_features"])
            ),
        )

    def options(self) -> dict[str, Any]:
        """The options a caller gives when creating the view (for comparing definitions)."""
        data = self.to_dict()
        return {k: v for k, v in data.items() if k not in ("name", "version")}


def _build_join(
    groups: GroupLookup, label: FeatureGroupDefinition, spec: Mapping[str, Any], number: int
) -> tuple[Join, FeatureGroupDefinition]:
    if not isinstance(spec, Mapping):
        raise DefinitionError(
            f"join #{number} must be a mapping like {{'fg_name': 'user_profile', 'on': "
            f"['user_id']}}, got {spec!r}"
        )
    unknown = set(spec) - _JOIN_KEYS
    if unknown:
        raise DefinitionError(
            f"join #{number} has unknown option(s) {sorted(unknown)}; options are "
            f"{sorted(_JOIN_KEYS)}"
        )
    if "fg_name" not in spec or "on" not in spec:
        raise DefinitionError(f"join #{number} needs 'fg_name' and 'on', got {dict(spec)!r}")
    group = groups(spec["fg_name"], spec.get("fg_version"))
    on = column_names(spec["on"], what=f"'on' of the join with {group.name!r}")
    if not on:
        raise DefinitionError(f"join with {group.name!r} has an empty 'on'; name its key columns")
    for column in on:
        if column not in label.schema:
            raise DefinitionError(
                f"join key {column!r} of the join with {group.name!r} is not a column of label "
                f"group {label.name!r}; its columns: {', '.join(label.schema)}"
            )
        if column not in group.schema:
            raise DefinitionError(
                f"join key {column!r} is not a column of feature group {group.name!r}; its "
                f"columns: {', '.join(group.schema)}"
            )
        if label.schema[column] != group.schema[column]:
            raise DefinitionError(
                f"join key {column!r} is {label.schema[column]} in {label.name!r} but "
                f"{group.schema[column]} in {group.name!r}; give both groups the same key type"
            )
    uncovered = [k for k in group.primary_keys if k not in on]
    if uncovered:
        raise DefinitionError(
            f"the join with {group.name!r} on {list(on)} does not cover its primary key(s) "
            f"{uncovered}; join on {group.primary_keys} so that each label matches one row"
        )
    if spec.get("features") is None:
        features = tuple(c for c in group.features if c not in on)
    else:
        features = column_names(
            spec["features"], what=f"'features' of the join with {group.name!r}", example="['age']"
        )
        for feature in features:
            if feature not in group.features:
                raise DefinitionError(
                    f"feature {feature!r} is not a feature of group {group.name!r}; its "
                    f"features: {', '.join(group.features)}"
                )
    prefix = "" if spec.get("prefix") is None else spec["prefix"]
    if not isinstance(prefix, str):
        raise DefinitionError(f"prefix of the join with {group.name!r} must be a string")
    max_age = spec.get("max_age")
    if max_age is not None:
        if not isinstance(max_age, timedelta) or max_age < timedelta(0):
            raise DefinitionError(
                f"max_age of the join with {group.name!r} must be a non-negative "
                f"datetime.timedelta, got {max_age!r}"
            )
        if group.event_time is None:
            raise DefinitionError(
                f"max_age is given for {group.name!r}, which has no event time; drop max_age"
            )
    join = Join(
        fg_name=group.name,
        fg_version=group.version,
        on=on,
        features=features,
        prefix=prefix,
        max_age=max_age,
    )
    return join, group


def _select_label_features(
    label: FeatureGroupDefinition,
    label_col: str,
    joins: Sequence[Join],
    requested: Sequence[str] | None,
) -> tuple[str, ...]:
    if requested is None:
        keys = {c for join in joins for c in join.on}
        return tuple(c for c in label.features if c != label_col and c not in keys)
    if isinstance(requested, str):
        requested = [requested]
    chosen = tuple(requested)
    allowed = [c for c in label.features if c != label_col]
    for column in chosen:
        if column not in allowed:
            raise DefinitionError(
                f"label_features names {column!r}, which is not a feature of label group "
                f"{label.name!r} (primary keys, event time and the label are not); choose "
                f"from: {', '.join(allowed) or '(none)'}"
            )
    if len(set(chosen)) != len(chosen):
        raise DefinitionError(f"label_features {list(chosen)} names a column twice")
    return chosen


def _check_servable(
    view: str,
    label: FeatureGroupDefinition,
    joins: Sequence[Join],
    groups: Sequence[FeatureGroupDefinition],
) -> None:
    """Refuse joins that could never be served online: online keys that differ from ``on``."""
    problems = [
        f"feature group {group.name!r} is joined on {list(join.on)} but served by online_keys "
        f"{list(group.online_keys)}: create a version of it with online_keys={list(join.on)}"
        for join, group in zip(joins, groups, strict=True)
        if join.features
        and group.online_keys is not None
        and set(group.online_keys) != set(join.on)
    ]
    if problems:
        raise DefinitionError(
            f"feature view {view!r} could not be served online: {'; '.join(problems)} (or "
            "join it on its online keys); a group without online_keys makes the view "
            "offline-only instead"
        )


def output_names(prefix: str, features: Sequence[str]) -> tuple[str, ...]:
    """The names joined features take in a view: each feature with the join's prefix.

    >>> output_names("now_", ["price", "stock"])
    ('now_price', 'now_stock')
    """
    return tuple(prefix + feature for feature in features)


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


@dataclass(frozen=True)
class PinnedGroup:
    """A feature group version and the Delta table version a training dataset read."""

    name: str
    version: int
    table_version: int


@dataclass(frozen=True)
class TrainingDatasetRecord:
    """What a training dataset pins, stored as one immutable JSON record beside its view.

    Attributes:
        feature_groups: Every group read, with its table version (the label group first).
        start: First label event time included, or None.
        end: Label event times are earlier than this, or None.
        test_size: The test share, or None without a split.
        split: How the test rows were chosen.
        seed: The seed of a random split.
        params: The transformation parameters fitted on the train part.
        params_number: The number of the view's parameter record that holds them.
        rows_train: Rows in the train part.
        rows_test: Rows in the test part, or None without a split.
        created_at: When the record was written.
    """

    feature_groups: tuple[PinnedGroup, ...]
    start: datetime | None
    end: datetime | None
    test_size: float | None
    split: SplitMode
    seed: int
    params: FittedParams
    params_number: int
    rows_train: int
    rows_test: int | None
    created_at: datetime

    @property
    def table_versions(self) -> dict[str, int]:
        """The pinned Delta table version per group name."""
        return {g.name: g.table_version for g in self.feature_groups}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (times as ISO 8601 text)."""
        return {
            "feature_groups": [
                {"name": g.name, "version": g.version, "table_version": g.table_version}
                for g in self.feature_groups
            ],
            "start": _iso(self.start),
            "end": _iso(self.end),
            "test_size": self.test_size,
            "split": self.split,
            "seed": self.seed,
            "params": self.params.to_dict(),
            "params_number": self.params_number,
            "rows": {"train": self.rows_train, "test": self.rows_test},
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingDatasetRecord:
        """Read the form written by :meth:`to_dict`."""
        rows = data.get("rows") or {}
        return cls(
            feature_groups=tuple(
                PinnedGroup(str(g["name"]), int(g["version"]), int(g["table_version"]))
                for g in data["feature_groups"]
            ),
            start=_parse_iso(data.get("start")),
            end=_parse_iso(data.get("end")),
            test_size=data.get("test_size"),
            split=data["split"],
            seed=int(data["seed"]),
            params=FittedParams.from_dict(data["params"]),
            params_number=int(data["params_number"]),
            rows_train=int(rows.get("train", 0)),
            rows_test=None if rows.get("test") is None else int(rows["test"]),
            created_at=datetime.fromisoformat(data["created_at"]),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else aware_utc(value, what="time").isoformat()


def _parse_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
