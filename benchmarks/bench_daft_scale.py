"""Daft on a local Ray cluster of 1, 2, then 4 worker nodes: throughput and memory per worker.

The point-in-time workload of ``bench_pit.py`` (``fv.training_frame(engine="daft")`` over
the cached lake of ``--size``) runs on a Ray cluster simulated on this machine with
``ray.cluster_utils.Cluster``: a head node with no CPUs (the driver's node: it runs no
tasks) and N worker nodes of ``--cpus-per-worker`` CPUs each, every node its own raylet
with its own worker processes, as separate machines would have. Daft's Ray runner spreads
the plan over them; the frame is written by the workers as Parquet files into a temporary
folder (nothing is gathered on the driver).

For each N a fresh process (Daft's runner is set once per process) starts the cluster
(untimed), builds the frame ``--repeats`` times and tears the cluster down. Reported:
seconds (median), label rows per second, and each worker node's peak resident memory
(its raylet and every process under it, sampled every 0.2 s; the largest node and the
sum of nodes). With ``--check`` the first run's files are
compared with the Polars engine's frame (same rows and values after sorting).

N workers of 1 CPU each on a 2-core machine: 4 workers oversubscribe it (4 CPUs claimed,
2 exist), so their figures show the plan's overhead with more workers, not a speed-up.
The machine's load is printed with every figure.

Usage::

    python benchmarks/bench_daft_scale.py --size small --workers 1,2,4 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import psutil
from common import RESULTS_DIR, VIEW_NAME, compare_frames, machine_info, median, world_lake

ORDER = ["timestamp", "user_id", "item_id"]
"""The label order: results are compared after sorting by it."""


class NodeMemory:
    """Peak resident memory of each node: its raylet and every process under it."""

    def __init__(self, raylets: Sequence[int], every: float = 0.2) -> None:
        self._raylets = [psutil.Process(pid) for pid in raylets]
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peaks = [0.0] * len(raylets)
        self.total = 0.0

    def _run(self) -> None:
        while not self._done.is_set():
            sizes = [_tree_mb(raylet) for raylet in self._raylets]
            self.peaks = [max(p, s) for p, s in zip(self.peaks, sizes, strict=True)]
            self.total = max(self.total, sum(sizes))
            self._done.wait(self._every)

    def __enter__(self) -> NodeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def _tree_mb(process: psutil.Process) -> float:
    """Resident memory of ``process`` and its descendants, in MiB (0 for what is gone)."""
    total = 0.0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for member in members:
        try:
            total += member.memory_info().rss / 2**20
        except psutil.Error:
            continue
    return total


def run_workers(
    workers: int, *, cpus: int, lake: str, repeats: int, expected: pl.DataFrame | None
) -> dict[str, Any]:
    """Start a cluster of ``workers`` nodes, build the frame ``repeats`` times, tear it down."""
    import daft
    import ray
    from ray.cluster_utils import Cluster

    from microfs import FeatureStore

    started = time.perf_counter()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    nodes = [cluster.add_node(num_cpus=cpus) for _ in range(workers)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    daft.set_runner_ray(address=cluster.address, noop_if_initialized=True)
    start_s = time.perf_counter() - started
    raylets = [node.all_processes["raylet"][0].process.pid for node in nodes]
    runs: list[dict[str, Any]] = []
    check = ""
    try:
        for repeat in range(repeats):
            folder = tempfile.mkdtemp(prefix="microfs-daft-scale-")
            try:
                load = os.getloadavg()[0]
                with NodeMemory(raylets) as memory:
                    clock = time.perf_counter()
                    view = FeatureStore(lake).get_feature_view(VIEW_NAME)
                    view.training_frame(engine="daft").write_parquet(folder)
                    seconds = time.perf_counter() - clock
                runs.append(
                    {
                        "seconds": round(seconds, 3),
                        "load_before": round(load, 2),
                        "node_peak_mb": [round(p) for p in memory.peaks],
                        "nodes_peak_mb": round(memory.total),
                    }
                )
                if repeat == 0 and expected is not None:
                    check = compare_frames(pl.read_parquet(folder), expected, ORDER) or "equal"
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    seconds = median([r["seconds"] for r in runs])
    rows = expected.height if expected is not None else None
    return {
        "workers": workers,
        "cpus_per_worker": cpus,
        "ray_start_s": round(start_s, 2),
        "seconds": seconds,
        "runs": runs,
        "worker_peak_mb": max(max(r["node_peak_mb"]) for r in runs),
        "workers_peak_mb": max(r["nodes_peak_mb"] for r in runs),
        "check": check or "not checked",
        "rows": rows,
    }


RESULT = "RESULT "
"""Starts the line on which a child prints its result as JSON."""


def _in_child(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """``run_workers`` for ``workers`` nodes in a fresh process; its result."""
    command = [sys.executable, __file__, "--one", str(workers), "--size", args.size]
    command += ["--seed", str(args.seed), "--repeats", str(args.repeats)]
    command += ["--cpus-per-worker", str(args.cpus_per_worker)]
    command += ["--check"] if args.check else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT))
            return result
    raise SystemExit(f"{workers} workers failed:\n{done.stderr[-4000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", default="1,2,4", help="worker node counts, in order")
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="compare with the Polars frame")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's node count
    args = parser.parse_args(argv)
    record = world_lake(args.size, args.seed, log=lambda line: print(line, file=sys.stderr))
    labels = int(record["rows"]["user_activity"])
    if args.one is not None:
        expected = None
        if args.check:
            from microfs import FeatureStore

            view = FeatureStore(record["lake"]).get_feature_view(VIEW_NAME)
            expected = view.training_frame().collect()
        result = run_workers(
            args.one,
            cpus=args.cpus_per_worker,
            lake=record["lake"],
            repeats=args.repeats,
            expected=expected,
        )
        print(RESULT + json.dumps(result))
        return 0
    results = []
    print(
        f"{'workers':>7} {'CPUs':>4} {'seconds':>8} {'rows/s':>10} {'worker MB':>9} "
        f"{'sum MB':>7} {'load':>5}  check"
    )
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        result = _in_child(workers, args)
        result["label_rows_per_s"] = round(labels / result["seconds"])
        results.append(result)
        load = max(r["load_before"] for r in result["runs"])
        print(
            f"{workers:>7} {workers * args.cpus_per_worker:>4} {result['seconds']:>8.2f} "
            f"{result['label_rows_per_s']:>10,} {result['worker_peak_mb']:>9,} "
            f"{result['workers_peak_mb']:>7,} {load:>5.2f}  {result['check']}",
            flush=True,
        )
    payload = {
        "benchmark": "daft_scale",
        "size": args.size,
        "labels": labels,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "results": results,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.results / f"daft_scale-{args.size}-{stamp}.json"
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
