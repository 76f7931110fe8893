"""Point-in-time training frame: MicroFS beside DuckDB ``ASOF JOIN`` and pandas ``merge_asof``.

The workload is the seed's: label rows of ``user_activity`` joined, as of each label's
event time, to ``user_profile`` on ``user_id`` and ``item_feature`` on ``item_id``. Every
engine reads the same Delta tables from disk and its time includes that loading:

- ``microfs``: ``fv.training_frame().collect()``, from opening the store on. Polars 2's
  default engine (``"auto"``) is the streaming engine; ``microfs in-memory`` collects the
  same plan with ``engine="in-memory"``.
- ``duckdb``: the tables' Parquet files (the list from ``DeltaTable(...).file_uris()``) read
  with ``read_parquet`` and joined with two ``ASOF LEFT JOIN`` clauses, fetched as an Arrow
  table; ``duckdb ordered`` adds the ``ORDER BY`` that gives MicroFS's row order.
- ``duckdb windowed``: the ordered query one slice of label time at a time (about 10M
  labels each), streamed into one Parquet file: the frame past memory without MicroFS,
  and the reference a written frame is checked against where nothing else fits.
- ``duckdb written``: DuckDB's own way to a frame past memory, ``COPY (ordered query) TO``
  a Parquet file, with a memory limit under the benchmark's and a folder to spill to.
- ``pandas``: ``DeltaTable(...).to_pandas(columns=...)``, sorted, two ``merge_asof`` calls.
- ``daft native``: ``fv.training_frame(engine="daft").to_arrow()`` on Daft's native runner
  (``pip install "microfs[scale]"``).
- ``daft ray``, ``daft ray 4``: the same on a local Ray cluster of 2 or 4 CPUs, started
  before the timer (its start-up is reported as ``ray_start_s``). Ray's workers are other
  processes: their peak resident memory, summed and largest single, is sampled every
  0.2 s and reported as ``workers_peak_mb`` and ``worker_peak_mb``; the row's own memory
  is the driver's.

Each run of each engine is a fresh process, so its peak resident memory is its own. The
first run of every engine writes its frame, and all frames are checked equal to MicroFS's
(same rows and values after sorting by event time and keys) before any time is reported.

The engine code is generic over a *spec* (a JSON dict naming the Delta tables, keys, times
and output columns) so the Hopsworks-shaped workload reuses it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl
from common import (
    DATA_DIR,
    RESULTS_DIR,
    VIEW_NAME,
    WORK_PEAK,
    Row,
    add_ratios,
    count_label,
    format_table,
    measure,
    results_payload,
    timed,
    timed_work,
    world_lake,
    write_json,
    write_sorted,
)

ENGINES: tuple[str, ...] = ("microfs", "microfs in-memory", "duckdb", "duckdb ordered", "pandas")
"""Engines run by default, MicroFS first (the reference of the equality check)."""
ALL_ENGINES: tuple[str, ...] = (
    *ENGINES,
    "microfs streaming",
    "microfs windowed",
    "duckdb windowed",
    "duckdb written",
    "microfs polars join",
    "daft native",
    "daft written",
    "daft ray",
    "daft ray 4",
    "floor",
    "feast duckdb",
    "feast file",
)


# -- the workload ---------------------------------------------------------------------------


def world_spec(record: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of the seed's workload over a cached world lake (see :func:`common.world_lake`)."""
    tables = record["tables"]
    return {
        "lake": record["lake"],
        "view": VIEW_NAME,
        "label": {
            "path": tables["user_activity"],
            "time": "timestamp",
            "keys": ["user_id", "item_id"],
            "values": ["duration_sec", "conversion"],
        },
        "joins": [
            {
                "path": tables["user_profile"],
                "on": ["user_id"],
                "time": "timestamp",
                "features": ["user_level", "age", "country"],
            },
            {
                "path": tables["item_feature"],
                "on": ["item_id"],
                "time": "timestamp",
                "features": ["price", "category"],
            },
        ],
        "output": [
            "user_id",
            "item_id",
            "timestamp",
            "duration_sec",
            "user_level",
            "age",
            "country",
            "price",
            "category",
            "conversion",
        ],
    }


