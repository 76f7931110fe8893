"""Feature view definitions: the label group, its point-in-time joins and transformations.

A definition is checked against the store's feature groups when it is created (unknown
groups or columns, joins that do not cover the joined group's primary keys, name
clashes, transformations on missing columns are refused) and stored as JSON. It pins the
definition version of every group it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from microfs.errors import DefinitionError
from microfs.feature_group import FeatureGroup
from microfs.schema import check_name
from microfs.transformations import Transform, parse_transforms, validate_transforms

if TYPE_CHECKING:
    from microfs.store import FeatureStore

__all__ = ["FeatureViewDefinition", "Join", "feature_schema"]

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
        return tuple(self.prefix + f for f in self.features)

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
    """The immutable definition of one feature view version, stored as JSON."""

    name: str
    version: int
    label_fg: str
    label_fg_version: int
    label_col: str
    joins: tuple[Join, ...]
    transforms: tuple[Transform, ...]
    description: str = ""

    @classmethod
    def build(
        cls,
        store: FeatureStore,
        *,
        name: str,
        label_fg: str,
        label_col: str,
        joins: Sequence[Mapping[str, Any]] = (),
        transforms: Sequence[Mapping[str, Any] | Transform] = (),
        version: int = 1,
        description: str = "",
    ) -> FeatureViewDefinition:
        """Check a user-given definition against the store's groups."""
        check_name(name, what="feature view name")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise DefinitionError(f"version must be a positive integer, got {version!r}")
        label = store.get_feature_group(label_fg)
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
        for number, spec in enumerate(joins):
            join = _build_join(store, label, spec, number)
            for out in join.output_names():
                if out in taken:
                    raise DefinitionError(
                        f"joined feature {out!r} from group {join.fg_name!r} clashes with "
                        "another column of the view; give the join a prefix, e.g. "
                        f"{{'fg_name': {join.fg_name!r}, ..., 'prefix': '{join.fg_name}_'}}"
                    )
                taken.add(out)
            parsed.append(join)
        definition = cls(
            name=name,
            version=version,
            label_fg=label.name,
            label_fg_version=label.version,
            label_col=label_col,
            joins=tuple(parsed),
            transforms=parse_transforms(transforms),
            description=description,
        )
        schema = feature_schema(store, definition)
        for transform in definition.transforms:
            if transform.column == label_col:
                raise DefinitionError(
                    f"transform {transform.type!r} names the label column {label_col!r}; "
                    "transforms apply to features only"
                )
        validate_transforms(definition.transforms, schema)
        return definition

    def feature_columns(self, store: FeatureStore) -> list[str]:
        """The view's untransformed feature columns, in ``X`` order."""
        return list(feature_schema(store, self))

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureViewDefinition:
        """Read the form written by :meth:`to_dict`."""
        return cls(
            name=data["name"],
            version=int(data["version"]),
            label_fg=data["label_fg"],
            label_fg_version=int(data["label_fg_version"]),
            label_col=data["label_col"],
            joins=tuple(Join.from_dict(j) for j in data["joins"]),
            transforms=parse_transforms(data["transforms"]),
            description=data.get("description", ""),
        )


def _build_join(
    store: FeatureStore, label: FeatureGroup, spec: Mapping[str, Any], number: int
) -> Join:
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
    group = store.get_feature_group(spec["fg_name"], spec.get("fg_version"))
    on_spec = spec["on"]
    on = (on_spec,) if isinstance(on_spec, str) else tuple(on_spec)
    if not on:
        raise DefinitionError(f"join with {group.name!r} has an empty 'on'; name its key columns")
    for column in on:
        if column not in label.schema:
            raise DefinitionError(
                f"join key {column!r} of the join with {group.name!r} is not a column of label "
                f"group {label.name!r}; its columns: {', '.join(label.schema.names())}"
            )
        if column not in group.schema:
            raise DefinitionError(
                f"join key {column!r} is not a column of feature group {group.name!r}; its "
                f"columns: {', '.join(group.schema.names())}"
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
        requested = spec["features"]
        features = (requested,) if isinstance(requested, str) else tuple(requested)
        for feature in features:
            if feature not in group.features:
                raise DefinitionError(
                    f"feature {feature!r} is not a feature of group {group.name!r}; its "
                    f"features: {', '.join(group.features)}"
                )
    prefix = spec.get("prefix") or ""
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
    return Join(
        fg_name=group.name,
        fg_version=group.version,
        on=on,
        features=features,
        prefix=prefix,
        max_age=max_age,
    )


def feature_schema(store: FeatureStore, definition: FeatureViewDefinition) -> dict[str, Any]:
    """The view's untransformed feature columns and their dtypes, in ``X`` order."""
    label = store.get_feature_group(definition.label_fg, definition.label_fg_version)
    schema: dict[str, Any] = {
        c: label.schema[c] for c in label.features if c != definition.label_col
    }
    for join in definition.joins:
        group = store.get_feature_group(join.fg_name, join.fg_version)
        for feature, out in zip(join.features, join.output_names(), strict=True):
            schema[out] = group.schema[feature]
    return schema


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)
