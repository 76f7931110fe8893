"""Online store benchmark: building tables, their memory, and lookup latency.

For each size (number of online keys) a feature group ``online_users`` is ingested with
``rows_per_key`` rows per key (one append per generation, each generation later than the
previous, so the last one holds every key's latest row):

    user_id int64 (online key), ts datetime (event time), age int64, score float64 (1% null),
    level string (4 values), active bool

Measured, each size in a fresh process:

- ``build``: :meth:`OnlineStore.table` from the Delta snapshot: wall and CPU seconds, the
  process's resident-memory growth (psutil) right after the build and once the allocator
  has returned freed pages (``SETTLE_SECONDS`` later), ``OnlineTable.memory_bytes()``, and
  the raw size of the latest rows as a Polars frame; ``beyond_raw_mb`` is the settled
  growth minus that raw size. Most of the growth right after the build is memory Polars'
  allocator (jemalloc) keeps after reading the snapshot (1M keys x 2 rows: about 170 MB
  for 73 MB of rows); ``_RJEM_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0`` in the
  environment makes it return those pages at once.
- ``get``: ``OnlineTable.get`` of 4 features for random known keys, one call timed at a
  time: p50/p99/mean microseconds (timer overhead included, reported apart); ``get+ts``
  adds the event time (a datetime to build); ``row_index`` is the index alone; ``miss``
  looks up unknown keys.
- ``get_many``: ``OnlineTable.get_many`` of ``batch`` random keys (one call).

Peers in the same run (sizes up to ``peers_up_to``): a Python dict of row tuples (what a
naive online store holds), a Polars ``filter`` per lookup and a Polars left join per batch.
Every engine's answers for a sample of keys are checked against the generated data.

:func:`vector_latency` times any single-entity callable the same way (e.g. a feature
view's ``get_inference_vector``), for the full online vector.

Run: ``python benchmarks/bench_online.py --keys 1000000 10000000``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil
from common import (
    BENCHMARKS,
    RESULTS_DIR,
    cached,
    count_label,
    fresh_folder,
    machine_info,
    mark_ready,
    run_isolated,
    versions,
)

from microfs import FeatureStore

GROUP = "online_users"
SCHEMA = {
    "user_id": "int64",
    "ts": "datetime64[us, UTC]",
    "age": "int64",
    "score": "float64",
    "level": "string",
    "active": "bool",
}
FEATURES = ("age", "score", "level", "active")
WITH_TIME = (*FEATURES, "ts")
LEVELS = ("bronze", "silver", "gold", "platinum")
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DAY_US = 86_400_000_000
SAMPLE = 1_000
WARMUP = 1_000
FILTER_LOOKUPS = 300
SETTLE_SECONDS = 12.0
"""Polars' allocator hands freed pages back to the system about 10 s after a free."""
DEFAULT_WORKDIR = BENCHMARKS / "data" / "online"


# -- data --------------------------------------------------------------------------------------


def generation(keys: int, index: int, seed: int) -> pl.DataFrame:
    """Rows for every key, at random times within day ``index`` (shuffled key order)."""
    rng = np.random.default_rng(seed + index)
    times = int(START.timestamp()) * 10**6 + index * DAY_US + np.sort(rng.integers(0, DAY_US, keys))
    score = pl.Series("score", rng.random(keys))
    return pl.DataFrame(
        [
            pl.Series("user_id", rng.permutation(keys).astype(np.int64)),
            pl.Series("ts", times).cast(pl.Datetime("us", "UTC")),
            pl.Series("age", rng.integers(18, 90, keys)),
            score.scatter(np.flatnonzero(rng.random(keys) < 0.01), None),
            pl.Series("level", LEVELS).gather(rng.integers(0, len(LEVELS), keys)),
            pl.Series("active", rng.random(keys) < 0.5),
        ]
    )


def ingest(folder: str, keys: int, rows_per_key: int, seed: int) -> dict[str, Any]:
    """Create the lake with ``rows_per_key`` appends; keep a sample of expected rows."""
    root = fresh_folder(Path(folder))
    fs = FeatureStore(root / "lake")
    group = fs.create_feature_group(
        name=GROUP,
        primary_keys=["user_id"],
        event_time="ts",
        schema=SCHEMA,
        online_keys=["user_id"],
    )
    seconds = []
    latest = pl.DataFrame()
    for index in range(rows_per_key):
        latest = generation(keys, index, seed)
        started = time.perf_counter()
        group.insert(latest)
        seconds.append(round(time.perf_counter() - started, 3))
    rng = np.random.default_rng(seed)
    sample = latest.filter(
        pl.col("user_id").is_in(rng.choice(keys, min(SAMPLE, keys), replace=False).tolist())
    )
    sample.write_parquet(root / "expected.parquet")
    return mark_ready(
        root,
        {
            "lake": str(root / "lake"),
            "keys": keys,
            "rows": keys * rows_per_key,
            "raw_mb": round(latest.estimated_size() / 2**20, 2),
            "ingest_seconds": seconds,
        },
    )


