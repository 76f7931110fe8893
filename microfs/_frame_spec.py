"""What a feature view's training frame is, apart from the engine that computes it.

:class:`FrameSpec` names, for one frame, every rule of the point-in-time join that does not
depend on the engine: which table version of which group is read, the spine's columns, the
half-open window ``[start, end)`` of label time, each join's keys, event time, features,
output names and ``max_age``, the output's columns and the order of its rows. The Polars
planner (:mod:`microfs._frame_plan`) takes its column lists from here, and the Daft engine
(:mod:`microfs.daft_engine`) builds its whole plan from a :class:`FrameSpec`, so both
back-ends run one definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from microfs.errors import DefinitionError
from microfs.feature_group import FeatureGroup
from microfs.view_definition import FeatureViewDefinition

__all__ = ["FrameSpec", "JoinSpec", "frame_columns", "frame_spec"]


@dataclass(frozen=True)
class JoinSpec:
    """How one group joins onto the spine, as of each label's event time.

    Attributes:
        on: Key columns, named alike in the spine and the group; a null key matches nothing.
        event_time: The group's event time, or None for a static group (joined on keys).
        features: The group's columns brought in.
        output_names: Their names in the frame (the join's prefix in front), in order.
        max_age: A match older than ``t - max_age`` gives nulls; exactly ``max_age`` old
            still counts. None keeps every match.
        prefix: Put in front of each feature's name to give its output name.
    """

    on: tuple[str, ...]
    event_time: str | None
    features: tuple[str, ...]
    output_names: tuple[str, ...]
    max_age: timedelta | None
    prefix: str = ""


@dataclass(frozen=True)
class FrameSpec:
    """One training frame: the spine, the joins, the output columns and their order.

    A label row at ``t`` (``start <= t < end``) gets, from each timed join, the features of
    the row with its keys and the greatest event time ``<= t``; feature rows at or after
    ``end`` can therefore never match. The rows come ordered by ``order`` ascending, nulls
    first, ties kept in the spine's order.

    Attributes:
        label: The label group (the spine).
        label_version: Its pinned Delta table version (None: the latest).
        time: The label group's event time.
        spine_columns: The spine's columns, in order.
        joins: The joins, in output order.
        groups: The joined groups, one per join.
        group_versions: Their pinned Delta table versions (None: the latest).
        columns: The frame's columns, in order.
        order: The columns the rows are sorted by: event time, then the label keys.
        start: First label time included (UTC), or None.
        end: Label times are earlier than this (UTC), or None.
    """

    label: FeatureGroup
    label_version: int | None
    time: str
    spine_columns: tuple[str, ...]
    joins: tuple[JoinSpec, ...]
    groups: tuple[FeatureGroup, ...]
    group_versions: tuple[int | None, ...]
    columns: tuple[str, ...]
    order: tuple[str, ...]
    start: datetime | None
    end: datetime | None


def frame_columns(label: FeatureGroup, label_col: str, feature_columns: Sequence[str]) -> list[str]:
    """The frame's columns: label keys, event time, the features in ``X`` order, the label."""
    time = label.event_time
    return [
        *label.primary_keys,
        *([time] if time is not None else []),
        *feature_columns,
        label_col,
    ]


def frame_spec(
    definition: FeatureViewDefinition,
    label: FeatureGroup,
    groups: Sequence[FeatureGroup],
    feature_columns: Sequence[str],
    *,
    start: datetime | None,
    end: datetime | None,
    table_versions: Mapping[str, int] | None,
) -> FrameSpec:
    """The spec of the frame for label times in ``[start, end)`` (bounds already in UTC)."""
    if label.event_time is None:  # refused when a view is created
        raise DefinitionError(f"label group {label.name!r} has no event time")
    versions = table_versions or {}
    label_col = definition.label_col
    return FrameSpec(
        label=label,
        label_version=versions.get(label.name),
        time=label.event_time,
        spine_columns=definition.spine_columns(label.definition),
        joins=tuple(
            JoinSpec(
                on=join.on,
                event_time=group.event_time,
                features=join.features,
                output_names=join.output_names(),
                max_age=join.max_age,
                prefix=join.prefix,
            )
            for join, group in zip(definition.joins, groups, strict=True)
        ),
        groups=tuple(groups),
        group_versions=tuple(versions.get(group.name) for group in groups),
        columns=tuple(frame_columns(label, label_col, feature_columns)),
        order=(label.event_time, *label.primary_keys),
        start=start,
        end=end,
    )
