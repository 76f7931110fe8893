from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, reject, settings

from microfs.errors import DefinitionError, NotFittedError, SchemaError
from microfs.transformations import (
    FittedParams,
    Transform,
    apply_transforms,
    compile_row_transform,
    fit_transforms,
    output_columns,
    output_schema,
    parse_transforms,
    transform_row,
    validate_transforms,
)
from tests.strategies import TransformCase, transform_cases


def run(
    values: list[Any], spec: dict[str, Any], test: list[Any] | None = None, dtype: Any = None
) -> tuple[FittedParams, pl.DataFrame]:
    """Fit one transformation of column `x` on `values`, apply it to `test` (or `values`)."""
    train = pl.DataFrame({"x": pl.Series(values, dtype=dtype)})
    fitted = fit_transforms(train.lazy(), [{**spec, "column": "x"}])
    rows = train if test is None else pl.DataFrame({"x": pl.Series(test, dtype=dtype)})
    return fitted, apply_transforms(rows.lazy(), ["x"], fitted).collect()


def params(fitted: FittedParams, i: int = 0) -> dict[str, Any]:
    p: dict[str, Any] = fitted.to_dict()["params"][i]
    return p


# --------------------------------------------------------------------------- each type by hand


@pytest.mark.parametrize("name", ["scale", "standard_scale"])
def test_standard_scale_uses_mean_and_population_std(name: str) -> None:
    fitted, out = run([1, 2, 3, 4, None], {"type": name})
    std = math.sqrt(1.25)
    assert params(fitted) == {"input_kind": "int", "mean": 2.5, "std": pytest.approx(std)}
    assert out.schema["x"] == pl.Float64
    assert out["x"].to_list() == pytest.approx([-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, None])


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        ({"type": "scale"}, [0.1] * 1001),  # the std Polars computes here is ~1e-17, not 0
        ({"type": "min_max_scale"}, [7, 7, 7]),
        ({"type": "robust_scale"}, [1.0, 5.0, 5.0, 5.0, 5.0, 9.0]),  # IQR 0, std not 0
    ],
)
def test_zero_spread_gives_zero_and_nulls_stay_null(
    spec: dict[str, Any], values: list[Any]
) -> None:
    _, out = run(values, spec, test=[values[0], 1e6, -3.0, None, float("nan")], dtype=pl.Float64)
    assert out["x"].to_list() == [0.0, 0.0, 0.0, None, None]


def test_min_max_scale_does_not_clip_outside_training_range() -> None:
    fitted, out = run([2, 4, 10], {"type": "min_max_scale"}, test=[6, 2, 10, 18, -6])
    assert params(fitted) == {"input_kind": "int", "min": 2.0, "max": 10.0}
    assert out["x"].to_list() == [0.5, 0.0, 1.0, 2.0, -1.0]


def test_robust_scale_uses_median_and_numpy_linear_quantiles() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0, 7.5, -2.0]
    fitted, out = run(values, {"type": "robust_scale"}, test=[10.0])
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    p = params(fitted)
    assert (p["q25"], p["median"], p["q75"]) == (q25, median, q75)
    assert out["x"].to_list() == [pytest.approx((10.0 - median) / (q75 - q25))]


def test_one_hot_encode_sorted_columns_unseen_and_null_all_zero() -> None:
    fitted, out = run(["b", "a", None, "b"], {"type": "one_hot_encode"}, test=["a", "b", "z", None])
    assert params(fitted)["categories"] == ["a", "b"]
    assert out.columns == ["x_a", "x_b"]
    assert out.schema == pl.Schema({"x_a": pl.Int8, "x_b": pl.Int8})
    assert out.rows() == [(1, 0), (0, 1), (0, 0), (0, 0)]


@pytest.mark.parametrize(
    ("values", "dtype", "names"),
    [
        ([True, None, False], pl.Boolean, ["x_false", "x_true"]),
        ([10, -1, 2, 10], pl.Int32, ["x_-1", "x_2", "x_10"]),  # numeric order, not "10" < "2"
        (["b", "a", "B"], pl.Categorical, ["x_B", "x_a", "x_b"]),
    ],
)
def test_one_hot_encode_column_names(values: list[Any], dtype: Any, names: list[str]) -> None:
    fitted, out = run(values, {"type": "one_hot_encode"}, dtype=dtype)
    assert output_columns(["x"], fitted) == names == out.columns


