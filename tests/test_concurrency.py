from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError

import microfs
from microfs import CommitConflictError, FeatureGroup, FeatureStore
from microfs import statistics as stats

REPO = Path(microfs.__file__).resolve().parents[1]
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
SCHEMA = {"k": "int64", "t": "datetime64[us, UTC]", "writer": "int64", "v": "int64"}

# A writer process: waits for the go file, then inserts `batches` batches. Batch b holds
# the shared keys 0..SHARED-1 (which every writer also writes, at the same time) and this
# writer's own keys, all at T0 + b hours. It prints each InsertResult as a JSON line.
WRITER = """
import json, sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
import polars as pl
from microfs import FeatureStore

lake, writer, go, batches, shared, own = sys.argv[1:7]
writer, batches, shared, own = int(writer), int(batches), int(shared), int(own)
fg = FeatureStore(lake).get_feature_group("events")
Path(f"{go}.{writer}").touch()
while not Path(go).exists():
    time.sleep(0.002)
t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
for b in range(batches):
    keys = list(range(shared)) + [1000 * (writer + 1) + i for i in range(own)]
    batch = pl.DataFrame({
        "k": keys,
        "t": [t0 + timedelta(hours=b)] * len(keys),
        "writer": [writer] * len(keys),
        "v": [b] * len(keys),
    })
    r = fg.insert(batch)
    print(json.dumps([r.version, r.rows_inserted, r.rows_updated, r.mode]), flush=True)
"""

# A process that inserts big batches for ever: batch i holds keys 0..n-1 at T0 + (i // 2)
# hours with v = i, so even batches append and odd ones rewrite the previous batch (a
# merge). It starts at batch `first` and prints "<version> <i>" after each commit.
ENDLESS = """
import sys
from datetime import datetime, timedelta, timezone
import polars as pl
from microfs import FeatureStore

lake, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fg = FeatureStore(lake).get_feature_group("events")
t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
i = first
while True:
    batch = pl.DataFrame({"k": pl.int_range(n, eager=True)}).with_columns(
        t=pl.lit(t0 + timedelta(hours=i // 2)), writer=pl.lit(0), v=pl.lit(i)
    )
    r = fg.insert(batch)
    print(r.version, i, flush=True)
    i += 1
"""


def _python(script: str, *args: object) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _events(store: FeatureStore) -> FeatureGroup:
    return store.create_feature_group(
        name="events", primary_keys=["k"], event_time="t", schema=SCHEMA
    )


# --- several writers ------------------------------------------------------------------------


