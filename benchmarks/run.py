"""Run MicroFS's benchmarks beside their peers: ``python benchmarks/run.py --size medium``.

Benchmarks (``--only`` picks some, comma-separated):

- ``pit``: the point-in-time training frame: MicroFS vs DuckDB ``ASOF JOIN`` vs pandas
  ``merge_asof`` on the same Delta tables (``bench_pit.py``);
- ``ingest``: append and upsert vs raw deltalake (``bench_ingest.py``);
- ``online``: online lookups (``bench_online.py``);
- ``timetravel``: reading an old table version vs the latest (``bench_timetravel.py``);
- ``hopsworks``: the shape of Hopsworks' published benchmark (``bench_hopsworks.py``).

Data are generated with ``microfs.synthetic`` and cached under ``benchmarks/data/<size>-<seed>/``
(git-ignored); every engine run is a fresh process, so each peak memory is its own; results
are checked equal before any time is reported; each figure is the median of ``--repeats``
runs. The run prints a table and writes ``benchmarks/results/<size>-<time>.json``; a complete
run (every benchmark) also redraws the chart, and the results section of
``benchmarks/README.md`` shows the latest complete medium run.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import bench_hopsworks
import bench_pit
import bench_timetravel
from common import (
    BENCHMARKS,
    DATA_DIR,
    RESULTS_DIR,
    Row,
    add_ratios,
    format_table,
    human_rate,
    results_payload,
    run_isolated,
    world_lake,
)

BENCHMARK_NAMES = ("pit", "ingest", "online", "timetravel", "hopsworks")
SIZE_NAMES = ("tiny", "small", "medium", "large")
IDLE_LOAD = 1.5
README = BENCHMARKS / "README.md"
CHART = "chart.png"
START_MARK = "<!-- results:start -->"
END_MARK = "<!-- results:end -->"

FEAST: tuple[str, ...] = ("feast duckdb", "feast file") if bench_pit.feast_venv() else ()
"""Feast's local offline stores, when its virtual environment is there."""