def test_label_encode_sorted_codes_unseen_and_null_minus_one() -> None:
    fitted, out = run(
        ["c", "a", None, "b"], {"type": "label_encode"}, test=["a", "c", "b", "z", None]
    )
    assert params(fitted)["categories"] == ["a", "b", "c"]
    assert out.schema["x"] == pl.Int64
    assert out["x"].to_list() == [0, 2, 1, -1, -1]


def test_log1p_null_for_minus_one_and_below_and_for_nan() -> None:
    test = [0.0, math.e - 1, -1.0, -2.0, None, float("nan"), float("inf"), -0.5]
    _, out = run([0.0], {"type": "log1p"}, test=test)
    assert out["x"].to_list() == [
        0.0,
        pytest.approx(1.0),
        None,
        None,
        None,
        None,
        math.inf,
        math.log1p(-0.5),
    ]


@pytest.mark.parametrize(
    ("spec", "values", "fill", "dtype"),
    [
        ({"strategy": "mean"}, [1, 2, None, 6], 3.0, pl.Float64),
        ({"strategy": "median"}, [1, 2, None, 6], 2.0, pl.Float64),
        ({}, [1.0, 2.0, None, 6.0], 3.0, pl.Float64),  # mean is the default
        ({"strategy": "most_frequent"}, [3, 1, 3, 1, None, 2], 1, pl.Int64),  # tie: smallest
        ({"strategy": "most_frequent"}, ["b", "a", None, "b"], "b", pl.String),
        ({"strategy": "most_frequent"}, [True, False, None, False], False, pl.Boolean),
        ({"strategy": "constant", "value": 7}, [1, None], 7, pl.Int64),
        ({"strategy": "constant", "value": 0.5}, [1, None], 0.5, pl.Float64),
        ({"strategy": "constant", "value": "?"}, ["a", None], "?", pl.String),
    ],
)
def test_impute_each_strategy(
    spec: dict[str, Any], values: list[Any], fill: Any, dtype: pl.DataType
) -> None:
    fitted, out = run(values, {"type": "impute", **spec})
    assert params(fitted)["value"] == fill
    assert out.schema["x"] == dtype
    as_type = float if dtype == pl.Float64 else type(fill)
    expected = [as_type(fill if v is None else v) for v in values]
    assert out["x"].to_list() == expected
    assert [type(v) for v in out["x"].to_list()] == [type(v) for v in expected]


def test_impute_fills_nan_and_ignores_nan_and_infinity_when_fitting() -> None:
    values = [1.0, float("nan"), 3.0, None, float("inf")]
    fitted, out = run(values, {"type": "impute", "strategy": "mean"})
    assert params(fitted)["value"] == 2.0
    assert out["x"].to_list() == [1.0, 2.0, 3.0, 2.0, math.inf]


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"lower": 0, "upper": 1}, [0.0, 0.5, 1.0, None]),
        ({"lower": 0}, [0.0, 0.5, 7.0, None]),
        ({"upper": 1.0}, [-3.0, 0.5, 1.0, None]),
    ],
)
def test_clip(bounds: dict[str, Any], expected: list[Any]) -> None:
    _, out = run([0.0], {"type": "clip", **bounds}, test=[-3.0, 0.5, 7.0, None])
    assert out.schema["x"] == pl.Float64
    assert out["x"].to_list() == expected


@pytest.mark.parametrize("dtype", [pl.Int64, pl.Float64])
def test_bucketize_counts_boundaries_at_or_below_x(dtype: pl.DataType) -> None:
    test = [-1, 0, 5, 10, 11, None]
    _, out = run([0], {"type": "bucketize", "boundaries": [0, 10]}, test=test, dtype=dtype)
    assert out.schema["x"] == pl.Int64
    assert out["x"].to_list() == [0, 1, 1, 2, 2, None]


def test_bucketize_n_buckets_from_training_quantiles() -> None:
    values = [float(v) for v in range(1, 9)]
    fitted, out = run(values, {"type": "bucketize", "n_buckets": 4}, test=[0.0, 2.75, 100.0])
    assert params(fitted)["boundaries"] == list(np.quantile(values, [0.25, 0.5, 0.75]))
    assert out["x"].to_list() == [0, 1, 3]


