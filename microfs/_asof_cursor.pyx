# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled parts of the as-of kernel of :mod:`microfs._asof_kernel`.

``cursor_asof`` is the pass over the labels, the same loop as the plain Python reference
there; ``cursors_of`` and ``group_by_slot`` group the joined rows by key, as the numpy
references of the same names there do (the tests hold each to its reference). Compiled
when the package is built, so they cost nothing to load; they run without the interpreter
lock, so several joins run side by side on threads. They allocate nothing they do not
return: on a machine whose fresh memory is slow to touch, a temporary array costs more
than the loop that fills it.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define MICROFS_PREFETCH(address) __builtin_prefetch(address)
    #else
    #define MICROFS_PREFETCH(address) ((void)0)
    #endif
    """
    void MICROFS_PREFETCH(const void *address) nogil

# The labels' keys come in no order, so each label's cursor and its slot's rows are
# random reads that miss the CPU caches once the joined group is large. The pass asks for
# them ahead: the cursor of the label CURSOR_AHEAD places on, and the first row of the
# label ROWS_AHEAD places on (its cursor asked for earlier). 10M labels over 1M keys:
# 0.37 s per join without, 0.25 s with (the best of five, a 2-core VM).
cdef enum:
    CURSOR_AHEAD = 32
    ROWS_AHEAD = 16

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

    ``valid`` is the labels' validity as bytes (a bool array's ``view(np.uint8)``), or
    None when every label's key is valid; the other arguments are those of the
    reference, ``microfs._asof_kernel.cursor_asof``. Returns ``out``.
    """
    cdef Py_ssize_t i, n = keys.shape[0]
    cdef int64_t slot, at, end, time
    cdef int64_t span = cursors.shape[0]
    cdef bint all_valid = valid is None
    if (not all_valid and valid.shape[0] != n) or times.shape[0] != n or out.shape[0] != n:
        raise ValueError("keys, valid, times and out must have one value per label")
    if cursors.shape[1] != 3 or rights.shape[1] != 2:
        raise ValueError("cursors holds three values per slot and rights two per row")
    cdef int64_t ahead
    with nogil:
        for i in range(n):
            if i + CURSOR_AHEAD < n:
                ahead = keys[i + CURSOR_AHEAD] - low
                if ahead >= 0 and ahead < span:
                    MICROFS_PREFETCH(&cursors[ahead, 0])
            if i + ROWS_AHEAD < n:
                ahead = keys[i + ROWS_AHEAD] - low
                if ahead >= 0 and ahead < span and cursors[ahead, 0] < rights.shape[0]:
                    MICROFS_PREFETCH(&rights[cursors[ahead, 0], 0])
            slot = keys[i] - low
            if slot < 0 or slot >= span or not (all_valid or valid[i]):
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


def cursors_of(const int64_t[::1] keys, int64_t low, int64_t span):
    """Per slot (``key - low``, ``0 <= slot < span``) of ``keys``: cursor, end and start.

    The reference is ``_cursors(np.bincount(keys - low, minlength=span))`` in
    ``microfs._asof_kernel``: the slots' rows laid out one slot after another, each
    cursor at its slot's start. Raises ValueError for a key outside the slots.
    """
    cdef Py_ssize_t i, n = keys.shape[0]
    cdef int64_t slot, count, running = 0
    out = np.zeros((span, 3), dtype=np.int64)
    cdef int64_t[:, ::1] cursors = out
    cdef bint outside = False
    with nogil:
        for i in range(n):
            slot = keys[i] - low
            if slot < 0 or slot >= span:
                outside = True
                break
            cursors[slot, 1] += 1
        if not outside:
            for i in range(span):
                count = cursors[i, 1]
                cursors[i, 0] = running
                cursors[i, 2] = running
                running += count
                cursors[i, 1] = running
    if outside:
        raise ValueError("a key outside low .. low + span - 1")
    return out


def group_by_slot(
    const int64_t[::1] keys,
    int64_t low,
    const uint8_t[::1] has_key,
    const int64_t[::1] times,
    int64_t[:, ::1] cursors,
    int64_t[:, ::1] rights,
):
    """Each keyed row's time and row number, grouped by slot, in row order within one.

    ``has_key`` marks the rows with a key (bytes), ``keys`` holds those rows' keys in row
    order, ``times`` every row's time, ``cursors`` the slots' layout (``cursors_of``:
    each cursor at its slot's start, and so again on return; the cursors serve as the
    fill positions meanwhile) and ``rights`` (one row per keyed row) receives the pairs:
    a counting sort, one pass, stable. Returns ``rights``.
    """
    cdef Py_ssize_t i, j = 0, n = has_key.shape[0], keyed = keys.shape[0]
    cdef Py_ssize_t span = cursors.shape[0]
    cdef int64_t slot, at
    cdef int problem = 0
    if times.shape[0] != n:
        raise ValueError("has_key and times must have one value per row")
    if rights.shape[0] != keyed or rights.shape[1] != 2 or cursors.shape[1] != 3:
        raise ValueError("rights holds two values per keyed row and cursors three per slot")
    with nogil:
        for i in range(n):
            if not has_key[i]:
                continue
            if j == keyed:
                problem = 1
                break
            slot = keys[j] - low
            j += 1
            if slot < 0 or slot >= span or cursors[slot, 0] >= cursors[slot, 1]:
                problem = 2
                break
            at = cursors[slot, 0]
            cursors[slot, 0] = at + 1
            rights[at, 0] = times[i]
            rights[at, 1] = i
        for i in range(span):
            cursors[i, 0] = cursors[i, 2]
    if problem == 1 or (problem == 0 and j != keyed):
        raise ValueError("has_key marks a different number of rows than keys holds")
    if problem == 2:
        raise ValueError("a key beyond the cursors' slots, or more rows than its slot holds")
    return rights.base
