"""What each transformation type does as one step: options, value kinds, fitting, computing.

For every type this module holds the options it takes (``_normalise_options``), the kinds
of value it accepts and returns (``_input_kinds``), the aggregates it fits and the
parameters made of them (``_fit_exprs``, ``_params_from``), and its two implementations,
which must give equal values: a Polars expression over a whole column (``_step_expr``, the
offline path) and a Python closure over one value (``_step_fn``, the online path).

:mod:`microfs.transformations` holds the definitions and the public functions, which chain
these steps per column; its docstring states the rules shared by all types.
"""

from __future__ import annotations

import difflib
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast, get_args

import polars as pl

from microfs.errors import DefinitionError, NotFittedError

if TYPE_CHECKING:
    from microfs.transformations import Transform

__all__ = [
    "DataTypeLike",
    "ImputeStrategy",
    "Step",
    "TransformType",
    "ValueKind",
    "_DTYPES",
    "_KINDS",
    "_PARAM_KEYS",
    "_chains",
    "_column_exprs",
    "_compose",
    "_fit_exprs",
    "_hint",
    "_input_kinds",
    "_normalise_options",
    "_one_hot_names",
    "_output_kind",
    "_params_from",
    "_step_expr",
    "_step_fn",
    "_where",
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

_STRATEGIES: tuple[str, ...] = get_args(ImputeStrategy)
_KINDS: tuple[str, ...] = get_args(ValueKind)
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


def _category_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _one_hot_names(column: str, categories: Sequence[Any]) -> list[str]:
    return [f"{column}_{_category_label(v)}" for v in categories]


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