PLANS: dict[str, dict[str, Any]] = {
    "tiny": {
        "pit": {"tiny": ("microfs", "duckdb", "pandas", "microfs windowed", "floor")},
        "hopsworks": {
            "label_rows": [2_000],
            "locations": 20,
            "days": 30,
            "engines": ("microfs", "duckdb", "pandas"),
        },
        "ingest": {"rows": 2_000, "upsert_rows": 20_000},
        "online": {"keys": 100, "lookups": 200},
    },
    "small": {
        "pit": {"small": (*bench_pit.ENGINES, "microfs windowed", "floor", *FEAST)},
        "hopsworks": {"label_rows": [1_000_000]},
        "ingest": {"rows": 1_000_000, "upsert_rows": 1_000_000},
        "online": {"keys": 50_000, "lookups": 10_000},
    },
    "medium": {
        "pit": {
            "small": (*bench_pit.ENGINES, "floor", *FEAST),
            "5m": (*bench_pit.ENGINES, "floor", *FEAST),
            "medium": (*bench_pit.ENGINES, "microfs windowed", "floor", "feast duckdb"),
        },
        "hopsworks": {"label_rows": [1_000_000, 10_000_000]},
        "ingest": {"rows": 10_000_000, "upsert_rows": 10_000_000},
        "online": {"keys": 400_000, "lookups": 10_000},
    },
    "large": {
        "pit": {"large": (*bench_pit.ENGINES, "microfs windowed", "floor")},
        "hopsworks": {"label_rows": [1_000_000, 10_000_000, 50_000_000]},
        "ingest": {"rows": 20_000_000, "upsert_rows": 20_000_000},
        "online": {"keys": 2_000_000, "lookups": 10_000},
    },
}
"""Per size: the point-in-time frames (data size: engines) and the other benchmarks' arguments.

The Feast engines run only where a Feast virtual environment is found (see
``bench_pit.feast_venv``); Feast's file store is left out at 10M labels, where it ran out
of memory on a 24 GB machine."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = _only(args.only)
    log: Callable[[str], None] = print
    if args.wait_for_idle > 0:
        _wait_for_idle(args.wait_for_idle * 60, log)
    load_before = os.getloadavg()[0]
    if load_before > IDLE_LOAD:
        log(f"note: load average {load_before:.2f} > {IDLE_LOAD}: timings will be noisy")
    plan = PLANS[args.size]
    mem_limit = args.mem_limit_gb * 1024 if args.mem_limit_gb else None
    options = {"timeout": args.timeout, "mem_limit_mb": mem_limit, "log": log}
    started = time.perf_counter()
    rows: list[Row] = []
    skipped: list[dict[str, str]] = []
    data: dict[str, Any] = {}
    if "timetravel" in only:
        data["world"] = world_lake(args.size, args.seed, args.data_dir, log=log)
    if "pit" in only:
        data["pit"] = {
            size: world_lake(size, args.seed, args.data_dir, log=log) for size in plan["pit"]
        }
    for name in only:
        log(f"== {name}")
        if name == "pit":
            for size, engines in plan["pit"].items():
                rows += bench_pit.run(
                    size=size,
                    seed=args.seed,
                    repeats=args.repeats,
                    engines=engines,
                    data_dir=args.data_dir,
                    **options,
                )
        elif name == "timetravel":
            rows += bench_timetravel.run(
                size=args.size,
                seed=args.seed,
                repeats=args.repeats,
                data_dir=args.data_dir,
                **options,
            )
        elif name == "hopsworks":
            rows += bench_hopsworks.run(
                **plan["hopsworks"],
                seed=args.seed,
                repeats=args.repeats,
                data_dir=args.data_dir,
                **options,
            )
        else:
            arguments = dict(plan[name])
            if name == "ingest":
                arguments["repeats"] = args.repeats
            got, reason = external(name, f"bench_{name}", arguments, timeout=args.timeout)
            rows += got
            if reason:
                log(f"  skipped {name}: {reason}")
                skipped.append({"benchmark": name, "reason": reason})
    add_ratios(rows)
    payload = results_payload(
        size=args.size,
        seed=args.seed,
        repeats=args.repeats,
        benchmarks=list(only),
        complete=set(only) == set(BENCHMARK_NAMES) and not skipped,
        command="python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        load=load_before,
        data=data,
        rows=rows,
        started=started,
        skipped=skipped,
    )
    print()
    print(format_table(rows))
    for line in floor_lines(payload["results"]):
        print(line)
    for item in skipped:
        print(f"skipped {item['benchmark']}: {item['reason']}")
    path = write_results(payload, args.results_dir, args.size)
    print(f"\nresults: {path}")
    if args.size != "tiny" and payload["complete"] and args.results_dir == RESULTS_DIR:
        update_readme(args.results_dir, README)
        print(f"README (latest medium run) and chart: {README}, {args.results_dir / CHART}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--size", choices=SIZE_NAMES, default="small")
    parser.add_argument(
        "--only", default=",".join(BENCHMARK_NAMES), help=f"of {','.join(BENCHMARK_NAMES)}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="data cache folder")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="JSON folder")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds one engine run may take"
    )
    parser.add_argument(
        "--mem-limit-gb",
        type=float,
        default=None,
        help="stop an engine run above this resident memory (default: 3/4 of the machine's)",
    )
    parser.add_argument(
        "--wait-for-idle",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help=f"first wait up to this long for the load average to fall below {IDLE_LOAD}",
    )
    return parser


def _only(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARK_NAMES]
    if unknown or not names:
        raise SystemExit(
            f"unknown benchmark(s) {unknown or text!r}; choose from {','.join(BENCHMARK_NAMES)}"
        )
    return [n for n in BENCHMARK_NAMES if n in names]


def _wait_for_idle(seconds: float, log: Callable[[str], None]) -> None:
    deadline = time.monotonic() + seconds
    while (load := os.getloadavg()[0]) > IDLE_LOAD and time.monotonic() < deadline:
        log(f"waiting for the machine to be idle (load average {load:.2f}) ...")
        time.sleep(30)


# -- benchmarks written elsewhere -------------------------------------------------------------


def external(
    name: str, module: str, arguments: Mapping[str, Any], *, timeout: float
) -> tuple[list[Row], str]:
    """Run ``benchmarks/<module>.py``'s ``run(**arguments, workdir=...)`` in a fresh process.

    Returns its results as rows, and a reason when it was skipped (the module is missing
    or its ``run`` does not take these arguments) or failed.
    """
    path = BENCHMARKS / f"{module}.py"
    if not path.is_file():
        return [], f"{path.relative_to(BENCHMARKS.parent)} does not exist yet"
    try:
        parameters = inspect.signature(importlib.import_module(module).run).parameters
    except (ImportError, AttributeError, SyntaxError) as exc:
        return [], f"cannot load {module}.run: {type(exc).__name__}: {exc}"
    wanted = {**arguments, "workdir": ""}
    missing = [key for key in wanted if key not in parameters]
    if missing:
        return [], f"{module}.run() takes no {missing} (its parameters: {list(parameters)})"
    with tempfile.TemporaryDirectory(prefix=f"microfs-{name}-") as workdir:
        outcome = run_isolated(module, "run", {**arguments, "workdir": workdir}, timeout=timeout)
    if outcome.status != "ok":
        row = Row(name, "-", module, 0, status=outcome.status, note=outcome.error)
        row.peak_rss_mb = outcome.peak_rss_mb
        return [row], ""
    rows = []
    for result in outcome.value:
        case = str(result.get("benchmark", name))
        row = Row(
            name,
            case,
            str(result.get("engine", "?")),
            int(result.get("rows", 0)),
            seconds=result.get("seconds"),
            runs=list(result.get("runs", [])),
            peak_rss_mb=result.get("peak_rss_mb"),
            checked_equal=result.get("checked_equal"),
        )
        if name == "ingest" and row.checked_equal is None:
            # bench_ingest raises unless both engines wrote equal tables
            row.checked_equal = True
            row.note = f"checked in {module}; peak MB is growth of the process"
        extra = {k: v for k, v in result.items() if k not in {*row.to_dict(), "benchmark"}}
        row.extra.update(extra)
        rows.append(row)
    return rows, ""


# -- results, chart, README ------------------------------------------------------------------


def write_results(payload: Mapping[str, Any], results_dir: Path, size: str) -> Path:
    """Write the run's JSON under ``results_dir``; return its path."""
    from common import write_json

    return write_json(payload, results_dir, size)


