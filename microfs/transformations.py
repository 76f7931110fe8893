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
* ``Transform.type`` keeps the spelling of the definition (``scale`` stays ``scale``);
  :attr:`Transform.kind` gives the canonical name.

The column order of ``X`` is :func:`output_columns`: the feature columns in their given
order, each transformed column replaced in place by its output column(s).
"""

from __future__ import annotations

import difflib
import json
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, cast, get_args

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

_TYPES: tuple[str, ...] = get_args(TransformType)
_STRATEGIES: tuple[str, ...] = get_args(ImputeStrategy)
_KINDS: tuple[str, ...] = get_args(ValueKind)
_ALIASES = {"scale": "standard_scale"}
_OPTIONS: dict[str, tuple[str, ...]] = {
    "impute": ("strategy", "value"),
    "clip": ("lower", "upper"),
    "bucketize": ("boundaries", "n_buckets"),
}
_PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "standard_scale": ("mean", "std"),
    "min_max_scale": ("min", "max"),
    "robust_scale": ("median", "q25", "q75"),
    "one_hot_encode": ("categories",),
    "label_encode": ("categories",),
    "log1p": (),
    "impute": ("value",),
    "clip": ("lower", "upper"),
    "bucketize": ("boundaries",),
}
_NUMERIC: frozenset[str] = frozenset({"int", "float"})
_CATEGORICAL: frozenset[str] = frozenset({"int", "string", "bool"})
_FLOAT_OUT = frozenset({"standard_scale", "min_max_scale", "robust_scale", "log1p", "clip"})
_DTYPES: dict[str, type[pl.DataType]] = {
    "int": pl.Int64,
    "float": pl.Float64,
    "string": pl.String,
    "bool": pl.Boolean,
}
_ONE_HOT_TABLE_LIMIT = 256  # above this many categories, one-hot rows are built per call

Step: TypeAlias = Callable[[Any], Any]


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
                f"unknown transformation type {self.type!r}{_hint(self.type, _TYPES)}; "
                f"valid types: {', '.join(_TYPES)}"
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
        options = _normalise_options(self, dict(self.options))
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
        return _ALIASES.get(self.type, self.type)

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
                    f"{{'type': 'scale', 'column': 'x'}} (valid types: {', '.join(_TYPES)})"
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
            if out[i].kind == "one_hot_encode":
                later = ", ".join(repr(out[j].type) for j in idxs if j > i)
                raise DefinitionError(
                    f"transformation 'one_hot_encode' on column {column!r} replaces the column "
                    f"by several, so {later} cannot follow it; put one_hot_encode last"
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


# --------------------------------------------------------------------------- fitted params


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
            missing = [k for k in ("input_kind", *_PARAM_KEYS[t.kind]) if k not in p]
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
        aggs = {i: _fit_exprs(ts[i], kinds[i]) for i in steps}
        exprs = [e.alias(f"{i}:{name}") for i, d in aggs.items() for name, e in d.items()]
        got: dict[str, Any] = {}
        if exprs:
            got = current.select(pl.len().alias("rows"), *exprs).collect().row(0, named=True)
        for i in steps:
            values = {name: got[f"{i}:{name}"] for name in aggs[i]}
            params[i] = _params_from(ts[i], kinds[i], values, got.get("rows", 0), depth)
        if depth + 1 < longest:
            current = current.with_columns(
                _step_expr(pl.col(ts[i].column), ts[i], params[i]).alias(ts[i].column)
                for i in steps
                if len(chains[ts[i].column]) > depth + 1
            )
    return FittedParams(transforms=ts, params=tuple(params))


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
        last = idxs[-1] if idxs else None
        if last is not None and fitted.transforms[last].kind == "one_hot_encode":
            out.extend(_one_hot_names(column, fitted.params[last]["categories"]))
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
        if not idxs:
            dtype = feature_schema[column]
            dtypes.append(dtype if isinstance(dtype, pl.DataType) else dtype())
            continue
        last = fitted.transforms[idxs[-1]]
        if last.kind == "one_hot_encode":
            dtypes.extend(pl.Int8() for _ in fitted.params[idxs[-1]]["categories"])
        else:
            dtypes.append(_DTYPES[cast(str, _output_kind(last, kinds[idxs[-1]]))]())
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
        steps = [(fitted.transforms[i], fitted.params[i]) for i in chains.get(column, [])]
        block.extend(_column_exprs(column, steps))
    first = next((c for c in schema if c in feature_set), None)
    selected: list[pl.Expr] = []
    for column in schema:
        if column not in feature_set:
            selected.append(pl.col(column))
        elif column == first:
            selected.extend(block)
    return lf.select(selected)


def compile_row_transform(
    feature_columns: Sequence[str], fitted: FittedParams
) -> Callable[[Sequence[Any]], list[Any]]:
    """Compile the fast single-row path: raw feature values in, ``X``'s row out.

    The returned function takes the raw values in ``feature_columns`` order and returns the
    transformed values in :func:`output_columns` order, equal to what
    :func:`apply_transforms` gives for the same row (the same arithmetic in the same order;
    missing values as ``None``). It uses only precomputed closures and dicts.

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
    plan: list[tuple[int, Step | None, bool]] = []
    for pos, column in enumerate(features):
        idxs = chains.get(column)
        if not idxs:
            plan.append((pos, None, False))
            continue
        fns = [_step_fn(fitted.transforms[i], fitted.params[i]) for i in idxs]
        expands = fitted.transforms[idxs[-1]].kind == "one_hot_encode"
        plan.append((pos, fns[0] if len(fns) == 1 else _compose(fns), expands))
    width = len(features)
    names = tuple(features)

    def transform(values: Sequence[Any]) -> list[Any]:
        if len(values) != width:
            raise SchemaError(
                f"expected {width} feature values ({', '.join(names)}), got {len(values)}"
            )
        out: list[Any] = []
        for pos, fn, expands in plan:
            if fn is None:
                out.append(values[pos])
            elif expands:
                out.extend(fn(values[pos]))
            else:
                out.append(fn(values[pos]))
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


