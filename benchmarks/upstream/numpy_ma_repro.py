"""The first ``pl.Series(numpy_array)`` of a process imports ``numpy.ma``.

Run ``python benchmarks/upstream/numpy_ma_repro.py``: each case runs in a fresh
interpreter (polars and numpy imported before the timer) and prints the median of five
such processes. See ``polars-series-from-numpy-imports-numpy-ma.md``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

CASE = """
import sys, time
import numpy as np
import polars as pl
{setup}
values = np.arange(1_000, dtype=np.uint32)
start = time.perf_counter()
pl.Series(values)
first = time.perf_counter() - start
start = time.perf_counter()
pl.Series(values)
second = time.perf_counter() - start
print(first, second, "numpy.ma" in sys.modules)
"""

CASES = {
    "numpy.ma not imported before": "",
    "numpy.ma imported before the timer": "import numpy.ma",
}


def main() -> None:
    python = sys.version.split()[0]
    print(f"polars {_version('polars')}, numpy {_version('numpy')}, Python {python}")
    for name, setup in CASES.items():
        firsts, seconds = [], []
        for _ in range(5):
            out = subprocess.run(
                [sys.executable, "-c", CASE.format(setup=setup)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            firsts.append(float(out[0]))
            seconds.append(float(out[1]))
            loaded = out[2]
        print(
            f"{name}: first pl.Series(np.ndarray) {statistics.median(firsts) * 1e3:.2f} ms, "
            f"second {statistics.median(seconds) * 1e3:.3f} ms; numpy.ma loaded after: {loaded}"
        )


def _version(module: str) -> str:
    return str(__import__(module).__version__)


if __name__ == "__main__":
    main()
