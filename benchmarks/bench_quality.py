"""Data quality benchmark: validation beside pandera and dataframely, and statistics costs.

Data: ``rows`` rows (10M by default) × 6 columns (``id``, ``ts``, ``age``, ``score``,
``country``, ``code``), clean, and a bad copy where about 1.5 % of rows break a rule.
Six rules: ``id`` unique, ``age`` between 0 and 120, ``score`` not null, ``country`` in a
set of ten, ``code`` matches ``[A-Z]{2}[0-9]{3}``, ``age`` at most 5 % null.

Measurements (median of ``repeats``, in this process, after one warm-up run):

- ``validate``: MicroFS's check of a batch (what ``fg.insert``/``fg.validate`` run: one
  Polars query, and a second over the failing rows for samples), pandera's Polars backend
  (``validate(lazy=True)``, which collects every failure) and dataframely (``validate``
  on clean data, ``filter`` on bad data). dataframely has no frame-level rule, so it
  checks five of the six (no null fraction). Every engine's verdict is checked: clean
  passes, bad fails, and dataframely's count of failing rows equals MicroFS's.
- ``insert``: ``fg.insert`` of the clean batch into a fresh group with the six
  expectations and statistics, against a group with neither (``statistics=False``).
- ``append``: ``fg.insert`` of 1,000 more rows onto those full groups. Every commit stores
  its version's statistics; a version that is not the batch alone gets them from one pass
  over the whole new version, which is what the group with statistics pays here.
- ``statistics``: the statistics of the 10M-row table version, computed from the batch in
  memory (what an insert into an empty table does) and from the stored version (what any
  other commit does for its new version).
- ``read old statistics``: ``fg.statistics(version=1)`` after later commits, from a
  freshly opened store.

Run ``python benchmarks/bench_quality.py [--rows N] [--repeats N]``; results are printed
and written to ``benchmarks/results/quality-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from microfs import FeatureStore  # noqa: E402
from microfs import statistics as stats  # noqa: E402
from microfs.expectations import evaluate, parse_expectations, split  # noqa: E402

COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "ES", "SE"]
PATTERN = "[A-Z]{2}[0-9]{3}"
SCHEMA = {
    "id": "int64",
    "ts": "datetime64[us, UTC]",
    "age": "int64",
    "score": "float64",
    "country": "string",
    "code": "string",
}
EXPECTATIONS: list[dict[str, Any]] = [
    {"column": "id", "kind": "unique"},
    {"column": "age", "kind": "between", "min": 0, "max": 120},
    {"column": "score", "kind": "not_null"},
    {"column": "country", "kind": "in_set", "values": COUNTRIES},
    {"column": "code", "kind": "matches", "pattern": PATTERN},
    {"column": "age", "kind": "max_null_fraction", "value": 0.05},
]
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
RESULTS = ROOT / "benchmarks" / "results"


def make_data(rows: int, *, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The clean frame and its bad copy (about 0.5 % of rows break each of three rules)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    draws = pl.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "seconds": np.arange(rows, dtype=np.int64),
            "age": rng.integers(0, 100, rows),
            "missing": rng.random(rows) < 0.01,
            "score": rng.normal(size=rows),
            "country": rng.choice(COUNTRIES, rows),
            "a": rng.choice(letters, rows),
            "b": rng.choice(letters, rows),
            "n": rng.integers(0, 1000, rows),
            "u": rng.random(rows),
        }
    )
    clean = draws.select(
        "id",
        (pl.lit(T0) + pl.duration(seconds=pl.col("seconds"))).dt.cast_time_unit("us").alias("ts"),
        pl.when(pl.col("missing")).then(None).otherwise(pl.col("age")).alias("age"),
        "score",
        "country",
        pl.concat_str("a", "b", pl.col("n").cast(pl.String).str.zfill(3)).alias("code"),
    )
    u = draws.get_column("u")
    bad = clean.with_columns(
        pl.when(u < 0.005).then(500).otherwise(pl.col("age")).alias("age"),
        pl.when((u >= 0.005) & (u < 0.01))
        .then(pl.lit("XX"))
        .otherwise(pl.col("country"))
        .alias("country"),
        pl.when((u >= 0.01) & (u < 0.015))
        .then(pl.lit("bad"))
        .otherwise(pl.col("code"))
        .alias("code"),
    )
    return clean, bad


def pandera_schema() -> Any:
    import pandera.polars as pa

    def null_fraction(data: Any) -> Any:
        return data.lazyframe.select(pl.col(data.key).is_null().mean() <= 0.05)

    return pa.DataFrameSchema(
        {
            "id": pa.Column(pl.Int64, unique=True),
            "ts": pa.Column(pl.Datetime("us", "UTC")),
            "age": pa.Column(
                pl.Int64,
                [pa.Check.in_range(0, 120), pa.Check(null_fraction, name="max_null_fraction")],
                nullable=True,
            ),
            "score": pa.Column(pl.Float64, nullable=False),
            "country": pa.Column(pl.String, pa.Check.isin(COUNTRIES)),
            "code": pa.Column(pl.String, pa.Check.str_matches(f"^{PATTERN}$")),
        }
    )


def dataframely_schema() -> Any:
    import dataframely as dy

    class Rows(dy.Schema):
        id = dy.Int64(unique=True)
        ts = dy.Datetime(nullable=False, time_zone="UTC", time_unit="us")
        age = dy.Int64(nullable=True, min=0, max=120)
        score = dy.Float64(nullable=False)
        country = dy.String(nullable=False, check=lambda col: col.is_in(COUNTRIES))
        code = dy.String(nullable=False, regex=f"^{PATTERN}$")

    return Rows


CPU_SECONDS: list[float] = []
"""CPU seconds (all threads of this process) of the runs :func:`timed` measured last."""


def timed(action: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median seconds over ``repeats`` runs after one warm-up, every run, the last result.

    The CPU seconds of each run (this process, all threads) are left in ``CPU_SECONDS``:
    on a shared machine they move less than wall time when other work competes.
    """
    result = action()
    runs = []
    CPU_SECONDS.clear()
    for _ in range(repeats):
        began, cpu = time.perf_counter(), time.process_time()
        result = action()
        runs.append(time.perf_counter() - began)
        CPU_SECONDS.append(time.process_time() - cpu)
    return statistics.median(runs), runs, result


