"""Shared fixtures: a feature store on a temporary lake, and the seed's activity group."""

from __future__ import annotations

from pathlib import Path

import pytest

from microfs import FeatureGroup, FeatureStore
from tests.helpers import ACTIVITY_KEYS, ACTIVITY_SCHEMA


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
