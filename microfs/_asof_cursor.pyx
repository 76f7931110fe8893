# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled pass of the as-of kernel: ``cursor_asof`` of :mod:`microfs._asof_kernel`.

The same loop as the plain Python reference there (which the tests run beside this one),
compiled when the package is built, so it costs nothing to load. It runs without the
interpreter lock: several joins' passes run side by side on threads.
"""

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