def sort_order(spec: Mapping[str, Any]) -> list[str]:
    """The row order every result is compared in: label event time, then label keys."""
    return [spec["label"]["time"], *spec["label"]["keys"]]


# -- engines (each runs in its own process) ------------------------------------------------------


def run_engine(engine: str, spec: dict[str, Any], result_path: str | None = None) -> dict[str, Any]:
    """Build the training frame with ``engine`` once; return its seconds and row count.

    The timer covers opening the tables, loading and joining, and materialising the
    result in memory. When ``result_path`` is given, the frame is then written there as
    Parquet (untimed) for the equality check.
    """
    work = _ENGINE_BUILDERS[engine](spec)
    clock, (frame, details) = timed_work(work)
    rows = _height(frame)
    in_order = details.pop(IN_ORDER, None)
    feast = details.pop("feast", None)
    if feast is not None:  # the work ran in a child: its own figures
        clock.update(
            seconds=feast["seconds"],
            cpu_seconds=feast["cpu_seconds"],
            system_seconds=feast["system_seconds"],
        )
        clock[WORK_PEAK] = feast["peak_rss_mb"]
    if result_path is not None and in_order:  # a file in the compared order: moved
        shutil.move(in_order, result_path)
    elif result_path is not None:
        result = _as_polars(frame)
        del frame  # a pandas frame was copied: drop it before sorting the copy
        write_sorted(result, result_path, sort_order(spec))
    return {**clock, "rows": rows, **details}


Builder = Callable[[dict[str, Any]], Callable[[], Any]]
"""Takes a spec, imports what the engine needs and returns the (timed) work."""

IN_ORDER = "in_frame_order"
"""Set in an engine's details to the path of the Parquet file its result scans when the
file's rows are in the compared order (a frame written by ``write_training_frame``): the
file is moved, not copied, to the result path and checked without collecting it, so a
frame larger than memory can be checked."""


def _microfs(
    engine: Literal["in-memory", "streaming"] | None, *, polars_join: bool = False
) -> Builder:
    """MicroFS's training frame, collected by ``engine`` (None: Polars' default).

    ``polars_join`` keeps Polars' ``join_asof`` for every join instead of the compiled
    as-of kernel of integer-keyed joins (``microfs._asof_kernel``): the kernel's gain.
    """

    def build(spec: dict[str, Any]) -> Callable[[], Any]:
        from microfs import FeatureStore, _asof_kernel

        if polars_join:
            _asof_kernel.KERNEL_MIN_ROWS = sys.maxsize

        def work() -> tuple[pl.DataFrame, dict[str, Any]]:
            view = FeatureStore(spec["lake"]).get_feature_view(spec["view"])
            plan = view.training_frame()
            frame = plan.collect() if engine is None else plan.collect(engine=engine)
            return frame, {}

        return work

    return build


WINDOW_DAYS = 30
"""Event-time window of the ``microfs windowed`` engine."""


def _written(engine: Literal["polars", "daft"]) -> Builder:
    """``fv.write_training_frame(path, ...)``: the frame larger than memory, in one file.

    With ``"polars"`` (``microfs windowed``), each 30-day window of label time is joined
    and written before the next window is read. With ``"daft"`` (``daft written``), Daft's
    native runner joins the label batches and streams them, in order, into the file: a
    second frame past memory to check the first against. The timer covers writing the
    file; the file is checked after the timer, without collecting it (see ``IN_ORDER``).
    """

    def build(spec: dict[str, Any]) -> Callable[[], Any]:
        from datetime import timedelta

        from microfs import FeatureStore

        def work() -> tuple[pl.LazyFrame, dict[str, Any]]:
            view = FeatureStore(spec["lake"]).get_feature_view(spec["view"])
            target = _scratch_file("microfs-written-")
            if engine == "daft":
                view.write_training_frame(target, engine="daft")
                return pl.scan_parquet(target), {IN_ORDER: str(target)}
            view.write_training_frame(target, window=timedelta(days=WINDOW_DAYS))
            return pl.scan_parquet(target), {"window_days": WINDOW_DAYS, IN_ORDER: str(target)}

        return work

    return build


