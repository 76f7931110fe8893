"""Smoke tests of the benchmarks: the runner at tiny size, and the checks it relies on.

Nothing here asserts a time: timings are the benchmarks' output, not their correctness.
"""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bench_hopsworks
import bench_pit
import common
import polars as pl
import pytest
import run as runner
from deltalake import DeltaTable

from microfs.synthetic import generate_world

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

ROW_KEYS = {
    "benchmark",
    "case",
    "engine",
    "rows",
    "status",
    "seconds",
    "runs",
    "rows_per_second",
    "peak_rss_mb",
    "checked_equal",
}


def run_script(script: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script at tiny size, one repeat, and require it to succeed."""
    command = [sys.executable, str(BENCHMARKS / script), "--size", "tiny", "--repeats", "1"]
    completed = subprocess.run(
        [*command, *arguments], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the entry point at tiny size (every benchmark but online), its JSON."""
    base = tmp_path_factory.mktemp("bench")
    results = base / "results"
    completed = run_script(
        "run.py",
        "--only",
        "pit,ingest,timetravel,hopsworks",
        "--data-dir",
        str(base / "data"),
        "--results-dir",
        str(results),
    )
    files = list(results.glob("tiny-*.json"))
    assert len(files) == 1
    payload: dict[str, Any] = json.loads(files[0].read_text(encoding="utf-8"))
    payload["_stdout"] = completed.stdout
    payload["_data_dir"] = str(base / "data")
    return payload


def test_run_writes_json_with_machine_and_versions(tiny_run: dict[str, Any]) -> None:
    assert tiny_run["size"] == "tiny"
    assert tiny_run["benchmarks"] == ["pit", "ingest", "timetravel", "hopsworks"]
    assert tiny_run["complete"] is False  # online was left out
    assert tiny_run["machine"]["cpu_count"] >= 1
    assert tiny_run["machine"]["memory_gb"] > 0
    for library in ("polars", "duckdb", "pandas", "deltalake"):
        assert tiny_run["versions"][library][0].isdigit()
    for row in tiny_run["results"]:
        assert set(row) >= ROW_KEYS


def test_every_engine_result_was_checked_equal_before_timing(tiny_run: dict[str, Any]) -> None:
    assert tiny_run["all_checked_equal"] is True
    measured = [r for r in tiny_run["results"] if r["status"] != "published"]
    assert measured
    for row in measured:
        assert row["status"] == "ok", row
        assert row["checked_equal"] is True, row
        assert row["seconds"] > 0
        assert len(row["runs"]) == 1


def test_pit_compares_microfs_with_both_peers(tiny_run: dict[str, Any]) -> None:
    pit = {r["engine"]: r for r in tiny_run["results"] if r["benchmark"] == "pit"}
    assert {"microfs", "duckdb", "pandas", "microfs windowed"} <= set(pit)
    assert {r["rows"] for r in pit.values()} == {2_000}
    assert pit["microfs"]["vs_microfs"] == 1.0
    assert pit["duckdb"]["vs_microfs"] > 0
    for row in pit.values():
        assert row["peak_rss_mb"] > 10  # a whole Python process, measured
        # the kernel's share of each run's CPU time, run by run
        assert len(row["system_seconds"]) == len(row["runs"])
        assert 0 <= row["system_seconds"][0] <= row["cpu_seconds"]


def test_other_benchmarks_are_in_the_run(tiny_run: dict[str, Any]) -> None:
    cases = {(r["benchmark"], r["case"]) for r in tiny_run["results"]}
    assert ("ingest", "append") in cases
    assert ("ingest", "upsert") in cases
    assert {c for b, c in cases if b == "timetravel"} == {"version 1 of 6", "latest (version 6)"}
    hopsworks = [r for r in tiny_run["results"] if r["benchmark"] == "hopsworks"]
    assert {r["engine"] for r in hopsworks} == {"microfs", "duckdb", "pandas"}
    assert "vs MicroFS" in tiny_run["_stdout"]


def test_data_are_cached_between_runs(tiny_run: dict[str, Any]) -> None:
    record = common.cached(Path(tiny_run["_data_dir"]) / "tiny-0")
    assert record is not None
    assert record["rows"]["user_activity"] == 2_000
    assert common.world_lake("tiny", 0, Path(tiny_run["_data_dir"]), log=lambda _: None) == record


def test_compare_frames_finds_a_changed_value_and_a_missing_row() -> None:
    expected = pl.DataFrame({"t": [1, 2, 3], "k": [1, 1, 2], "x": [0.5, None, 2.0]})
    shuffled = expected.reverse()
    assert common.compare_frames(shuffled, expected, ["t", "k"]) == ""
    changed = expected.with_columns(pl.when(pl.col("t") == 3).then(9.0).otherwise("x").alias("x"))
    assert "column 'x' differs in 1 rows" in common.compare_frames(changed, expected, ["t", "k"])
    assert "2 rows instead of 3" in common.compare_frames(expected.head(2), expected, ["t"])
    filled = expected.with_columns(pl.col("x").fill_null(0.0))
    assert common.compare_frames(filled, expected, ["t", "k"]) != ""


def test_compare_files_checks_slice_by_slice(tmp_path: Path) -> None:
    expected = pl.DataFrame({"t": list(range(7)), "x": [float(i) for i in range(7)]})
    common.write_sorted(expected.reverse(), str(tmp_path / "a.parquet"), ["t"])
    common.write_sorted(expected, str(tmp_path / "b.parquet"), ["t"])
    late = expected.with_columns(pl.when(pl.col("t") == 6).then(0.0).otherwise("x").alias("x"))
    common.write_sorted(late, str(tmp_path / "c.parquet"), ["t"])
    common.write_sorted(expected.head(6), str(tmp_path / "d.parquet"), ["t"])
    a, b, c, d = (tmp_path / f"{n}.parquet" for n in "abcd")
    assert common.compare_files(a, b, ["t"], chunk=2) == ""
    assert common.compare_files(c, b, ["t"], chunk=2).startswith("rows 6-6: column 'x'")
    assert common.compare_files(d, b, ["t"], chunk=2) == "6 rows instead of 7"


def test_compare_frames_matches_types_and_time_zones() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    expected = pl.DataFrame(
        {"t": [t0, t0 + timedelta(hours=1)], "age": [30, None]},
        schema={"t": pl.Datetime("us", "UTC"), "age": pl.Int64},
    )
    as_pandas_gives = expected.with_columns(
        pl.col("t").dt.convert_time_zone("Europe/Stockholm").dt.cast_time_unit("ns"),
        pl.col("age").cast(pl.Float64),
    )
    assert common.compare_frames(as_pandas_gives, expected, ["t"]) == ""


def test_run_isolated_reports_failures_instead_of_raising() -> None:
    failed = common.run_isolated("bench_pit", "run_engine", {"engine": "nope", "spec": {}})
    assert failed.status == "error"
    assert "KeyError" in failed.error or "nope" in failed.error
    stopped = common.run_isolated(
        "bench_hopsworks",
        "hourly_signal",
        {"locations": 2_000, "days": 3_000, "seed": 0},
        mem_limit_mb=300,
    )
    assert stopped.status == "out of memory"
    assert stopped.value is None


def test_a_failure_is_told_by_its_exception_line_not_the_last_line() -> None:
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "bench_pit.py", line 9, in work\n'
        "_duckdb.OutOfMemoryException: Out of Memory Error: could not allocate block\n"
        "\n"
        "Possible solutions:\n"
        "See also https://duckdb.org/docs/current/guides/performance/how_to_tune_workloads\n"
    )
    failed = common._failure(1, stderr, 100.0, 1.0)
    assert failed.status == "error"
    assert failed.error.startswith("_duckdb.OutOfMemoryException: Out of Memory Error: could")
    assert common._failure(1, "ValueError: bad\n", 1.0, 1.0).error == "ValueError: bad"
    assert common._failure(1, "no traceback\n", 1.0, 1.0).error == "no traceback"
    assert common._failure(2, "", 1.0, 1.0).error == "exit code 2"


