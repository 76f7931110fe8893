"""join_asof(by=<int key>) cost per left row against the number of distinct keys.

Self-contained (polars, numpy; numba only for the comparison line):
``python benchmarks/upstream/asof_by_repro.py``. Left: 5M rows sorted by time; right:
500k rows sorted by time; one Int64 ``by`` key drawn uniformly from ``keys`` values.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from functools import partial

import numpy as np
import polars as pl

LEFT, RIGHT = 5_000_000, 500_000


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(action, repeats: int = 3) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, used = time.perf_counter(), cpu()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu() - used)
    return statistics.median(walls), statistics.median(cpus)


def cursor_join(left_t, left_k, right_t, right_k, keys):
    """Per key, a cursor that only moves forward (left sorted by time): one pass."""
    order = np.argsort(right_k, kind="stable")
    counts = np.bincount(right_k, minlength=keys)
    starts = np.cumsum(counts) - counts
    return _kernel(left_t, left_k, starts, counts, right_t[order], order)


def _loop(left_t, left_k, starts, counts, right_t, rows):
    out = np.empty(left_t.shape[0], dtype=np.int64)
    seen = np.zeros(starts.shape[0], dtype=np.int64)
    for i in range(left_t.shape[0]):
        k = left_k[i]
        done = seen[k]
        while done < counts[k] and right_t[starts[k] + done] <= left_t[i]:
            done += 1
        seen[k] = done
        out[i] = rows[starts[k] + done - 1] if done else -1
    return out


try:
    import numba

    _kernel = numba.njit(cache=False)(_loop)
except ImportError:
    _kernel = None


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"polars {pl.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    header = f"{'keys':>8} {'join_asof wall':>15} {'cpu':>6} {'ns/row':>7} |"
    print(f"{header} {'cursor wall':>12} {'cpu':>6}")
    for keys in (1_000, 10_000, 100_000, 400_000):
        left_t = np.sort(rng.integers(0, 10**12, LEFT))
        right_t = np.sort(rng.integers(0, 10**12, RIGHT))
        left_k = rng.integers(0, keys, LEFT)
        right_k = rng.integers(0, keys, RIGHT)
        left = pl.DataFrame({"t": left_t, "k": left_k}).with_columns(pl.col("t").set_sorted())
        right = pl.DataFrame({"t": right_t, "k": right_k, "v": np.arange(RIGHT)}).with_columns(
            pl.col("t").set_sorted()
        )
        wall, used = timed(partial(left.join_asof, right, on="t", by="k", check_sortedness=False))
        line = f"{keys:>8} {wall:>15.3f} {used:>6.2f} {used / LEFT * 1e9:>7.0f} |"
        if _kernel is not None:
            cursor_join(left_t, left_k, right_t, right_k, keys)  # compile
            expected = left.join_asof(right, on="t", by="k", check_sortedness=False)["v"]
            got = cursor_join(left_t, left_k, right_t, right_k, keys)
            assert (pl.Series(got).replace(-1, None) == expected).all()
            c_wall, c_used = timed(partial(cursor_join, left_t, left_k, right_t, right_k, keys))
            line += f" {c_wall:>12.3f} {c_used:>6.2f}"
        print(line)


if __name__ == "__main__":
    main()