def _daft(ray_cpus: int | None) -> Builder:
    """MicroFS's training frame on Daft: native, or on a local Ray cluster of ``ray_cpus``."""

    def build(spec: dict[str, Any]) -> Callable[[], Any]:
        import daft

        from microfs import FeatureStore

        details: dict[str, Any] = {}
        sampler = None
        if ray_cpus is not None:
            import ray

            started = time.perf_counter()
            ray.init(
                address="local", num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False
            )
            daft.set_runner_ray()
            details["ray_start_s"] = round(time.perf_counter() - started, 2)
            details["ray_cpus"] = ray_cpus
            sampler = _ChildMemory()

        def work() -> tuple[Any, dict[str, Any]]:
            if sampler is not None:
                sampler.start()
            view = FeatureStore(spec["lake"]).get_feature_view(spec["view"])
            table = view.training_frame(engine="daft").to_arrow()
            if sampler is not None:
                details.update(sampler.stop())
            return table, details

        return work

    return build


class _ChildMemory:
    """Peak resident memory of this process's descendants (Ray's workers), sampled."""

    def __init__(self, every: float = 0.2) -> None:
        import threading

        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.total = 0.0
        self.largest = 0.0

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._done.is_set():
            sizes = []
            for child in me.children(recursive=True):
                try:
                    sizes.append(child.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
            self.total = max(self.total, sum(sizes))
            self.largest = max(self.largest, max(sizes, default=0.0))
            self._done.wait(self._every)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._done.set()
        self._thread.join()
        return {"workers_peak_mb": round(self.total), "worker_peak_mb": round(self.largest)}


def _duckdb(ordered: bool) -> Builder:
    def build(spec: dict[str, Any]) -> Callable[[], Any]:
        import duckdb

        def work() -> tuple[Any, dict[str, Any]]:
            sql = duckdb_sql(spec, _duckdb_scans(spec), ordered=ordered)
            connection = duckdb.connect()
            try:
                table = connection.sql(sql).to_arrow_table()
            finally:
                connection.close()
            return table, {}

        return work

    return build


DUCKDB_SLICE_ROWS = 10_000_000
"""Labels per query of the ``duckdb windowed`` engine (about 3 GB of DuckDB's memory)."""


def _duckdb_windowed(spec: dict[str, Any]) -> Callable[[], Any]:
    """DuckDB's ASOF JOIN one slice of label time at a time, written in order to one file.

    The frame past memory without MicroFS: the labels are cut at approximate quantiles of
    their event time into slices of about :data:`DUCKDB_SLICE_ROWS`; each slice is joined
    (``duckdb_sql`` with ``since``/``until``: the slice's labels, and the groups' rows
    before its end), ordered, and streamed into one Parquet file by pyarrow before the
    next slice is read. Its file is the independent reference a frame written by
    ``write_training_frame`` is checked against at sizes where nothing else fits.
    """
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    def work() -> tuple[pl.LazyFrame, dict[str, Any]]:
        label = spec["label"]
        scans = _duckdb_scans(spec)
        target = _scratch_file("duckdb-windowed-")
        connection = duckdb.connect()
        writer: pq.ParquetWriter | None = None
        try:
            edges = _quantile_edges(connection, scans[0], label["time"], DUCKDB_SLICE_ROWS)
            for since, until in zip([None, *edges], [*edges, None], strict=True):
                sql = duckdb_sql(spec, scans, ordered=True, since=since, until=until)
                reader: pa.RecordBatchReader = connection.sql(sql).to_arrow_reader(1_000_000)
                writer = writer or pq.ParquetWriter(target, reader.schema)
                for batch in reader:
                    writer.write_batch(batch)
        finally:
            if writer is not None:
                writer.close()
            connection.close()
        return pl.scan_parquet(target), {"slices": len(edges) + 1, IN_ORDER: str(target)}

    return work


DUCKDB_MEMORY_LIMIT = "14GB"
"""DuckDB's own memory limit in ``duckdb written``: below the benchmark's stop (three
quarters of the machine, 18 GB here), so DuckDB's limit decides (it covers DuckDB's
buffers; its resident memory runs somewhat above)."""
DUCKDB_SPILL_LIMIT = "35GB"
"""How much DuckDB may spill to its temporary folder in ``duckdb written``: what the disk
here (about 60 GB free) leaves beside the 300M lake and two written frames. At 300M labels
DuckDB filled it and stopped with its own out-of-memory error (as it did with 20GB)."""


def _duckdb_written(spec: dict[str, Any]) -> Callable[[], Any]:
    """DuckDB's own way to a frame larger than memory: ``COPY (query ORDER BY ...) TO``.

    The ordered ASOF JOIN query of ``duckdb ordered``, written by DuckDB to one Parquet
    file, with :data:`DUCKDB_MEMORY_LIMIT` and a temporary folder (removed with the run)
    to spill to, up to :data:`DUCKDB_SPILL_LIMIT`.
    """
    import duckdb

    def work() -> tuple[pl.LazyFrame, dict[str, Any]]:
        scans = _duckdb_scans(spec)
        target = _scratch_file("duckdb-copy-")
        quoted = str(target).replace("'", "''")
        connection = duckdb.connect()
        try:
            connection.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
            connection.execute(f"SET temp_directory = '{target.parent / 'spill'}'")
            connection.execute(f"SET max_temp_directory_size = '{DUCKDB_SPILL_LIMIT}'")
            sql = duckdb_sql(spec, scans, ordered=True)
            connection.execute(f"COPY ({sql}) TO '{quoted}' (FORMAT parquet)")
        finally:
            connection.close()
        details = {"memory_limit": DUCKDB_MEMORY_LIMIT, IN_ORDER: str(target)}
        return pl.scan_parquet(target), details

    return work


def _quantile_edges(connection: Any, scan: str, column: str, rows: int) -> list[str]:
    """Label times cutting ``scan`` into slices of about ``rows`` labels (SQL literals)."""
    count = connection.sql(f"SELECT count(*) FROM {scan}").fetchall()[0][0]
    parts = -(-count // rows)
    if parts <= 1:
        return []
    quantiles = ", ".join(str(k / parts) for k in range(1, parts))
    cut = f"SELECT unnest(approx_quantile({_ident(column)}, [{quantiles}])) FROM {scan}"
    edges = sorted({row[0] for row in connection.sql(cut).fetchall()})
    return [f"'{edge.isoformat()}'::TIMESTAMPTZ" for edge in edges]


def _scratch_file(prefix: str) -> Path:
    """A new file path in a folder removed when this (one-run) process exits."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Path(folder) / "frame.parquet"


def _duckdb_scans(spec: Mapping[str, Any]) -> list[str]:
    """DuckDB's scans of the label table's and each joined table's Parquet files, in order."""
    from deltalake import DeltaTable

    paths = [spec["label"]["path"], *(join["path"] for join in spec["joins"])]
    return [_read_parquet(DeltaTable(path).file_uris()) for path in paths]


def _read_parquet(files: Sequence[str]) -> str:
    quoted = ", ".join("'" + f.removeprefix("file://").replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}])"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def duckdb_sql(
    spec: Mapping[str, Any],
    scans: Sequence[str],
    *,
    ordered: bool,
    since: str | None = None,
    until: str | None = None,
) -> str:
    """The ASOF JOIN query of ``spec``: ``scans[0]`` the labels, then one scan per join.

    ``since`` and ``until`` (SQL expressions, None for no bound) keep the labels of event
    time in ``[since, until)`` and the joined rows before ``until`` (no later row can
    match those labels).

    >>> spec = {"label": {"time": "t", "keys": ["k"], "values": ["y"]},
    ...         "joins": [{"on": ["k"], "time": "t", "features": ["f"]}],
    ...         "output": ["k", "t", "f", "y"]}
    >>> print(duckdb_sql(spec, ["L", "R"], ordered=False))  # doctest: +NORMALIZE_WHITESPACE
    SELECT l."k", l."t", j0."f", l."y" FROM (SELECT "k", "t", "y" FROM L) AS l
    ASOF LEFT JOIN (SELECT "k", "t", "f" FROM R) AS j0
    ON l."k" = j0."k" AND l."t" >= j0."t"
    """
    label = spec["label"]
    source: dict[str, str] = {c: "l" for c in (*label["keys"], label["time"], *label["values"])}
    label_columns = ", ".join(_ident(c) for c in (*label["keys"], label["time"], *label["values"]))
    labels = f"{scans[0]}{_where(label['time'], since, until)}"
    parts = [f"FROM (SELECT {label_columns} FROM {labels}) AS l"]
    for number, join in enumerate(spec["joins"]):
        alias = f"j{number}"
        columns = ", ".join(_ident(c) for c in (*join["on"], join["time"], *join["features"]))
        condition = " AND ".join(
            [f"l.{_ident(k)} = {alias}.{_ident(k)}" for k in join["on"]]
            + [f"l.{_ident(label['time'])} >= {alias}.{_ident(join['time'])}"]
        )
        rows = f"{scans[number + 1]}{_where(join['time'], None, until)}"
        parts.append(f"ASOF LEFT JOIN (SELECT {columns} FROM {rows}) AS {alias} ON {condition}")
        source.update({f: alias for f in join["features"]})
    select = ", ".join(f"{source[c]}.{_ident(c)}" for c in spec["output"])
    sql = f"SELECT {select} " + " ".join(parts)
    if ordered:
        order = ", ".join(f"l.{_ident(c)}" for c in (label["time"], *label["keys"]))
        sql += f" ORDER BY {order}"
    return sql


