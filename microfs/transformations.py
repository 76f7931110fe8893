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
order, each transformed column replaced in place by its output column(s). What each type
does as one step (its options, fitting and the two implementations) is in
``microfs._transform_steps``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast, get_args

import polars as pl

from microfs._transform_steps import (
    _DTYPES,
    _KINDS,
    _PARAM_KEYS,
    DataTypeLike,
    ImputeStrategy,
    Step,
    TransformType,
    ValueKind,
    _chains,
    _column_exprs,
    _compose,
    _fit_exprs,
    _hint,
    _input_kinds,
    _normalise_options,
    _one_hot_names,
    _output_kind,
    _params_from,
    _step_expr,
    _step_fn,
    _where,
)
from microfs.errors import DefinitionError, SchemaError

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

_TYPES: tuple[str, ...] = get_args(TransformType)
_ALIASES = {"scale": "standard_scale"}


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


# --------------------------------------------------------------------------- helpers


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