def test_concurrent_writers_lose_and_duplicate_no_row(store: FeatureStore, tmp_path: Path) -> None:
    fg = _events(store)
    writers, batches, shared, own = 3, 8, 40, 30
    go = tmp_path / "go"
    procs = [_python(WRITER, store.root, w, go, batches, shared, own) for w in range(writers)]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{w}").exists() for w in range(writers)):
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    results: list[list[Any]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.extend(json.loads(line) for line in out.splitlines())

    stored = fg.read()
    rows_per_batch = shared + writers * own
    assert stored.height == batches * rows_per_batch
    assert stored.select(pl.struct("k", "t").n_unique()).item() == stored.height  # none twice
    expected_keys = {
        (k, T0 + timedelta(hours=b))
        for b in range(batches)
        for k in [*range(shared), *(1000 * (w + 1) + i for w in range(writers) for i in range(own))]
    }
    assert set(stored.select("k", "t").iter_rows()) == expected_keys  # none lost
    own_rows = stored.filter(pl.col("k") >= 1000)
    assert (own_rows["k"] // 1000 - 1 == own_rows["writer"]).all()
    assert (stored["v"] == (stored["t"] - T0).dt.total_hours()).all()

    # every commit is accounted for: one version each, rows inserted once, shared rows
    # updated by every writer but the first to reach them
    assert sorted(r[0] for r in results) == list(range(1, writers * batches + 1))
    assert sum(r[1] for r in results) == stored.height
    assert sum(r[2] for r in results) == batches * shared * (writers - 1)
    assert {r[3] for r in results} <= {"append", "merge"}
    assert fg.table_version() == writers * batches


# --- retries --------------------------------------------------------------------------------


def test_a_conflicting_commit_is_retried_with_growing_jittered_backoff(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fg = _events(store)
    write = FeatureGroup._write
    failures = iter([True, True, True])
    sleeps: list[float] = []

    def flaky(self: FeatureGroup, batch: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise CommitFailedError("a concurrent transaction conflicted")
        return write(self, batch, *args, **kwargs)

    monkeypatch.setattr(FeatureGroup, "_write", flaky)
    monkeypatch.setattr("microfs.feature_group.time.sleep", sleeps.append)
    result = fg.insert(_batch(0, 5))
    assert (result.version, result.rows_inserted) == (1, 5)
    assert len(sleeps) == 3
    assert all(0.5 * 0.05 * 2**i <= s <= 1.5 * 0.05 * 2**i for i, s in enumerate(sleeps))
    assert fg.read().height == 5


def test_a_first_append_retried_after_a_conflict_stores_its_statistics_once(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fg = _events(store)
    batch = _batch(0, 50)
    computed: list[int] = []
    compute = stats.compute

    def counted(frame: pl.DataFrame, *args: Any, **kwargs: Any) -> dict[str, Any]:
        computed.append(frame.height)
        return compute(frame, *args, **kwargs)

    failures = iter([True])

    def conflicting(table: Any, data: Any, **kwargs: Any) -> None:
        if next(failures, False):  # after the statistics started, as a real conflict is
            raise CommitFailedError("a concurrent transaction conflicted")
        write_deltalake(table, data, **kwargs)

    monkeypatch.setattr(stats, "compute", counted)
    monkeypatch.setattr("microfs.feature_group.write_deltalake", conflicting)
    monkeypatch.setattr("microfs.feature_group.time.sleep", lambda seconds: None)
    result = fg.insert(batch)
    assert (result.version, result.mode) == (1, "append")
    assert computed == [50]  # started by the first attempt, used by the second
    stored = fg.statistics(version=1)
    expected = stats.statistics_frame(compute(batch, fg.definition.schema, rows=50))
    assert stored.equals(expected)


def test_a_conflict_that_never_clears_is_a_clear_error(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fg = _events(store)

    def always(self: FeatureGroup, batch: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
        raise CommitFailedError("a concurrent transaction conflicted")

    monkeypatch.setattr(FeatureGroup, "_write", always)
    monkeypatch.setattr("microfs.feature_group.time.sleep", lambda seconds: None)
    with pytest.raises(CommitConflictError, match="'events' conflicted .* nothing was written"):
        fg.insert(_batch(0, 5))
    assert fg.table_version() == 0


def _batch(i: int, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "k": range(n),
            "t": [T0 + timedelta(hours=i // 2)] * n,
            "writer": [0] * n,
            "v": [i] * n,
        },
        schema={"k": pl.Int64, "t": pl.Datetime("us", "UTC"), "writer": pl.Int64, "v": pl.Int64},
    )


# --- a writer killed mid-insert -------------------------------------------------------------


def _check_version(fg: FeatureGroup, version: int, n: int) -> None:
    """Table version ``version`` holds exactly batches 0 .. version-1 (batch i is version i+1)."""
    done = version  # batches 0 .. done-1 are committed
    per_hour = (
        fg.read(version=version)
        .group_by("t")
        .agg(
            pl.len(),
            pl.col("k").n_unique().alias("keys"),
            pl.col("v").min().alias("lo"),
            pl.col("v").max().alias("hi"),
        )
        .sort("t")
    )
    hours = (done + 1) // 2
    assert per_hour["t"].to_list() == [T0 + timedelta(hours=h) for h in range(hours)]
    assert per_hour["len"].to_list() == [n] * hours
    assert per_hour["keys"].to_list() == [n] * hours
    latest = [max(i for i in range(done) if i // 2 == h) for h in range(hours)]
    assert per_hour["lo"].to_list() == latest
    assert per_hour["hi"].to_list() == latest


def _data_files(fg: FeatureGroup) -> set[str]:
    return {p.name for p in fg.path.glob("*.parquet")}


@pytest.mark.parametrize("kill", ["after a random delay", "as its data file appears"])
def test_a_writer_killed_mid_insert_leaves_the_last_commit_readable(
    store: FeatureStore, kill: str
) -> None:
    fg = _events(store)
    n = 150_000
    assert fg.insert(_batch(0, n)).version == 1
    rng = random.Random()
    for _ in range(2):
        first = fg.table_version()  # the next batch to write has this number
        proc = _python(ENDLESS, store.root, first, n)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the writer has committed once: it is in its loop
        assert line, proc.communicate()[1]
        if kill == "after a random delay":
            time.sleep(rng.uniform(0.0, 0.6))
        else:  # between writing a data file and committing it, most of the time
            known = len(_data_files(fg))
            while len(_data_files(fg)) <= known and proc.poll() is None:
                time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        reported = [int(v) for v in (line + out).split()[::2]]
        latest = fg.table_version()
        assert reported == list(range(first + 1, first + 1 + len(reported)))
        assert latest in (reported[-1], reported[-1] + 1)  # killed before or after its print
        for version in range(first, latest + 1):
            _check_version(fg, version, n)
    # the group takes writes again (the killed writer's lock went with it), and a vacuum
    # clears whatever data files the killed writers left uncommitted
    after = fg.insert(_batch(fg.table_version(), n))
    assert after.version == fg.table_version()
    _check_version(fg, after.version, n)
    fg.vacuum(timedelta(0))
    assert _data_files(fg) == {Path(uri).name for uri in fg._table().file_uris()}
    _check_version(fg, after.version, n)
