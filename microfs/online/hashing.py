"""Hash codes of online key values: one 64-bit code per key column, one hash per key.

A key's hash starts at 0 and, for each key column, becomes ``(h ^ code) * GOLDEN``
(mod 2**64), where a column's code is its integer value (dates as days, datetimes as
microseconds, booleans as 0/1), a float's IEEE bits (one NaN pattern, -0.0 as 0.0) or a
string's CRC-32. It is computed the same way for a whole column (vectorised in numpy,
``series_codes`` and ``key_hashes``) and for one coerced request value (in Python,
``hash_code``); the two must agree, so they live side by side here. This is the bottom
of the online subpackage: it imports no other MicroFS module.

Also here: the readers of a Polars column into numpy (``numpy_values``, ``string_pieces``)
that both the codes and the column buffers of :mod:`microfs.online.columns` use.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray

__all__ = [
    "GOLDEN",
    "M64",
    "Array",
    "float_codes",
    "key_hashes",
    "hash_code",
    "numpy_values",
    "series_codes",
    "string_pieces",
]

Array = NDArray[Any]

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _crc_table() -> Array:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc_table()


def _float_code(value: float) -> int:
    if value != value:  # NaN: one canonical pattern
        value = math.nan
    code: int = struct.unpack("<q", struct.pack("<d", value + 0.0))[0]
    return code


def _string_code(value: str) -> int:
    return zlib.crc32(value.encode())


def _crc32(offsets: Array, data: Array) -> Array:
    """CRC-32 of each string given as Arrow-style offsets and UTF-8 bytes (zlib's CRC)."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    starts = offsets[:-1][order]
    descending = lengths[order]
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for j in range(int(descending[0]) if n else 0):
        k = int(np.searchsorted(-descending, -j, side="left"))
        current = crc[:k]
        byte = data[starts[:k] + j].astype(np.uint32)
        crc[:k] = _CRC_TABLE[(current ^ byte) & 0xFF] ^ (current >> np.uint32(8))
    out = np.empty(n, dtype=np.uint32)
    out[order] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def series_codes(series: pl.Series, canonical: str) -> Array:
    """Hash codes (int64) of a key column without nulls."""
    if canonical == "string":
        offsets, data, _ = string_pieces(series)
        return _crc32(offsets, data).astype(np.int64)
    if canonical.startswith("float"):
        return float_codes(series.cast(pl.Float64).to_numpy())
    # not Series.to_physical: numpy's view of dates and datetimes costs nothing
    values = numpy_values(series)
    if values.dtype.kind == "M":
        values = values.view(np.int64)
    codes: Array = values.astype(np.int64, copy=False)
    return codes


def float_codes(values: Array) -> Array:
    """IEEE bits (int64) of floats, with one NaN pattern and -0.0 as 0.0 (as ``_float_code``)."""
    values = values.astype(np.float64, copy=False) + 0.0
    codes: Array = np.where(np.isnan(values), np.nan, values).view(np.int64)
    return codes


def key_hashes(codes: Sequence[Array]) -> Array:
    """The 64-bit hash (uint64) of each row from its key columns' codes, in key order."""
    h = np.zeros(len(codes[0]), dtype=np.uint64)
    golden = np.uint64(GOLDEN)
    for code in codes:
        h ^= code.view(np.uint64)
        h *= golden
    return h


def hash_code(canonical: str) -> Callable[[Any], int]:
    """The hash code (unsigned 64-bit) of a coerced value, matching ``series_codes``."""
    if canonical == "string":
        return _string_code
    if canonical.startswith("float"):
        return lambda value: _float_code(value) & M64
    return lambda value: value & M64  # every other coerced key value is a Python int


# -- Polars columns as numpy ----------------------------------------------------------------


def string_pieces(series: pl.Series) -> tuple[Array, Array, Array | None]:
    """Arrow-style int64 offsets, UTF-8 bytes and validity (None without nulls)."""
    array = series.cast(pl.String).rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=array.offset * 8)
    raw = buffers[2]
    data = np.frombuffer(raw, dtype=np.uint8) if raw is not None else np.zeros(0, np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    if start:
        offsets = offsets - start
    valid = series.is_not_null().to_numpy() if series.null_count() else None
    return offsets, data[start:end], valid


def numpy_values(series: pl.Series) -> Array:
    """The values of a column without nulls, joined by numpy when it has several chunks.

    ``Series.to_numpy`` joins chunks into a new Polars buffer, which Polars' allocator
    keeps for seconds after it is freed; numpy's copy goes back as soon as it is freed.
    """
    if series.n_chunks() == 1:
        return np.asarray(series.to_numpy())
    return np.concatenate([np.asarray(chunk.to_numpy()) for chunk in series.get_chunks()])
