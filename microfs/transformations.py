"""Feature transformations: definitions, fitting, and two ways to apply them.

A feature view lists transformations such as ``{"type": "scale", "column": "duration_sec"}``.
They are fitted on training rows only (:func:`fit_transforms`, whole-column aggregates), the
fitted parameters are plain JSON (:class:`FittedParams`), and they are applied in two ways
that give equal values: as Polars expressions over a LazyFrame (:func:`apply_transforms`,
the offline path) and as precompiled Python closures over one row
(:func:`compile_row_transform`, the online path).

Types, what they fit and what they return (``x`` is the value of one row):

================  ================================  ====================================
type              fitted parameters                 output (dtype)
================  ================================  ====================================
standard_scale    mean, population std              (x - mean) / std (Float64)
(alias ``scale``)
min_max_scale     min, max                          (x - min) / (max - min) (Float64)
robust_scale      median, q25, q75 (linear, as      (x - median) / (q75 - q25) (Float64)
                  numpy's default quantile)
one_hot_encode    sorted categories                 one column ``<col>_<value>`` per
                                                    category, 1 or 0 (Int8)
label_encode      sorted categories                 index 0..k-1, -1 if unseen (Int64)
log1p             nothing                           ln(1 + x), null for x <= -1 (Float64)
impute            the fill value (mean, median,     x, or the fill value where x is
                  most_frequent or constant)        missing (see below)
clip              nothing (``lower``/``upper``)     x bounded (Float64)
bucketize         ``boundaries``, or ``n_buckets``  number of boundaries <= x (Int64)
                  - 1 training quantiles
================  ================================  ====================================

Rules shared by all types:

* A scale whose spread is zero (std, max - min or the IQR) outputs 0.0 for every non-null x.
  Otherwise it computes ``(x - shift) * (1 / spread)`` with the reciprocal taken once (as
  Polars divides by a scalar anyway), so both paths give bit-identical floats.
* Missing values: null stays null through the numeric types, ``one_hot_encode`` gives all
  zeros, ``label_encode`` gives -1 and ``impute`` fills it. NaN counts as missing: every
  numeric type treats it like null (so outputs never hold NaN), and ``impute`` fills it.
  Infinities are values: they are skipped when fitting, but transformed as arithmetic says
  (``scale`` of +inf is +inf, ``bucketize`` puts it in the last bucket).
* Numeric parameters are computed over the finite values of the training rows only.
* Categories come from the non-null training values, sorted: strings (also Categorical and
  Enum columns, which are read as strings) lexically, integers numerically, booleans false
  before true. Column names use ``str(value)``, and ``true``/``false`` for booleans.
  Floats cannot be categories: ``bucketize`` them first.
* ``impute`` returns Float64 for ``mean`` and ``median`` and for a float column; otherwise it
  keeps the column's kind: Int64 for integers (Float64 if a ``constant`` is a float), String
  for strings, Boolean for booleans. ``most_frequent`` breaks ties with the smallest value.
* Several transformations on one column form a chain, applied in the order listed (for
  example ``impute`` then ``scale``). Each step is fitted on the output of the steps before
  it, so fitting takes one aggregate pass per chain depth: one ``collect`` when no column
  has two steps. ``one_hot_encode`` must be the last step of its chain.
* A transformation fitted from data raises :class:`~microfs.errors.NotFittedError` when
  the training rows hold no usable value for it (for example an empty frame).
* The single-row function takes, for a transformed column, a Python value of the kind its
  first step was fitted on (a number for ``int`` and ``float``, a ``str``, a ``bool``; numpy
  scalars too) or None; any other value (text for a scale, say) is a
  :class:`~microfs.errors.SchemaError` naming the feature.
* ``Transform.type`` keeps the spelling of the definition (``scale`` stays ``scale``);
  :attr:`Transform.kind` gives the canonical name.

The column order of ``X`` is :func:`output_columns`: the feature columns in their given
order, each transformed column replaced in place by its output column(s).

Layout. The module holds one idea, "a transformation type and the chains built of it", in
three parts: the value kinds (``int``, ``float``, ``string``, ``bool``) every type speaks
in; one class per type (``_StandardScale`` ... ``_Bucketize``), each owning all of its
behaviour (the options it takes and checks, the column kinds it accepts and returns, the
aggregates it fits and the parameters made of them, its output columns, its whole-column
Polars expression and its single-row Python function), registered in one table keyed by
type name (``_TYPES``); and the public functions, which parse definitions into
:class:`Transform`, chain the steps of one column and never ask which type a step is. A
new type is one class and one table entry. Splitting the classes from the functions would
make two modules that each need the other's private helpers, so they stay together.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeAlias, cast, get_args

import numpy as np
import polars as pl

from microfs.errors import DefinitionError, NotFittedError, SchemaError

__all__ = [
    "FittedParams",
    "ImputeStrategy",
    "Transform",
    "TransformType",
    "ValueKind",
    "apply_transforms",
    "compile_row_transform",
    "fit_transforms",
    "output_columns",
    "output_schema",
    "parse_transforms",
    "transform_row",
    "validate_transforms",
]

TransformType: TypeAlias = Literal[
    "scale",
    "standard_scale",
    "min_max_scale",
    "robust_scale",
    "one_hot_encode",
    "label_encode",
    "log1p",
    "impute",
    "clip",
    "bucketize",
]
ImputeStrategy: TypeAlias = Literal["mean", "median", "most_frequent", "constant"]
ValueKind: TypeAlias = Literal["int", "float", "string", "bool"]
DataTypeLike: TypeAlias = "pl.DataType | type[pl.DataType]"
Step: TypeAlias = Callable[[Any], Any]


# --------------------------------------------------------------------------- value kinds

_KINDS: tuple[str, ...] = get_args(ValueKind)
_NUMERIC: frozenset[str] = frozenset({"int", "float"})
_CATEGORICAL: frozenset[str] = frozenset({"int", "string", "bool"})
_DTYPES: dict[str, type[pl.DataType]] = {
    "int": pl.Int64,
    "float": pl.Float64,
    "string": pl.String,
    "bool": pl.Boolean,
}
# The Python types a single row may hold for a value of each kind (None is missing),
# checked by exact type first, the common case; subclasses and numpy scalars go through
# _fits_kind.
_ROW_TYPES: dict[str, frozenset[type]] = {
    "int": frozenset({int, float, type(None)}),
    "float": frozenset({int, float, type(None)}),
    "string": frozenset({str, type(None)}),
    "bool": frozenset({bool, type(None)}),
}
_ROW_WANTED = {"int": "a number", "float": "a number", "string": "a string", "bool": "a boolean"}


def _kind_of(dtype: DataTypeLike) -> ValueKind | None:
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        return "string"
    return None


def _fits_kind(value: object, kind: str) -> bool:
    """Whether one row's Python value can stand for a value of ``kind``."""
    is_bool = isinstance(value, bool | np.bool_)
    if kind == "bool":
        return is_bool
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, numbers.Real) and not is_bool


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_kind(e: pl.Expr, kind: str) -> pl.Expr:
    if kind == "string":
        return e.cast(pl.String)
    if kind == "int":
        return e.cast(pl.Int64)
    return e


