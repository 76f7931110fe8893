"""Shared fixtures: a feature store on a temporary lake, and the seed's activity group."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from microfs import FeatureGroup, FeatureStore
from microfs.transformations import fit_transforms
from microfs.view_definition import PinnedGroup, TrainingDatasetRecord

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


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    """An empty feature store whose lake is ``tmp_path / "lake"``."""
    return FeatureStore(tmp_path / "lake")


@pytest.fixture
def activity(store: FeatureStore) -> FeatureGroup:
    """The seed's ``user_activity`` group (keys user_id, item_id; event time timestamp)."""
    return store.create_feature_group(
        name="user_activity",
        primary_keys=ACTIVITY_KEYS,
        event_time="timestamp",
        schema=ACTIVITY_SCHEMA,
        online_keys=ACTIVITY_KEYS,
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