def _where(column: str, since: str | None, until: str | None) -> str:
    bounds = [f"{_ident(column)} >= {since}"] if since is not None else []
    bounds += [f"{_ident(column)} < {until}"] if until is not None else []
    return f" WHERE {' AND '.join(bounds)}" if bounds else ""


def _pandas(spec: dict[str, Any]) -> Callable[[], Any]:
    import pandas as pd
    from deltalake import DeltaTable

    def work() -> tuple[Any, dict[str, Any]]:
        label = spec["label"]
        time = label["time"]
        loaded, frames = timed(
            lambda: [
                DeltaTable(label["path"]).to_pandas(
                    columns=[*label["keys"], time, *label["values"]]
                ),
                *[
                    DeltaTable(j["path"]).to_pandas(columns=[*j["on"], j["time"], *j["features"]])
                    for j in spec["joins"]
                ],
            ]
        )
        out = frames[0].sort_values([time, *label["keys"]], kind="stable", ignore_index=True)
        for join, right in zip(spec["joins"], frames[1:], strict=True):
            right = right.sort_values(join["time"], kind="stable", ignore_index=True)
            if join["time"] != time:
                right = right.rename(columns={join["time"]: time})
            out = pd.merge_asof(
                out,
                right,
                on=time,
                by=join["on"],
                direction="backward",
                allow_exact_matches=True,
            )
        return out[spec["output"]], {"load_seconds": round(loaded, 4)}

    return work


