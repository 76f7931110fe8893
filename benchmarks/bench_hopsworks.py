"""A three-group workload shaped like Hopsworks' published point-in-time benchmark.

Hopsworks published (SIGMOD 2024, the Hopsworks feature store paper and its query-service
benchmark) training-data reads of label rows joined as of their event time to two
feature groups of windowed aggregates on a location key: about 0.48M rows/s at 1M label
rows and 0.97M rows/s at 10M label rows, on a 16-vCPU machine. This module builds the
same shape with MicroFS feature groups and measures the join here beside those figures,
and beside DuckDB and pandas doing the same join on the same Delta tables:

- ``hw_labels`` (key ``location_id``, event time ``timestamp``): label rows at random
  microsecond times over ``DAYS`` days, with a 0/1 ``label``.
- ``hw_hourly`` (key ``location_id``, hourly event times): windowed aggregates of an
  hourly signal per location, each row stamped at the end of its window: mean, min and
  max over 3 hours, mean and standard deviation over 24 hours.
- ``hw_daily`` (key ``location_id``, daily event times): mean and max over 7 days, mean
  over 30 days and the count of hours above a threshold over 30 days.

The feature groups are generated whole-column with NumPy and Polars rolling windows; the
label depends on the features as of its time, so a model could learn it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from common import (
    DATA_DIR,
    Row,
    add_ratios,
    cached,
    count_label,
    data_folder,
    format_table,
    fresh_folder,
    mark_ready,
    measure,
    run_isolated,
)

PUBLISHED_ROWS_PER_SECOND: dict[int, float] = {1_000_000: 480_000.0, 10_000_000: 970_000.0}
"""Hopsworks' published figures (rows per second, 16 vCPUs) by label rows."""
PUBLISHED_ENGINE = "hopsworks (published, 16 vCPU)"
ENGINES: tuple[str, ...] = ("microfs", "microfs in-memory", "duckdb", "pandas")
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DAYS = 90
LOCATIONS = 1_000
VIEW = "hopsworks_shape"
_US_PER_HOUR = 3_600_000_000
_TIME = pl.Datetime("us", "UTC")

SCHEMAS: dict[str, dict[str, str]] = {
    "hw_labels": {"location_id": "int64", "timestamp": "datetime64[ns, utc]", "label": "int64"},
    "hw_hourly": {
        "location_id": "int64",
        "timestamp": "datetime64[ns, utc]",
        "mean_3h": "float64",
        "min_3h": "float64",
        "max_3h": "float64",
        "mean_24h": "float64",
        "std_24h": "float64",
    },
    "hw_daily": {
        "location_id": "int64",
        "timestamp": "datetime64[ns, utc]",
        "mean_7d": "float64",
        "max_7d": "float64",
        "mean_30d": "float64",
        "hot_hours_30d": "int64",
    },
}


# -- the generator ------------------------------------------------------------------------------


def hourly_signal(locations: int, days: int, seed: int) -> pl.DataFrame:
    """One raw reading per location and hour: a daily cycle, a slow drift and noise.

    >>> hourly_signal(2, 1, seed=0).shape
    (48, 3)
    """
    rng = np.random.default_rng([seed, 1])
    hours = days * 24
    level = rng.normal(15.0, 5.0, size=locations)
    amplitude = rng.uniform(2.0, 8.0, size=locations)
    hour = np.tile(np.arange(hours), locations)
    location = np.repeat(np.arange(1, locations + 1), hours)
    drift = np.cumsum(rng.normal(0.0, 0.15, size=(locations, hours)), axis=1).ravel()
    value = (
        np.repeat(level, hours)
        + np.repeat(amplitude, hours) * np.sin(2 * np.pi * (hour % 24) / 24)
        + drift
        + rng.normal(0.0, 1.0, size=locations * hours)
    )
    start_us = int(START.timestamp()) * 1_000_000
    return pl.DataFrame(
        {
            "location_id": location.astype(np.int64),
            "timestamp": pl.Series(start_us + hour.astype(np.int64) * _US_PER_HOUR).cast(_TIME),
            "value": value.round(3),
        }
    )