def bench_validation(clean: pl.DataFrame, bad: pl.DataFrame, repeats: int) -> list[dict[str, Any]]:
    import pandera.errors

    expectations = parse_expectations(EXPECTATIONS, {**_canonical(), "ts": "datetime"})
    pandera_check = pandera_schema()
    dataframely = dataframely_schema()
    out = []
    expected_bad = bad.height - split(bad, expectations)[0].height

    def run_pandera(frame: pl.DataFrame) -> bool:
        try:
            pandera_check.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors:
            return False
        return True

    def run_dataframely(frame: pl.DataFrame) -> bool:
        try:
            dataframely.validate(frame)
        except Exception:  # dataframely's ValidationError (name differs across versions)
            return False
        return True

    for label, frame, passes in (("clean", clean, True), ("bad", bad, False)):
        engines: list[tuple[str, Callable[[], Any]]] = [
            ("microfs", lambda f=frame: evaluate(f, expectations).passed),
            ("pandera (polars)", lambda f=frame: run_pandera(f)),
        ]
        if passes:
            engines.append(("dataframely validate", lambda f=frame: run_dataframely(f)))
        else:
            engines.append(
                (
                    "dataframely filter",
                    lambda f=frame: f.height - dataframely.filter(f).result.height,
                )
            )
        for engine, action in engines:
            seconds, runs, verdict = timed(action, repeats)
            ok = verdict == expected_bad if engine == "dataframely filter" else verdict is passes
            if not ok:
                raise AssertionError(f"{engine} on {label} data gave {verdict!r}")
            out.append(
                {
                    "benchmark": f"validate {label}",
                    "engine": engine,
                    "rows": frame.height,
                    "seconds": seconds,
                    "runs": runs,
                    "cpu_seconds": statistics.median(CPU_SECONDS),
                    "rules": 5 if engine.startswith("dataframely") else 6,
                }
            )
            print(
                f"  validate {label:<5} {engine:<22} {seconds:7.3f} s "
                f"(cpu {statistics.median(CPU_SECONDS):6.3f} s)",
                flush=True,
            )
    return out


def bench_insert(clean: pl.DataFrame, repeats: int, workdir: Path) -> list[dict[str, Any]]:
    out = []
    runs: dict[str, list[float]] = {"with": [], "without": []}
    cpu: dict[str, list[float]] = {"with": [], "without": []}
    for attempt in range(repeats + 1):
        order = ("with", "without") if attempt % 2 else ("without", "with")
        for variant in order:
            fs = FeatureStore(workdir / f"insert-{variant}-{attempt}")
            options: dict[str, Any] = (
                {"expectations": EXPECTATIONS, "validation": "strict"}
                if variant == "with"
                else {"statistics": False}
            )
            fg = fs.create_feature_group(
                "rows", primary_keys=["id"], event_time="ts", schema=SCHEMA, **options
            )
            began, started = time.perf_counter(), time.process_time()
            result = fg.insert(clean)
            seconds = time.perf_counter() - began
            assert result.rows_inserted == clean.height
            if attempt:  # the first round warms up
                runs[variant].append(seconds)
                cpu[variant].append(time.process_time() - started)
    for variant, values in runs.items():
        seconds = statistics.median(values)
        name = "validation + statistics" if variant == "with" else "neither"
        out.append(
            {
                "benchmark": "insert",
                "engine": f"microfs, {name}",
                "rows": clean.height,
                "seconds": seconds,
                "runs": values,
                "cpu_seconds": statistics.median(cpu[variant]),
            }
        )
        used = statistics.median(cpu[variant])
        print(f"  insert   {name:<30} {seconds:7.3f} s (cpu {used:6.3f} s)", flush=True)
    ratio = statistics.median(runs["with"]) / statistics.median(runs["without"])
    cpu_ratio = statistics.median(cpu["with"]) / statistics.median(cpu["without"])
    print(f"  insert with / without: {ratio:.2f}x wall, {cpu_ratio:.2f}x cpu", flush=True)
    out += bench_small_appends(clean, repeats, workdir)
    return out