def _floor(spec: dict[str, Any]) -> Callable[[], Any]:
    """The physical floor: read the columns the frame needs, gather the matched rows.

    Each label's matching feature row is found before the timer (with Polars' as-of join
    over the same files); the timed work is only what any engine must do with the answer
    known: decode the label columns and the joined groups' columns from the same Parquet
    files, and gather one row per label and join from them (a random access per label,
    join and feature). The frame is the same as every engine's and is checked like theirs.
    Reported beside the time: the bytes read from disk (the files' sizes) and decoded,
    the bytes of the frame, and the number of gathered values.
    """
    import numpy as np
    from deltalake import DeltaTable

    label = spec["label"]
    label_files = DeltaTable(label["path"]).file_uris()
    label_columns = [*label["keys"], label["time"], *label["values"]]
    spine = (
        pl.scan_parquet(label_files)
        .select(*label["keys"], label["time"])
        .with_row_index("__label")
        .collect()
        .sort(label["time"])
    )
    matches: list[tuple[list[str], list[str], Any]] = []
    for join in spec["joins"]:
        files = DeltaTable(join["path"]).file_uris()
        rows = (
            pl.scan_parquet(files)
            .select(*join["on"], pl.col(join["time"]).alias("__t"))
            .with_row_index("__row")
            .collect()
            .sort("__t")
        )
        found = spine.join_asof(
            rows, left_on=label["time"], right_on="__t", by=join["on"], strategy="backward"
        )
        height = rows.height
        order = found.get_column("__label").to_numpy()
        matched = np.empty(len(order), dtype=np.int64)
        matched[order] = found.get_column("__row").fill_null(height).cast(pl.Int64).to_numpy()
        # in Polars' index type, as a gather takes it without a conversion
        numbers = pl.Series(matched).cast(pl.get_index_type())
        matches.append((files, join["features"], numbers))
    disk = sum(
        Path(f.removeprefix("file://")).stat().st_size
        for f in [*label_files, *(f for files, _, _ in matches for f in files)]
    )

    def work() -> tuple[pl.DataFrame, dict[str, Any]]:
        labels = pl.scan_parquet(label_files).select(label_columns).collect()
        decoded = labels.estimated_size()
        columns = []
        for files, features, matched in matches:
            group = pl.scan_parquet(files).select(features).collect()
            decoded += group.estimated_size()
            nulls = pl.DataFrame([pl.Series(f, [None], dtype=group.schema[f]) for f in features])
            # row ``height``: no match; one chunk, as a gather from two costs three times as much
            padded = pl.concat([group, nulls]).rechunk()
            columns += [padded.get_column(f).gather(matched) for f in features]
        frame = pl.DataFrame([*labels.get_columns(), *columns]).select(spec["output"])
        gathers = labels.height * sum(len(features) for _, features, _ in matches)
        details = {
            "floor": {
                "disk_bytes": disk,
                "decoded_bytes": decoded,
                "frame_bytes": frame.estimated_size(),
                "gathered_values": gathers,
            }
        }
        return frame, details

    return work


