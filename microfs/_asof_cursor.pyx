# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled parts of the as-of kernel of :mod:`microfs._asof_kernel`.

``cursor_asof`` is the pass over the labels, the same loop as the plain Python reference
there; ``group_by_slot`` groups the joined rows by key, as the reference
``group_by_slot`` there does with numpy (the tests hold each to its reference). Compiled
when the package is built, so they cost nothing to load; they run without the interpreter
lock, so several joins run side by side on threads.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

ctypedef fused row_t:
    uint32_t
    uint64_t


def cursor_asof(
    const int64_t[::1] keys,
    const uint8_t[::1] valid,
    const int64_t[::1] times,
    int64_t low,
    int64_t[:, ::1] cursors,
    const int64_t[:, ::1] rights,
    int64_t tolerance,
    int64_t missing,
    row_t[::1] out,
):
    """Each label's matched right row number, or ``missing``, written into ``out``.

    ``valid`` is the labels' validity as bytes (a bool array's ``view(np.uint8)``); the
    other arguments are those of the reference, ``microfs._asof_kernel.cursor_asof``.
    Returns ``out``.
    """
    cdef Py_ssize_t i, n = keys.shape[0]
    cdef int64_t slot, at, end, time
    cdef int64_t span = cursors.shape[0]
    if valid.shape[0] != n or times.shape[0] != n or out.shape[0] != n:
        raise ValueError("keys, valid, times and out must have one value per label")
    if cursors.shape[1] != 3 or rights.shape[1] != 2:
        raise ValueError("cursors holds three values per slot and rights two per row")
    with nogil:
        for i in range(n):
            slot = keys[i] - low
            if slot < 0 or slot >= span or not valid[i]:
                out[i] = <row_t>missing
                continue
            at = cursors[slot, 0]
            end = cursors[slot, 1]
            time = times[i]
            while at < end and rights[at, 0] <= time:
                at += 1
            cursors[slot, 0] = at
            if at == cursors[slot, 2] or (tolerance >= 0 and time - rights[at - 1, 0] > tolerance):
                out[i] = <row_t>missing
            else:
                out[i] = <row_t>rights[at - 1, 1]
    return out.base


def group_by_slot(
    const int64_t[::1] slots,
    const uint8_t[::1] has_key,
    const int64_t[::1] times,
    const int64_t[:, ::1] cursors,
    int64_t[:, ::1] rights,
):
    """Each keyed row's time and row number, grouped by slot, in row order within one.

    ``has_key`` marks the rows with a key (bytes), ``slots`` holds those rows' slots
    (``key - low``) in row order, ``times`` every row's time, ``cursors`` each slot's
    start (its third column, see ``microfs._asof_kernel._cursors``) and ``rights`` (one
    row per keyed row) receives the pairs: a counting sort, one pass, stable. Returns
    ``rights``.
    """
    cdef Py_ssize_t i, j = 0, n = has_key.shape[0], keyed = slots.shape[0]
    cdef Py_ssize_t span = cursors.shape[0]
    cdef int64_t slot, at
    if times.shape[0] != n:
        raise ValueError("has_key and times must have one value per row")
    if rights.shape[0] != keyed or rights.shape[1] != 2 or cursors.shape[1] != 3:
        raise ValueError("rights holds two values per keyed row and cursors three per slot")
    fill = np.array(cursors[:, 2], dtype=np.int64)
    cdef int64_t[::1] next_at = fill
    with nogil:
        for i in range(n):
            if not has_key[i]:
                continue
            if j == keyed:
                with gil:
                    raise ValueError("has_key marks more rows than slots holds")
            slot = slots[j]
            j += 1
            if slot < 0 or slot >= span:
                with gil:
                    raise ValueError("a slot beyond the cursors")
            at = next_at[slot]
            next_at[slot] = at + 1
            rights[at, 0] = times[i]
            rights[at, 1] = i
    if j != keyed:
        raise ValueError("has_key marks fewer rows than slots holds")
    return rights.base
