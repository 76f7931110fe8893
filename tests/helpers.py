"""What the tests share: the seed's groups and view, row builders and small comparisons.

Fixtures live in ``conftest.py``; hypothesis strategies in ``strategies.py``.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from microfs import FeatureGroup, FeatureStore, FeatureView
from microfs.pit import JoinPlan
from microfs.transformations import fit_transforms
from microfs.view_definition import PinnedGroup, TrainingDatasetRecord
from tests.strategies import PitWorld

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""A fixed, time-zone aware instant the tests count event times from."""

ACTIVITY_KEYS = ["user_id", "item_id"]
ACTIVITY_SCHEMA = {
    "user_id": "int64",
    "item_id": "int64",
    "timestamp": "datetime64[ns, utc]",
    "duration_sec": "float64",
    "conversion": "int64",
}
"""The seed README's ``user_activity`` schema, spelled as there."""


SEED_VIEW = "recommendation_model_v1"
SEED_JOINS: list[dict[str, Any]] = [
    {"fg_name": "user_profile", "on": ["user_id"]},
    {"fg_name": "item_feature", "on": ["item_id"]},
]
SEED_TRANSFORMS: list[dict[str, Any]] = [
    {"type": "scale", "column": "duration_sec"},
    {"type": "one_hot_encode", "column": "user_level"},
]
"""The seed README's view: its joins and transformations, as written there."""


def seed_view(
    fs: FeatureStore,
    *,
    name: str = SEED_VIEW,
    joins: Sequence[Mapping[str, Any]] = SEED_JOINS,
    transforms: Sequence[Mapping[str, Any]] = SEED_TRANSFORMS,
) -> FeatureView:
    """Create the seed README's view over the store's seed groups (options may differ)."""
    return fs.create_feature_view(
        name=name,
        label_fg="user_activity",
        label_col="conversion",
        joins=joins,
        transforms=transforms,
    )


def served_group(
    fs: FeatureStore,
    name: str,
    keys: list[str],
    schema: Mapping[str, Any],
    *,
    event_time: str | None = "timestamp",
) -> FeatureGroup:
    """Create a feature group keyed and served online on ``keys`` (timed unless None)."""
    return fs.create_feature_group(
        name=name, primary_keys=keys, event_time=event_time, schema=schema, online_keys=keys
    )


def activity_group(lake: Path) -> FeatureGroup:
    """A new lake at ``lake`` with the seed's ``user_activity`` group, empty."""
    return FeatureStore(lake).create_feature_group(
        name="user_activity",
        primary_keys=ACTIVITY_KEYS,
        event_time="timestamp",
        schema=ACTIVITY_SCHEMA,
    )


def activity_rows(
    users: list[int],
    hours: list[float],
    *,
    items: list[int] | None = None,
    conversion: int = 0,
) -> pl.DataFrame:
    """Activity rows for ``users[i]`` at ``T0 + hours[i]`` (item 100 unless ``items`` given).

    ``duration_sec`` is ``10 * user + hour`` so that rows are easy to tell apart.
    """
    items = items if items is not None else [100] * len(users)
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": [T0 + timedelta(hours=h) for h in hours],
            "duration_sec": [10.0 * u + h for u, h in zip(users, hours, strict=True)],
            "conversion": [conversion] * len(users),
        },
        schema={
            "user_id": pl.Int64,
            "item_id": pl.Int64,
            "timestamp": pl.Datetime("us", "UTC"),
            "duration_sec": pl.Float64,
            "conversion": pl.Int64,
        },
    )


def sorted_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by all its columns, for order-insensitive comparisons."""
    return frame.sort(frame.columns, nulls_last=True)


def lake_files(root: Path) -> list[str]:
    """Every file and folder under ``root``, relative and sorted (a snapshot of the tree)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def training_dataset_record(*pins: tuple[str, int, int]) -> TrainingDatasetRecord:
    """A training dataset record without a split that pins ``(group, version, table_version)``."""
    return TrainingDatasetRecord(
        feature_groups=tuple(PinnedGroup(*pin) for pin in pins),
        start=None,
        end=None,
        test_size=None,
        split="time",
        seed=0,
        params=fit_transforms(pl.LazyFrame(), ()),
        params_number=1,
        rows_train=0,
        rows_test=None,
        created_at=T0,
    )


# --- the served seed world: three groups served online, a view over them ---------

TIME = pl.Datetime("us", "UTC")
TIME = pl.Datetime("us", "UTC")

ACTIVITY = {
    "user_id": pl.Int64,
    "item_id": pl.Int64,
    "timestamp": TIME,
    "duration_sec": pl.Float64,
    "conversion": pl.Int64,
}
PROFILE = {"user_id": pl.Int64, "timestamp": TIME, "user_level": pl.String, "age": pl.Int64}
ITEM = {"item_id": pl.Int64, "timestamp": TIME, "price": pl.Float64, "category": pl.String}
SERVED_TRANSFORMS = [
    {"type": "scale", "column": "duration_sec"},
    {"type": "one_hot_encode", "column": "user_level"},
    {"type": "impute", "column": "age", "strategy": "mean"},
    {"type": "min_max_scale", "column": "price"},
    {"type": "label_encode", "column": "category"},
]


def at(minute: int) -> datetime:
    """``T0`` plus ``minute`` minutes."""
    return T0 + timedelta(minutes=minute)


def create_served_groups(fs: FeatureStore) -> None:
    """The seed's three groups, each served online on its primary keys."""
    served_group(fs, "user_activity", ["user_id", "item_id"], ACTIVITY)
    served_group(fs, "user_profile", ["user_id"], PROFILE)
    served_group(fs, "item_feature", ["item_id"], ITEM)


def served_view(fs: FeatureStore) -> FeatureView:
    """The seed's view over :func:`create_served_groups`, with more transformations."""
    return seed_view(fs, transforms=SERVED_TRANSFORMS)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal type, floats within 1e-12, None only to None."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    return bool(a == b) and type(a) is type(b)


# --- point-in-time worlds as plans ---------------------------------------------------


def pit_plans(world: PitWorld, *, compiled: bool = False) -> tuple[pl.LazyFrame, list[JoinPlan]]:
    """A drawn world's labels and one JoinPlan per group, for point_in_time_join."""
    labels = pl.DataFrame(world.label_rows, schema=world.label_schema, orient="row")
    plans = [
        JoinPlan(
            frame=pl.DataFrame(g.rows, schema=g.schema, orient="row").lazy(),
            on=g.on,
            event_time=g.event_time,
            features=g.features,
            prefix=g.prefix,
            max_age=g.max_age,
            sorted_by_time=g.sorted_by_time,
            compiled=compiled,
        )
        for g in world.groups
    ]
    return labels.lazy(), plans


# --- the command line -----------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """What one command-line run printed and returned."""

    returncode: int
    stdout: str
    stderr: str


def assert_one_error_line(result: subprocess.CompletedProcess[str] | Ran, *fragments: str) -> None:
    """A user error: exit 1, nothing on stdout, one `microfs: error:` line naming ``fragments``."""
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("microfs: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