def _num(e: pl.Expr) -> pl.Expr:
    """A numeric column as Float64 with NaN read as null (so outputs never hold NaN)."""
    return e.cast(pl.Float64).fill_nan(None)


def _finite(column: str) -> pl.Expr:
    """The finite values of a numeric column, which numeric parameters are fitted on."""
    x = pl.col(column).cast(pl.Float64)
    return x.filter(x.is_finite())


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Transform:
    """One transformation of one column, as a feature view definition lists it.

    Construction validates the type and the options and raises
    :class:`~microfs.errors.DefinitionError` naming the bad value and the valid choices.

    Attributes:
        type: The type as written (``"scale"`` and ``"standard_scale"`` both work).
        column: The feature column it transforms.
        options: Type-specific options: ``strategy``/``value`` for ``impute``,
            ``lower``/``upper`` for ``clip``, ``boundaries`` or ``n_buckets`` for
            ``bucketize``; the other types take none.

    >>> Transform.from_dict({"type": "clip", "column": "x", "lower": 0})
    Transform(type='clip', column='x', options={'lower': 0})
    """

    type: str
    column: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or self.type not in _TYPES:
            raise DefinitionError(
                f"unknown transformation type {self.type!r}{_hint(self.type, _NAMES)}; "
                f"valid types: {', '.join(_NAMES)}"
            )
        if not isinstance(self.column, str) or not self.column:
            raise DefinitionError(
                f"transformation {self.type!r} needs a 'column' that is a non-empty string, "
                f"got {self.column!r}"
            )
        if not isinstance(self.options, Mapping):
            raise DefinitionError(
                f"{_where(self)}: options must be a mapping, got {self.options!r}"
            )
        options = _TYPES[self.type].checked_options(self, dict(self.options))
        object.__setattr__(self, "options", MappingProxyType(options))

    def __repr__(self) -> str:
        options = _thaw(self.options)
        return f"Transform(type={self.type!r}, column={self.column!r}, options={options!r})"

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def kind(self) -> str:
        """The canonical type name (``"scale"`` gives ``"standard_scale"``).

        >>> Transform("scale", "x").kind
        'standard_scale'
        """
        return _TYPES[self.type].name

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Transform:
        """Build a transformation from its definition: ``type``, ``column`` and options.

        Args:
            d: A mapping such as ``{"type": "impute", "column": "x", "strategy": "median"}``.

        Returns:
            The validated transformation.

        Raises:
            DefinitionError: Not a mapping, no ``type`` or ``column``, an unknown type, or
                an unknown or bad option.

        >>> Transform.from_dict({"type": "impute", "column": "x", "strategy": "median"}).options
        mappingproxy({'strategy': 'median'})
        """
        if not isinstance(d, Mapping):
            raise DefinitionError(
                f"a transformation is a mapping like {{'type': 'scale', 'column': 'x'}}, got {d!r}"
            )
        for key in ("type", "column"):
            if key not in d:
                raise DefinitionError(
                    f"transformation {dict(d)!r} has no {key!r}; write it like "
                    f"{{'type': 'scale', 'column': 'x'}} (valid types: {', '.join(_NAMES)})"
                )
        options = {k: v for k, v in d.items() if k not in ("type", "column")}
        return cls(type=d["type"], column=d["column"], options=options)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable definition; :meth:`from_dict` reads it back equal.

        >>> Transform("bucketize", "x", {"boundaries": [0, 10]}).to_dict()
        {'type': 'bucketize', 'column': 'x', 'boundaries': [0, 10]}
        """
        return {"type": self.type, "column": self.column, **_thaw(self.options)}


def parse_transforms(specs: Sequence[Mapping[str, Any] | Transform]) -> tuple[Transform, ...]:
    """Turn definitions (mappings or :class:`Transform`) into validated transformations.

    Args:
        specs: The view's ``transforms`` list.

    Returns:
        The transformations, in the given order.

    Raises:
        DefinitionError: ``specs`` is not a list, an entry is invalid, or a step follows
            ``one_hot_encode`` on the same column.

    >>> [t.kind for t in parse_transforms([{"type": "scale", "column": "x"}])]
    ['standard_scale']
    """
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Sequence):
        raise DefinitionError(
            "transforms must be a list of definitions like [{'type': 'scale', 'column': 'x'}], "
            f"got {specs!r}"
        )
    out: list[Transform] = []
    for spec in specs:
        out.append(spec if isinstance(spec, Transform) else Transform.from_dict(spec))
    for column, idxs in _chains(out).items():
        for i in idxs[:-1]:
            if _TYPES[out[i].type].expands:
                later = ", ".join(repr(out[j].type) for j in idxs if j > i)
                raise DefinitionError(
                    f"transformation {out[i].kind!r} on column {column!r} replaces the column "
                    f"by several, so {later} cannot follow it; put {out[i].kind} last"
                )
    return tuple(out)


def validate_transforms(
    transforms: Sequence[Mapping[str, Any] | Transform], schema: Mapping[str, DataTypeLike]
) -> None:
    """Check that the transformations fit the columns and types of ``schema``.

    Args:
        transforms: Definitions or :class:`Transform` objects.
        schema: Column name to Polars dtype, e.g. ``frame.collect_schema()``.

    Raises:
        DefinitionError: A transformation names a column not in ``schema``, or its column
            has a type it cannot take (a numeric one on strings, an encoder on floats, an
            ``impute`` constant of the wrong type).

    >>> log1p = {"type": "log1p", "column": "s"}
    >>> validate_transforms([log1p], {"s": pl.String})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    microfs.errors.DefinitionError: transformation 'log1p' on column 's' needs a numeric ...
    """
    _input_kinds(parse_transforms(transforms), schema)


def _input_kinds(ts: Sequence[Transform], schema: Mapping[str, DataTypeLike]) -> list[str]:
    """The kind of value each step takes, walking each column's chain; refuses misfits."""
    kinds = ["" for _ in ts]
    for column, idxs in _chains(ts).items():
        if column not in schema:
            raise DefinitionError(
                f"{_where(ts[idxs[0]])}: no such column{_hint(column, list(schema))}; "
                f"columns: {', '.join(schema)}"
            )
        kind: str | None = _kind_of(schema[column])
        described = str(schema[column])
        for i in idxs:
            t = ts[i]
            kind = _TYPES[t.type].checked_input(t, kind, described)
            kinds[i] = kind
            kind = _TYPES[t.type].output_kind(t, kind)
            described = f"{_DTYPES[kind]} after {t.type!r}" if kind else "one-hot encoded"
    return kinds