def test_bucketize_merges_equal_quantile_edges() -> None:
    fitted, _ = run([5, 5, 5, 9], {"type": "bucketize", "n_buckets": 4})  # 5, 5, 6
    assert params(fitted)["boundaries"] == [5.0, 6.0]


# --------------------------------------------------------------------------- fitting


def test_chained_steps_fit_on_the_output_of_earlier_steps() -> None:
    specs = [{"type": "impute", "column": "x"}, {"type": "scale", "column": "x"}]
    fitted = fit_transforms(pl.LazyFrame({"x": [1.0, None, 3.0, 5.0]}), specs)
    assert params(fitted, 0)["value"] == 3.0
    # Scaling sees [1, 3, 3, 5]: mean 3, population std sqrt(2).
    assert params(fitted, 1)["mean"] == 3.0
    assert params(fitted, 1)["std"] == pytest.approx(math.sqrt(2))
    out = apply_transforms(pl.LazyFrame({"x": [None, 5.0]}), ["x"], fitted).collect()
    assert out["x"].to_list() == [0.0, pytest.approx(2 / math.sqrt(2))]


def test_one_aggregate_pass_per_chain_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    collect = pl.LazyFrame.collect

    def counting(self: pl.LazyFrame, *args: Any, **kwargs: Any) -> pl.DataFrame:
        calls.append(1)
        result: pl.DataFrame = collect(self, *args, **kwargs)
        return result

    monkeypatch.setattr(pl.LazyFrame, "collect", counting)
    lf = pl.LazyFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": [1, 2], "d": [0.5, None]})
    single: list[dict[str, Any]] = [
        {"type": "scale", "column": "a"},
        {"type": "one_hot_encode", "column": "b"},
        {"type": "bucketize", "column": "c", "n_buckets": 3},
        {"type": "impute", "column": "d", "strategy": "median"},
    ]
    fit_transforms(lf, single)
    assert len(calls) == 1
    fit_transforms(lf, [*single, {"type": "robust_scale", "column": "d"}])
    assert len(calls) == 3
    fit_transforms(lf, [{"type": "clip", "column": "a", "lower": 0}])  # nothing to fit
    assert len(calls) == 3


def test_params_depend_only_on_the_frame_given_to_fit() -> None:
    full = pl.DataFrame(
        {
            "split": ["train"] * 4 + ["test"] * 3,
            "x": [1.0, 2.0, 3.0, 4.0, 1000.0, -50.0, None],
            "c": ["a", "b", "a", None, "z", "y", "b"],
        }
    )
    specs = [
        {"type": "scale", "column": "x"},
        {"type": "one_hot_encode", "column": "c"},
    ]
    train_only = full.filter(pl.col("split") == "train").drop("split")
    fitted = fit_transforms(full.lazy().filter(pl.col("split") == "train"), specs)
    assert fitted == fit_transforms(train_only, specs)
    assert params(fitted, 0)["mean"] == 2.5
    assert params(fitted, 1)["categories"] == ["a", "b"]
    before = fitted.to_dict()
    test = apply_transforms(full.lazy().filter(pl.col("split") == "test"), ["x", "c"], fitted)
    assert test.collect()["c_a"].to_list() == [0, 0, 0]
    assert fitted.to_dict() == before
    assert fit_transforms(full.lazy(), specs) != fitted


def test_empty_frame_and_all_null_column_raise_not_fitted() -> None:
    empty = pl.LazyFrame({"x": pl.Series([], dtype=pl.Float64)})
    with pytest.raises(NotFittedError, match=r"'scale' on column 'x'.*none of the 0 training"):
        fit_transforms(empty, [{"type": "scale", "column": "x"}])
    nulls = pl.LazyFrame({"x": [None, float("nan")], "c": pl.Series([None, None], dtype=pl.String)})
    with pytest.raises(NotFittedError, match="none of the 2 training rows"):
        fit_transforms(nulls, [{"type": "impute", "column": "x", "strategy": "median"}])
    with pytest.raises(NotFittedError, match="'label_encode' on column 'c'"):
        fit_transforms(nulls, [{"type": "label_encode", "column": "c"}])
    chained: list[dict[str, Any]] = [
        {"type": "clip", "column": "x", "upper": -5},
        {"type": "log1p", "column": "x"},
        {"type": "scale", "column": "x"},
    ]
    with pytest.raises(NotFittedError, match="after the earlier steps"):
        fit_transforms(pl.LazyFrame({"x": [1.0, 2.0]}), chained)
    # Transformations that fit nothing from data work on an empty frame.
    fixed: list[dict[str, Any]] = [
        {"type": "clip", "column": "x", "lower": 0},
        {"type": "log1p", "column": "x"},
    ]
    assert fit_transforms(empty, fixed).params[1] == {"input_kind": "float"}


