"""Ingest benchmark: MicroFS feature-group writes beside raw deltalake doing the same work.

Two measurements, each the median of ``repeats`` runs:

- ``append``: one ``fg.insert`` of ``rows`` new activity rows in event-time order (the
  append fast path, with every schema and key check) against
  ``deltalake.write_deltalake(..., mode="append")`` of the same, already-typed frame.
  Target: MicroFS within 1.3x of raw.
  A third row, ``statistics=False``, is the same insert into a group that stores no
  statistics: the first version's statistics (computed from the batch while it is
  written) are work raw deltalake does not do.
- ``append random order``: the same rows shuffled. MicroFS sorts them by event time and
  keys before writing; raw deltalake writes them as they come. Target: within 2x of raw.
- ``upsert``: a group of ``upsert_rows`` rows, written as ten appended batches in time
  order (so files are time-clustered, as a pipeline writes them), then corrected: 1 % of
  its rows, drawn from its most recent tenth, get new feature values. MicroFS's
  ``fg.insert`` (it rewrites the files its key and time ranges reach that hold a matched
  row, in one commit) against deltalake's plain ``merge`` with a predicate on the keys
  only. Target: MicroFS at least 3x faster.

Both engines start every run from an identical copy of the same table. Run with
``python benchmarks/bench_ingest.py`` (``--help`` for sizes); results are printed as a
table and written to ``benchmarks/results/ingest-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import psutil
from deltalake import DeltaTable, write_deltalake

from microfs import FeatureGroup, FeatureStore
from microfs.synthetic import GROUPS, SCHEMAS, corrections, generate_world

ROOT = Path(__file__).resolve().parents[1]

GROUP = "user_activity"
Timing = tuple[float, float]
"""Seconds of one measured call, and the growth of resident memory during it (MB)."""
BATCHES = 10  # the upsert group is written as this many time-ordered appends
CORRECTED = 0.01  # share of the group's rows an upsert corrects ...
RECENT = 0.1  # ... drawn from this most recent share of rows


def run(
    *, rows: int = 1_000_000, upsert_rows: int = 5_000_000, repeats: int = 3, workdir: Path
) -> list[dict[str, Any]]:
    """Run both benchmarks under ``workdir``; one result dict per benchmark and engine.

    Each dict holds ``benchmark``, ``engine``, ``rows`` (rows written by the measured
    call), ``seconds`` (median over ``repeats``), ``peak_rss_mb`` (the largest growth
    of this process's resident memory during one measured call), ``runs`` (every time)
    and ``checked_equal`` (both engines' tables were compared equal to the expected rows;
    a difference raises). The two engines take turns going first.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _warm_up(workdir)
    ordered = _activity(rows, seed=1)
    shuffled = ordered.sample(fraction=1.0, shuffle=True, seed=4)
    return [
        *_append("append", ordered, repeats, workdir),
        *_append("append random order", shuffled, repeats, workdir),
        *_upsert(upsert_rows, repeats, workdir),
    ]


def _warm_up(workdir: Path) -> None:
    """Pay the process's one-time costs (the first merge starts its query engine) up front."""
    frame = _activity(1_000, seed=0)
    fg = _store(workdir / "warm-up").create_feature_group(
        name=GROUP, schema=SCHEMAS[GROUP], **GROUPS[GROUP]
    )
    fg.insert(frame)
    fg.insert(frame.head(10))
    _plain_merge(str(fg.path), frame.head(10), fg.definition.upsert_keys)
    shutil.rmtree(workdir / "warm-up")


# -- append ----------------------------------------------------------------------------------


def _append(case: str, frame: pl.DataFrame, repeats: int, workdir: Path) -> list[dict[str, Any]]:
    arrow = frame.to_arrow()
    rows = frame.height

    def microfs_run(repeat: int, *, statistics: bool = True) -> Timing:
        folder = workdir / f"append-{repeat}"
        fg = _store(folder).create_feature_group(
            name=GROUP, schema=SCHEMAS[GROUP], **GROUPS[GROUP], statistics=statistics
        )
        timing = _timed(partial(fg.insert, frame))
        _check_equal(fg.read(), frame)
        shutil.rmtree(folder)
        return timing

    def raw_run(repeat: int) -> Timing:
        path = str(workdir / f"append-raw-{repeat}")
        DeltaTable.create(path, arrow.schema)
        timing = _timed(partial(write_deltalake, path, arrow, mode="append"))
        _check_equal(pl.read_delta(path), frame)
        shutil.rmtree(path)
        return timing

    micro, raw = _alternate(repeats, microfs_run, raw_run)
    plain = [microfs_run(repeat, statistics=False) for repeat in range(repeats)]
    return [
        _result(case, "microfs fg.insert", rows, micro),
        _result(case, "microfs fg.insert, statistics=False", rows, plain),
        _result(case, "deltalake write_deltalake", rows, raw),
    ]


# -- upsert ----------------------------------------------------------------------------------


def _upsert(rows: int, repeats: int, workdir: Path) -> list[dict[str, Any]]:
    frame = _activity(rows, seed=2)
    template = workdir / "upsert-template"
    fg = _store(template).create_feature_group(name=GROUP, schema=SCHEMAS[GROUP], **GROUPS[GROUP])
    step = -(-rows // BATCHES)
    for start in range(0, rows, step):
        result = fg.insert(frame.slice(start, step))
        if result.mode != "append":
            raise RuntimeError(f"time-ordered batch took the {result.mode} path, not append")
    batch = corrections(frame, fraction=CORRECTED, recent_fraction=RECENT, seed=3)
    keys = fg.definition.upsert_keys
    expected = frame.update(batch, on=list(keys))
    table_folder = fg.path.relative_to(template)

    def microfs_run(repeat: int) -> Timing:
        copy = workdir / f"upsert-{repeat}"
        shutil.copytree(template, copy)
        group = FeatureStore(copy).get_feature_group(GROUP)
        timing = _timed(partial(_microfs_upsert, group, batch))
        _check_equal(group.read(), expected)
        shutil.rmtree(copy)
        return timing

    def raw_run(repeat: int) -> Timing:
        copy = workdir / f"upsert-raw-{repeat}"
        shutil.copytree(template, copy)
        path = str(copy / table_folder)
        timing = _timed(partial(_plain_merge, path, batch, keys))
        _check_equal(pl.read_delta(path, columns=expected.columns), expected)
        shutil.rmtree(copy)
        return timing

    micro, raw = _alternate(repeats, microfs_run, raw_run)
    shutil.rmtree(template)
    return [
        _result("upsert", "microfs fg.insert", batch.height, micro),
        _result("upsert", "deltalake merge", batch.height, raw),
    ]


def _alternate(
    repeats: int, first: Callable[[int], Timing], second: Callable[[int], Timing]
) -> tuple[list[Timing], list[Timing]]:
    """Run both engines ``repeats`` times, swapping which goes first every repeat."""
    a: list[Timing] = []
    b: list[Timing] = []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            a.append(first(repeat))
            b.append(second(repeat))
        else:
            b.append(second(repeat))
            a.append(first(repeat))
    return a, b


def _microfs_upsert(group: FeatureGroup, batch: pl.DataFrame) -> None:
    result = group.insert(batch)
    if result.mode != "merge" or result.rows_inserted != 0:
        raise RuntimeError(f"the correction batch should update rows only, got {result}")


def _plain_merge(path: str, batch: pl.DataFrame, keys: Sequence[str]) -> None:
    """The plain merge of deltalake: matched on the keys, no pruning predicate."""
    (
        DeltaTable(path)
        .merge(
            batch.to_arrow(),
            predicate=" AND ".join(f"t.{k} = s.{k}" for k in keys),
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


# -- helpers ---------------------------------------------------------------------------------


def _activity(rows: int, *, seed: int) -> pl.DataFrame:
    """``rows`` activity rows from the synthetic world, sorted by event time."""
    return generate_world("small", n_labels=rows, seed=seed).user_activity


def _store(path: Path) -> FeatureStore:
    if path.exists():
        shutil.rmtree(path)
    return FeatureStore(path)


def _check_equal(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    keys = ["user_id", "item_id", "timestamp"]
    if not got.sort(keys).equals(expected.select(got.columns).sort(keys)):
        raise RuntimeError("the engines wrote different tables; the comparison is void")


def _timed(action: Callable[[], object]) -> Timing:
    """Seconds one call takes, and the peak growth of resident memory during it (MB)."""
    with _rss_peak() as peak:
        start = time.perf_counter()
        action()
        seconds = time.perf_counter() - start
    return seconds, peak[0]


@contextmanager
def _rss_peak(interval: float = 0.005) -> Iterator[list[float]]:
    process = psutil.Process()
    base = process.memory_info().rss
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], (process.memory_info().rss - base) / 2**20)
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], (process.memory_info().rss - base) / 2**20)


def _result(benchmark: str, engine: str, rows: int, runs: list[Timing]) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "engine": engine,
        "rows": rows,
        "seconds": round(statistics.median(s for s, _ in runs), 4),
        "peak_rss_mb": round(max(m for _, m in runs), 1),
        "runs": [round(s, 4) for s, _ in runs],
        "checked_equal": True,  # _check_equal raised otherwise
    }


