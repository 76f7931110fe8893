"""Online lookups under threads: once ``insert`` returns, every later lookup sees it.

The fast tests hold a catch-up (or a table's first build) open at a chosen point with
events on the feature group the table reads from, so each interleaving that once served
a stale row is played deterministically. The slow test runs many reader threads against
a writer and checks every lookup against the last insert that had returned before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

from microfs import FeatureGroup, FeatureStore
from tests.helpers import T0

SCHEMA = {"user_id": "int64", "ts": "datetime64[us, UTC]", "x": "int64"}
WAIT_S = 30.0  # a bound on every wait, so a broken protocol fails instead of hanging


def rows(user_ids: list[int], step: int, x: int) -> pl.DataFrame:
    """One row per user at ``T0 + step`` hours with the value ``x``."""
    return pl.DataFrame(
        {"user_id": user_ids, "ts": [T0 + timedelta(hours=step)] * len(user_ids), "x": x},
        schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "x": pl.Int64},
    )


@pytest.fixture
def counters(store: FeatureStore) -> FeatureGroup:
    group = store.create_feature_group(
        name="counters",
        primary_keys=["user_id"],
        event_time="ts",
        schema=SCHEMA,
        online_keys=["user_id"],
    )
    group.insert(rows([1, 2], 0, 0))
    return group


class Gate:
    """Holds calls of one method of one group object open until released.

    Only calls from the thread given to :meth:`hold` wait; the others pass through.
    """

    def __init__(self, group: FeatureGroup, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.calls = 0
        self.holder: threading.Thread | None = None
        original: Callable[..., Any] = getattr(group, method)

        def gated(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is self.holder:
                self.calls += 1
                self.entered.set()
                assert self.released.wait(WAIT_S), "the gate was never released"
            return original(*args, **kwargs)

        monkeypatch.setattr(group, method, gated)

    def hold(self, thread: threading.Thread) -> None:
        self.holder = thread
        thread.start()
        assert self.entered.wait(WAIT_S), "the held call never started"


def run(results: dict[str, Any], name: str, call: Callable[[], Any]) -> threading.Thread:
    def target() -> None:
        results[name] = call()

    return threading.Thread(target=target, name=name, daemon=True)


def test_a_lookup_during_another_threads_catch_up_sees_the_insert(
    store: FeatureStore, counters: FeatureGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = store.online.table(counters)
    assert table.get((1,), ["x"]) == (0,)
    counters.insert(rows([1], 1, 1))  # returned: every lookup from now on must see x=1
    gate = Gate(counters, "added_since", monkeypatch)
    results: dict[str, Any] = {}
    first = run(results, "first", lambda: table.get((1,), ["x"]))
    gate.hold(first)  # the first lookup is catching up, inside the read of the new files
    second = run(results, "second", lambda: table.get((1,), ["x"]))
    batch = run(
        results, "batch", lambda: table.get_many(pl.DataFrame({"user_id": [1]}), ["x"]).rows()
    )
    second.start()
    batch.start()
    # the later lookups must wait for the catch-up (or make their own), never read the
    # state from before it: give them time to finish early if they would, then release
    second.join(0.5)
    batch.join(0.01)
    gate.released.set()
    for thread in (first, second, batch):
        thread.join(WAIT_S)
    assert results == {"first": (1,), "second": (1,), "batch": [(1, True)]}
    assert gate.calls == 1, "the waiting lookups must not repeat the catch-up"


def test_an_insert_during_a_tables_first_build_reaches_the_table(
    store: FeatureStore, counters: FeatureGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(counters, "scan", monkeypatch)
    results: dict[str, Any] = {}
    builder = run(results, "built", lambda: store.online.table(counters).get((1,), ["x"]))
    gate.hold(builder)  # the table is being built from the version before the insert
    counters.insert(rows([1], 1, 1))
    gate.released.set()
    builder.join(WAIT_S)
    assert results["built"] in ((0,), (1,))  # it started before the insert returned
    assert store.online.table(counters).get((1,), ["x"]) == (1,)
    assert store.online.table(counters).table_version == counters.table_version()


def test_a_failed_catch_up_is_retried_by_the_next_lookup(
    store: FeatureStore, counters: FeatureGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = store.online.table(counters)
    counters.insert(rows([2], 1, 5))
    original = counters.added_since
    monkeypatch.setattr(counters, "added_since", mock_failure := _Failing(original))
    with pytest.raises(OSError, match="disk went away"):
        table.get((2,), ["x"])
    assert mock_failure.calls == 1
    assert table.get((2,), ["x"]) == (5,)  # not the old row: the catch-up is still owed
    assert mock_failure.calls == 2


class _Failing:
    """``added_since`` that fails once, then reads."""

    def __init__(self, original: Callable[[int], Any]) -> None:
        self.original, self.calls = original, 0

    def __call__(self, version: int) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise OSError("disk went away")
        return self.original(version)


@pytest.mark.slow
@pytest.mark.parametrize("readers", [8])
def test_every_lookup_sees_every_insert_that_returned_before_it(
    store: FeatureStore, counters: FeatureGroup, readers: int
) -> None:
    inserts = 100
    users = [1, 2]
    table = store.online.table(counters)
    returned = [0]  # the value of the last insert that returned
    stop = threading.Event()
    lookups, stale = [0] * readers, [0] * readers
    examples: list[tuple[str, int, Any]] = []  # (reader, the floor, what it got)

    def write() -> None:
        try:
            for i in range(1, inserts + 1):
                if i % 10 == 0:  # an upsert of the stored (key, time): a merge, then a rebuild
                    counters.insert(rows(users, i - 1, i))
                else:
                    counters.insert(rows(users, i, i))
                returned[0] = i
        finally:
            stop.set()

    def read(n: int) -> None:
        request = pl.DataFrame({"user_id": users})
        while not stop.is_set():
            floor = returned[0]
            if n % 2:
                got: Any = table.get((users[lookups[n] % len(users)],), ["x"])
                value = got[0] if got else None
            else:
                got = table.get_many(request, ["x"])["x"].to_list()
                value = min(got) if None not in got else None
            if value is None or value < floor:
                stale[n] += 1
                if len(examples) < 3:
                    examples.append((threading.current_thread().name, floor, got))
            lookups[n] += 1
            time.sleep(0.0002)  # let the writer run: a lookup takes microseconds

    threads = [threading.Thread(target=read, args=(n,), name=f"reader{n}") for n in range(readers)]
    writer = threading.Thread(target=write, name="writer")
    for thread in [*threads, writer]:
        thread.start()
    for thread in [writer, *threads]:
        thread.join()
    assert sum(lookups) > inserts
    assert not sum(stale), f"{sum(stale)} of {sum(lookups)} lookups were stale: {examples}"
    assert table.get((1,), ["x"]) == (inserts,)