def test_fitted_params_round_trip_json_bit_exactly() -> None:
    lf = pl.LazyFrame({"x": [0.1, 0.2, 1 / 3, 1e-300, 7.0], "c": [True, False, None, True, True]})
    specs: list[dict[str, Any]] = [
        {"type": "scale", "column": "x"},
        {"type": "robust_scale", "column": "x"},
        {"type": "bucketize", "column": "x", "n_buckets": 3},
        {"type": "one_hot_encode", "column": "x"},
        {"type": "impute", "column": "c", "strategy": "constant", "value": False},
        {"type": "label_encode", "column": "c"},
    ]
    fitted = fit_transforms(lf, specs)
    text = json.dumps(fitted.to_dict(), allow_nan=False)
    back = FittedParams.from_dict(json.loads(text))
    assert back == fitted
    assert hash(back) == hash(fitted)
    floats = [v for p in back.params for v in p.values() if isinstance(v, float)]
    assert floats
    assert [v.hex() for v in floats] == [
        v.hex() for p in fitted.params for v in p.values() if isinstance(v, float)
    ]
    assert back.params[3]["categories"] == (0, 1, 2)
    assert back.params[5]["categories"] == (False, True)


def test_fitted_params_from_dict_rejects_malformed_input() -> None:
    with pytest.raises(DefinitionError, match="'transforms' and 'params'"):
        FittedParams.from_dict({"transforms": []})
    with pytest.raises(DefinitionError, match="lack std"):
        FittedParams.from_dict(
            {
                "transforms": [{"type": "scale", "column": "x"}],
                "params": [{"input_kind": "float", "mean": 1.0}],
            }
        )
    with pytest.raises(DefinitionError, match="one per transformation"):
        FittedParams.from_dict({"transforms": [{"type": "log1p", "column": "x"}], "params": []})


# --------------------------------------------------------------------------- definitions