FEAST_VENV_ENV = "MICROFS_FEAST_VENV"
"""Names the virtual environment with Feast 0.67 that the ``feast ...`` engines run in."""
FEAST_VENV_DEFAULT = Path(__file__).resolve().parents[1] / ".venvs" / "feast"


def feast_venv() -> Path | None:
    """The Feast virtual environment (``$MICROFS_FEAST_VENV`` or ``.venvs/feast``), if any."""
    import os

    path = Path(os.environ.get(FEAST_VENV_ENV) or FEAST_VENV_DEFAULT)
    return path if (path / "bin" / "python").is_file() else None


def _feast(store: Literal["duckdb", "file"]) -> Builder:
    """Feast 0.67's local offline store ``store``, run by ``feast_pit.py`` in Feast's venv.

    The timer of this process covers the whole child process (its interpreter start and
    Feast's imports too); the figures reported are the child's own: its timed work, its
    CPU seconds and its peak memory. The frame Feast returns is checked like any other
    (Feast's file store drops label rows: reported as a mismatch, with its row count).
    """

    def build(spec: dict[str, Any]) -> Callable[[], Any]:
        import json
        import subprocess
        import tempfile

        venv = feast_venv()
        if venv is None:
            raise RuntimeError(
                f"no Feast virtual environment: set {FEAST_VENV_ENV} (see benchmarks/README.md)"
            )
        script = Path(__file__).with_name("feast_pit.py")
        folder = Path(tempfile.mkdtemp(prefix="feast-pit-"))
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")

        def work() -> tuple[pl.LazyFrame, dict[str, Any]]:
            result = folder / "frame.parquet"
            done = subprocess.run(
                [str(venv / "bin" / "python"), str(script), str(spec_path), store, str(result)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"feast {store} failed: {done.stderr.strip()[-800:]}")
            reply = json.loads(done.stdout.strip().splitlines()[-1])
            return pl.scan_parquet(result), {"feast": reply}

        return work

    return build


_ENGINE_BUILDERS: dict[str, Builder] = {
    "microfs": _microfs(None),
    "microfs in-memory": _microfs("in-memory"),
    "microfs streaming": _microfs("streaming"),
    "microfs windowed": _written("polars"),
    "microfs polars join": _microfs("in-memory", polars_join=True),
    "duckdb": _duckdb(ordered=False),
    "duckdb ordered": _duckdb(ordered=True),
    "duckdb windowed": _duckdb_windowed,
    "duckdb written": _duckdb_written,
    "pandas": _pandas,
    "daft native": _daft(None),
    "daft written": _written("daft"),
    "daft ray": _daft(2),
    "daft ray 4": _daft(4),
    "floor": _floor,
    "feast duckdb": _feast("duckdb"),
    "feast file": _feast("file"),
}


def _as_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if type(frame).__module__.startswith("pandas"):
        return pl.from_pandas(frame)
    converted = pl.from_arrow(frame)
    if not isinstance(converted, pl.DataFrame):
        raise TypeError(f"expected a table, got {type(converted).__name__}")
    return converted


def _height(frame: Any) -> int:
    if isinstance(frame, pl.DataFrame):
        return frame.height
    if isinstance(frame, pl.LazyFrame):
        return int(frame.select(pl.len()).collect().item())
    if hasattr(frame, "num_rows"):
        return int(frame.num_rows)
    return len(frame)


# -- the driver (parent process) ------------------------------------------------------------


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
    """The point-in-time benchmark at a named size (data cached under ``data_dir``)."""
    record = world_lake(size, seed, data_dir, log=log)
    spec = world_spec(record)
    case = f"{count_label(record['rows']['user_activity'])} labels"
    measured = measure(
        "bench_pit",
        "run_engine",
        {"spec": spec},
        benchmark="pit",
        case=case,
        order=sort_order(spec),
        engines=engines,
        repeats=repeats,
        timeout=timeout,
        mem_limit_mb=mem_limit_mb,
        log=log,
    )
    for row in measured:
        row.extra["feature_rows"] = {
            name: record["rows"][name] for name in ("user_profile", "item_feature")
        }
    return measured


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"of {', '.join(ALL_ENGINES)}")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="JSON folder")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in _ENGINE_BUILDERS]
    if unknown:
        parser.error(f"unknown engine(s) {unknown}; known: {', '.join(ALL_ENGINES)}")
    started, load = time.perf_counter(), os.getloadavg()[0]
    record = world_lake(args.size, args.seed, args.data_dir)
    rows = run(
        size=args.size,
        seed=args.seed,
        repeats=args.repeats,
        engines=engines,
        data_dir=args.data_dir,
    )
    add_ratios(rows)
    print(format_table(rows))
    payload = results_payload(
        size=args.size,
        seed=args.seed,
        repeats=args.repeats,
        benchmarks=["pit"],
        complete=False,
        command="python benchmarks/bench_pit.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        load=load,
        data={"pit": {args.size: record}},
        rows=rows,
        started=started,
    )
    print(f"\nresults: {write_json(payload, args.results_dir, f'pit-{args.size}')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
