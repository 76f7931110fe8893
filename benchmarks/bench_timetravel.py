"""Time travel: reading an old version of a feature group beside reading the latest one.

The group is the synthetic world's label group (``user_activity``, as many rows as the
size's labels): inserted in one commit (table version 1), then corrected by five upserts
of 1 % of its rows each, drawn from its most recent tenth (versions 2 to 6), as late
corrections arrive. Each case is read three ways, from opening the table on:

- ``microfs``: ``fg.read(version=1)`` and ``fg.read()``;
- ``deltalake``: ``DeltaTable(path, version=...).to_pyarrow_table()``;
- ``polars``: ``pl.read_delta(path, version=...)``.

Every result is checked equal to the frame that was written at that version (kept beside
the lake when it was built) before its time is reported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from common import (
    DATA_DIR,
    Row,
    add_ratios,
    cached,
    data_folder,
    format_table,
    fresh_folder,
    mark_ready,
    measure,
    run_isolated,
    timed_work,
    world_lake,
    write_sorted,
)

GROUP = "user_activity"
UPSERTS = 5
CORRECTED = 0.01
RECENT = 0.1
ENGINES: tuple[str, ...] = ("microfs", "deltalake", "polars")
ORDER = ["timestamp", "user_id", "item_id"]
COLUMNS = ["user_id", "item_id", "timestamp", "duration_sec", "conversion"]
"""The group's columns: what MicroFS reads (its commit-time column is its own)."""


def build_timetravel_lake(source: str, folder: str) -> dict[str, Any]:
    """Build the time-travel lake at ``folder`` from the world's label table ``source``."""
    from microfs import FeatureStore
    from microfs.synthetic import GROUPS, SCHEMAS, corrections

    root = fresh_folder(Path(folder))
    frame = pl.read_delta(source, columns=list(SCHEMAS[GROUP]))  # MicroFS's columns
    fs = FeatureStore(root / "lake")
    fg = fs.create_feature_group(name=GROUP, schema=SCHEMAS[GROUP], **GROUPS[GROUP])
    first = fg.insert(frame)
    write_sorted(frame, str(root / "expected-first.parquet"), ORDER)
    current = frame
    keys = list(fg.definition.upsert_keys)
    modes = []
    for number in range(UPSERTS):
        batch = corrections(current, fraction=CORRECTED, recent_fraction=RECENT, seed=number)
        modes.append(fg.insert(batch).mode)
        current = current.update(batch, on=keys)
    write_sorted(current, str(root / "expected-latest.parquet"), ORDER)
    return mark_ready(
        root,
        {
            "lake": str(root / "lake"),
            "table": str(fg.path),
            "rows": frame.height,
            "first_version": first.version,
            "latest_version": fg.table_version(),
            "upsert_modes": modes,
            "expected": {
                "first": str(root / "expected-first.parquet"),
                "latest": str(root / "expected-latest.parquet"),
            },
        },
    )


def timetravel_lake(
    size: str, seed: int, data_dir: Path = DATA_DIR, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The cached time-travel lake of a size and seed, built when missing."""
    world = world_lake(size, seed, data_dir, log=log)
    folder = data_folder(data_dir, size, seed) / "timetravel"
    record = cached(folder)
    if record is not None:
        return record
    log(f"data: building the time-travel lake ({UPSERTS} upserts) in {folder} ...")
    outcome = run_isolated(
        "bench_timetravel",
        "build_timetravel_lake",
        {"source": world["tables"][GROUP], "folder": str(folder)},
    )
    if outcome.status != "ok":
        raise SystemExit(f"could not build the time-travel lake: {outcome.error}")
    return outcome.value  # type: ignore[no-any-return]


def read_version(
    engine: str, lake: str, table: str, version: int | None, result_path: str | None = None
) -> dict[str, Any]:
    """Read the group at ``version`` (None: the latest) with ``engine``; return the timing."""
    if engine == "microfs":
        from microfs import FeatureStore

        def work() -> Any:
            return FeatureStore(lake).get_feature_group(GROUP).read(version=version)
    elif engine == "deltalake":
        from deltalake import DeltaTable

        def work() -> Any:
            return DeltaTable(table, version=version).to_pyarrow_table(columns=COLUMNS)
    elif engine == "polars":

        def work() -> Any:
            return pl.read_delta(table, version=version, columns=COLUMNS)
    else:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    clock, frame = timed_work(work)
    out = frame if isinstance(frame, pl.DataFrame) else pl.DataFrame(pl.from_arrow(frame))
    if result_path is not None:
        write_sorted(out, result_path, ORDER)
    return {**clock, "rows": out.height}


def run(
    *,
    size: str,
    seed: int = 0,
    repeats: int = 3,
    engines: Sequence[str] = ENGINES,
    data_dir: Path = DATA_DIR,
    timeout: float = 3600.0,
    mem_limit_mb: float | None = None,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Both cases, every engine."""
    record = timetravel_lake(size, seed, data_dir, log=log)
    latest = int(record["latest_version"])
    first = int(record["first_version"])
    rows: list[Row] = []
    for label, version, expected in (
        (f"version {first} of {latest}", first, record["expected"]["first"]),
        (f"latest (version {latest})", None, record["expected"]["latest"]),
    ):
        rows += measure(
            "bench_timetravel",
            "read_version",
            {"lake": record["lake"], "table": record["table"], "version": version},
            benchmark="timetravel",
            case=label,
            order=ORDER,
            engines=engines,
            repeats=repeats,
            expected=Path(expected),
            timeout=timeout,
            mem_limit_mb=mem_limit_mb,
            log=log,
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    rows = run(size=args.size, seed=args.seed, repeats=args.repeats, data_dir=args.data_dir)
    add_ratios(rows)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