def test_transform_keeps_spelling_and_round_trips() -> None:
    t = Transform.from_dict({"type": "scale", "column": "d"})
    assert (t.type, t.kind) == ("scale", "standard_scale")
    assert t.to_dict() == {"type": "scale", "column": "d"}
    b = Transform.from_dict({"type": "bucketize", "column": "x", "boundaries": [0, 2.5]})
    assert Transform.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    assert hash(Transform.from_dict(b.to_dict())) == hash(b)
    assert Transform.from_dict({"type": "impute", "column": "x"}).to_dict()["strategy"] == "mean"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "scael", "column": "x"},
            r"unknown transformation type 'scael' \(did you mean "
            r"'scale'\?\); valid types: scale, standard_scale",
        ),
        ({"column": "x"}, "has no 'type'"),
        ({"type": "scale"}, "has no 'column'"),
        ({"type": "scale", "column": ""}, "non-empty string, got ''"),
        ({"type": "scale", "column": "x", "foo": 1}, "unknown option 'foo'; it takes no options"),
        ({"type": "impute", "column": "x", "options": {"strategy": "mean"}}, "nested mapping"),
        (
            {"type": "impute", "column": "x", "strategy": "avg"},
            "unknown strategy 'avg'; valid strategies: mean, median, most_frequent, constant",
        ),
        ({"type": "impute", "column": "x", "strategy": "constant"}, "needs a 'value'"),
        ({"type": "impute", "column": "x", "value": 1}, "only used with strategy 'constant'"),
        ({"type": "clip", "column": "x"}, "give 'lower', 'upper' or both"),
        (
            {"type": "clip", "column": "x", "lower": 2, "upper": 1},
            "lower 2 is greater than upper 1",
        ),
        (
            {"type": "clip", "column": "x", "lowr": 2},
            "unknown option 'lowr' \\(did you mean 'lower'",
        ),
        ({"type": "clip", "column": "x", "lower": "0"}, "'lower' must be a finite number, got '0'"),
        ({"type": "clip", "column": "x", "upper": math.inf}, "finite number, got inf"),
        ({"type": "bucketize", "column": "x"}, "exactly one of 'boundaries'.*neither"),
        ({"type": "bucketize", "column": "x", "boundaries": [1], "n_buckets": 2}, "exactly one"),
        ({"type": "bucketize", "column": "x", "boundaries": [2, 1]}, "strictly increasing"),
        ({"type": "bucketize", "column": "x", "boundaries": []}, "non-empty list"),
        ({"type": "bucketize", "column": "x", "n_buckets": 1}, "integer >= 2, got 1"),
        ({"type": "bucketize", "column": "x", "n_buckets": True}, "integer >= 2, got True"),
    ],
)
def test_bad_definitions_raise_informative_errors(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        parse_transforms([spec])


def test_parse_transforms_rejects_non_lists_and_steps_after_one_hot() -> None:
    with pytest.raises(DefinitionError, match="must be a list"):
        parse_transforms({"type": "scale", "column": "x"})  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="is a mapping like"):
        parse_transforms(["scale"])  # type: ignore[list-item]
    with pytest.raises(DefinitionError, match="'label_encode' cannot follow it"):
        parse_transforms(
            [{"type": "one_hot_encode", "column": "c"}, {"type": "label_encode", "column": "c"}]
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "scale", "column": "duration"},
            r"no such column \(did you mean 'duration_sec'\?\); columns: duration_sec",
        ),
        ({"type": "scale", "column": "level"}, "needs a numeric .* column is String"),
        (
            {"type": "one_hot_encode", "column": "duration_sec"},
            "needs a string, integer or boolean column, but the column is Float64",
        ),
        ({"type": "impute", "column": "level", "strategy": "median"}, "needs a numeric"),
        (
            {"type": "impute", "column": "level", "strategy": "constant", "value": 0},
            "constant 0 does not fit a String column; give a string value",
        ),
        (
            {"type": "impute", "column": "flag", "strategy": "constant", "value": 1},
            "give a bool value",
        ),
        ({"type": "log1p", "column": "when"}, "the column is Datetime"),
    ],
)
def test_validate_transforms_checks_columns_and_types(spec: dict[str, Any], message: str) -> None:
    schema: dict[str, Any] = {
        "duration_sec": pl.Float64,
        "level": pl.String(),
        "flag": pl.Boolean,
        "when": pl.Datetime("us", "UTC"),
    }
    with pytest.raises(DefinitionError, match=message):
        validate_transforms([spec], schema)


def test_validate_transforms_follows_kinds_through_a_chain() -> None:
    schema = {"x": pl.Float64, "n": pl.Int16}
    validate_transforms(
        [
            {"type": "bucketize", "column": "x", "n_buckets": 3},
            {"type": "one_hot_encode", "column": "x"},
            {"type": "impute", "column": "n", "strategy": "most_frequent"},
            {"type": "label_encode", "column": "n"},
        ],
        schema,
    )
    with pytest.raises(DefinitionError, match="the column is Float64 after 'scale'"):
        validate_transforms(
            [{"type": "scale", "column": "x"}, {"type": "label_encode", "column": "x"}], schema
        )


# --------------------------------------------------------------------------- applying


def one_hot_level() -> FittedParams:
    lf = pl.LazyFrame({"level": ["gold", "silver", "gold"], "d": [1.0, 2.0, 3.0]})
    return fit_transforms(
        lf, [{"type": "one_hot_encode", "column": "level"}, {"type": "scale", "column": "d"}]
    )


def test_output_columns_replace_transformed_columns_in_place() -> None:
    fitted = one_hot_level()
    assert output_columns(["a", "level", "d", "b"], fitted) == [
        "a",
        "level_gold",
        "level_silver",
        "d",
        "b",
    ]
    with pytest.raises(DefinitionError, match="'level_gold' appears twice"):
        output_columns(["level", "level_gold", "d"], fitted)
    with pytest.raises(DefinitionError, match="'d', which are not features"):
        output_columns(["level"], fitted)
    with pytest.raises(DefinitionError, match="'a' appears twice"):
        output_columns(["a", "level", "d", "a"], fitted)


