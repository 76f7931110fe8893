"""Shared fixtures: a feature store on a temporary lake, and the seed's activity group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from microfs import FeatureGroup, FeatureStore, FeatureView, cli
from tests.helpers import (
    ACTIVITY,
    ACTIVITY_KEYS,
    ACTIVITY_SCHEMA,
    ITEM,
    PROFILE,
    Ran,
    at,
    create_served_groups,
    served_view,
)


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


@pytest.fixture
def served(store: FeatureStore) -> FeatureView:
    """The served seed world with a few rows and fitted parameters."""
    create_served_groups(store)
    store.get_feature_group("user_activity").insert(
        pl.DataFrame(
            [(1, 102, at(5), 30.0, 1), (2, 102, at(6), 10.0, 0)], schema=ACTIVITY, orient="row"
        )
    )
    store.get_feature_group("user_profile").insert(
        pl.DataFrame(
            [(1, at(0), "gold", 30), (2, at(0), "silver", None)], schema=PROFILE, orient="row"
        )
    )
    store.get_feature_group("item_feature").insert(
        pl.DataFrame([(102, at(0), 9.5, "x")], schema=ITEM, orient="row")
    )
    fv = served_view(store)
    fv.get_training_data(compute_params=True)
    return fv


@pytest.fixture
def call(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the command line in this process (the same code, without a process start)."""
    monkeypatch.delenv("MICROFS_LAKE", raising=False)

    def invoke(*args: str) -> Ran:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return invoke