def latest_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """The latest result file of each size (complete runs preferred), by size."""
    chosen: dict[str, tuple[bool, str, dict[str, Any]]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(payload, dict) or "results" not in payload or "size" not in payload:
            continue
        key = (bool(payload.get("complete")), str(payload.get("created", "")))
        size = str(payload["size"])
        if size not in chosen or key >= chosen[size][:2]:
            chosen[size] = (*key, payload)
    return {size: item[2] for size, item in chosen.items()}


def draw_chart(payload: Mapping[str, Any], path: Path) -> Path:
    """Rows per second per engine and case, from one run's results only.

    Two panels: the point-in-time frames (one group of bars per label count) and the
    Hopsworks-shaped workload. Rows without a checked time (a mismatch, out of memory,
    a published figure) have no bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("pit", "Point-in-time training frame"), ("hopsworks", "Hopsworks-shaped"))
    figure, axes = plt.subplots(1, 2, figsize=(15, 5.2), gridspec_kw={"width_ratios": [3, 2]})
    for axis, (benchmark, title) in zip(axes, panels, strict=True):
        groups: list[str] = []
        values: dict[str, dict[str, float]] = {}
        for result in payload["results"]:
            if result["benchmark"] != benchmark or result["status"] != "ok":
                continue
            if not result.get("rows_per_second") or result.get("checked_equal") is False:
                continue
            if result["case"] not in groups:
                groups.append(result["case"])
            values.setdefault(result["engine"], {})[result["case"]] = (
                result["rows_per_second"] / 1e6
            )
        width = 0.8 / max(len(values), 1)
        for index, (engine, by_group) in enumerate(values.items()):
            xs = [g + index * width for g, name in enumerate(groups) if name in by_group]
            ys = [by_group[name] for name in groups if name in by_group]
            bars = axis.bar(xs, ys, width, label=engine)
            axis.bar_label(bars, fmt="%.2f", fontsize=6)
        axis.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups, fontsize=8)
        axis.set_ylabel("million rows per second (higher is better)")
        axis.set_title(title)
        axis.legend(fontsize=7)
    load = payload["machine"].get("load_average_at_start")
    figure.suptitle(
        f"{payload['command']} at {payload['created']} (load average at start {load})",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def results_markdown(payload: Mapping[str, Any], chart: str) -> str:
    """The README's results section for one run."""
    machine = payload["machine"]
    lib = payload["versions"]
    lines = [
        f"Latest medium run: {payload['created']}, `{payload['command']}` "
        f"({payload['repeats']} runs per figure, median; every engine run in its own process).",
        "",
        f"Machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gb']} GiB memory, {machine['platform']}; load average at start "
        f"{machine.get('load_average_at_start')}. Python {lib['python']}, polars "
        f"{lib['polars']}, duckdb {lib['duckdb']}, pandas {lib['pandas']}, deltalake "
        f"{lib['deltalake']}, pyarrow {lib['pyarrow']}.",
        "",
        "| benchmark | case | engine | rows | median s | rows/s | time vs MicroFS | peak MB "
        "| check |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in payload["results"]:
        seconds = f"{r['seconds']:.3f}" if r["seconds"] is not None else "-"
        rate = human_rate(r["rows_per_second"])
        ratio = f"{r['vs_microfs']:.2f}x" if r.get("vs_microfs") is not None else "-"
        peak = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"
        check = {True: "equal", False: "different", None: "-"}[r["checked_equal"]]
        if r["status"] == "published":
            check = "published figure (16 vCPU), not run here"
        elif r["status"] != "ok":
            check = f"{r['status']}: {r['note']}"
        lines.append(
            f"| {r['benchmark']} | {r['case']} | {r['engine']} | {r['rows']:,} | {seconds} | "
            f"{rate} | {ratio} | {peak} | {check} |"
        )
    floors = floor_lines(payload["results"])
    if floors:
        lines += ["", *floors]
    for item in payload.get("skipped", []):
        lines.append(f"\nSkipped {item['benchmark']}: {item['reason']}")
    lines += ["", f"![rows per second per engine and size]({chart})"]
    return "\n".join(lines)


def floor_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per case with a ``floor`` row: what it read and gathered, MicroFS's ratio."""
    lines = []
    for floor in results:
        details = (floor.get("details") or {}).get("floor")
        if floor["engine"] != "floor" or not details or not floor["seconds"]:
            continue
        microfs = next(
            (
                r
                for r in results
                if r["case"] == floor["case"] and r["engine"] == "microfs" and r["seconds"]
            ),
            None,
        )
        ratio = ""
        if microfs:
            times = microfs["seconds"] / floor["seconds"]
            ratio = f"; MicroFS ({microfs['seconds']:.3f} s) takes {times:.2f}x it"
        mb = {key: value / 2**20 for key, value in details.items() if key.endswith("bytes")}
        lines.append(
            f"- Physical floor, {floor['case']}: {floor['seconds']:.3f} s to read "
            f"{mb['disk_bytes']:,.0f} MB of Parquet ({mb['decoded_bytes']:,.0f} MB decoded) "
            f"and gather {details['gathered_values']:,} values into a "
            f"{mb['frame_bytes']:,.0f} MB frame{ratio}."
        )
    return lines


def update_readme(results_dir: Path, readme: Path) -> None:
    """Redraw the chart and rewrite the README's results section from the latest medium run.

    Both come from that one run's results: a figure of another run or size never enters.
    """
    latest = latest_results(results_dir)
    if "medium" not in latest:
        return
    chart = draw_chart(latest["medium"], Path(results_dir) / CHART)
    section = results_markdown(latest["medium"], os.path.relpath(chart, readme.parent))
    text = readme.read_text(encoding="utf-8") if readme.is_file() else f"{START_MARK}\n{END_MARK}\n"
    pattern = re.compile(re.escape(START_MARK) + ".*?" + re.escape(END_MARK), re.DOTALL)
    replacement = f"{START_MARK}\n{section}\n{END_MARK}"
    text = pattern.sub(lambda _: replacement, text) if pattern.search(text) else text + replacement
    readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