def lake(workdir: Path, keys: int, rows_per_key: int, seed: int) -> dict[str, Any]:
    """The cached lake of one size under ``workdir``, ingested in a child when missing."""
    folder = Path(workdir) / f"{count_label(keys)}x{rows_per_key}-{seed}"
    record = cached(folder)
    if record is not None:
        return record
    outcome = run_isolated(
        "bench_online",
        "ingest",
        {"folder": str(folder), "keys": keys, "rows_per_key": rows_per_key, "seed": seed},
    )
    if outcome.status != "ok":
        raise SystemExit(f"could not ingest {keys:,} keys: {outcome.status}: {outcome.error}")
    value: dict[str, Any] = outcome.value
    return value


# -- timing ------------------------------------------------------------------------------------


def latencies(call: Callable[[Any], Any], arguments: Sequence[Any]) -> np.ndarray:
    """Nanoseconds of each ``call(argument)``, one timed at a time."""
    clock = time.perf_counter_ns
    out = np.empty(len(arguments), dtype=np.int64)
    for i, argument in enumerate(arguments):
        started = clock()
        call(argument)
        out[i] = clock() - started
    return out


def summary(nanoseconds: np.ndarray, unit: float = 1e3) -> dict[str, float]:
    """p50, p99 and mean of ``nanoseconds`` in microseconds (``unit`` 1e3) or ms (1e6)."""
    suffix = "us" if unit == 1e3 else "ms"
    return {
        f"p50_{suffix}": round(float(np.percentile(nanoseconds, 50)) / unit, 3),
        f"p99_{suffix}": round(float(np.percentile(nanoseconds, 99)) / unit, 3),
        f"mean_{suffix}": round(float(nanoseconds.mean()) / unit, 3),
    }


def vector_latency(
    vector: Callable[[Mapping[str, Any]], Any],
    entities: Sequence[Mapping[str, Any]],
    *,
    warmup: int = WARMUP,
) -> dict[str, float]:
    """p50/p99/mean microseconds of ``vector(entity)`` per entity, one call timed at a time.

    For the full online path, e.g. ``vector_latency(fv.get_inference_vector, entities)``;
    the first ``warmup`` entities are called once untimed first.
    """
    for entity in entities[:warmup]:
        vector(entity)
    times = latencies(vector, entities)
    return {**summary(times), "calls": len(entities), "timer_us": timer_overhead_us()}


def timer_overhead_us() -> float:
    """The median cost of timing an empty call, included in every latency reported."""
    return round(float(np.median(latencies(lambda _: None, range(10_000)))) / 1e3, 3)


def lookup_row(
    case: str, engine: str, nanoseconds: np.ndarray, checked: bool | None, **extra: Any
) -> dict[str, Any]:
    """A result row for per-call latencies: rows are calls, seconds their total time."""
    return {
        "benchmark": case,
        "engine": engine,
        "rows": len(nanoseconds),
        "seconds": round(float(nanoseconds.sum()) / 1e9, 6),
        "checked_equal": checked,
        **summary(nanoseconds),
        **extra,
    }


def expected_sample(folder: str) -> pl.DataFrame:
    return pl.read_parquet(Path(folder).parent / "expected.parquet")


def rss_mb() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


# -- MicroFS -----------------------------------------------------------------------------------


