"""``DataFrame.select`` rechunks columns whose chunks already line up with each other.

Run ``python benchmarks/upstream/select_rechunk_repro.py``: a frame whose columns ``t``
and ``k`` come in 100 chunks and whose column ``s`` comes in 10; selecting ``t`` and
``k`` alone gives one chunk each (a copy of both), where building the frame from the two
series keeps their chunks. See ``polars-select-rechunks-aligned-columns.md``.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

ROWS = 10_000_000


def main() -> None:
    parts = [
        pl.DataFrame({"t": np.arange(ROWS // 100), "k": np.arange(ROWS // 100)}) for _ in range(100)
    ]
    labels = pl.concat(parts, rechunk=False)
    side = pl.concat(
        [pl.DataFrame({"s": np.zeros(ROWS // 10, dtype=np.uint8)})] * 10, rechunk=False
    )
    frame = pl.concat([labels, side], how="horizontal")
    print(f"polars {pl.__version__}; chunks per column:", _chunks(frame))
    aligned = pl.concat(
        [part.with_columns(s=pl.lit(0, dtype=pl.UInt8)) for part in parts], rechunk=False
    )
    half = ROWS // 2
    for name, pick in [
        ("frame.select('t', 'k')", lambda: frame.select("t", "k")),
        ("frame.slice(0, n // 2).select('t', 'k')", lambda: frame.slice(0, half).select("t", "k")),
        ("pl.DataFrame([frame['t'], frame['k']])", lambda: pl.DataFrame([frame["t"], frame["k"]])),
        ("control, all columns in 100 chunks: select('t', 'k')", lambda: aligned.select("t", "k")),
    ]:
        best = min(_timed(pick) for _ in range(3))
        print(f"{name}: chunks {_chunks(pick())}, best of 3 {best * 1e3:.1f} ms")


def _chunks(frame: pl.DataFrame) -> dict[str, int]:
    return {column.name: column.n_chunks() for column in frame.iter_columns()}


def _timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
