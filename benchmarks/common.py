"""Shared benchmark machinery: the cached data lake, isolated engine runs, checks, output.

- :func:`world_lake` builds (once per size and seed) a MicroFS lake under
  ``benchmarks/data/<size>-<seed>/`` with the synthetic world's three groups ingested and
  the benchmark feature view created; later runs reuse it.
- :func:`run_isolated` runs one benchmark function in a fresh Python process and returns
  what it measured, its peak resident memory, and a clear status when it failed, ran out
  of memory (a watchdog stops it above a limit) or out of time.
- :func:`compare_frames` is the equality check every engine passes before its time counts.
- :func:`format_table`, :func:`machine_info` and :func:`write_json` make the output.

Running this file as a script is the child side of :func:`run_isolated`::

    python benchmarks/common.py <module> <function> <arguments.json> <answer.json>
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import polars as pl
import psutil

from microfs import FeatureGroup, FeatureStore
from microfs.synthetic import (
    GROUPS,
    LABEL_COL,
    LABEL_GROUP,
    SCHEMAS,
    SIZES,
    activity_windows,
    generate_world,
    user_activity,
)

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
DATA_DIR = BENCHMARKS / "data"
RESULTS_DIR = BENCHMARKS / "results"

BENCH_SIZES: dict[str, tuple[str, dict[str, int]]] = {
    "5m": (
        "medium",
        {
            "n_labels": 5_000_000,
            "n_users": 200_000,
            "n_items": 50_000,
            "n_profile_rows": 500_000,
            "n_item_rows": 500_000,
        },
    ),
    "100m": (
        "large",
        {
            "n_labels": 100_000_000,
            "n_users": 4_000_000,
            "n_items": 1_000_000,
            "n_profile_rows": 10_000_000,
            "n_item_rows": 10_000_000,
        },
    ),
    "300m": (
        "large",
        {
            "n_labels": 300_000_000,
            "n_users": 4_000_000,
            "n_items": 1_000_000,
            "n_profile_rows": 10_000_000,
            "n_item_rows": 10_000_000,
            "label_chunks": 24,
        },
    ),
}
"""Sizes the benchmarks add to :data:`microfs.synthetic.SIZES`: a named size and counts.

``label_chunks`` (1 when absent) makes the labels in that many consecutive sub-windows of
event time, one at a time (see :func:`build_world_lake`): the 300M labels would take
about 30 GB to generate at once. ``300m`` keeps ``100m``'s users, items and groups, so the
two frames differ only in their labels (and per row they can be compared)."""

VIEW_NAME = "pit_benchmark"
"""The feature view of the point-in-time workload in every cached lake."""
VIEW_JOINS: tuple[dict[str, Any], ...] = (
    {"fg_name": "user_profile", "on": ["user_id"]},
    {"fg_name": "item_feature", "on": ["item_id"]},
)
READY = "READY.json"
"""Written last into a cached data folder: its absence means the folder is incomplete."""

PRELOADED = ("pyarrow", "pyarrow.dataset", "pyarrow.parquet", "pyarrow.compute", "deltalake")
"""Modules every child imports before its work, so that no engine's time pays for them."""

WORK_DONE_ENV = "MICROFS_BENCH_WORK_DONE"
"""Names the file a child touches when its measured work ends (see :func:`timed_work`)."""
WORK_PEAK = "_work_peak_rss_mb"
"""Key of the peak memory right after the measured work in a child's return value."""
CHECK_CHUNK_ROWS = 2_000_000
"""Rows compared at a time: the check holds two slices in memory, never two whole frames."""

_CLOCK_KEYS = frozenset({"seconds", "cpu_seconds", "system_seconds", "rows"})
"""Keys of a child's reply that every run has; the others are shown as its details."""

Status = Literal["ok", "out of memory", "timeout", "error", "mismatch", "skipped", "published"]


# -- the cached lake -------------------------------------------------------------------------