def measure(lake_path: str, keys: int, lookups: int, batch: int, seed: int) -> list[dict[str, Any]]:
    """Build the online table in this (fresh) process and time its lookups."""
    label = count_label(keys)
    fs = FeatureStore(lake_path)
    group = fs.get_feature_group(GROUP)
    before = rss_mb()
    cpu, started = time.process_time(), time.perf_counter()
    table = fs.online.table(group)
    build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu
    grown = rss_mb() - before
    time.sleep(SETTLE_SECONDS)
    settled = rss_mb() - before
    expected = expected_sample(lake_path)
    sample = expected["user_id"].to_list()
    got_one = [table.get((key,), WITH_TIME) for key in sample]
    got_many = table.get_many(expected.select("user_id"), list(WITH_TIME))
    checked = got_one == expected.select(WITH_TIME).rows() and got_many.drop("__found").equals(
        expected.select(WITH_TIME)
    )
    rng = np.random.default_rng(seed + 1)
    known = [(int(k),) for k in rng.integers(0, keys, lookups)]
    unknown = [(int(k),) for k in rng.integers(keys, 2 * keys + 1, lookups)]
    for key in known[:WARMUP]:
        table.get(key, FEATURES)
    timer = timer_overhead_us()
    rows = [
        {
            "benchmark": f"build {label}",
            "engine": "microfs",
            "rows": keys,
            "seconds": round(build_seconds, 4),
            "cpu_seconds": round(build_cpu, 4),
            "rss_growth_mb": round(grown, 1),
            "rss_settled_mb": round(settled, 1),
            "memory_bytes_mb": round(table.memory_bytes() / 2**20, 1),
            "checked_equal": checked,
        },
        lookup_row(
            f"get {label}",
            "microfs",
            latencies(lambda k: table.get(k, FEATURES), known),
            checked,
            timer_us=timer,
        ),
        lookup_row(
            f"get+ts {label}",
            "microfs",
            latencies(lambda k: table.get(k, WITH_TIME), known),
            checked,
            timer_us=timer,
        ),
        lookup_row(
            f"row_index {label}",
            "microfs",
            latencies(table.row_index, known),
            checked,
            timer_us=timer,
        ),
        lookup_row(
            f"miss {label}",
            "microfs",
            latencies(lambda k: table.get(k, FEATURES), unknown),
            all(table.get(k, FEATURES) is None for k in unknown[:SAMPLE]),
            timer_us=timer,
        ),
    ]
    requests = batch_requests(keys, batch, max(20, lookups // batch), seed)
    table.get_many(requests[0], list(FEATURES))  # warm up
    times = latencies(lambda r: table.get_many(r, list(FEATURES)), requests)
    rows.append(batch_row(label, batch, "microfs", times, checked))
    return rows


def batch_requests(keys: int, batch: int, count: int, seed: int) -> list[pl.DataFrame]:
    rng = np.random.default_rng(seed + 2)
    return [pl.DataFrame({"user_id": rng.integers(0, keys, batch)}) for _ in range(count)]


def batch_row(
    label: str, batch: int, engine: str, nanoseconds: np.ndarray, checked: bool | None
) -> dict[str, Any]:
    return {
        "benchmark": f"get_many {count_label(batch)} {label}",
        "engine": engine,
        "rows": batch * len(nanoseconds),
        "seconds": round(float(nanoseconds.sum()) / 1e9, 6),
        "checked_equal": checked,
        **summary(nanoseconds, 1e6),
    }


# -- peers -------------------------------------------------------------------------------------


def measure_peers(
    lake_path: str, keys: int, lookups: int, batch: int, seed: int
) -> list[dict[str, Any]]:
    """The same work with a dict of row tuples, a Polars filter and a Polars join."""
    label = count_label(keys)
    group = FeatureStore(lake_path).get_feature_group(GROUP)
    before = rss_mb()
    cpu, started = time.process_time(), time.perf_counter()
    latest_all = group.read().sort("ts").unique("user_id", keep="last")
    rows = dict(
        zip(latest_all["user_id"].to_list(), latest_all.select(FEATURES).rows(), strict=True)
    )
    build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu
    grown = rss_mb() - before
    del latest_all
    time.sleep(SETTLE_SECONDS)
    settled = rss_mb() - before
    expected = expected_sample(lake_path)
    sample = expected["user_id"].to_list()
    wanted = expected.select(FEATURES).rows()
    dict_ok = [rows.get(key) for key in sample] == wanted
    rng = np.random.default_rng(seed + 1)
    known = [int(k) for k in rng.integers(0, keys, lookups)]
    timer = timer_overhead_us()
    results = [
        {
            "benchmark": f"build {label}",
            "engine": "python dict of tuples",
            "rows": keys,
            "seconds": round(build_seconds, 4),
            "cpu_seconds": round(build_cpu, 4),
            "rss_growth_mb": round(grown, 1),
            "rss_settled_mb": round(settled, 1),
            "checked_equal": dict_ok,
        },
        lookup_row(
            f"get {label}",
            "python dict of tuples",
            latencies(rows.get, known),
            dict_ok,
            timer_us=timer,
        ),
    ]

    latest = group.read().sort("ts").unique("user_id", keep="last").select("user_id", *WITH_TIME)

    def filtered(key: int) -> tuple[Any, ...] | None:
        found = latest.filter(pl.col("user_id") == key).select(FEATURES)
        return found.row(0) if found.height else None

    filter_ok = [filtered(key) for key in sample[:50]] == wanted[:50]
    few = latencies(filtered, known[:FILTER_LOOKUPS])
    row = lookup_row(f"get {label}", "polars filter", few, filter_ok, timer_us=timer)
    row.update(rows=lookups, seconds=round(float(few.mean()) * lookups / 1e9, 6))
    row["note"] = f"extrapolated from {FILTER_LOOKUPS} lookups"
    results.append(row)

    def joined(request: pl.DataFrame) -> pl.DataFrame:
        return request.join(latest, on="user_id", how="left", maintain_order="left")

    join_ok = (
        joined(expected.select("user_id")).select(WITH_TIME).equals(expected.select(WITH_TIME))
    )
    requests = batch_requests(keys, batch, max(20, lookups // batch), seed)
    joined(requests[0])
    results.append(batch_row(label, batch, "polars join", latencies(joined, requests), join_ok))
    return results


# -- driver ------------------------------------------------------------------------------------


def run(
    *,
    keys: int | Sequence[int] = (1_000_000, 10_000_000),
    lookups: int = 10_000,
    workdir: Path | str,
    rows_per_key: int = 2,
    batch: int = 1_000,
    peers_up_to: int = 1_000_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Ingest (or reuse) a lake per size under ``workdir`` and measure it in fresh processes.

    Returns one dict per (case, engine): ``benchmark`` (the case), ``engine``, ``rows``,
    ``seconds``, ``peak_rss_mb``, ``checked_equal`` and the case's figures.
    """
    sizes = (keys,) if isinstance(keys, int) else tuple(keys)
    results: list[dict[str, Any]] = []
    for size in sizes:
        record = lake(Path(workdir), size, rows_per_key, seed)
        arguments = {
            "lake_path": record["lake"],
            "keys": size,
            "lookups": lookups,
            "batch": batch,
            "seed": seed,
        }
        engines = ["measure"] + (["measure_peers"] if size <= peers_up_to else [])
        for function in engines:
            outcome = run_isolated("bench_online", function, arguments)
            if outcome.status != "ok":
                results.append(
                    {
                        "benchmark": f"build {count_label(size)}",
                        "engine": "microfs" if function == "measure" else "peers",
                        "rows": 0,
                        "status": outcome.status,
                        "note": outcome.error,
                    }
                )
                continue
            for row in outcome.value:
                row["peak_rss_mb"] = outcome.peak_rss_mb
                if row["benchmark"].startswith("build"):
                    row["raw_mb"] = record["raw_mb"]
                    if "rss_settled_mb" in row:
                        row["beyond_raw_mb"] = round(row["rss_settled_mb"] - record["raw_mb"], 1)
                results.append(row)
    return results


def format_results(rows: Sequence[Mapping[str, Any]]) -> str:
    """An aligned text table of :func:`run`'s rows."""
    header = (
        f"{'case':<20} {'engine':<22} {'rows':>11} {'seconds':>9} {'p50':>10} {'p99':>10} "
        f"{'rss+ MB':>8} {'settled':>8} {'held MB':>8} {'raw MB':>7}  check"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        unit = "us" if "p50_us" in row else "ms"
        p50, p99 = row.get(f"p50_{unit}"), row.get(f"p99_{unit}")
        lines.append(
            f"{row['benchmark']:<20} {row['engine']:<22} {row.get('rows', 0):>11,} "
            f"{_cell(row.get('seconds'), 9, '.3f')} "
            f"{_cell(p50, 7, '.2f')} {unit if p50 is not None else '  '} "
            f"{_cell(p99, 7, '.2f')} {unit if p99 is not None else '  '} "
            f"{_cell(row.get('rss_growth_mb'), 8, '.0f')} "
            f"{_cell(row.get('rss_settled_mb'), 8, '.0f')} "
            f"{_cell(row.get('memory_bytes_mb'), 8, '.0f')} "
            f"{_cell(row.get('raw_mb'), 7, '.0f')}  "
            f"{ {True: 'equal', False: 'DIFFERENT', None: '-'}[row.get('checked_equal')] }"
            f"{' ' + row['note'] if row.get('note') else ''}"
        )
    return "\n".join(lines)


def _cell(value: Any, width: int, spec: str) -> str:
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--rows-per-key", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--peers-up-to", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    rows = run(
        keys=args.keys,
        lookups=args.lookups,
        workdir=args.workdir,
        rows_per_key=args.rows_per_key,
        batch=args.batch,
        peers_up_to=args.peers_up_to,
    )
    print(format_results(rows))
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.results / f"online-{stamp}.json"
    payload = {"machine": machine_info(), "versions": versions(), "rows": rows}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