# --------------------------------------------------------------------------- the types


class _Type(ABC):
    """What one transformation type does; one subclass per type, one instance in ``_TYPES``.

    Methods take the :class:`Transform` (for its options and for messages) and, once
    fitted, its parameters ``p``. ``kind`` is the kind of value the step takes.
    """

    name: ClassVar[str]  # the canonical type name
    option_names: ClassVar[tuple[str, ...]] = ()
    param_names: ClassVar[tuple[str, ...]] = ()  # fitted parameters besides input_kind
    accepts: ClassVar[frozenset[str]] = _NUMERIC  # the kinds of value it takes
    wanted: ClassVar[str] = "a numeric (int or float)"  # those kinds, for messages
    usable: ClassVar[str] = "non-null finite"  # what a training value must be to fit it
    expands: ClassVar[bool] = False  # replaces its column by several (so must come last)

    # -- definition

    def checked_options(self, t: Transform, options: dict[str, Any]) -> dict[str, Any]:
        """The options, checked and completed with defaults; refuses unknown ones."""
        valid = self.option_names
        for key in options:
            if key not in valid:
                accepted = f"valid options: {', '.join(valid)}" if valid else "it takes no options"
                extra = ""
                if key == "options":
                    extra = "; write options next to 'type' and 'column', not in a nested mapping"
                raise DefinitionError(
                    f"{_where(t)}: unknown option {key!r}{_hint(key, valid)}; {accepted}{extra}"
                )
        return self.check_options(t, options)

    def check_options(self, t: Transform, options: dict[str, Any]) -> dict[str, Any]:
        """Checks and defaults of the type's own options (their names are known)."""
        return options

    def checked_input(self, t: Transform, kind: str | None, described: str) -> str:
        """The column's kind if the step takes it (``described`` names the column's type)."""
        if kind is None or kind not in self.accepts:
            raise DefinitionError(
                f"{_where(t)} needs {self.wanted} column, but the column is {described}"
            )
        return kind

    @abstractmethod
    def output_kind(self, t: Transform, kind: str) -> str | None:
        """The kind of value it returns (None: it returns several columns)."""

    # -- fitting

    def fit_exprs(self, t: Transform, kind: str) -> dict[str, pl.Expr]:
        """Named whole-column aggregates over the training rows (all collected at once)."""
        return {}

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        """Its parameters (``param_names``), made of the aggregates' values ``got``."""
        return {}

    # -- applying

    @abstractmethod
    def output_names(self, column: str, p: Mapping[str, Any]) -> list[str]:
        """The names of the columns it outputs for ``column``."""

    @abstractmethod
    def output_dtypes(self, t: Transform, kind: str, p: Mapping[str, Any]) -> list[pl.DataType]:
        """The dtypes of those columns."""

    @abstractmethod
    def outputs(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> list[pl.Expr]:
        """Its output columns over whole columns (the offline path), given its input ``e``."""

    @abstractmethod
    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        """The step over one value (the online path): equal to :meth:`outputs` row by row.

        It returns one value, or a tuple or list of them when the type ``expands``.
        """


class _OneColumn(_Type):
    """A type that returns one column of kind ``returns``."""

    returns: ClassVar[str] = "float"

    def output_kind(self, t: Transform, kind: str) -> str:
        return self.returns

    @abstractmethod
    def expr(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
        """The step over a whole column ``e``."""

    def output_names(self, column: str, p: Mapping[str, Any]) -> list[str]:
        return [column]

    def output_dtypes(self, t: Transform, kind: str, p: Mapping[str, Any]) -> list[pl.DataType]:
        return [_DTYPES[self.output_kind(t, kind)]()]

    def outputs(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> list[pl.Expr]:
        return [self.expr(e, t, p).alias(t.column)]


class _Scale(_OneColumn):
    """``(x - shift) * (1 / spread)``; 0.0 for every non-null x when the spread is zero.

    The reciprocal is taken once: Polars divides by a scalar that way anyway, and spelling
    it out keeps the row path bit-identical.
    """

    @abstractmethod
    def shift_spread(self, p: Mapping[str, Any]) -> tuple[float, float]:
        """The fitted shift and spread."""

    def expr(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
        shift, spread = self.shift_spread(p)
        x = _num(e)
        if spread == 0:
            return pl.when(x.is_not_null()).then(pl.lit(0.0, dtype=pl.Float64))
        return (x - shift) * (1.0 / spread)

    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        shift, spread = self.shift_spread(p)
        if spread == 0:
            return lambda x: None if x is None or x != x else 0.0
        inverse = 1.0 / spread
        return lambda x: None if x is None or x != x else (float(x) - shift) * inverse


class _StandardScale(_Scale):
    name = "standard_scale"
    param_names = ("mean", "std")

    def fit_exprs(self, t: Transform, kind: str) -> dict[str, pl.Expr]:
        x = _finite(t.column)
        return {"mean": x.mean(), "std": x.std(ddof=0), "min": x.min(), "max": x.max()}

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        mean, std, lo, hi = (float(got[k]) for k in ("mean", "std", "min", "max"))
        # Rounding makes the std of a constant column tiny instead of zero: use min == max.
        if lo == hi or not std > 0:
            mean, std = lo, 0.0
        return {"mean": mean, "std": std}

    def shift_spread(self, p: Mapping[str, Any]) -> tuple[float, float]:
        return p["mean"], p["std"]


class _MinMaxScale(_Scale):
    name = "min_max_scale"
    param_names = ("min", "max")

    def fit_exprs(self, t: Transform, kind: str) -> dict[str, pl.Expr]:
        x = _finite(t.column)
        return {"min": x.min(), "max": x.max()}

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        return {"min": float(got["min"]), "max": float(got["max"])}

    def shift_spread(self, p: Mapping[str, Any]) -> tuple[float, float]:
        return p["min"], p["max"] - p["min"]


class _RobustScale(_Scale):
    name = "robust_scale"
    param_names = ("median", "q25", "q75")

    def fit_exprs(self, t: Transform, kind: str) -> dict[str, pl.Expr]:
        x = _finite(t.column)
        return {f"q{q}": x.quantile(q / 100, interpolation="linear") for q in (25, 50, 75)}

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        return {"median": float(got["q50"]), "q25": float(got["q25"]), "q75": float(got["q75"])}

    def shift_spread(self, p: Mapping[str, Any]) -> tuple[float, float]:
        return p["median"], p["q75"] - p["q25"]


class _Encoder(_Type):
    """A type fitted on the sorted categories of a string, integer or boolean column."""

    param_names = ("categories",)
    accepts = _CATEGORICAL
    wanted = "a string, integer or boolean"
    usable = "non-null"

    def fit_exprs(self, t: Transform, kind: str) -> dict[str, pl.Expr]:
        present = _as_kind(pl.col(t.column), kind).drop_nulls()
        return {"categories": present.unique().sort().implode()}

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        return {"categories": list(got["categories"])}


class _OneHotEncode(_Encoder):
    """One Int8 column ``<col>_<value>`` per category; all zeros for null or unseen."""

    name = "one_hot_encode"
    expands = True
    table_limit: ClassVar[int] = 256  # above this many categories, rows are built per call

    def output_kind(self, t: Transform, kind: str) -> None:
        return None

    def output_names(self, column: str, p: Mapping[str, Any]) -> list[str]:
        return [f"{column}_{_category_label(v)}" for v in p["categories"]]

    def output_dtypes(self, t: Transform, kind: str, p: Mapping[str, Any]) -> list[pl.DataType]:
        return [pl.Int8() for _ in p["categories"]]

    def outputs(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> list[pl.Expr]:
        x = _as_kind(e, p["input_kind"])
        cats = p["categories"]
        return [
            x.eq_missing(pl.lit(v)).cast(pl.Int8).alias(name)
            for v, name in zip(cats, self.output_names(t.column, p), strict=True)
        ]

    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        categories = p["categories"]
        k = len(categories)
        if k <= self.table_limit:
            zeros = (0,) * k
            table = {v: zeros[:i] + (1,) + zeros[i + 1 :] for i, v in enumerate(categories)}
            get = table.get
            return lambda x: get(x, zeros)
        index = {v: i for i, v in enumerate(categories)}.get

        def one_hot(x: Any) -> list[int]:
            out = [0] * k
            i = index(x)
            if i is not None:
                out[i] = 1
            return out

        return one_hot


class _LabelEncode(_Encoder, _OneColumn):
    """The index of the value among the categories, -1 for null or unseen."""

    name = "label_encode"
    returns = "int"

    def expr(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
        cats = list(p["categories"])
        return _as_kind(e, p["input_kind"]).replace_strict(
            cats, list(range(len(cats))), default=-1, return_dtype=pl.Int64
        )

    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        get = {v: i for i, v in enumerate(p["categories"])}.get
        return lambda x: get(x, -1)


class _Log1p(_OneColumn):
    """``ln(1 + x)``, null for x <= -1."""

    name = "log1p"

    def expr(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
        x = _num(e)
        return pl.when(x > -1.0).then(x.log1p())

    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        log1p = math.log1p
        return lambda x: None if x is None or x != x or x <= -1.0 else log1p(float(x))


class _Impute(_OneColumn):
    """x, or the fitted fill value where x is missing (null, or NaN in a float column)."""

    name = "impute"
    option_names = ("strategy", "value")
    param_names = ("value",)
    strategies: ClassVar[tuple[str, ...]] = get_args(ImputeStrategy)

    def check_options(self, t: Transform, options: dict[str, Any]) -> dict[str, Any]:
        strategy = options.setdefault("strategy", "mean")
        if strategy not in self.strategies:
            raise DefinitionError(
                f"{_where(t)}: unknown strategy {strategy!r}{_hint(strategy, self.strategies)}; "
                f"valid strategies: {', '.join(self.strategies)}"
            )
        if strategy == "constant":
            value = options.get("value")
            if not isinstance(value, str | bool | int | float) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise DefinitionError(
                    f"{_where(t)}: strategy 'constant' needs a 'value' that is a string, "
                    f"bool or finite number, got {value!r}"
                )
        elif "value" in options:
            raise DefinitionError(
                f"{_where(t)}: 'value' is only used with strategy 'constant', not with {strategy!r}"
            )
        return options

    def checked_input(self, t: Transform, kind: str | None, described: str) -> str:
        if t.options["strategy"] not in ("most_frequent", "constant"):
            return super().checked_input(t, kind, described)
        if kind is None:
            raise DefinitionError(
                f"{_where(t)} needs a numeric, string or boolean column, but the column is "
                f"{described}"
            )
        value = t.options.get("value")
        if t.options["strategy"] == "constant" and not (
            _is_number(value) if kind in _NUMERIC else _fits_kind(value, kind)
        ):
            raise DefinitionError(
                f"{_where(t)}: constant {value!r} does not fit a {described} column; "
                f"give a {'number' if kind in _NUMERIC else kind} value"
            )
        return kind

    def output_kind(self, t: Transform, kind: str) -> str:
        strategy = t.options["strategy"]
        if strategy in ("mean", "median"):
            return "float"
        if strategy == "constant" and kind == "int" and isinstance(t.options["value"], float):
            return "float"
        return kind

    def fit_exprs(self, t: Transform, kind: str) -> dict[str, pl.Expr]:
        strategy = t.options["strategy"]
        x = _finite(t.column)
        if strategy == "mean":
            return {"value": x.mean()}
        if strategy == "median":
            return {"value": x.quantile(0.5, interpolation="linear")}
        if strategy == "most_frequent":
            values = x if kind == "float" else _as_kind(pl.col(t.column), kind).drop_nulls()
            return {"value": values.mode().min()}
        return {}

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        value = got["value"] if "value" in got else t.options["value"]
        return {"value": float(value) if self.output_kind(t, kind) == "float" else value}

    def expr(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
        out = self.output_kind(t, p["input_kind"])
        if out == "float":
            return _num(e).fill_null(pl.lit(float(p["value"]), dtype=pl.Float64))
        return _as_kind(e, p["input_kind"]).fill_null(pl.lit(p["value"], dtype=_DTYPES[out]))

    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        value = p["value"]
        if self.output_kind(t, p["input_kind"]) == "float":
            fill = float(value)
            return lambda x: fill if x is None or x != x else float(x)
        return lambda x: value if x is None else x


class _Clip(_OneColumn):
    """x bounded by ``lower`` and/or ``upper`` (options, kept as float parameters)."""

    name = "clip"
    option_names = ("lower", "upper")
    param_names = ("lower", "upper")

    def check_options(self, t: Transform, options: dict[str, Any]) -> dict[str, Any]:
        if not options:
            raise DefinitionError(f"{_where(t)}: give 'lower', 'upper' or both")
        for name in options:
            _finite_number(t, name, options[name])
        if "lower" in options and "upper" in options and options["lower"] > options["upper"]:
            raise DefinitionError(
                f"{_where(t)}: lower {options['lower']!r} is greater than upper "
                f"{options['upper']!r}"
            )
        return options

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        return {name: _float_or_none(t.options.get(name)) for name in self.param_names}

    def expr(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
        return _num(e).clip(lower_bound=p["lower"], upper_bound=p["upper"])

    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        lo = -math.inf if p["lower"] is None else p["lower"]
        hi = math.inf if p["upper"] is None else p["upper"]
        return lambda x: None if x is None or x != x else min(max(float(x), lo), hi)


class _Bucketize(_OneColumn):
    """The number of boundaries <= x: given ``boundaries``, or ``n_buckets`` - 1 quantiles."""

    name = "bucketize"
    option_names = ("boundaries", "n_buckets")
    param_names = ("boundaries",)
    returns = "int"

    def check_options(self, t: Transform, options: dict[str, Any]) -> dict[str, Any]:
        if len(options) != 1:
            raise DefinitionError(
                f"{_where(t)}: give exactly one of 'boundaries' (a list of increasing numbers) "
                f"or 'n_buckets' (an integer >= 2), got {sorted(options) or 'neither'}"
            )
        if "n_buckets" in options:
            n = options["n_buckets"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 2:
                raise DefinitionError(
                    f"{_where(t)}: 'n_buckets' must be an integer >= 2, got {n!r}"
                )
            return options
        bounds = options["boundaries"]
        if isinstance(bounds, str) or not isinstance(bounds, Sequence) or not bounds:
            raise DefinitionError(
                f"{_where(t)}: 'boundaries' must be a non-empty list of numbers, got {bounds!r}"
            )
        bounds = tuple(_finite_number(t, "boundaries", b) for b in bounds)
        if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
            raise DefinitionError(
                f"{_where(t)}: 'boundaries' must be strictly increasing, got {list(bounds)}"
            )
        return {"boundaries": bounds}

    def fit_exprs(self, t: Transform, kind: str) -> dict[str, pl.Expr]:
        if "n_buckets" not in t.options:
            return {}
        n = t.options["n_buckets"]
        x = _finite(t.column)
        return {f"b{j}": x.quantile(j / n, interpolation="linear") for j in range(1, n)}

    def fitted(self, t: Transform, kind: str, got: Mapping[str, Any]) -> dict[str, Any]:
        bounds = t.options.get("boundaries") or sorted(set(got.values()))
        return {"boundaries": [float(b) for b in bounds]}

    def expr(self, e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
        x = _num(e)
        bounds = pl.lit(pl.Series(p["boundaries"], dtype=pl.Float64))
        return pl.when(x.is_not_null()).then(bounds.search_sorted(x, side="right").cast(pl.Int64))

    def row_fn(self, t: Transform, p: Mapping[str, Any]) -> Step:
        bounds = tuple(p["boundaries"])
        return lambda x: None if x is None or x != x else bisect_right(bounds, float(x))


_STANDARD_SCALE = _StandardScale()
# Every type by the names a definition may use (``scale`` is ``standard_scale``), in the
# order of ``TransformType``.
_TYPES: dict[str, _Type] = {
    "scale": _STANDARD_SCALE,
    **{
        spec.name: spec
        for spec in (
            _STANDARD_SCALE,
            _MinMaxScale(),
            _RobustScale(),
            _OneHotEncode(),
            _LabelEncode(),
            _Log1p(),
            _Impute(),
            _Clip(),
            _Bucketize(),
        )
    },
}
_NAMES: tuple[str, ...] = tuple(_TYPES)


def _where(t: Transform) -> str:
    return f"transformation {t.type!r} on column {t.column!r}"


def _hint(value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _finite_number(t: Transform, name: str, value: object) -> float | int:
    if not _is_number(value) or not math.isfinite(cast(float, value)):
        raise DefinitionError(f"{_where(t)}: {name!r} must be a finite number, got {value!r}")
    return cast(float | int, value)


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _category_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _chains(transforms: Sequence[Transform]) -> dict[str, list[int]]:
    """Each transformed column's steps, as indexes into ``transforms``, in order."""
    chains: dict[str, list[int]] = {}
    for i, t in enumerate(transforms):
        chains.setdefault(t.column, []).append(i)
    return chains


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FittedParams:
    """The transformations with the parameters fitted for each, JSON-serialisable.

    Attributes:
        transforms: The transformations, in definition order.
        params: One mapping per transformation: ``input_kind`` (``int``, ``float``,
            ``string`` or ``bool``, the kind of value the step was fitted on) and the
            values listed in the module docstring (``mean``/``std``, ``categories`` ...).

    >>> fitted = fit_transforms(pl.LazyFrame({"x": [1.0, 3.0]}), [Transform("scale", "x")])
    >>> FittedParams.from_dict(fitted.to_dict()) == fitted
    True
    """

    transforms: tuple[Transform, ...]
    params: tuple[Mapping[str, Any], ...]

    def __post_init__(self) -> None:
        transforms = parse_transforms(tuple(self.transforms))
        params = tuple(self.params)
        if len(params) != len(transforms):
            raise DefinitionError(
                f"fitted parameters hold {len(params)} entries for {len(transforms)} "
                "transformations; there must be one per transformation"
            )
        for t, p in zip(transforms, params, strict=True):
            if not isinstance(p, Mapping):
                raise DefinitionError(
                    f"{_where(t)}: fitted parameters must be a mapping, got {p!r}"
                )
            needed = ("input_kind", *_TYPES[t.type].param_names)
            missing = [k for k in needed if k not in p]
            if missing:
                raise DefinitionError(
                    f"{_where(t)}: fitted parameters {dict(p)!r} lack {', '.join(missing)}"
                )
            if p["input_kind"] not in _KINDS:
                raise DefinitionError(
                    f"{_where(t)}: input_kind {p['input_kind']!r} is not one of {', '.join(_KINDS)}"
                )
        object.__setattr__(self, "transforms", transforms)
        object.__setattr__(self, "params", tuple(_freeze(dict(p)) for p in params))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; floats round-trip exactly through :mod:`json`."""
        return {
            "transforms": [t.to_dict() for t in self.transforms],
            "params": [_thaw(p) for p in self.params],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FittedParams:
        """Read back what :meth:`to_dict` wrote.

        Raises:
            DefinitionError: The mapping is not a valid set of fitted parameters.
        """
        if not isinstance(d, Mapping) or set(d) != {"transforms", "params"}:
            raise DefinitionError(
                f"fitted parameters must be a mapping with 'transforms' and 'params', got {d!r}"
            )
        if not isinstance(d["params"], Sequence) or isinstance(d["params"], str):
            raise DefinitionError(f"fitted 'params' must be a list, got {d['params']!r}")
        return cls(transforms=parse_transforms(d["transforms"]), params=tuple(d["params"]))


def fit_transforms(
    frame: pl.LazyFrame | pl.DataFrame, transforms: Sequence[Mapping[str, Any] | Transform]
) -> FittedParams:
    """Fit every transformation on the rows of ``frame`` (the training rows).

    All parameters come from one aggregate ``select(...).collect()`` per chain depth: one
    pass when no column has more than one transformation. Nothing but ``frame`` is read.

    Args:
        frame: The training rows.
        transforms: Definitions or :class:`Transform` objects.

    Returns:
        The fitted parameters.

    Raises:
        DefinitionError: A transformation does not fit the frame's columns or types.
        NotFittedError: A transformation fitted from data finds no usable value (for
            example, the frame is empty or the column is all null).

    >>> lf = pl.LazyFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["b", "a", None, "b"]})
    >>> fitted = fit_transforms(lf, [{"type": "scale", "column": "x"},
    ...                              {"type": "one_hot_encode", "column": "c"}])
    >>> dict(fitted.params[0]), fitted.params[1]["categories"]
    ({'input_kind': 'float', 'mean': 2.5, 'std': 1.118033988749895}, ('a', 'b'))
    """
    ts = parse_transforms(transforms)
    lf = frame.lazy()
    kinds = _input_kinds(ts, _schema(lf))
    chains = _chains(ts)
    params: list[dict[str, Any]] = [{} for _ in ts]
    current = lf
    longest = max((len(c) for c in chains.values()), default=0)
    for depth in range(longest):
        steps = [idxs[depth] for idxs in chains.values() if len(idxs) > depth]
        aggs = {i: _TYPES[ts[i].type].fit_exprs(ts[i], kinds[i]) for i in steps}
        exprs = [e.alias(f"{i}:{name}") for i, d in aggs.items() for name, e in d.items()]
        got: dict[str, Any] = {}
        if exprs:
            got = current.select(pl.len().alias("rows"), *exprs).collect().row(0, named=True)
        for i in steps:
            values = {name: got[f"{i}:{name}"] for name in aggs[i]}
            if any(v is None or v == [] for v in values.values()):
                raise _not_fitted(ts[i], got.get("rows", 0), depth)
            spec = _TYPES[ts[i].type]
            params[i] = {"input_kind": kinds[i], **spec.fitted(ts[i], kinds[i], values)}
        if depth + 1 < longest:
            current = current.with_columns(
                _step_output(pl.col(ts[i].column), ts[i], params[i])
                for i in steps
                if len(chains[ts[i].column]) > depth + 1
            )
    return FittedParams(transforms=ts, params=tuple(params))


def _not_fitted(t: Transform, rows: int, depth: int) -> NotFittedError:
    after = " after the earlier steps of its chain" if depth else ""
    return NotFittedError(
        f"cannot fit {_where(t)}: none of the {rows} training rows has a "
        f"{_TYPES[t.type].usable} value{after}; fit on rows that have values, or drop the "
        "transformation"
    )


# --------------------------------------------------------------------------- applying


def output_columns(feature_columns: Sequence[str], fitted: FittedParams) -> list[str]:
    """The column order of ``X``: features in order, transformed ones replaced in place.

    A one-hot encoded column expands in place into ``<col>_<value>`` columns, in sorted
    category order.

    Raises:
        DefinitionError: A feature is listed twice, a transformation's column is not a
            feature, or two output columns would share a name.

    >>> fitted = fit_transforms(pl.LazyFrame({"c": ["y", "x"], "a": [1.0, 2.0]}),
    ...                         [{"type": "one_hot_encode", "column": "c"}])
    >>> output_columns(["c", "a"], fitted)
    ['c_x', 'c_y', 'a']
    """
    features = _feature_list(feature_columns)
    chains = _chains(fitted.transforms)
    unknown = [c for c in chains if c not in features]
    if unknown:
        raise DefinitionError(
            f"transformations name column(s) {', '.join(map(repr, unknown))}, which are not "
            f"features; features: {', '.join(features)}"
        )
    out: list[str] = []
    for column in features:
        idxs = chains.get(column)
        if idxs:
            last = fitted.transforms[idxs[-1]]
            out.extend(_TYPES[last.type].output_names(column, fitted.params[idxs[-1]]))
        else:
            out.append(column)
    _check_unique(out, "output column")
    return out


def output_schema(
    feature_schema: Mapping[str, DataTypeLike], fitted: FittedParams
) -> dict[str, pl.DataType]:
    """The dtypes of ``X``'s columns, in :func:`output_columns` order.

    Args:
        feature_schema: Feature column name to dtype, in feature order.
        fitted: The fitted parameters.

    >>> fitted = fit_transforms(pl.LazyFrame({"x": [1, 2]}), [{"type": "log1p", "column": "x"}])
    >>> output_schema({"x": pl.Int32, "s": pl.String}, fitted)
    {'x': Float64, 's': String}
    """
    features = list(feature_schema)
    names = output_columns(features, fitted)
    kinds = _input_kinds(fitted.transforms, feature_schema)
    chains = _chains(fitted.transforms)
    dtypes: list[pl.DataType] = []
    for column in features:
        idxs = chains.get(column)
        if idxs:
            last, p = fitted.transforms[idxs[-1]], fitted.params[idxs[-1]]
            dtypes.extend(_TYPES[last.type].output_dtypes(last, kinds[idxs[-1]], p))
        else:
            dtype = feature_schema[column]
            dtypes.append(dtype if isinstance(dtype, pl.DataType) else dtype())
    return dict(zip(names, dtypes, strict=True))


def apply_transforms(
    frame: pl.LazyFrame | pl.DataFrame, feature_columns: Sequence[str], fitted: FittedParams
) -> pl.LazyFrame:
    """Apply fitted transformations lazily, as whole-column expressions.

    The feature columns are replaced by :func:`output_columns`, as one block placed where
    the first feature column stood; the other columns (keys, event time, label) keep their
    place and values.

    Args:
        frame: Rows to transform (training, test or batch rows).
        feature_columns: The feature columns, in ``X`` order.
        fitted: Parameters from :func:`fit_transforms`.

    Returns:
        A LazyFrame; ``frame`` itself is not changed.

    Raises:
        SchemaError: A feature column is missing, or its kind differs from fitting time.
        DefinitionError: Transformations and features do not fit together.

    >>> train = pl.LazyFrame({"id": [1, 2], "x": [1.0, 3.0]})
    >>> fitted = fit_transforms(train, [{"type": "scale", "column": "x"}])
    >>> apply_transforms(pl.LazyFrame({"id": [3], "x": [5.0]}), ["x"], fitted).collect().rows()
    [(3, 3.0)]
    """
    lf = frame.lazy()
    schema = _schema(lf)
    names = output_columns(feature_columns, fitted)
    features = list(feature_columns)
    missing = [c for c in features if c not in schema]
    if missing:
        raise SchemaError(
            f"the frame has no feature column(s) {', '.join(map(repr, missing))}; "
            f"its columns: {', '.join(schema)}"
        )
    kinds = _input_kinds(fitted.transforms, schema)
    for t, p, kind in zip(fitted.transforms, fitted.params, kinds, strict=True):
        if p["input_kind"] != kind:
            raise SchemaError(
                f"{_where(t)} was fitted on {p['input_kind']} values but gets {kind} values "
                f"now (column type {schema[t.column]}); cast the column back or fit again"
            )
    feature_set = set(features)
    others = [c for c in schema if c not in feature_set]
    _check_unique([*names, *others], "column")
    chains = _chains(fitted.transforms)
    block: list[pl.Expr] = []
    for column in features:
        e = pl.col(column)
        idxs = chains.get(column, [])
        for i in idxs[:-1]:
            e = _step_output(e, fitted.transforms[i], fitted.params[i])
        if idxs:
            last = fitted.transforms[idxs[-1]]
            block.extend(_TYPES[last.type].outputs(e, last, fitted.params[idxs[-1]]))
        else:
            block.append(e)
    first = next((c for c in schema if c in feature_set), None)
    selected: list[pl.Expr] = []
    for column in schema:
        if column not in feature_set:
            selected.append(pl.col(column))
        elif column == first:
            selected.extend(block)
    return lf.select(selected)


def _step_output(e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
    """A step that is not the last of its chain: its one output column, from ``e``."""
    (out,) = _TYPES[t.type].outputs(e, t, p)
    return out


def compile_row_transform(
    feature_columns: Sequence[str], fitted: FittedParams
) -> Callable[[Sequence[Any]], list[Any]]:
    """Compile the fast single-row path: raw feature values in, ``X``'s row out.

    The returned function takes the raw values in ``feature_columns`` order and returns the
    transformed values in :func:`output_columns` order, equal to what
    :func:`apply_transforms` gives for the same row (the same arithmetic in the same order;
    missing values as ``None``). It uses only precomputed closures and dicts. A value whose
    Python type does not fit the kind a column's transformations were fitted on (text for
    a scale, a number for a string encoder, a boolean for a number) raises
    :class:`~microfs.errors.SchemaError`.

    Raises:
        DefinitionError: Transformations and features do not fit together.

    >>> fitted = fit_transforms(pl.LazyFrame({"x": [1.0, 3.0], "c": ["a", "b"]}),
    ...                         [{"type": "scale", "column": "x"},
    ...                          {"type": "label_encode", "column": "c"}])
    >>> row = compile_row_transform(["x", "c"], fitted)
    >>> row([5.0, "b"]), row([None, "zzz"])
    ([3.0, 1], [None, -1])
    """
    features = _feature_list(feature_columns)
    output_columns(features, fitted)  # validates the pairing
    chains = _chains(fitted.transforms)
    plan: list[tuple[int, Step | None, bool, frozenset[type]]] = []
    for pos, column in enumerate(features):
        idxs = chains.get(column)
        if not idxs:
            plan.append((pos, None, False, frozenset()))
            continue
        steps = [(fitted.transforms[i], fitted.params[i]) for i in idxs]
        fns = [_TYPES[t.type].row_fn(t, p) for t, p in steps]
        expands = _TYPES[steps[-1][0].type].expands
        exact = _ROW_TYPES[steps[0][1]["input_kind"]]
        plan.append((pos, fns[0] if len(fns) == 1 else _compose(fns), expands, exact))
    width = len(features)
    names = tuple(features)

    def refuse(pos: int, value: Any) -> SchemaError:
        t, p = next((fitted.transforms[i], fitted.params[i]) for i in chains[names[pos]])
        return SchemaError(
            f"feature {names[pos]!r} is {value!r} ({type(value).__name__}), but {_where(t)} "
            f"was fitted on {p['input_kind']} values; pass {_ROW_WANTED[p['input_kind']]} "
            "or None"
        )

    def transform(values: Sequence[Any]) -> list[Any]:
        if len(values) != width:
            raise SchemaError(
                f"expected {width} feature values ({', '.join(names)}), got {len(values)}"
            )
        out: list[Any] = []
        for pos, fn, expands, exact in plan:
            value = values[pos]
            if fn is None:
                out.append(value)
                continue
            if type(value) not in exact:
                kind = fitted.params[chains[names[pos]][0]]["input_kind"]
                if not _fits_kind(value, kind):
                    raise refuse(pos, value)
            if expands:
                out.extend(fn(value))
            else:
                out.append(fn(value))
        return out

    return transform


def transform_row(row: Mapping[str, Any], fitted: FittedParams) -> dict[str, Any]:
    """Transform one row given as a dict; its keys are the feature columns, in order.

    Convenient but compiles on every call: use :func:`compile_row_transform` when serving.

    >>> fitted = fit_transforms(pl.LazyFrame({"c": ["a", "b"]}),
    ...                         [{"type": "one_hot_encode", "column": "c"}])
    >>> transform_row({"c": "b", "n": 7}, fitted)
    {'c_a': 0, 'c_b': 1, 'n': 7}
    """
    features = list(row)
    values = compile_row_transform(features, fitted)([row[c] for c in features])
    return dict(zip(output_columns(features, fitted), values, strict=True))


# --------------------------------------------------------------------------- helpers


def _compose(fns: Sequence[Step]) -> Step:
    def chained(x: Any) -> Any:
        for fn in fns:
            x = fn(x)
        return x

    return chained


def _feature_list(feature_columns: Sequence[str]) -> list[str]:
    if isinstance(feature_columns, str) or not all(isinstance(c, str) for c in feature_columns):
        raise DefinitionError(f"feature columns must be a list of names, got {feature_columns!r}")
    features = list(feature_columns)
    _check_unique(features, "feature column")
    return features


def _check_unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            hint = (
                "list each feature once"
                if what == "feature column"
                else "a one-hot output column clashes with another column: rename that column "
                "or drop the transformation"
            )
            raise DefinitionError(f"{what} {name!r} appears twice; {hint}")
        seen.add(name)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _schema(lf: pl.LazyFrame) -> pl.Schema:
    try:
        return lf.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"cannot resolve the frame's columns: {exc}") from exc
