"""Inserts store each batch in (event time, primary keys) order, whatever order it came in.

A batch already in event-time order without shared times is written as it is (no sort,
no copy); one with shared times has only those rows put in key order; any other batch is
sorted. Checked against Python's own sort of the rows.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import T0, activity_group

ROWS = st.lists(
    st.tuples(st.integers(0, 6), st.integers(100, 103), st.integers(0, 12)),
    max_size=60,
    unique_by=lambda row: row,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=ROWS,
    arrangement=st.sampled_from(["as drawn", "time", "time desc", "time keys"]),
    chunks=st.integers(1, 4),
)
def test_an_insert_stores_rows_in_event_time_then_key_order(
    rows: list[tuple[int, int, int]], arrangement: str, chunks: int
) -> None:
    if arrangement == "time":
        rows = sorted(rows, key=lambda r: r[2])  # stable: rows sharing a time keep drawn order
    elif arrangement == "time desc":
        rows = sorted(rows, key=lambda r: r[2], reverse=True)
    elif arrangement == "time keys":
        rows = sorted(rows, key=lambda r: (r[2], r[0], r[1]))
    batch = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [T0 + timedelta(minutes=r[2]) for r in rows],
            "duration_sec": [float(number) for number in range(len(rows))],
            "conversion": [r[0] % 2 for r in rows],
        },
        schema={
            "user_id": pl.Int64,
            "item_id": pl.Int64,
            "timestamp": pl.Datetime("us", "UTC"),
            "duration_sec": pl.Float64,
            "conversion": pl.Int64,
        },
    )
    expected = sorted(
        zip(
            batch["timestamp"].to_list(),
            batch["user_id"].to_list(),
            batch["item_id"].to_list(),
            batch["duration_sec"].to_list(),
            strict=True,
        )
    )
    # a batch may come in several chunks (a concatenation); deltalake would interleave them
    size = -(-batch.height // chunks) if batch.height else 1
    batch = pl.concat(
        [batch.slice(start, size) for start in range(0, max(batch.height, 1), size)],
        rechunk=False,
    )
    with tempfile.TemporaryDirectory() as folder:
        group = activity_group(Path(folder) / "lake")
        group.insert(batch)
        stored, order = group.scan_and_record_order()
        got = stored.select("timestamp", "user_id", "item_id", "duration_sec").collect()
        assert list(got.iter_rows()) == expected
        assert order == ("keys" if rows else "none")