def test_external_benchmark_missing_is_skipped_with_a_reason() -> None:
    rows, reason = runner.external("online", "bench_nothing_here", {"keys": 1}, timeout=10)
    assert rows == []
    assert "bench_nothing_here.py does not exist" in reason


def test_duckdb_query_joins_every_group_as_of_label_time() -> None:
    spec = bench_pit.world_spec(
        {"lake": "L", "tables": {"user_activity": "a", "user_profile": "p", "item_feature": "i"}}
    )
    sql = bench_pit.duckdb_sql(spec, ["A", "P", "I"], ordered=True)
    assert sql.count("ASOF LEFT JOIN") == 2
    assert 'l."timestamp" >= j0."timestamp"' in sql
    assert 'l."item_id" = j1."item_id"' in sql
    assert sql.endswith('ORDER BY l."timestamp", l."user_id", l."item_id"')


def test_hopsworks_generator_is_deterministic_and_windowed() -> None:
    signal = bench_hopsworks.hourly_signal(3, 40, seed=1)
    hourly = bench_hopsworks.hourly_features(signal)
    daily = bench_hopsworks.daily_features(signal)
    assert (hourly.height, daily.height) == (3 * 40 * 24, 3 * 40)
    assert hourly["timestamp"].is_sorted()
    assert daily["timestamp"].is_sorted()
    assert hourly.equals(bench_hopsworks.hourly_features(bench_hopsworks.hourly_signal(3, 40, 1)))
    first = hourly.filter(pl.col("location_id") == 1).head(3)
    values = signal.filter(pl.col("location_id") == 1)["value"].head(3)
    assert first["max_3h"][2] == values.max()
    labels = bench_hopsworks.labels(500, hourly, 3, 40, seed=1)
    assert labels["timestamp"].is_sorted()
    assert labels["timestamp"].n_unique() == 500