def hourly_features(signal: pl.DataFrame) -> pl.DataFrame:
    """Windowed aggregates of the signal, stamped at the end of each hour's window."""
    value = pl.col("value")
    return (
        signal.sort("location_id", "timestamp")
        .select(
            "location_id",
            pl.col("timestamp").dt.offset_by("1h"),
            value.rolling_mean(3, min_samples=1).over("location_id").round(4).alias("mean_3h"),
            value.rolling_min(3, min_samples=1).over("location_id").alias("min_3h"),
            value.rolling_max(3, min_samples=1).over("location_id").alias("max_3h"),
            value.rolling_mean(24, min_samples=1).over("location_id").round(4).alias("mean_24h"),
            value.rolling_std(24, min_samples=2).over("location_id").round(4).alias("std_24h"),
        )
        .sort("timestamp", "location_id")
    )


def daily_features(signal: pl.DataFrame) -> pl.DataFrame:
    """Daily windowed aggregates, stamped at the end of each day."""
    daily = (
        signal.group_by("location_id", pl.col("timestamp").dt.truncate("1d"))
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").max().alias("max"),
            (pl.col("value") > 20.0).sum().cast(pl.Int64).alias("hot"),
        )
        .sort("location_id", "timestamp")
    )
    return daily.select(
        "location_id",
        pl.col("timestamp").dt.offset_by("1d"),
        pl.col("mean").rolling_mean(7, min_samples=1).over("location_id").round(4).alias("mean_7d"),
        pl.col("max").rolling_max(7, min_samples=1).over("location_id").alias("max_7d"),
        pl.col("mean")
        .rolling_mean(30, min_samples=1)
        .over("location_id")
        .round(4)
        .alias("mean_30d"),
        pl.col("hot").rolling_sum(30, min_samples=1).over("location_id").alias("hot_hours_30d"),
    ).sort("timestamp", "location_id")


def labels(
    n_labels: int, hourly: pl.DataFrame, locations: int, days: int, seed: int
) -> pl.DataFrame:
    """Label rows at distinct random times; the label follows the 3-hour mean as of then.

    >>> signal = hourly_signal(3, 2, seed=0)
    >>> labels(10, hourly_features(signal), 3, 2, seed=0).columns
    ['location_id', 'timestamp', 'label']
    """
    rng = np.random.default_rng([seed, 2])
    span = days * 24 * _US_PER_HOUR
    start_us = int(START.timestamp()) * 1_000_000
    # sorted draws made distinct by adding their rank: no two labels share a time
    times = np.sort(rng.integers(0, span - n_labels, size=n_labels)) + np.arange(n_labels)
    frame = pl.DataFrame(
        {
            "location_id": rng.integers(1, locations + 1, size=n_labels),
            "timestamp": pl.Series(start_us + times).cast(_TIME),
            "noise": rng.normal(0.0, 2.0, size=n_labels),
        }
    )
    joined = frame.join_asof(
        hourly.select("location_id", "timestamp", "mean_3h", "mean_24h"),
        on="timestamp",
        by="location_id",
        strategy="backward",
    )
    score = pl.col("mean_3h").fill_null(15.0) - pl.col("mean_24h").fill_null(15.0) + pl.col("noise")
    return joined.select("location_id", "timestamp", (score > 0.5).cast(pl.Int64).alias("label"))


def build_hopsworks_lake(
    n_labels: int, seed: int, folder: str, locations: int = LOCATIONS, days: int = DAYS
) -> dict[str, Any]:
    """Generate the workload and ingest it into a new lake at ``folder`` (a child process)."""
    from microfs import FeatureStore

    root = fresh_folder(Path(folder))
    signal = hourly_signal(locations, days, seed)
    frames = {"hw_hourly": hourly_features(signal), "hw_daily": daily_features(signal)}
    frames["hw_labels"] = labels(n_labels, frames["hw_hourly"], locations, days, seed)
    fs = FeatureStore(root / "lake")
    tables: dict[str, str] = {}
    for name in ("hw_hourly", "hw_daily", "hw_labels"):
        fg = fs.create_feature_group(
            name=name, schema=SCHEMAS[name], primary_keys=["location_id"], event_time="timestamp"
        )
        fg.insert(frames[name])
        tables[name] = str(fg.path)
    fs.create_feature_view(
        name=VIEW,
        label_fg="hw_labels",
        label_col="label",
        joins=[
            {"fg_name": "hw_hourly", "on": ["location_id"]},
            {"fg_name": "hw_daily", "on": ["location_id"]},
        ],
    )
    return mark_ready(
        root,
        {
            "lake": str(root / "lake"),
            "tables": tables,
            "rows": {name: frame.height for name, frame in frames.items()},
        },
    )


