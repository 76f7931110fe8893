"""Known-at joins beside event-time joins over the same tables, at a given label count.

The workload: ``labels`` (``--labels`` rows, keys ``user_id``) joined to ``profile``
(``--features`` rows over a tenth as many users, 90 days of event times) on ``user_id``.
The profile is written the way a pipeline writes it: in ``--batches`` commits in event-time
order, each committed a minute after its last event, with ``--late`` of the rows held back
and written in a later commit (late arrivals) and ``--corrected`` of the rows written
again with new values in a later commit (corrections, upserts). The commit times follow
the simulated pipeline (a test clock), so late rows are late by hours to days.

Timed, alternately and ``--runs`` times each, from a fresh store object:
``fv.training_frame().collect(engine="in-memory")`` of a view with ``timeline="event"``
and of one with ``timeline="known"``; the JSON under ``benchmarks/results/`` holds every run
and the share of rows on which the two frames differ.

    python benchmarks/bench_known.py --labels 1000000 --features 1000000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from microfs import FeatureStore

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=90)
RESULTS = Path(__file__).resolve().parent / "results"


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _times(offsets: np.ndarray, start: datetime) -> pl.Series:
    base = int((start - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))
    return pl.Series(offsets + base).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _profile_rows(n: int, users: int, rng: np.random.Generator) -> pl.DataFrame:
    micros = np.sort(rng.integers(0, int(SPAN.total_seconds() * 1e6), n))
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(0, users, n),
            "ts": _times(micros, T0),
            "score": rng.random(n),
            "level": rng.integers(0, 5, n),
        }
    )
    return frame.unique(["user_id", "ts"], keep="first", maintain_order=True)


def build(lake: Path, labels: int, features: int, args: argparse.Namespace) -> dict[str, float]:
    """Write the lake; return what was written (late and corrected row counts)."""
    rng = np.random.default_rng(args.seed)
    fs = FeatureStore(lake)
    users = max(features // 10, 1)
    profile = fs.create_feature_group(
        name="profile",
        primary_keys=["user_id"],
        event_time="ts",
        schema={
            "user_id": "int64",
            "ts": "datetime64[ns, utc]",
            "score": "float64",
            "level": "int64",
        },
    )
    clock = _Clock()
    profile.commit_clock = clock
    rows = _profile_rows(features, users, rng)
    batch = (
        (pl.col("ts") - pl.lit(T0)).dt.total_microseconds()
        * args.batches
        // int(SPAN.total_seconds() * 1e6)
    )
    rows = rows.with_columns(
        batch.alias("batch"),
        pl.Series(rng.random(rows.height) < args.late).alias("late"),
        pl.Series(rng.random(rows.height) < args.corrected).alias("corrected"),
        pl.Series(rng.integers(1, 8, rows.height)).alias("delay"),
    )
    columns = ["user_id", "ts", "score", "level"]
    for number in range(args.batches):
        due = rows.filter(
            ((pl.col("batch") == number) & ~pl.col("late"))
            | (pl.col("late") & (pl.col("batch") + pl.col("delay") == number))
        )
        fixes = rows.filter(
            pl.col("corrected") & (pl.col("batch") + pl.col("delay") == number)
        ).with_columns(pl.col("score") + 1.0)
        last = rows.filter(pl.col("batch") == number)["ts"].max()
        clock.now = (last or T0) + timedelta(minutes=1)
        for part in (due, fixes):
            if part.height:
                profile.insert(part.select(columns).sort("ts"))
    fs.create_feature_group(
        name="labels",
        primary_keys=["user_id"],
        event_time="ts",
        schema={"user_id": "int64", "ts": "datetime64[ns, utc]", "y": "int64"},
    ).insert(
        pl.DataFrame(
            {
                "user_id": rng.integers(0, users, labels),
                "ts": _times(
                    np.sort(rng.integers(0, int(SPAN.total_seconds() * 1e6), labels)),
                    T0 + timedelta(days=1),
                ),
                "y": rng.integers(0, 2, labels),
            }
        ).unique(["user_id", "ts"], keep="first", maintain_order=True)
    )
    joins = [{"fg_name": "profile", "on": ["user_id"]}]
    fs.create_feature_view(name="by_event", label_fg="labels", label_col="y", joins=joins)
    fs.create_feature_view(
        name="by_known", label_fg="labels", label_col="y", joins=joins, timeline="known"
    )
    return {
        "late_rows": float(rows.filter(pl.col("late")).height),
        "corrected_rows": float(rows.filter(pl.col("corrected")).height),
    }


def _frame(lake: Path, view: str) -> tuple[float, pl.DataFrame]:
    started = time.perf_counter()
    out = FeatureStore(lake).get_feature_view(view).training_frame().collect(engine="in-memory")
    return time.perf_counter() - started, out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--late", type=float, default=0.05)
    parser.add_argument("--corrected", type=float, default=0.01)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        lake = Path(folder) / "lake"
        started = time.perf_counter()
        written = build(lake, args.labels, args.features, args)
        build_s = time.perf_counter() - started
        times: dict[str, list[float]] = {"by_event": [], "by_known": []}
        frames: dict[str, pl.DataFrame] = {}
        for _ in range(args.runs):
            for view in times:
                seconds, frames[view] = _frame(lake, view)
                times[view].append(seconds)
    event, known = frames["by_event"], frames["by_known"]
    assert event.select("user_id", "ts").equals(known.select("user_id", "ts"))
    differ = int(
        (
            (event["score"].ne_missing(known["score"]))
            | (event["level"].ne_missing(known["level"]))
        ).sum()
    )
    median = {view: statistics.median(runs) for view, runs in times.items()}
    result = {
        "labels": event.height,
        "feature_rows": args.features,
        **written,
        "build_s": round(build_s, 2),
        "runs_s": times,
        "median_s": median,
        "known_over_event": median["by_known"] / median["by_event"],
        "rows_differing": differ,
        "share_differing": differ / event.height,
    }
    print(
        f"labels {event.height:,}  feature rows {args.features:,}  "
        f"(late {written['late_rows']:,.0f}, "
        f"corrected {written['corrected_rows']:,.0f}; lake built in {build_s:.1f} s)"
    )
    print(f"{'timeline':<10} {'median s':>9}  runs")
    for view, runs in times.items():
        print(f"{view[3:]:<10} {median[view]:>9.3f}  {', '.join(f'{r:.3f}' for r in runs)}")
    print(
        f"known / event: {result['known_over_event']:.2f}x; frames differ on {differ:,} rows "
        f"({differ / event.height:.1%})"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"known_{event.height}.json"
    out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
