"""Checks of the shape of arguments a caller gives: lists of names, mappings, integers.

One helper per recurring shape, each raising a :class:`DefinitionError` that names the
argument and shows what would be right, so that a malformed call never ends in a raw
``TypeError`` or ``AttributeError`` from deep inside.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from microfs.errors import DefinitionError

__all__ = ["column_names", "frame", "integer", "mapping", "path"]


def column_names(value: object, *, what: str, example: str = "['user_id']") -> tuple[str, ...]:
    """``value`` as a tuple of column names: one name, or a list or tuple of names.

    >>> column_names("user_id", what="primary_keys")
    ('user_id',)
    >>> column_names(None, what="primary_keys")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    microfs.errors.DefinitionError: primary_keys must be a column name or a list of ...
    """
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        names = tuple(value)
        if all(isinstance(name, str) for name in names):
            return names
    raise DefinitionError(
        f"{what} must be a column name or a list of column names, e.g. {example}; got {value!r}"
    )


def mapping(value: object, *, what: str, example: str) -> Mapping[Any, Any]:
    """``value`` if it is a mapping (a dict), else a DefinitionError naming ``what``."""
    if isinstance(value, Mapping):
        return value
    raise DefinitionError(f"{what} must be a mapping such as {example}; got {value!r}")


def integer(value: object, *, what: str) -> int:
    """``value`` if it is an int (not a bool), else a DefinitionError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DefinitionError(f"{what} must be an integer, got {value!r}")
    return value


def frame(value: object, *, what: str) -> pl.LazyFrame:
    """``value`` as a LazyFrame if it is a Polars DataFrame or LazyFrame."""
    if isinstance(value, (pl.DataFrame, pl.LazyFrame)):
        return value.lazy()
    raise DefinitionError(
        f"{what} must be a polars.DataFrame or polars.LazyFrame, got {type(value).__name__}"
    )


def path(value: object, *, what: str) -> Path:
    """``value`` as a Path if it is a string or path-like."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise DefinitionError(f"{what} must be a path (a str or pathlib.Path), got {value!r}")