def test_apply_keeps_other_columns_in_place_and_the_input_frame_unchanged() -> None:
    fitted = one_hot_level()
    frame = pl.DataFrame(
        {"id": [1, 2], "level": ["silver", None], "t": [5, 6], "d": [2.0, None], "y": [0, 1]}
    )
    copy = frame.clone()
    out = apply_transforms(frame, ["d", "level"], fitted).collect()
    assert out.columns == ["id", "d", "level_gold", "level_silver", "t", "y"]
    assert out.rows() == [(1, 0.0, 0, 1, 5, 0), (2, None, 0, 0, 6, 1)]
    assert frame.equals(copy)
    schema = output_schema({"d": pl.Float32, "level": pl.Categorical}, fitted)
    assert schema == {"d": pl.Float64, "level_gold": pl.Int8, "level_silver": pl.Int8}


def test_apply_rejects_missing_columns_changed_kinds_and_name_clashes() -> None:
    fitted = one_hot_level()
    with pytest.raises(SchemaError, match="no feature column\\(s\\) 'd'"):
        apply_transforms(pl.LazyFrame({"level": ["a"]}), ["level", "d"], fitted)
    wrong = pl.LazyFrame({"level": [1], "d": [1.0]})
    with pytest.raises(SchemaError, match="fitted on string values but gets int values"):
        apply_transforms(wrong, ["level", "d"], fitted)
    clash = pl.LazyFrame({"level": ["a"], "d": [1.0], "level_gold": [0]})
    with pytest.raises(DefinitionError, match="'level_gold' appears twice"):
        apply_transforms(clash, ["level", "d"], fitted)


def test_transform_row_and_compiled_row_path() -> None:
    fitted = one_hot_level()
    assert transform_row({"id": 9, "level": "silver", "d": 3.0}, fitted) == {
        "id": 9,
        "level_gold": 0,
        "level_silver": 1,
        "d": pytest.approx(math.sqrt(1.5)),
    }
    row = compile_row_transform(["d", "level"], fitted)
    assert row([None, "bronze"]) == [None, 0, 0]
    assert row([float("nan"), None]) == [None, 0, 0]
    with pytest.raises(SchemaError, match=r"expected 2 feature values \(d, level\), got 1"):
        row([1.0])


def test_one_hot_row_path_with_many_categories() -> None:
    categories = [f"c{i:04d}" for i in range(300)]
    fitted = fit_transforms(pl.LazyFrame({"c": categories}), [Transform("one_hot_encode", "c")])
    row = compile_row_transform(["c"], fitted)
    out = row(["c0007"])
    assert len(out) == 300
    assert out[7] == 1
    assert sum(out) == 1
    assert row(["nope"]) == [0] * 300


# --------------------------------------------------------------------------- two paths agree


def same_value(got: Any, expected: Any) -> bool:
    if type(got) is not type(expected):
        return False
    if isinstance(expected, float):
        both_nan = math.isnan(got) and math.isnan(expected)  # untransformed columns keep NaN
        return both_nan or got == expected or math.isclose(got, expected, rel_tol=1e-12)
    return bool(got == expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=transform_cases())
def test_row_path_equals_expression_path(case: TransformCase) -> None:
    try:
        fitted = fit_transforms(case.train.lazy(), case.specs)
    except NotFittedError:
        reject()  # a chain that leaves no usable training value (e.g. clip then log1p)
    stored = FittedParams.from_dict(json.loads(json.dumps(fitted.to_dict(), allow_nan=False)))
    assert stored == fitted
    names = output_columns(case.features, fitted)
    row = compile_row_transform(case.features, stored)
    for frame in (case.train, case.test):
        out = apply_transforms(frame.lazy(), case.features, fitted).collect()
        assert out.columns == ["id", *names]
        assert out["id"].equals(frame["id"])
        assert dict(out.select(names).schema) == output_schema(
            dict(frame.select(case.features).schema), fitted
        )
        raw_rows = frame.select(case.features).rows()
        for raw, expected in zip(raw_rows, out.select(names).rows(), strict=True):
            got = row(list(raw))
            assert len(got) == len(expected)
            bad = [
                (n, g, e)
                for n, g, e in zip(names, got, expected, strict=True)
                if not same_value(g, e)
            ]
            assert not bad, f"row {raw}: (column, row path, expression path) {bad}"