def bench_small_appends(
    clean: pl.DataFrame, repeats: int, workdir: Path, *, rows: int = 1_000
) -> list[dict[str, Any]]:
    """Appends of ``rows`` rows onto the last round's full groups, with checks and without.

    A version that is not the batch alone gets its statistics at commit from one pass over
    the whole new version, so this shows what that pass costs a small append.
    """
    out = []
    last = repeats  # the last round of bench_insert left both groups with the full batch
    groups = {
        variant: FeatureStore(workdir / f"insert-{variant}-{last}").get_feature_group("rows")
        for variant in ("with", "without")
    }
    runs: dict[str, list[float]] = {"with": [], "without": []}
    cpu: dict[str, list[float]] = {"with": [], "without": []}
    for attempt in range(repeats + 1):
        batch = clean.head(rows).with_columns(pl.col("ts") + timedelta(days=5000 + attempt))
        order = ("with", "without") if attempt % 2 else ("without", "with")
        for variant in order:
            began, started = time.perf_counter(), time.process_time()
            result = groups[variant].insert(batch)
            seconds = time.perf_counter() - began
            assert result.mode == "append"
            if attempt:  # the first round warms up
                runs[variant].append(seconds)
                cpu[variant].append(time.process_time() - started)
    for variant, values in runs.items():
        name = "validation + statistics" if variant == "with" else "neither"
        used = statistics.median(cpu[variant])
        out.append(
            {
                "benchmark": f"append {rows:,} rows onto {clean.height:,}",
                "engine": f"microfs, {name}",
                "rows": rows,
                "seconds": statistics.median(values),
                "runs": values,
                "cpu_seconds": used,
            }
        )
        print(
            f"  append {rows:,} onto {clean.height:,} rows, {name:<24} "
            f"{statistics.median(values):7.3f} s (cpu {used:6.3f} s)",
            flush=True,
        )
    return out


def bench_statistics(clean: pl.DataFrame, repeats: int, workdir: Path) -> list[dict[str, Any]]:
    fs = FeatureStore(workdir / "statistics")
    fg = fs.create_feature_group("rows", primary_keys=["id"], event_time="ts", schema=SCHEMA)
    fg.insert(clean)
    schema = fg.definition.schema
    out = []
    for label, data in (
        ("statistics, batch in memory", lambda: clean),
        ("statistics, stored version", lambda: fg.scan(version=1)),
    ):
        seconds, runs, document = timed(
            lambda d=data: stats.compute(d(), schema, rows=clean.height), repeats
        )
        assert document["rows"] == clean.height
        out.append(
            {
                "benchmark": label,
                "engine": "microfs",
                "rows": clean.height,
                "seconds": seconds,
                "runs": runs,
                "cpu_seconds": statistics.median(CPU_SECONDS),
            }
        )
        print(
            f"  {label:<40} {seconds:7.3f} s (cpu {statistics.median(CPU_SECONDS):6.3f} s)",
            flush=True,
        )
    # later commits, then read version 1's statistics from a freshly opened store
    fg.insert(clean.head(1000).with_columns(pl.col("ts") + timedelta(days=9000)))
    fg.insert(clean.head(1000).with_columns(pl.col("ts") + timedelta(days=9001)))
    reads = []
    for _ in range(max(repeats, 20)):
        began = time.perf_counter()
        frame = FeatureStore(workdir / "statistics").get_feature_group("rows").statistics(version=1)
        reads.append(time.perf_counter() - began)
        assert frame["count"][0] == clean.height
    seconds = statistics.median(reads)
    out.append(
        {
            "benchmark": "read old version's statistics",
            "engine": "microfs",
            "rows": clean.height,
            "seconds": seconds,
            "runs": reads,
        }
    )
    print(f"  {'read old version statistics (store opened)':<40} {seconds * 1000:7.2f} ms")
    return out


def _canonical() -> dict[str, str]:
    return {c: t for c, t in SCHEMA.items() if c != "ts"}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-save", action="store_true", help="do not write results JSON")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    clean, bad = make_data(args.rows)
    print(f"data: {args.rows:,} rows x 6 columns in {time.perf_counter() - began:.1f} s")
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    results = bench_validation(clean, bad, args.repeats)
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        results += bench_insert(clean, args.repeats, Path(folder))
        results += bench_statistics(clean, args.repeats, Path(folder))
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"quality-{stamp}.json"
        document = {
            "rows": args.rows,
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
            "results": results,
        }
        path.write_text(json.dumps(document, indent=1))
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