def hopsworks_lake(
    n_labels: int,
    seed: int,
    data_dir: Path = DATA_DIR,
    *,
    locations: int = LOCATIONS,
    days: int = DAYS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The cached lake of ``n_labels`` label rows, built when missing."""
    folder = data_folder(data_dir, f"hopsworks-{n_labels}-{locations}x{days}", seed)
    record = cached(folder)
    if record is not None:
        log(f"data: reusing {folder}")
        return record
    log(f"data: generating the Hopsworks-shaped workload ({n_labels:,} labels) in {folder} ...")
    outcome = run_isolated(
        "bench_hopsworks",
        "build_hopsworks_lake",
        {
            "n_labels": n_labels,
            "seed": seed,
            "folder": str(folder),
            "locations": locations,
            "days": days,
        },
    )
    if outcome.status != "ok":
        raise SystemExit(f"could not build the Hopsworks-shaped data: {outcome.error}")
    return outcome.value  # type: ignore[no-any-return]


def spec(record: dict[str, Any]) -> dict[str, Any]:
    """The engine-neutral spec of the workload (see ``bench_pit.run_engine``)."""
    tables = record["tables"]
    hourly = [c for c in SCHEMAS["hw_hourly"] if c not in ("location_id", "timestamp")]
    daily = [c for c in SCHEMAS["hw_daily"] if c not in ("location_id", "timestamp")]
    return {
        "lake": record["lake"],
        "view": VIEW,
        "label": {
            "path": tables["hw_labels"],
            "time": "timestamp",
            "keys": ["location_id"],
            "values": ["label"],
        },
        "joins": [
            {
                "path": tables["hw_hourly"],
                "on": ["location_id"],
                "time": "timestamp",
                "features": hourly,
            },
            {
                "path": tables["hw_daily"],
                "on": ["location_id"],
                "time": "timestamp",
                "features": daily,
            },
        ],
        "output": ["location_id", "timestamp", *hourly, *daily, "label"],
    }


def run(
    *,
    label_rows: Sequence[int],
    locations: int = LOCATIONS,
    days: int = DAYS,
    seed: int = 0,
    repeats: int = 3,
    engines: Sequence[str] = ENGINES,
    data_dir: Path = DATA_DIR,
    timeout: float = 3600.0,
    mem_limit_mb: float | None = None,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Each label count: every engine measured, then Hopsworks' published figure if any."""
    rows: list[Row] = []
    for n_labels in label_rows:
        record = hopsworks_lake(n_labels, seed, data_dir, locations=locations, days=days, log=log)
        workload = spec(record)
        case = f"{count_label(n_labels)} labels"
        measured = measure(
            "bench_pit",
            "run_engine",
            {"spec": workload},
            benchmark="hopsworks",
            case=case,
            order=["timestamp", "location_id"],
            engines=engines,
            repeats=repeats,
            timeout=timeout,
            mem_limit_mb=mem_limit_mb,
            log=log,
        )
        for row in measured:
            row.extra["feature_rows"] = {
                "hw_hourly": record["rows"]["hw_hourly"],
                "hw_daily": record["rows"]["hw_daily"],
            }
        rows += measured
        published = PUBLISHED_ROWS_PER_SECOND.get(n_labels)
        if published is not None:
            rows.append(
                Row(
                    "hopsworks",
                    case,
                    PUBLISHED_ENGINE,
                    n_labels,
                    status="published",
                    seconds=n_labels / published,
                    note="published figure on another machine, not run here",
                )
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--labels", default="1000000", help="comma-separated label row counts")
    parser.add_argument("--locations", type=int, default=LOCATIONS)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.labels.split(",") if x.strip()]
    rows = run(
        label_rows=counts,
        locations=args.locations,
        days=args.days,
        seed=args.seed,
        repeats=args.repeats,
        data_dir=args.data_dir,
    )
    add_ratios(rows)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