def _table(results: list[dict[str, Any]]) -> str:
    """Results as text; ``vs peer`` is seconds over the peer's seconds in the same benchmark."""
    peer = {r["benchmark"]: r["seconds"] for r in results if not r["engine"].startswith("microfs")}
    header = f"{'benchmark':<10} {'engine':<28} {'rows':>10} {'median s':>9} {'vs peer':>8}"
    lines = [f"{header} {'+RSS MB':>8}"]
    for r in results:
        ratio = r["seconds"] / peer[r["benchmark"]]
        lines.append(
            f"{r['benchmark']:<10} {r['engine']:<28} {r['rows']:>10,} {r['seconds']:>9.3f} "
            f"{ratio:>7.2f}x {r['peak_rss_mb']:>8.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the append")
    parser.add_argument(
        "--upsert-rows", type=int, default=5_000_000, help="rows of the group that is corrected"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results", help="JSON folder"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="microfs-bench-") as scratch:
        results = run(
            rows=args.rows,
            upsert_rows=args.upsert_rows,
            repeats=args.repeats,
            workdir=args.workdir or Path(scratch),
        )
    print(_table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"ingest-{stamp}.json"
    out.write_text(
        json.dumps(
            {"benchmark": "ingest", "created": stamp, "repeats": args.repeats, "results": results},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