def data_folder(data_dir: Path, name: str, seed: int) -> Path:
    """The cache folder of one data set: ``<data_dir>/<name>-<seed>``."""
    return Path(data_dir) / f"{name}-{seed}"


def cached(folder: Path) -> dict[str, Any] | None:
    """The READY record of a complete cache folder, or None when it must be (re)built."""
    marker = folder / READY
    if not marker.is_file():
        return None
    record: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
    return record


def mark_ready(folder: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """Write the READY record (atomically) and return it."""
    payload = dict(record)
    payload["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tmp = folder / (READY + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(folder / READY)
    return payload


def fresh_folder(folder: Path) -> Path:
    """Empty ``folder`` (a half-built cache from an interrupted run) and create it."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def build_world_lake(size: str, seed: int, folder: str) -> dict[str, Any]:
    """Generate the synthetic world and ingest it into a new lake at ``folder``.

    Runs in a child process (see :func:`world_lake`). With ``label_chunks`` above 1 in
    the size's counts, the feature groups are generated and ingested first, then the
    labels one sub-window of event time at a time (:func:`world_frames`), each appended
    to the label group, so memory holds one chunk of labels. Returns the READY record:
    row counts, Delta table paths, generation and ingestion times, and the peak memory.
    """
    root = fresh_folder(Path(folder))
    lake = root / "lake"
    fs = FeatureStore(lake)
    groups: dict[str, FeatureGroup] = {}
    rows: dict[str, int] = {}
    ingest: dict[str, float] = {}
    generated = 0.0
    frames = world_frames(size, seed)
    while True:
        began = time.perf_counter()
        item = next(frames, None)
        generated += time.perf_counter() - began
        if item is None:
            break
        name, frame = item
        del item  # the frame goes before the next chunk is generated
        if name not in groups:
            groups[name] = fs.create_feature_group(name=name, schema=SCHEMAS[name], **GROUPS[name])
            rows[name], ingest[name] = 0, 0.0
        began = time.perf_counter()
        groups[name].insert(frame)
        ingest[name] += time.perf_counter() - began
        rows[name] += frame.height
        del frame
    fs.create_feature_view(
        name=VIEW_NAME, label_fg=LABEL_GROUP, label_col=LABEL_COL, joins=list(VIEW_JOINS)
    )
    return mark_ready(
        root,
        {
            "size": size,
            "seed": seed,
            "lake": str(lake),
            "tables": {name: str(fg.path) for name, fg in groups.items()},
            "rows": rows,
            "generate_seconds": round(generated, 3),
            "ingest_seconds": {name: round(seconds, 3) for name, seconds in ingest.items()},
            "label_chunks": _size_counts(size)[2],
            "peak_rss_mb": round(own_peak_rss_mb(), 1),
        },
    )


def _size_counts(size: str) -> tuple[str, dict[str, Any], int]:
    """The synthetic size, its counts (``generate_world``'s arguments) and label chunks."""
    base, named = BENCH_SIZES.get(size, (size, {}))
    counts: dict[str, Any] = dict(named)
    return base, counts, counts.pop("label_chunks", 1)


def world_frames(size: str, seed: int) -> Iterator[tuple[str, pl.DataFrame]]:
    """The world of a named size as (group name, frame) pairs, in ingestion order.

    Without ``label_chunks``, :func:`microfs.synthetic.generate_world`'s three frames.
    With ``label_chunks`` of k, its two feature groups (the same as the whole world's),
    then k label frames, one per sub-window of :func:`microfs.synthetic.activity_windows`
    (seeded ``seed * k + i`` for the i-th), each made when the previous one is consumed:
    the labels are in event-time order across the frames.
    """
    base, counts, chunks = _size_counts(size)
    if chunks == 1:
        yield from generate_world(base, seed=seed, **counts).frames().items()
        return
    labels = counts.pop("n_labels", SIZES[base]["n_labels"])
    world = generate_world(base, seed=seed, n_labels=0, **counts)
    profiles, items = world.user_profile, world.item_feature
    del world
    yield "user_profile", profiles
    yield "item_feature", items
    for number, (n, lo, hi) in enumerate(activity_windows(labels, chunks)):
        yield (
            LABEL_GROUP,
            user_activity(n, profiles, items, seed=seed * chunks + number, start=lo, end=hi),
        )


def world_lake(
    size: str, seed: int, data_dir: Path = DATA_DIR, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The cached lake of the synthetic world at ``size``/``seed``, built when missing."""
    if size not in SIZES and size not in BENCH_SIZES:
        known = ", ".join([*SIZES, *BENCH_SIZES])
        raise SystemExit(f"unknown size {size!r}; sizes: {known}")
    folder = data_folder(data_dir, size, seed)
    record = cached(folder)
    if record is not None:
        log(f"data: reusing {folder}")
        return record
    log(f"data: generating the {size} world (seed {seed}) into {folder} ...")
    outcome = run_isolated(
        "common", "build_world_lake", {"size": size, "seed": seed, "folder": str(folder)}
    )
    if outcome.status != "ok":
        raise SystemExit(f"could not build the {size} data: {outcome.status}: {outcome.error}")
    log(
        f"data: generated in {outcome.value['generate_seconds']:.1f} s, ingested in "
        f"{sum(outcome.value['ingest_seconds'].values()):.1f} s, peak {outcome.peak_rss_mb} MB"
    )
    return outcome.value  # type: ignore[no-any-return]


# -- isolated runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one isolated run gave.

    Attributes:
        status: ``"ok"``, ``"out of memory"``, ``"timeout"`` or ``"error"``.
        value: The function's return value (JSON), None unless ok.
        peak_rss_mb: The child's peak resident memory: its own high-water mark
            (``VmHWM``) right after the measured work when the function reports it, at its
            end otherwise; for a child that was stopped or died, the largest the watchdog saw.
        base_rss_mb: The child's resident memory after imports, before the work.
        wall_seconds: Wall time of the whole child process, imports included.
        error: A one-line reason when not ok.
    """

    status: Status
    value: Any = None
    peak_rss_mb: float | None = None
    base_rss_mb: float | None = None
    wall_seconds: float = 0.0
    error: str = ""


def default_mem_limit_mb() -> float:
    """Three quarters of the machine's memory: a child above it is stopped as out of memory."""
    return 0.75 * float(psutil.virtual_memory().total) / 2**20


def run_isolated(
    module: str,
    function: str,
    kwargs: Mapping[str, Any],
    *,
    timeout: float = 3600.0,
    mem_limit_mb: float | None = None,
    poll: float = 0.05,
) -> Outcome:
    """Run ``benchmarks/<module>.py``'s ``function(**kwargs)`` in a fresh process.

    A watchdog polls the child's resident memory (with its children) and stops it when
    it passes ``mem_limit_mb``, before the kernel's out-of-memory killer picks a victim;
    the run is then reported as ``"out of memory"``. A child killed by a signal (such as
    the kernel's OOM killer) or raising ``MemoryError`` is reported the same way. Once the
    child says its measured work is over (:func:`timed_work`), the limit stops applying.
    The child's error output goes to a file, so a talkative child never blocks on a pipe.
    """
    limit = default_mem_limit_mb() if mem_limit_mb is None else mem_limit_mb
    with tempfile.TemporaryDirectory(prefix="microfs-bench-") as scratch:
        arguments = Path(scratch) / "arguments.json"
        answer = Path(scratch) / "answer.json"
        arguments.write_text(json.dumps(dict(kwargs)), encoding="utf-8")
        command = [sys.executable, str(Path(__file__)), module, function, str(arguments)]
        done = Path(scratch) / "work-done"
        environment = {**os.environ, WORK_DONE_ENV: str(done)}
        started = time.perf_counter()
        with (Path(scratch) / "stderr.txt").open("w+", encoding="utf-8") as errors:
            child = subprocess.Popen(
                [*command, str(answer)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=environment,
                text=True,
            )
            watched = psutil.Process(child.pid)
            peak = 0.0
            stopped: Status | None = None
            while child.poll() is None:
                rss = _tree_rss_mb(watched)
                if not done.exists():  # what the result check needs afterwards is not judged
                    peak = max(peak, rss)
                    if peak > limit:
                        stopped = "out of memory"
                if time.perf_counter() - started > timeout:
                    stopped = "timeout"
                if stopped is not None:
                    child.kill()
                    break
                time.sleep(poll)
            child.wait()
            errors.seek(0)
            stderr = errors.read()
        wall = time.perf_counter() - started
        if stopped == "out of memory":
            return Outcome(
                stopped, peak_rss_mb=peak, wall_seconds=wall, error=f"stopped above {limit:.0f} MB"
            )
        if stopped == "timeout":
            return Outcome(
                stopped, peak_rss_mb=peak, wall_seconds=wall, error=f"stopped after {timeout:.0f} s"
            )
        if child.returncode != 0 or not answer.is_file():
            return _failure(child.returncode, stderr or "", peak, wall)
        reply = json.loads(answer.read_text(encoding="utf-8"))
    return Outcome(
        "ok",
        value=reply["value"],
        peak_rss_mb=reply["peak_rss_mb"],  # the child's own high-water mark, exact
        base_rss_mb=reply["base_rss_mb"],
        wall_seconds=wall,
    )


def _failure(returncode: int, stderr: str, peak: float, wall: float) -> Outcome:
    """The outcome of a child that died or raised."""
    lines = stderr.strip().splitlines()
    if returncode == -9:  # SIGKILL that was not ours: the kernel's out-of-memory killer
        status: Status = "out of memory"
        reason = "killed by signal 9 (the kernel's out-of-memory killer)"
    elif "MemoryError" in stderr:
        status, reason = "out of memory", "MemoryError"
    elif returncode < 0:
        status, reason = "error", f"killed by signal {-returncode}"
        if lines:
            reason += f" ({lines[-1]})"
    else:
        status, reason = "error", _raised(lines) or f"exit code {returncode}"
    return Outcome(status, peak_rss_mb=peak or None, wall_seconds=wall, error=reason[:300])


_RAISED = re.compile(r"^[\w.]+(Error|Exception)\b.*?: ")
"""A traceback's closing line (``duckdb.OutOfMemoryException: Out of Memory Error: ...``)."""


def _raised(lines: Sequence[str]) -> str:
    """The exception line of a traceback, even when its message goes on for more lines."""
    last = lines[-1] if lines else ""
    return next((line for line in reversed(lines) if _RAISED.match(line)), last)


def _tree_rss_mb(process: psutil.Process) -> float:
    try:
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            total += child.memory_info().rss
    except psutil.Error:
        return 0.0
    return float(total) / 2**20


def own_peak_rss_mb() -> float:
    """This process's peak resident memory in MB, counted from its own start.

    ``VmHWM`` of ``/proc/self/status`` belongs to the process's current address space, so
    it starts afresh at ``exec``; ``ru_maxrss`` does not (on Linux it keeps the peak of the
    forked parent, here the runner holding result frames), so it is only the fallback.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child_main(argv: Sequence[str]) -> int:
    """The child side of :func:`run_isolated`."""
    module, function, arguments, answer = argv
    kwargs = json.loads(Path(arguments).read_text(encoding="utf-8"))
    target = getattr(importlib.import_module(module), function)
    for library in PRELOADED:  # import costs are not what is measured: pay them first
        importlib.import_module(library)
    base = psutil.Process().memory_info().rss / 2**20
    value = target(**kwargs)
    peak = own_peak_rss_mb()
    if isinstance(value, dict) and WORK_PEAK in value:
        peak = float(value.pop(WORK_PEAK))  # before the untimed writing of the result
    reply = {"value": value, "peak_rss_mb": round(peak, 1), "base_rss_mb": round(base, 1)}
    Path(answer).write_text(json.dumps(reply), encoding="utf-8")
    return 0


# -- timing and checks -------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call takes, and what it returned."""
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def normalize(frame: pl.DataFrame, like: pl.Schema) -> pl.DataFrame:
    """``frame``'s columns in ``like``'s order and types (time zones converted to ``like``'s)."""
    columns = []
    for name, dtype in like.items():
        column = pl.col(name)
        have = frame.schema[name]
        if isinstance(dtype, pl.Datetime) and isinstance(have, pl.Datetime):
            if have.time_zone is None:
                column = column.dt.replace_time_zone("UTC")
            column = column.dt.convert_time_zone(dtype.time_zone or "UTC")
        columns.append(column.cast(dtype))
    return frame.select(columns)


def compare_frames(got: pl.DataFrame, expected: pl.DataFrame, order: Sequence[str]) -> str:
    """An empty string when both hold the same rows and values (after sorting by ``order``).

    Otherwise a one-line description of the first difference found.
    """
    if set(got.columns) != set(expected.columns):
        return f"columns differ: {sorted(got.columns)} vs {sorted(expected.columns)}"
    if got.height != expected.height:
        return f"{got.height:,} rows instead of {expected.height:,}"
    try:
        got = normalize(got, expected.schema)
    except pl.exceptions.PolarsError as exc:
        return f"types cannot be matched: {exc}"
    left = got.sort(list(order), nulls_last=False, maintain_order=True)
    right = expected.sort(list(order), nulls_last=False, maintain_order=True)
    for name in expected.columns:
        if not left[name].equals(right[name], check_names=False):
            differ = (left[name].ne_missing(right[name])).sum()
            return f"column {name!r} differs in {differ:,} rows"
    return ""


def cpu_seconds() -> float:
    """User plus system CPU seconds this process has used so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def system_seconds() -> float:
    """System (kernel) CPU seconds this process has used so far: mostly page faults here."""
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_stime)


def timed_work(action: Callable[[], Any]) -> tuple[dict[str, float], Any]:
    """Wall and CPU seconds of one call, and what it returned.

    CPU seconds (all threads) are reported beside wall time: on a busy machine they move
    much less, and their ratio to wall time shows how well the work used the cores. The
    system part of them is reported too: on this machine it is mostly the kernel faulting
    in memory, whose cost per GiB swings tenfold over a day (memory the host has taken
    back is slow to touch again), so it tells a slow run of the machine from slow code. In a
    child of :func:`run_isolated`, the peak memory so far is recorded too, and the parent
    is told the measured work is over: the memory limit then no longer applies, so writing
    the result for the check cannot turn a finished run into "out of memory".
    """
    cpu, system = cpu_seconds(), system_seconds()
    seconds, value = timed(action)
    clock = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "system_seconds": system_seconds() - system,
        WORK_PEAK: own_peak_rss_mb(),
    }
    marker = os.environ.get(WORK_DONE_ENV)
    if marker:
        Path(marker).touch()
    return clock, value


def write_sorted(frame: pl.DataFrame, path: str, order: Sequence[str]) -> None:
    """Write a result for the check, sorted by ``order`` (untimed, after the work)."""
    frame.sort(list(order), nulls_last=False, maintain_order=True).write_parquet(
        path, row_group_size=CHECK_CHUNK_ROWS // 4
    )


def measure(
    module: str,
    function: str,
    kwargs: Mapping[str, Any],
    *,
    benchmark: str,
    case: str,
    order: Sequence[str],
    engines: Sequence[str],
    repeats: int = 3,
    expected: Path | None = None,
    per_engine: Mapping[str, Mapping[str, Any]] | None = None,
    timeout: float = 3600.0,
    mem_limit_mb: float | None = None,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Run each engine ``repeats`` times in fresh processes, check results, report medians.

    The child is ``<module>.<function>(engine=..., result_path=..., **kwargs)`` (with
    ``per_engine[engine]`` merged in); it returns at least ``seconds`` and ``rows``, and
    writes its result frame to ``result_path`` when that is not None (the first run of
    each engine). Runs are interleaved (engine by engine, repeat by repeat) so a change
    of machine load hits every engine alike, and each repeat starts one engine further
    along the list, so no engine always runs right after the same one (on this machine a
    process's time depends on whether the memory it touches was in use a moment before:
    memory the host has taken back costs up to seconds per GiB to touch again).

    After the first round every result is compared with ``expected`` (a Parquet file) or,
    without one, with the first MicroFS engine's result. An engine that fails, runs out
    of memory or time, or gives a different frame is reported with that status and no
    time: no time is reported for a result that was not checked equal.
    """
    rows = {engine: Row(benchmark, case, engine, 0) for engine in engines}
    times: dict[str, list[float]] = {engine: [] for engine in engines}
    cpu: dict[str, list[float]] = {engine: [] for engine in engines}
    system: dict[str, list[float]] = {engine: [] for engine in engines}
    with tempfile.TemporaryDirectory(prefix="microfs-bench-") as scratch:
        results = {engine: Path(scratch) / f"{i}.parquet" for i, engine in enumerate(engines)}
        for repeat in range(repeats):
            turn = repeat % len(engines)
            for engine in [*engines[turn:], *engines[:turn]]:
                row = rows[engine]
                if row.status != "ok":
                    continue
                crashes = row.extra.setdefault("crashes", [])
                arguments = {
                    **kwargs,
                    **(per_engine or {}).get(engine, {}),
                    "engine": engine,
                    "result_path": str(results[engine]) if repeat == 0 else None,
                }
                outcome = run_isolated(
                    module, function, arguments, timeout=timeout, mem_limit_mb=mem_limit_mb
                )
                if outcome.status == "error":
                    # a crash is retried once (and noted): a rare abort in a library must
                    # not void an engine's row; a second failure is reported as such
                    log(f"  {benchmark} | {case} | {engine}: {outcome.error}; retrying once")
                    crashes.append(f"run {repeat + 1} crashed ({outcome.error}) and was rerun")
                    outcome = run_isolated(
                        module, function, arguments, timeout=timeout, mem_limit_mb=mem_limit_mb
                    )
                if outcome.peak_rss_mb is not None:
                    row.peak_rss_mb = max(row.peak_rss_mb or 0.0, outcome.peak_rss_mb)
                if outcome.status != "ok":
                    row.status, row.note = outcome.status, outcome.error
                    log(f"  {benchmark} | {case} | {engine}: {outcome.status} ({outcome.error})")
                    continue
                value = outcome.value
                row.rows = int(value["rows"])
                details = {k: v for k, v in value.items() if k not in _CLOCK_KEYS}
                if details and "details" not in row.extra:
                    row.extra["details"] = details
                times[engine].append(float(value["seconds"]))
                if "cpu_seconds" in value:
                    cpu[engine].append(float(value["cpu_seconds"]))
                if "system_seconds" in value:
                    system[engine].append(float(value["system_seconds"]))
                log(
                    f"  {benchmark} | {case} | {engine} run {repeat + 1}: "
                    f"{value['seconds']:.3f} s (cpu {value.get('cpu_seconds', 0):.2f} s, "
                    f"system {value.get('system_seconds', 0):.2f} s)"
                )
            if repeat == 0:
                _check(rows, results, order, expected, log)
    for engine, row in rows.items():
        row.runs = times[engine]
        if row.extra.get("crashes"):
            row.note = "; ".join(filter(None, [row.note, *row.extra["crashes"]]))
        else:
            row.extra.pop("crashes", None)
        if cpu[engine]:
            row.extra["cpu_seconds"] = round(median(cpu[engine]), 4)
        if system[engine]:
            row.extra["system_seconds"] = [round(s, 3) for s in system[engine]]  # per run
        if row.status == "ok" and row.checked_equal and times[engine]:
            row.seconds = median(times[engine])
        elif row.status == "mismatch" and times[engine]:
            # no time in the table for a different answer; the note says what it took
            row.note += f" (took {median(times[engine]):.3f} s; not comparable)"
    return list(rows.values())


def _check(
    rows: Mapping[str, Row],
    results: Mapping[str, Path],
    order: Sequence[str],
    expected: Path | None,
    log: Callable[[str], None],
) -> None:
    """Compare every finished engine's first result with the reference."""
    finished = [engine for engine, row in rows.items() if row.status == "ok"]
    if not finished:
        return
    if expected is not None:
        reference_name, reference = "the expected frame", expected
    else:
        first = next((e for e in finished if e.startswith("microfs")), finished[0])
        reference_name, reference = first, results[first]
        rows[first].checked_equal = True
        if len(finished) == 1:
            rows[first].note = "no other engine finished to compare with"
    for engine in finished:
        if engine == reference_name:
            continue
        began = time.perf_counter()
        difference = compare_files(results[engine], reference, order)
        rows[engine].extra["check_seconds"] = round(time.perf_counter() - began, 1)
        rows[engine].checked_equal = difference == ""
        if difference:
            rows[engine].status = "mismatch"
            rows[engine].note = f"vs {reference_name}: {difference}"
            log(f"  {engine}: result differs from {reference_name}: {difference}")


def compare_files(
    got: Path, expected: Path, order: Sequence[str], *, chunk: int = CHECK_CHUNK_ROWS
) -> str:
    """:func:`compare_frames` of two Parquet files sorted by ``order``, slice by slice.

    Both files hold rows sorted by ``order`` (see :func:`write_sorted`), which identifies
    a row, so equal frames have equal slices; memory holds two slices at a time.
    """
    heights = [pl.scan_parquet(p).select(pl.len()).collect().item() for p in (got, expected)]
    if heights[0] != heights[1]:
        return f"{heights[0]:,} rows instead of {heights[1]:,}"
    for offset in range(0, max(heights[1], 1), chunk):
        left = pl.scan_parquet(got).slice(offset, chunk).collect()
        right = pl.scan_parquet(expected).slice(offset, chunk).collect()
        difference = compare_frames(left, right, order)
        if difference:
            return f"rows {offset:,}-{offset + right.height - 1:,}: {difference}"
    return ""


# -- output ---------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Versions of Python and of the engines and libraries measured."""
    found = {"python": platform.python_version()}
    for name in ("polars", "duckdb", "pandas", "deltalake", "pyarrow", "numpy"):
        try:
            found[name] = str(importlib.import_module(name).__version__)
        except ImportError:  # a peer that is not installed is reported, not fatal
            found[name] = "not installed"
    return found


def machine_info() -> dict[str, Any]:
    """CPU count, memory, processor and load of the machine the run is on."""
    model = platform.processor() or ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class Row:
    """One line of the results: one engine doing one case of one benchmark."""

    benchmark: str
    case: str
    engine: str
    rows: int
    status: Status = "ok"
    seconds: float | None = None
    runs: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    checked_equal: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float | None:
        """Rows over median seconds, when there is a time."""
        if self.seconds is None or self.seconds <= 0:
            return None
        return self.rows / self.seconds

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        rate = self.rows_per_second
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "engine": self.engine,
            "rows": self.rows,
            "status": self.status,
            "seconds": None if self.seconds is None else round(self.seconds, 4),
            "runs": [round(s, 4) for s in self.runs],
            "rows_per_second": None if rate is None else round(rate),
            "peak_rss_mb": None if self.peak_rss_mb is None else round(self.peak_rss_mb, 1),
            "checked_equal": self.checked_equal,
            "note": self.note,
            **self.extra,
        }


def add_ratios(rows: Sequence[Row]) -> None:
    """Give every row ``vs_microfs``: its median time over MicroFS's in the same case.

    The MicroFS row of a case is its first row whose engine starts with ``microfs``; a
    value above 1 means the peer took that many times as long as MicroFS.
    """
    base: dict[tuple[str, str], float] = {}
    for row in rows:
        key = (row.benchmark, row.case)
        if key not in base and row.engine.startswith("microfs") and row.seconds:
            base[key] = row.seconds
    for row in rows:
        reference = base.get((row.benchmark, row.case))
        if reference and row.seconds is not None:
            row.extra["vs_microfs"] = round(row.seconds / reference, 3)


def format_table(rows: Sequence[Row]) -> str:
    """The results as an aligned text table."""
    header = (
        f"{'benchmark':<10} {'case':<20} {'engine':<31} {'rows':>11} {'median s':>9} "
        f"{'rows/s':>11} {'vs MicroFS':>10} {'peak MB':>8}  check"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        rate = row.rows_per_second
        ratio = row.extra.get("vs_microfs")
        seconds = f"{row.seconds:9.3f}" if row.seconds is not None else f"{'-':>9}"
        check = {True: "equal", False: "DIFFERENT", None: "-"}[row.checked_equal]
        if row.status == "published":
            check = "published figure, another machine"
        elif row.status != "ok":
            check = f"{row.status.upper()}: {row.note}" if row.note else row.status.upper()
        elif row.note:
            check = f"{check} ({row.note})"
        lines.append(
            f"{row.benchmark:<10} {row.case[:20]:<20} {row.engine[:31]:<31} {row.rows:>11,} "
            f"{seconds} {human_rate(rate):>11} "
            f"{(f'{ratio:.2f}x' if ratio is not None else '-'):>10} "
            f"{(f'{row.peak_rss_mb:.0f}' if row.peak_rss_mb is not None else '-'):>8}  {check}"
        )
    return "\n".join(lines)


def count_label(n: int) -> str:
    """A short count: ``2k``, ``1M``, ``10M``, ``2.5M``.

    >>> count_label(2_000), count_label(1_000_000), count_label(2_500_000)
    ('2k', '1M', '2.5M')
    """
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale:
            return f"{n / scale:g}{unit}"
    return str(n)


def human_rate(rate: float | None) -> str:
    """Rows per second, short: ``2.55M``, ``71.5k``, ``-`` for none.

    >>> human_rate(2_550_000), human_rate(71_500), human_rate(None)
    ('2.55M', '71.5k', '-')
    """
    if rate is None:
        return "-"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def results_payload(
    *,
    size: str,
    seed: int,
    repeats: int,
    benchmarks: Sequence[str],
    complete: bool,
    command: str,
    load: float,
    data: Mapping[str, Any],
    rows: Sequence[Row],
    started: float,
    skipped: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """One run's results document (what :func:`write_json` writes).

    ``load`` is the load average when the run started, ``started`` its
    ``time.perf_counter()``; ``all_checked_equal`` says whether every row that has a time
    was checked equal (a failed or different row has no time).
    """
    return {
        "schema": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": size,
        "seed": seed,
        "repeats": repeats,
        "benchmarks": list(benchmarks),
        "complete": complete,
        "command": command,
        "machine": {**machine_info(), "load_average_at_start": round(load, 2)},
        "versions": versions(),
        "data": dict(data),
        "all_checked_equal": all(
            row.checked_equal
            for row in rows
            if row.status == "ok" and row.checked_equal is not None
        ),
        "results": [row.to_dict() for row in rows],
        "skipped": list(skipped),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def write_json(payload: Mapping[str, Any], results_dir: Path, size: str) -> Path:
    """Write one run's payload to ``<results_dir>/<size>-<UTC time>.json``; return the path."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{size}-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


if __name__ == "__main__":
    try:
        raise SystemExit(_child_main(sys.argv[1:]))
    except MemoryError:
        traceback.print_exc()
        raise SystemExit(3) from None
