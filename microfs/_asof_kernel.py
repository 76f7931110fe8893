"""A compiled as-of join for the common case: one integer key, labels in time order.

Polars' ``join_asof(by=...)`` looks each label's key up in two hash tables (the joined
group's rows per key, then that key's cursor), which costs about 240 ns of CPU per label.
When the key is a single integer column whose values span a range not much larger than
the joined group, a key is its own array index, and one pass over the labels in time
order with one cursor per key finds every match: each label moves its key's cursor
forward past the rows at or before its time (``cursor_asof`` below: the package runs it
compiled from Cython, :mod:`microfs._asof_cursor`, built on install).

:func:`asof_rows` gives exactly the matches of ``join_asof(by=key, strategy="backward")``
on the same frames (:mod:`microfs.pit` owns that contract), as row numbers, and leaves
the join to Polars whenever the kernel does not pay or does not apply: too few labels to
repay grouping the joined rows, a key range far wider than the joined rows, joined keys
beyond int64, null label times, or a package run from source without its compiled module.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

__all__ = [
    "KERNEL_MIN_CALL_ROWS",
    "KERNEL_MIN_KEYS",
    "KERNEL_MIN_ROWS",
    "ROW",
    "Cursors",
    "Match",
    "asof_rows",
    "asof_task",
    "kernel_applies",
    "polars_duration",
    "row_series",
]

_COMPILED: dict[str, Callable[..., Any]]
"""The compiled parts of the kernel by name (empty in a source tree that was not built)."""
try:
    from microfs import _asof_cursor

    _COMPILED = {
        "cursor_asof": _asof_cursor.cursor_asof,
        "cursors_of": _asof_cursor.cursors_of,
        "group_by_slot": _asof_cursor.group_by_slot,
    }
except ImportError:  # a source tree that was not built: Polars does every join
    _COMPILED = {}

KERNEL_MIN_ROWS = 500_000
"""Labels below this count are joined by Polars. The kernel's pass is cheap per label
(1M labels over 100k keys: 0.03 CPU seconds against Polars' 0.10; 5M over 200k keys:
0.13 against 0.54), but grouping the joined rows by key first costs about as much as
Polars' own tables for them (250k labels over 1M joined rows: 0.18 CPU seconds against
Polars' 0.14), so the kernel pays once the labels are about as many as the joined rows,
and clearly from this many (``python benchmarks/bench_pit.py`` at 1M labels)."""

KERNEL_MIN_CALL_ROWS = 250_000
"""A planner may hand the kernel the windows of a frame it chose the kernel for as a whole
(``FeatureView.write_training_frame``); at run time a window below this many labels, or
below ``KERNEL_MIN_ROWS`` if that is lower, is joined by Polars."""

KERNEL_MIN_KEYS = 1
"""Joined key ranges below this are joined by Polars. The kernel wins at every range
measured: 5M labels over 500k joined rows, :func:`asof_rows`, best of three, seconds:
1 key 0.037 against Polars' 0.106, 10 keys 0.037 against 0.080, 1,000 keys 0.053
against 0.137, 4,096 keys 0.055 against 0.185 (it was 4,096 while loading the kernel
cost a second per process). A test may raise it to keep narrow ranges on Polars."""

ROW = "__microfs_row"
"""The name of the matched row numbers :func:`asof_rows` returns."""

_RANGE_SLACK = 4
"""The key range may be this many times the joined rows (plus a constant) and still index
arrays directly; a wider range (sparse or hashed ids) falls back to Polars."""
_RANGE_FLOOR = 1 << 16


def span_fits(span: int, rows: int) -> bool:
    """Whether ``span`` key values are few enough to index directly for ``rows`` rows.

    >>> span_fits(10, 1), span_fits(1 << 40, 1_000)
    (True, False)
    """
    return span <= _RANGE_SLACK * rows + _RANGE_FLOOR


_KEY_DTYPES = frozenset(
    {pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64}
)
_I64 = npt.NDArray[np.int64]
_INDEX = np.dtype(str(pl.get_index_type()).lower())
"""Polars' row-index type (uint32, or uint64 in its 64-bit-index build): the kernel writes
matched row numbers in it, so Polars gathers by them with no conversion."""
_ARROW_INDEX = pa.from_numpy_dtype(_INDEX)
_Rows = npt.NDArray[Any]
"""Row numbers of the index type."""
_MICROSECOND = timedelta(microseconds=1)


def kernel_applies(key_dtype: pl.DataType, time_dtype: pl.DataType) -> bool:
    """Whether a join on this key and time type can take the compiled path at all.

    >>> kernel_applies(pl.Int64(), pl.Datetime("us", "UTC"))
    True
    >>> kernel_applies(pl.String(), pl.Datetime("us", "UTC"))
    False
    """
    return (
        bool(_COMPILED)
        and key_dtype.base_type() in _KEY_DTYPES
        and isinstance(time_dtype, pl.Datetime)
    )


def asof_rows(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    time: str,
    key: str,
    max_age: timedelta | None,
) -> pl.Series:
    """Each left row's latest right row with its key at or before its time, as a row number.

    Args:
        left: The labels' ``time`` and ``key``, sorted by ``time``.
        right: The joined rows' ``time`` and ``key``, sorted by ``time``. Of rows sharing
            a key and time, the last one counts.
        time: The time column, of the same type on both sides.
        key: The key column, of the same type on both sides. A null key matches nothing.
        max_age: A match older than this is dropped; None keeps every match.

    Returns:
        A series of Polars' index type with one value per left row: the matched right
        row's number, or ``right.height`` where no row matched (one past the last row:
        the caller gathers the features from the right rows with one row of nulls put
        after them).

    Example:
        >>> left = pl.DataFrame({"t": [1, 2, 3, 0], "k": [7, 7, 8, 7]}).sort("t")
        >>> right = pl.DataFrame({"t": [1, 3], "k": [7, 8]})
        >>> asof_rows(left, right, time="t", key="k", max_age=None).to_list()
        [2, 0, 0, 1]
    """
    task = asof_task(left, right, time=time, key=key, max_age=max_age)
    if task is not None:
        return row_series(task()).alias(ROW)
    numbered = right.with_row_index(ROW)
    joined = left.join_asof(
        numbered,
        on=time,
        by=key,
        strategy="backward",
        tolerance=None if max_age is None else polars_duration(max_age),
        allow_exact_matches=True,
        check_sortedness=False,
    )
    return joined.get_column(ROW).fill_null(right.height).cast(pl.get_index_type())


Match = Callable[[], "_Rows"]
"""The second part of a match (see :func:`asof_task`): numpy and the compiled kernel only."""


def asof_task(
    left: pl.DataFrame, right: pl.DataFrame, *, time: str, key: str, max_age: timedelta | None
) -> Match | None:
    """:func:`asof_rows` in two parts, to run several joins' matches side by side.

    What reads the frames (Polars) runs now, on the caller's thread; the function returned
    does the rest (numpy and the compiled kernel, which releases the interpreter lock) on
    any thread and returns the row numbers :func:`asof_rows` would. It never calls Polars,
    so a thread of Polars' own pool that waits for it cannot starve that pool. None when
    Polars should do the join instead (then call :func:`asof_rows`).
    """
    floor = min(KERNEL_MIN_ROWS, KERNEL_MIN_CALL_ROWS)
    if left.height < floor or not kernel_applies(left.schema[key], left.schema[time]):
        return None
    if left.get_column(time).null_count():
        return None
    build = Cursors.builder(right, time=time, key=key)
    if build is None:
        return None
    labels = _Labels.of(left, time=time, key=key, max_age=max_age)
    return lambda: build().run(labels)


_Chunk = tuple[_I64, npt.NDArray[np.uint8] | None, _I64]
"""One chunk of labels: keys as int64, which of them can match (1) as bytes (None: all),
times."""


class _Labels:
    """A label frame's keys, their validity and times, chunk by chunk, and the tolerance.

    The arrays are the frame's own buffers where they can be (int64 keys and times without
    nulls): a frame the engine put together from many chunks is matched chunk by chunk,
    in order, rather than copied into one.
    """

    def __init__(self, chunks: list[_Chunk], tolerance: int):
        self.chunks, self.tolerance = chunks, tolerance
        self.height = sum(keys.shape[0] for keys, _, _ in chunks)

    @classmethod
    def of(cls, left: pl.DataFrame, *, time: str, key: str, max_age: timedelta | None) -> _Labels:
        keys, times = left.get_column(key), left.get_column(time)
        if [len(c) for c in keys.get_chunks()] != [len(c) for c in times.get_chunks()]:
            keys, times = keys.rechunk(), times.rechunk()
        chunks = []
        for key_chunk, time_chunk in zip(keys.get_chunks(), times.get_chunks(), strict=True):
            values, valid = _keys_and_validity(key_chunk)
            as_bytes = None if valid is None else valid.view(np.uint8)
            chunks.append((values, as_bytes, _int64(time_chunk)))
        tolerance = -1 if max_age is None else _in_time_units(max_age, left.schema[time])
        return cls(chunks, tolerance)


class Cursors:
    """A joined group's rows grouped by key for the kernel, with one cursor per key.

    Made once (:meth:`of`), it can match several label frames in turn: the cursors move
    forward only, so each frame's labels must come in time order and no earlier than the
    last label of the frame before (the windows of one frame, in order). Not thread-safe.

    Example:
        >>> right = pl.DataFrame({"t": [1, 3], "k": [7, 7]})
        >>> cursors = Cursors.of(right, time="t", key="k", min_keys=0)
        >>> first = pl.DataFrame({"t": [0, 1], "k": [7, 7]})
        >>> cursors.advance_task(first, time="t", key="k", max_age=None)().tolist()
        [2, 0]
        >>> second = pl.DataFrame({"t": [4], "k": [7]})
        >>> cursors.advance_task(second, time="t", key="k", max_age=None)().tolist()
        [1]
    """

    def __init__(self, *, low: int, cursors: _I64, rights: _I64, height: int) -> None:
        self.height = height
        self._low, self._cursors, self._rights = low, cursors, rights

    @classmethod
    def of(
        cls, right: pl.DataFrame, *, time: str, key: str, min_keys: int | None = None
    ) -> Cursors | None:
        """Group ``right`` (its ``time`` and ``key``, sorted by time) for the kernel.

        None when the kernel does not suit these rows: a key range narrower than
        ``min_keys`` (``KERNEL_MIN_KEYS`` when None) or far wider than the rows, or keys
        beyond int64.
        """
        build = cls.builder(right, time=time, key=key, min_keys=min_keys)
        return None if build is None else build()

    @classmethod
    def builder(
        cls, right: pl.DataFrame, *, time: str, key: str, min_keys: int | None = None
    ) -> Callable[[], Cursors] | None:
        """:meth:`of` in two parts: the reads of ``right`` now, the grouping later.

        The function returned groups the rows with numpy alone, on any thread.
        """
        height = right.height
        right_keys = right.get_column(key)
        present = right_keys.drop_nulls()
        if present.is_empty():
            empty = np.zeros((0, 3), dtype=np.int64)
            pairs = np.zeros((0, 2), dtype=np.int64)
            return lambda: cls(low=0, cursors=empty, rights=pairs, height=height)
        low, high = int(present.min()), int(present.max())  # type: ignore[arg-type]
        span = high - low + 1
        if span < (KERNEL_MIN_KEYS if min_keys is None else min_keys):
            return None
        if not span_fits(span, present.len()) or high > np.iinfo(np.int64).max:
            return None
        has_key = right_keys.is_not_null().to_numpy()
        keys = present.cast(pl.Int64).to_numpy()
        times = _int64(right.get_column(time))

        def build() -> Cursors:
            cursors = _compiled("cursors_of")(keys, low, span)
            rights = np.empty((keys.shape[0], 2), dtype=np.int64)
            _compiled("group_by_slot")(keys, low, has_key.view(np.uint8), times, cursors, rights)
            return cls(low=low, cursors=cursors, rights=rights, height=height)

        return build

    def restarted(self) -> Cursors:
        """A copy whose cursors stand at each key's first row again, sharing the rows.

        For label frames that come in no order among themselves (each in time order): each
        gets its own copy, which costs a copy of the cursors alone (three int64 per key).

        >>> right = pl.DataFrame({"t": [1, 3], "k": [7, 7]})
        >>> cursors = Cursors.of(right, time="t", key="k", min_keys=0)
        >>> late = pl.DataFrame({"t": [4], "k": [7]})
        >>> cursors.advance_task(late, time="t", key="k", max_age=None)().tolist()
        [1]
        >>> early = pl.DataFrame({"t": [2], "k": [7]})
        >>> cursors.restarted().advance_task(early, time="t", key="k", max_age=None)().tolist()
        [0]
        """
        cursors = self._cursors.copy()
        cursors[:, 0] = cursors[:, 2]
        return Cursors(low=self._low, cursors=cursors, rights=self._rights, height=self.height)

    def advance_task(
        self, left: pl.DataFrame, *, time: str, key: str, max_age: timedelta | None
    ) -> Match:
        """Match ``left`` (null-free ``time``, in time order) in two parts.

        The reads of ``left`` run now; the function returned runs numpy and the compiled
        kernel alone, on any thread, and gives each row's matched row number (``height``,
        one past the last row, where none matched).
        """
        labels = _Labels.of(left, time=time, key=key, max_age=max_age)
        return lambda: self.run(labels)

    def run(self, labels: _Labels) -> _Rows:
        """Match ``labels`` (numpy and the compiled kernel only), moving the cursors.

        The row numbers are written in Arrow memory: :func:`row_series` hands them to
        Polars without a copy.
        """
        out = _row_numbers(labels.height)
        if not len(self._cursors):  # no joined row has a key: nothing matches
            out.fill(self.height)
            return out
        kernel, start = _compiled(), 0
        for keys, valid, times in labels.chunks:  # in order: the cursors carry on
            end = start + keys.shape[0]
            kernel(
                keys,
                valid,
                times,
                self._low,
                self._cursors,
                self._rights,
                labels.tolerance,
                self.height,
                out[start:end],
            )
            start = end
        return out


_MAPPED_FROM = 1 << 22
"""Row numbers of this many bytes or more get pages of their own (:func:`_row_numbers`)."""


def _row_numbers(height: int) -> _Rows:
    """An array for ``height`` row numbers of the index type, in memory Arrow owns.

    From 4 MiB on (a million labels), the array is a private anonymous mapping of its
    own rather than a block of pyarrow's pool: that pool reserves its memory in 1 GiB
    arenas it asks the kernel to back with huge pages, and the kernel's output is written
    once, in order, straight after it is allocated, so every 2 MiB of it is a huge page
    faulted in and cleared on the spot. Where that memory was never touched before (a
    virtual machine's, typically) it cost 1-2 s per 200 MB here (50M labels: a fifth of
    the frame's time, by ``perf``) against 0.12-0.19 s in small pages; the mapping is
    given back to the kernel when Polars lets go of the row numbers.
    """
    size = height * _INDEX.itemsize
    if size < _MAPPED_FROM:
        return np.frombuffer(pa.allocate_buffer(size), dtype=_INDEX)
    return np.frombuffer(pa.py_buffer(mmap.mmap(-1, size)), dtype=_INDEX)


class _ArrowRows:
    """Only the Arrow C data interface of an array, so Polars imports it as such.

    Given a ``pyarrow.Array`` itself, ``pl.Series`` takes its pyarrow conversion path,
    which loads Polars' pyarrow interop on first use (38 ms in a fresh process here);
    through the interface alone it imports the buffer as it is (under 1 ms).
    """

    def __init__(self, array: pa.Array) -> None:
        self._array = array

    def __arrow_c_array__(self, requested_schema: object = None) -> tuple[object, object]:
        return self._array.__arrow_c_array__(requested_schema)  # type: ignore[no-any-return]


def row_series(rows: _Rows | pl.Series) -> pl.Series:
    """Matched row numbers as a Polars series of its index type.

    Rows the kernel wrote (:meth:`Cursors.run`) go over without a copy, through the
    Arrow C data interface (a numpy array would be copied, and the first such copy in a
    process imports ``numpy.ma``, 10-20 ms); a series is given as it is.

    >>> row_series(Cursors.of(pl.DataFrame({"t": [1], "k": [7]}), time="t", key="k",
    ...     min_keys=0).advance_task(pl.DataFrame({"t": [2], "k": [7]}), time="t", key="k",
    ...     max_age=None)()).to_list()
    [0]
    """
    if isinstance(rows, pl.Series):
        return rows
    base = rows.base
    if (
        isinstance(base, pa.Buffer)
        and rows.dtype == _INDEX
        and rows.ctypes.data == base.address
        and rows.nbytes == base.size
    ):
        array = pa.Array.from_buffers(_ARROW_INDEX, rows.shape[0], [None, base])
        return pl.Series(_ArrowRows(array))
    return pl.Series(rows.astype(_INDEX, copy=False))


def _cursors(counts: _I64) -> _I64:
    """Per slot, its cursor, end and start positions in the slot-grouped joined rows.

    One row of three per slot, so a label's look-up of its slot touches one cache line
    (the labels' keys come in no order: each look-up is a random access).

    >>> _cursors(np.array([2, 0, 1])).tolist()
    [[0, 2, 0], [2, 2, 2], [2, 3, 2]]
    """
    ends = np.cumsum(counts)
    starts = ends - counts
    return np.stack([starts, ends, starts], axis=1)


def _int64(column: pl.Series) -> _I64:
    """A null-free integer or datetime column as int64 values (no copy when it already is)."""
    return column.to_physical().cast(pl.Int64).to_numpy()


def _keys_and_validity(keys: pl.Series) -> tuple[_I64, npt.NDArray[np.bool_] | None]:
    """Keys as int64, and which of them can match (None: every one).

    A null key, or an unsigned key above the int64 range (which no joined key can equal:
    joined keys that large fall back to Polars), matches nothing.
    """
    keys = keys.cast(pl.Int64, strict=False)
    if not keys.null_count():
        return keys.to_numpy(), None
    return keys.fill_null(0).to_numpy(), keys.is_not_null().to_numpy()


def polars_duration(max_age: timedelta) -> str:
    """``max_age`` as an exact Polars duration: whole microseconds, never calendar days.

    >>> polars_duration(timedelta(days=1, microseconds=5))
    '86400000005us'
    """
    return f"{max_age // _MICROSECOND}us"


def _in_time_units(max_age: timedelta, time_dtype: pl.DataType) -> int:
    """``max_age`` in the time column's unit, rounded down.

    For whole units, ``t - r > max_age`` holds exactly when ``t - r`` exceeds the
    rounded-down value.

    >>> _in_time_units(timedelta(seconds=1, microseconds=5), pl.Datetime("ms"))
    1000
    """
    micros = max_age // _MICROSECOND
    unit = time_dtype.time_unit if isinstance(time_dtype, pl.Datetime) else "us"
    if unit == "ns":
        return micros * 1_000
    if unit == "ms":
        return micros // 1_000
    return micros


def cursor_asof(
    keys: _I64,
    valid: npt.NDArray[np.bool_] | None,
    times: _I64,
    low: int,
    cursors: _I64,
    rights: _I64,
    tolerance: int,
    missing: int,
    out: _Rows,
) -> _Rows:
    """Each label's matched right row number, or ``missing``, written into ``out``.

    Labels come in time order. The right rows are grouped by slot (``key - low``) and in
    time order within a slot: ``rights`` holds each one's time and row number, and
    ``cursors`` holds per slot its cursor (the first of its rows not yet passed), its end
    and its start (see :func:`_cursors`). A cursor only moves forward; the cursors are
    updated in place. ``tolerance`` -1 means none. ``out`` holds one row number per
    label (any unsigned or signed integer type wide enough). This is the plain Python
    reference: the package runs the same loop compiled from Cython
    (:mod:`microfs._asof_cursor`, ``valid`` as bytes there), and the tests hold the two
    to each other.

    >>> import numpy as np
    >>> a = lambda *v: np.array(v, dtype=np.int64)
    >>> cursor_asof(
    ...     a(5, 5, 6, 9), np.ones(4, bool), a(1, 5, 5, 5), 5, _cursors(a(2, 1)),
    ...     np.stack([a(1, 4, 9), a(10, 11, 12)], axis=1), -1, 3, np.empty(4, np.uint32),
    ... ).tolist()
    [10, 11, 3, 3]
    """
    span = cursors.shape[0]
    for i in range(keys.shape[0]):
        slot = keys[i] - low
        if slot < 0 or slot >= span or not (valid is None or valid[i]):
            out[i] = missing
            continue
        at = cursors[slot, 0]
        end = cursors[slot, 1]
        time = times[i]
        while at < end and rights[at, 0] <= time:
            at += 1
        cursors[slot, 0] = at
        if at == cursors[slot, 2] or (tolerance >= 0 and time - rights[at - 1, 0] > tolerance):
            out[i] = missing
        else:
            out[i] = rights[at - 1, 1]
    return out


def cursors_of(keys: _I64, low: int, span: int) -> _I64:
    """Per slot (``key - low``) of ``keys``: its cursor, end and start (see :func:`_cursors`).

    The numpy reference; the package runs a two-pass count compiled from Cython
    (:mod:`microfs._asof_cursor`), and the tests hold the two to each other.

    >>> cursors_of(np.array([8, 6, 8]), 6, 3).tolist()
    [[0, 1, 0], [1, 1, 1], [1, 3, 1]]
    """
    return _cursors(np.bincount(keys - low, minlength=span))


def group_by_slot(
    keys: _I64,
    low: int,
    has_key: npt.NDArray[np.bool_],
    times: _I64,
    cursors: _I64,
    rights: _I64,
) -> _I64:
    """Each keyed row's time and row number, grouped by slot, in row order within one.

    ``has_key`` marks the joined rows with a key, ``keys`` holds those rows' keys in row
    order, ``times`` every row's time, and ``cursors`` the slots' layout
    (:func:`cursors_of`); ``rights`` (one row per keyed row) receives the pairs. This is
    the numpy reference (a stable sort by slot); the package runs a one-pass counting
    sort compiled from Cython (:mod:`microfs._asof_cursor`, ``has_key`` as bytes there),
    and the tests hold the two to each other.

    >>> a = lambda *v: np.array(v, dtype=np.int64)
    >>> group_by_slot(
    ...     a(6, 5, 6), 5, np.array([True, False, True, True]), a(10, 11, 12, 13),
    ...     cursors_of(a(6, 5, 6), 5, 2), np.empty((3, 2), np.int64),
    ... ).tolist()
    [[12, 2], [10, 0], [13, 3]]
    """
    row_numbers = np.flatnonzero(has_key)
    order = np.argsort(keys - low, kind="stable")
    rights[:, 0] = times[row_numbers][order]
    rights[:, 1] = row_numbers[order]
    return rights


def _compiled(
    part: Literal["cursor_asof", "cursors_of", "group_by_slot"] = "cursor_asof",
) -> Callable[..., Any]:
    """A compiled part of the kernel, by the name of its reference in this module.

    They take the references' arguments, with ``valid`` and ``has_key`` as bytes.

    Raises:
        RuntimeError: The package's compiled module was not built (a source tree used
            without ``pip install``); :func:`kernel_applies` says False then, so no join
            gets here.
    """
    compiled = _COMPILED.get(part)
    if compiled is None:
        msg = "microfs._asof_cursor is not built; install the package (pip install -e .)"
        raise RuntimeError(msg)
    return compiled