# --------------------------------------------------------------------------- helpers: definitions


def _where(t: Transform) -> str:
    return f"transformation {t.type!r} on column {t.column!r}"


def _hint(value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite_number(t: Transform, name: str, value: object) -> float | int:
    if not _is_number(value) or not math.isfinite(cast(float, value)):
        raise DefinitionError(f"{_where(t)}: {name!r} must be a finite number, got {value!r}")
    return cast(float | int, value)


def _normalise_options(t: Transform, options: dict[str, Any]) -> dict[str, Any]:
    kind = t.kind
    valid = _OPTIONS.get(kind, ())
    for key in options:
        if key not in valid:
            accepted = f"valid options: {', '.join(valid)}" if valid else "it takes no options"
            extra = ""
            if key == "options":
                extra = "; write options next to 'type' and 'column', not in a nested mapping"
            raise DefinitionError(
                f"{_where(t)}: unknown option {key!r}{_hint(key, valid)}; {accepted}{extra}"
            )
    if kind == "impute":
        strategy = options.setdefault("strategy", "mean")
        if strategy not in _STRATEGIES:
            raise DefinitionError(
                f"{_where(t)}: unknown strategy {strategy!r}{_hint(strategy, _STRATEGIES)}; "
                f"valid strategies: {', '.join(_STRATEGIES)}"
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
    elif kind == "clip":
        if not options:
            raise DefinitionError(f"{_where(t)}: give 'lower', 'upper' or both")
        for name in options:
            _finite_number(t, name, options[name])
        if "lower" in options and "upper" in options and options["lower"] > options["upper"]:
            raise DefinitionError(
                f"{_where(t)}: lower {options['lower']!r} is greater than upper "
                f"{options['upper']!r}"
            )
    elif kind == "bucketize":
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
        else:
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
            options["boundaries"] = bounds
    return options


def _chains(transforms: Sequence[Transform]) -> dict[str, list[int]]:
    chains: dict[str, list[int]] = {}
    for i, t in enumerate(transforms):
        chains.setdefault(t.column, []).append(i)
    return chains


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


def _accepted(t: Transform) -> tuple[frozenset[str], str]:
    kind = t.kind
    if kind in ("one_hot_encode", "label_encode"):
        return _CATEGORICAL, "a string, integer or boolean"
    if kind == "impute" and t.options["strategy"] in ("most_frequent", "constant"):
        return frozenset(_KINDS), "a numeric, string or boolean"
    return _NUMERIC, "a numeric (int or float)"


def _output_kind(t: Transform, kind: str) -> str | None:
    if t.kind in _FLOAT_OUT:
        return "float"
    if t.kind in ("bucketize", "label_encode"):
        return "int"
    if t.kind == "one_hot_encode":
        return None
    strategy = t.options["strategy"]
    if strategy in ("mean", "median"):
        return "float"
    if strategy == "constant" and kind == "int" and isinstance(t.options["value"], float):
        return "float"
    return kind


def _input_kinds(ts: Sequence[Transform], schema: Mapping[str, DataTypeLike]) -> list[str]:
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
            accepted, wanted = _accepted(t)
            if kind not in accepted:
                raise DefinitionError(
                    f"{_where(t)} needs {wanted} column, but the column is {described}"
                )
            assert kind is not None
            if t.kind == "impute" and t.options["strategy"] == "constant":
                value = t.options["value"]
                ok = {
                    "int": _is_number(value),
                    "float": _is_number(value),
                    "string": isinstance(value, str),
                    "bool": isinstance(value, bool),
                }[kind]
                if not ok:
                    raise DefinitionError(
                        f"{_where(t)}: constant {value!r} does not fit a {described} column; "
                        f"give a {'number' if kind in _NUMERIC else kind} value"
                    )
            kinds[i] = kind
            kind = _output_kind(t, kind)
            described = f"{_DTYPES[kind]} after {t.type!r}" if kind else "one-hot encoded"
    return kinds


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


def _category_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _one_hot_names(column: str, categories: Sequence[Any]) -> list[str]:
    return [f"{column}_{_category_label(v)}" for v in categories]


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


# --------------------------------------------------------------------------- helpers: fitting


def _finite(column: str) -> pl.Expr:
    x = pl.col(column).cast(pl.Float64)
    return x.filter(x.is_finite())


def _as_kind(e: pl.Expr, kind: str) -> pl.Expr:
    if kind == "string":
        return e.cast(pl.String)
    if kind == "int":
        return e.cast(pl.Int64)
    return e


def _fit_exprs(t: Transform, kind: str) -> dict[str, pl.Expr]:
    x = _finite(t.column)
    if t.kind == "standard_scale":
        return {"mean": x.mean(), "std": x.std(ddof=0), "min": x.min(), "max": x.max()}
    if t.kind == "min_max_scale":
        return {"min": x.min(), "max": x.max()}
    if t.kind == "robust_scale":
        return {f"q{q}": x.quantile(q / 100, interpolation="linear") for q in (25, 50, 75)}
    if t.kind in ("one_hot_encode", "label_encode"):
        present = _as_kind(pl.col(t.column), kind).drop_nulls()
        return {"categories": present.unique().sort().implode()}
    if t.kind == "impute":
        strategy = t.options["strategy"]
        if strategy == "mean":
            return {"value": x.mean()}
        if strategy == "median":
            return {"value": x.quantile(0.5, interpolation="linear")}
        if strategy == "most_frequent":
            values = x if kind == "float" else _as_kind(pl.col(t.column), kind).drop_nulls()
            return {"value": values.mode().min()}
    if t.kind == "bucketize" and "n_buckets" in t.options:
        n = t.options["n_buckets"]
        return {f"b{j}": x.quantile(j / n, interpolation="linear") for j in range(1, n)}
    return {}


def _params_from(
    t: Transform, kind: str, got: Mapping[str, Any], rows: int, depth: int
) -> dict[str, Any]:
    if any(v is None or v == [] for v in got.values()):
        usable = (
            "non-null finite" if t.kind not in ("one_hot_encode", "label_encode") else "non-null"
        )
        after = " after the earlier steps of its chain" if depth else ""
        raise NotFittedError(
            f"cannot fit {_where(t)}: none of the {rows} training rows has a {usable} value"
            f"{after}; fit on rows that have values, or drop the transformation"
        )
    p: dict[str, Any] = {"input_kind": kind}
    if t.kind == "standard_scale":
        mean, std, lo, hi = (float(got[k]) for k in ("mean", "std", "min", "max"))
        # Rounding makes the std of a constant column tiny instead of zero: use min == max.
        if lo == hi or not std > 0:
            mean, std = lo, 0.0
        p.update(mean=mean, std=std)
    elif t.kind == "min_max_scale":
        p.update(min=float(got["min"]), max=float(got["max"]))
    elif t.kind == "robust_scale":
        p.update(median=float(got["q50"]), q25=float(got["q25"]), q75=float(got["q75"]))
    elif t.kind in ("one_hot_encode", "label_encode"):
        p["categories"] = list(got["categories"])
    elif t.kind == "impute":
        value = got["value"] if "value" in got else t.options["value"]
        p["value"] = float(value) if _output_kind(t, kind) == "float" else value
    elif t.kind == "clip":
        p.update(
            lower=None if "lower" not in t.options else float(t.options["lower"]),
            upper=None if "upper" not in t.options else float(t.options["upper"]),
        )
    elif t.kind == "bucketize":
        bounds = t.options.get("boundaries") or sorted(set(got.values()))
        p["boundaries"] = [float(b) for b in bounds]
    return p


# --------------------------------------------------------------------------- helpers: applying


def _num(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.Float64).fill_nan(None)


def _affine(x: pl.Expr, shift: float, scale: float) -> pl.Expr:
    # Multiply by the reciprocal, computed once here: Polars divides by a scalar that way
    # anyway, and spelling it out keeps the row path bit-identical.
    if scale == 0:
        return pl.when(x.is_not_null()).then(pl.lit(0.0, dtype=pl.Float64))
    return (x - shift) * (1.0 / scale)


def _spread(t: Transform, p: Mapping[str, Any]) -> tuple[float, float]:
    if t.kind == "standard_scale":
        return p["mean"], p["std"]
    if t.kind == "min_max_scale":
        return p["min"], p["max"] - p["min"]
    return p["median"], p["q75"] - p["q25"]


def _step_expr(e: pl.Expr, t: Transform, p: Mapping[str, Any]) -> pl.Expr:
    kind = p["input_kind"]
    if t.kind in ("standard_scale", "min_max_scale", "robust_scale"):
        return _affine(_num(e), *_spread(t, p))
    if t.kind == "log1p":
        x = _num(e)
        return pl.when(x > -1.0).then(x.log1p())
    if t.kind == "clip":
        return _num(e).clip(lower_bound=p["lower"], upper_bound=p["upper"])
    if t.kind == "bucketize":
        x = _num(e)
        bounds = pl.lit(pl.Series(p["boundaries"], dtype=pl.Float64))
        return pl.when(x.is_not_null()).then(bounds.search_sorted(x, side="right").cast(pl.Int64))
    if t.kind == "label_encode":
        cats = list(p["categories"])
        return _as_kind(e, kind).replace_strict(
            cats, list(range(len(cats))), default=-1, return_dtype=pl.Int64
        )
    # impute
    out = _output_kind(t, kind)
    if out == "float":
        return _num(e).fill_null(pl.lit(float(p["value"]), dtype=pl.Float64))
    return _as_kind(e, kind).fill_null(pl.lit(p["value"], dtype=_DTYPES[cast(str, out)]))


def _column_exprs(
    column: str, steps: Sequence[tuple[Transform, Mapping[str, Any]]]
) -> list[pl.Expr]:
    e = pl.col(column)
    if not steps:
        return [e]
    for t, p in steps[:-1]:
        e = _step_expr(e, t, p)
    t, p = steps[-1]
    if t.kind != "one_hot_encode":
        return [_step_expr(e, t, p).alias(column)]
    x = _as_kind(e, p["input_kind"])
    cats = p["categories"]
    return [
        x.eq_missing(pl.lit(v)).cast(pl.Int8).alias(name)
        for v, name in zip(cats, _one_hot_names(column, cats), strict=True)
    ]


def _affine_fn(shift: float, scale: float) -> Step:
    if scale == 0:
        return lambda x: None if x is None or x != x else 0.0
    inverse = 1.0 / scale
    return lambda x: None if x is None or x != x else (float(x) - shift) * inverse


def _step_fn(t: Transform, p: Mapping[str, Any]) -> Step:
    if t.kind in ("standard_scale", "min_max_scale", "robust_scale"):
        return _affine_fn(*_spread(t, p))
    if t.kind == "log1p":
        log1p = math.log1p
        return lambda x: None if x is None or x != x or x <= -1.0 else log1p(float(x))
    if t.kind == "clip":
        lo = -math.inf if p["lower"] is None else p["lower"]
        hi = math.inf if p["upper"] is None else p["upper"]
        return lambda x: None if x is None or x != x else min(max(float(x), lo), hi)
    if t.kind == "bucketize":
        bounds = tuple(p["boundaries"])
        return lambda x: None if x is None or x != x else bisect_right(bounds, float(x))
    if t.kind == "label_encode":
        get = {v: i for i, v in enumerate(p["categories"])}.get
        return lambda x: get(x, -1)
    if t.kind == "one_hot_encode":
        return _one_hot_fn(p["categories"])
    # impute
    value = p["value"]
    if _output_kind(t, p["input_kind"]) == "float":
        fill = float(value)
        return lambda x: fill if x is None or x != x else float(x)
    return lambda x: value if x is None else x


def _one_hot_fn(categories: Sequence[Any]) -> Step:
    k = len(categories)
    if k <= _ONE_HOT_TABLE_LIMIT:
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


def _compose(fns: Sequence[Step]) -> Step:
    def chained(x: Any) -> Any:
        for fn in fns:
            x = fn(x)
        return x

    return chained
