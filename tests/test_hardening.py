"""Regression tests of issue 12: wrong or raw answers under odd values, crashes and bad calls."""

from __future__ import annotations

from datetime import date, datetime, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microfs import FeatureStore

_US_PER_YEAR = 365 * 24 * 3600 * 10**6


@pytest.mark.parametrize("year", [1, 999, 1000, 2024, 9999])
def test_upsert_of_any_year(store: FeatureStore, year: int) -> None:
    group = store.create_feature_group(
        "old",
        primary_keys=["k", "day"],
        event_time="ts",
        schema={"k": "int64", "day": "date", "ts": "datetime", "v": "float64"},
    )
    t = datetime(year, 6, 1, 12, tzinfo=timezone.utc)
    batch = pl.DataFrame(
        {"k": [1, -5], "day": [date(year, 1, 1)] * 2, "ts": [t, t], "v": [1.0, 2.0]}
    )
    assert group.insert(batch).mode == "append"
    again = group.insert(batch.with_columns(v=pl.lit(3.0)))
    assert (again.mode, again.rows_updated, again.rows_inserted) == ("merge", 2, 0)
    assert group.read().sort("k")["v"].to_list() == [3.0, 3.0]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    micros=st.lists(
        st.integers(min_value=-200_000 * _US_PER_YEAR, max_value=200_000 * _US_PER_YEAR),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
def test_every_storable_event_time_is_upsertable(
    tmp_path_factory: pytest.TempPathFactory, micros: list[int]
) -> None:
    """Event times Python's datetime cannot hold (years 0 and before, 10000 and after) too."""
    store = FeatureStore(tmp_path_factory.mktemp("lake"))
    group = store.create_feature_group(
        "g",
        primary_keys=["k"],
        event_time="ts",
        schema={"k": "int64", "ts": "datetime", "v": "int64"},
    )
    times = pl.Series("ts", micros, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    batch = pl.DataFrame({"k": [7] * len(micros), "ts": times, "v": list(range(len(micros)))})
    group.insert(batch)
    result = group.insert(batch.with_columns(v=pl.col("v") + 100))
    assert result.rows_updated == len(micros) and result.rows_inserted == 0
    stored = group.read().sort("ts")
    assert stored["ts"].dt.epoch("us").to_list() == sorted(micros)
    assert stored.height == len(micros)