@pytest.mark.parametrize("module", [common, bench_pit, bench_hopsworks])
def test_doctests(module: object) -> None:
    failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)  # type: ignore[arg-type]
    assert failures == 0


CHUNKED = ("tiny", {"n_labels": 3_000, "label_chunks": 4})
"""A tiny world whose labels are made and appended in four sub-windows of event time."""


@pytest.fixture(scope="module")
def chunked_lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The READY record of the chunked tiny world's lake, built in this process."""
    folder = tmp_path_factory.mktemp("chunked") / "tiny-chunks-0"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(common.BENCH_SIZES, "tiny-chunks", CHUNKED)
        return common.build_world_lake("tiny-chunks", 0, str(folder))


def test_chunked_world_has_the_counts_and_the_whole_worlds_groups(
    chunked_lake: dict[str, Any],
) -> None:
    rows = {"user_profile": 250, "item_feature": 200, "user_activity": 3_000}
    assert chunked_lake["rows"] == rows
    assert chunked_lake["label_chunks"] == 4
    assert chunked_lake["peak_rss_mb"] > 10
    assert set(chunked_lake["ingest_seconds"]) == set(chunked_lake["tables"])
    whole = generate_world("tiny")
    for name in ("user_profile", "item_feature"):
        stored = pl.read_delta(chunked_lake["tables"][name]).select(whole.frames()[name].columns)
        assert stored.sort(stored.columns).equals(whole.frames()[name].sort(stored.columns))


def test_chunked_world_appends_its_labels_in_event_time_order(
    chunked_lake: dict[str, Any],
) -> None:
    table = DeltaTable(chunked_lake["tables"]["user_activity"])
    commits = [h for h in table.history() if h["operation"] == "WRITE"]
    assert len(commits) == 4
    assert all(h["operationParameters"]["mode"] == "Append" for h in commits)
    previous: set[str] = set()
    last = None
    for version in range(1, table.version() + 1):
        table.load_as_version(version)
        files = set(table.file_uris())
        added = pl.read_parquet(sorted(files - previous)).get_column("timestamp")
        previous = files
        assert added.is_sorted()
        assert last is None or added.min() > last  # each chunk after the last one stored
        last = added.max()
    labels = pl.read_delta(chunked_lake["tables"]["user_activity"])
    assert labels.height == 3_000
    assert labels.select("user_id", "item_id", "timestamp").is_unique().all()


def test_written_frame_of_a_chunked_world_equals_duckdb_slice_by_slice(
    chunked_lake: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = bench_pit.world_spec(chunked_lake)
    order = bench_pit.sort_order(spec)
    monkeypatch.setattr(bench_pit, "DUCKDB_SLICE_ROWS", 700)
    engines = ("microfs windowed", "duckdb windowed", "duckdb written", "duckdb")
    files = {engine: tmp_path / f"{engine}.parquet" for engine in engines}
    replies = {e: bench_pit.run_engine(e, spec, str(path)) for e, path in files.items()}
    assert {reply["rows"] for reply in replies.values()} == {3_000}
    assert replies["duckdb windowed"]["slices"] == 5  # cut at label-time quantiles
    assert common.compare_files(files["microfs windowed"], files["duckdb windowed"], order) == ""
    assert common.compare_files(files["duckdb"], files["duckdb windowed"], order) == ""
    assert common.compare_files(files["duckdb written"], files["duckdb windowed"], order) == ""
    frame = pl.read_parquet(files["duckdb windowed"])
    assert frame.get_column("timestamp").is_sorted()  # written in order, slice after slice
    assert frame.get_column("price").null_count() < frame.height  # the joins found rows


def test_bench_pit_writes_its_results_json(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run_script(
        "bench_pit.py",
        "--engines",
        "microfs windowed,duckdb windowed",
        "--data-dir",
        str(tmp_path / "data"),
        "--results-dir",
        str(results),
    )
    (path,) = results.glob("pit-tiny-*.json")
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["all_checked_equal"] is True
    assert payload["data"]["pit"]["tiny"]["rows"]["user_activity"] == 2_000
    rows = {r["engine"]: r for r in payload["results"]}
    assert set(rows) == {"microfs windowed", "duckdb windowed"}
    assert rows["duckdb windowed"]["checked_equal"] is True
    assert rows["duckdb windowed"]["check_seconds"] >= 0
    assert rows["microfs windowed"]["rows"] == rows["duckdb windowed"]["rows"] == 2_000
