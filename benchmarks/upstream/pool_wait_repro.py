"""A tiny eager Polars call waits for another thread's long query to finish.

Self-contained (polars, numpy): ``python benchmarks/upstream/pool_wait_repro.py``. A
second thread runs a query of about half a second over 10M rows (the distinct counts and
histograms of four columns, as a statistics pass does); the main thread, 50 ms into it,
builds one literal or one-row Series. Printed: each small call's time, alone and during
the query.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import polars as pl

ROWS = 10_000_000


def long_query(frame: pl.DataFrame) -> None:
    frame.select(
        *[pl.col(c).approx_n_unique().alias(f"{c}_n") for c in frame.columns],
        *[pl.col(c).hist(bin_count=20).implode().alias(f"{c}_h") for c in frame.columns],
    )


def small_calls() -> dict[str, Callable[[], object]]:
    zoned = datetime(2024, 1, 1, tzinfo=UTC)
    return {
        "pl.lit(zoned datetime, Datetime('us', 'UTC'))": lambda: pl.lit(
            zoned, dtype=pl.Datetime("us", "UTC")
        ),
        "pl.Series([1]).cast(pl.Float64)": lambda: pl.Series([1]).cast(pl.Float64),
        "pl.Series([naive datetime]).dt.replace_time_zone('UTC')": lambda: pl.Series(
            [datetime(2024, 1, 1)]
        ).dt.replace_time_zone("UTC"),
        "pl.lit(1)": lambda: pl.lit(1),
    }


def timed_alone(call: Callable[[], object]) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed_during(frame: pl.DataFrame, call: Callable[[], object]) -> tuple[float, float]:
    """The call's time 50 ms into the long query, and the long query's time."""
    spans: dict[str, float] = {}

    def background() -> None:
        started = time.perf_counter()
        long_query(frame)
        spans["query"] = time.perf_counter() - started

    worker = threading.Thread(target=background)
    worker.start()
    time.sleep(0.05)
    started = time.perf_counter()
    call()
    took = time.perf_counter() - started
    worker.join()
    return took, spans["query"]


def main() -> None:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({f"c{i}": rng.integers(0, 1_000_000, ROWS) for i in range(4)})
    long_query(frame)  # warm up
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads")
    for name, call in small_calls().items():
        alone = timed_alone(call)
        during, query = timed_during(frame, call)
        print(
            f"{name:58s} alone {alone * 1e3:7.2f} ms, during the query "
            f"{during * 1e3:7.1f} ms (query {query * 1e3:.0f} ms)"
        )


if __name__ == "__main__":
    main()
