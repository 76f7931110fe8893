"""Transformation types as stored and served: old parameter files, the type table, row inputs.

Parameters fitted by an earlier release must load, serialise to the same bytes and
transform rows to the same values; every type name a definition may use has one entry in
the table; and the single-row path refuses a value whose Python type does not fit what a
column's transformations were fitted on.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, get_args

import numpy as np
import polars as pl
import pytest

import microfs as mfs
from microfs.errors import SchemaError
from microfs.transformations import (
    _TYPES,
    FittedParams,
    TransformType,
    apply_transforms,
    compile_row_transform,
    fit_transforms,
    output_columns,
    output_schema,
)

NAN, INF = float("nan"), float("inf")

TRAIN = pl.DataFrame(
    {
        "a": [1.0, 2.5, None, 4.0, NAN, 10.0, -0.5],
        "b": [3, 1, 4, 1, 5, None, 9],
        "c": ["x", "y", None, "x", "z", "y", "x"],
        "d": [True, False, None, True, True, False, True],
        "e": [0.5, 1.5, 2.5, 3.5, None, 5.5, 6.5],
        "f": [2, 2, 2, 2, 2, 2, None],
        "g": ["p", None, "q", "p", None, "r", "q"],
        "h": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        "i": [5, 3, None, 3, 8, 1, 1],
        "j": [-2.0, 0.0, 3.0, 100.0, None, 7.0, 1.0],
        "k": [True, None, False, None, True, True, False],
        "l": [10, 20, 30, None, 40, 50, 60],
        "m": ["u", None, "v", "w", None, "u", "v"],
        "n": [7, 8, 7, None, 9, 9, 9],
    }
)
"""Training rows with a column for each type and option (and two- and three-step chains)."""

TEST = pl.DataFrame(
    {
        "a": [None, NAN, INF, -3.0, 2.0],
        "b": [None, 7, 1, 100, 9],
        "c": ["z", None, "new", "x", "y"],
        "d": [None, False, True, True, False],
        "e": [None, NAN, 3.0, -INF, 100.0],
        "f": [2, None, 5, -1, 2],
        "g": [None, "p", "r", "zz", "q"],
        "h": [-1.0, -0.5, None, NAN, 1e9],
        "i": [None, 0, 3, 8, 100],
        "j": [None, -5.0, 2.5, 60.0, NAN],
        "k": [None, True, False, None, True],
        "l": [None, 10, 60, 35, -100],
        "m": [None, "u", "q", None, "v"],
        "n": [None, 7, 8, 9, 10],
    },
    schema=TRAIN.schema,
)
"""Rows to transform: nulls, NaN, infinities, unseen categories, values out of range."""

# The definitions fitted on TRAIN; their parameters, as the earlier release (the one with
# microfs/_transform_steps.py) wrote them with json.dumps, are OLD_PARAMS_JSON.
SPECS: list[dict[str, Any]] = [
    {"type": "scale", "column": "a"},
    {"type": "clip", "column": "a", "upper": 3},
    {"type": "impute", "column": "b", "strategy": "constant", "value": 7},
    {"type": "label_encode", "column": "b"},
    {"type": "one_hot_encode", "column": "c"},
    {"type": "label_encode", "column": "d"},
    {"type": "robust_scale", "column": "e"},
    {"type": "impute", "column": "e"},
    {"type": "standard_scale", "column": "f"},
    {"type": "impute", "column": "g", "strategy": "most_frequent"},
    {"type": "label_encode", "column": "g"},
    {"type": "log1p", "column": "h"},
    {"type": "impute", "column": "i", "strategy": "constant", "value": 2.5},
    {"type": "bucketize", "column": "i", "n_buckets": 3},
    {"type": "clip", "column": "j", "lower": -1, "upper": 50},
    {"type": "impute", "column": "j", "strategy": "median"},
    {"type": "bucketize", "column": "j", "boundaries": [0, 2.5, 10]},
    {"type": "impute", "column": "k", "strategy": "constant", "value": True},
    {"type": "one_hot_encode", "column": "k"},
    {"type": "min_max_scale", "column": "l"},
    {"type": "impute", "column": "m", "strategy": "constant", "value": "zz"},
    {"type": "one_hot_encode", "column": "n"},
]

OLD_PARAMS_JSON = (
    '{"transforms": [{"type": "scale", "column": "a"}, {"type": "clip", "column": "a", '
    '"upper": 3}, {"type": "impute", "column": "b", "strategy": "constant", "value": 7}, '
    '{"type": "label_encode", "column": "b"}, {"type": "one_hot_encode", "column": "c"}, '
    '{"type": "label_encode", "column": "d"}, {"type": "robust_scale", "column": "e"}, '
    '{"type": "impute", "column": "e", "strategy": "mean"}, {"type": "standard_scale", '
    '"column": "f"}, {"type": "impute", "column": "g", "strategy": "most_frequent"}, '
    '{"type": "label_encode", "column": "g"}, {"type": "log1p", "column": "h"}, {"type": '
    '"impute", "column": "i", "strategy": "constant", "value": 2.5}, {"type": '
    '"bucketize", "column": "i", "n_buckets": 3}, {"type": "clip", "column": "j", '
    '"lower": -1, "upper": 50}, {"type": "impute", "column": "j", "strategy": "median"}, '
    '{"type": "bucketize", "column": "j", "boundaries": [0, 2.5, 10]}, {"type": '
    '"impute", "column": "k", "strategy": "constant", "value": true}, {"type": '
    '"one_hot_encode", "column": "k"}, {"type": "min_max_scale", "column": "l"}, '
    '{"type": "impute", "column": "m", "strategy": "constant", "value": "zz"}, {"type": '
    '"one_hot_encode", "column": "n"}], "params": [{"input_kind": "float", "mean": 3.4, '
    '"std": 3.6249137920783716}, {"input_kind": "float", "lower": null, "upper": 3.0}, '
    '{"input_kind": "int", "value": 7}, {"input_kind": "int", "categories": [1, 3, 4, 5, '
    '7, 9]}, {"input_kind": "string", "categories": ["x", "y", "z"]}, {"input_kind": '
    '"bool", "categories": [false, true]}, {"input_kind": "float", "median": 3.0, "q25": '
    '1.75, "q75": 5.0}, {"input_kind": "float", "value": 0.10256410256410257}, '
    '{"input_kind": "int", "mean": 2.0, "std": 0.0}, {"input_kind": "string", "value": '
    '"p"}, {"input_kind": "string", "categories": ["p", "q", "r"]}, {"input_kind": '
    '"float"}, {"input_kind": "int", "value": 2.5}, {"input_kind": "float", '
    '"boundaries": [2.5, 3.0]}, {"input_kind": "float", "lower": -1.0, "upper": 50.0}, '
    '{"input_kind": "float", "value": 2.0}, {"input_kind": "float", "boundaries": [0.0, '
    '2.5, 10.0]}, {"input_kind": "bool", "value": true}, {"input_kind": "bool", '
    '"categories": [false, true]}, {"input_kind": "int", "min": 10.0, "max": 60.0}, '
    '{"input_kind": "string", "value": "zz"}, {"input_kind": "int", "categories": [7, 8, '
    "9]}]}"
)

# What the earlier release gave for the rows of TEST, on both paths.
OLD_COLUMNS = [
    "a",
    "b",
    "c_x",
    "c_y",
    "c_z",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k_false",
    "k_true",
    "l",
    "m",
    "n_7",
    "n_8",
    "n_9",
]
OLD_ROWS = [
    (None, 4, 0, 0, 1, -1, 0.10256410256410257, 0.0, 0, None, 1, 1, 0, 1, None, "zz", 0, 0, 0),
    (None, 4, 0, 0, 0, 0, 0.10256410256410257, None, 0, -0.6931471805599453, 0, 0, 0, 1, 0.0)
    + ("u", 1, 0, 0),
    (3.0, 0, 0, 0, 0, 1, 0.0, 0.0, 2, None, 2, 2, 1, 0, 1.0, "q", 0, 1, 0),
    (-1.7655592290183852, -1, 1, 0, 0, 1, -INF, 0.0, -1, None, 2, 3, 0, 1, 0.5, "zz", 0, 0, 1),
    (-0.3862160813477717, 5, 0, 1, 0, 0, 29.846153846153847, 0.0, 1, 20.72326583794641, 2, 1)
    + (0, 1, -2.2, "v", 0, 0, 0),
]


def test_params_written_by_the_earlier_release_load_and_apply_identically() -> None:
    fitted = FittedParams.from_dict(json.loads(OLD_PARAMS_JSON))
    assert json.dumps(fitted.to_dict(), allow_nan=False) == OLD_PARAMS_JSON
    features = TRAIN.columns
    assert output_columns(features, fitted) == OLD_COLUMNS
    offline = apply_transforms(TEST.lazy(), features, fitted).collect()
    assert offline.columns == OLD_COLUMNS
    assert offline.rows() == OLD_ROWS
    row = compile_row_transform(features, fitted)
    assert [tuple(row(list(values))) for values in TEST.iter_rows()] == OLD_ROWS


def test_fitting_again_writes_the_same_bytes_as_the_earlier_release() -> None:
    fitted = fit_transforms(TRAIN.lazy(), SPECS)
    assert json.dumps(fitted.to_dict(), allow_nan=False) == OLD_PARAMS_JSON
    schema = output_schema(TRAIN.schema, fitted)
    assert list(schema) == OLD_COLUMNS
    assert apply_transforms(TEST.lazy(), TRAIN.columns, fitted).collect().schema == schema


def test_every_type_name_has_one_entry_whose_parameters_fitting_gives() -> None:
    assert list(_TYPES) == list(get_args(TransformType))
    assert _TYPES["scale"] is _TYPES["standard_scale"]
    fitted = fit_transforms(TRAIN.lazy(), SPECS)
    seen = set()
    for t, p in zip(fitted.transforms, fitted.params, strict=True):
        seen.add(t.kind)
        assert list(p) == ["input_kind", *_TYPES[t.type].param_names]
    assert seen == {spec.name for spec in _TYPES.values()}


# --------------------------------------------------------------------------- row inputs


def row_of(values: list[Any], spec: dict[str, Any], dtype: Any = None) -> Any:
    """Fit ``spec`` on column ``x`` holding ``values``; the compiled one-column row function."""
    train = pl.DataFrame({"x": pl.Series(values, dtype=dtype)})
    fitted = fit_transforms(train.lazy(), [{**spec, "column": "x"}])
    return compile_row_transform(["x"], fitted)


@pytest.mark.parametrize(
    ("values", "spec", "bad"),
    [
        ([2.0, 2.0], {"type": "scale"}, "abc"),  # zero spread: used to give 0.0
        ([2.0, 2.0], {"type": "min_max_scale"}, "abc"),
        ([1.0, 5.0], {"type": "scale"}, "3.5"),  # used to give float("3.5") scaled
        ([1.0, 5.0], {"type": "robust_scale"}, True),
        ([1, 5], {"type": "log1p"}, [1]),
        ([1.0, 5.0], {"type": "clip", "lower": 0}, b"1"),
        ([1.0, 5.0], {"type": "bucketize", "n_buckets": 2}, "1"),
        ([1.0, None], {"type": "impute"}, "x"),
        (["a", "b"], {"type": "label_encode"}, 1),  # used to give -1, as if unseen
        (["a", "b"], {"type": "one_hot_encode"}, 1.5),
        ([1, 2], {"type": "label_encode"}, "1"),
        ([True, False], {"type": "one_hot_encode"}, 1),
        (["a", None], {"type": "impute", "strategy": "constant", "value": "z"}, 3),
    ],
)
def test_a_row_value_of_the_wrong_type_is_a_schema_error(
    values: list[Any], spec: dict[str, Any], bad: Any
) -> None:
    row = row_of(values, spec)
    with pytest.raises(SchemaError, match=r"feature 'x' is .* fitted on (int|float|string|bool)"):
        row([bad])


@pytest.mark.parametrize(
    ("values", "spec", "good", "expected"),
    [
        ([2.0, 2.0], {"type": "scale"}, 7, [0.0]),
        ([1.0, 3.0], {"type": "scale"}, np.float32(3.0), [1.0]),
        ([1.0, 3.0], {"type": "scale"}, np.int64(1), [-1.0]),
        ([1, 3], {"type": "min_max_scale"}, 2.0, [0.5]),
        ([1, 3], {"type": "label_encode"}, np.int64(3), [1]),
        ([1, 3], {"type": "label_encode"}, 3.0, [1]),  # a number for an integer category
        ([True, False], {"type": "label_encode"}, np.True_, [1]),
        (["a", "b"], {"type": "one_hot_encode"}, "b", [0, 1]),
        (["a", "b"], {"type": "one_hot_encode"}, None, [0, 0]),
        ([1.0, None], {"type": "impute"}, None, [1.0]),
    ],
)
def test_a_row_value_that_fits_its_kind_goes_through(
    values: list[Any], spec: dict[str, Any], good: Any, expected: list[Any]
) -> None:
    assert row_of(values, spec)([good]) == expected


T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_a_text_passed_feature_for_a_zero_spread_scale_is_a_schema_error(
    store: mfs.FeatureStore,
) -> None:
    group = store.create_feature_group(
        name="events",
        primary_keys=["user_id"],
        event_time="timestamp",
        schema={
            "user_id": "int64",
            "timestamp": "datetime64[us, utc]",
            "score": "float64",
            "y": "int64",
        },
        online_keys=["user_id"],
    )
    group.insert(
        pl.DataFrame(
            {
                "user_id": [1, 2],
                "timestamp": [T0, T0 + timedelta(minutes=1)],
                "score": [4.0, 4.0],
                "y": [0, 1],
            }
        )
    )
    fv = store.create_feature_view(
        name="v",
        label_fg="events",
        label_col="y",
        transforms=[{"type": "scale", "column": "score"}],
    )
    fv.get_training_data(compute_params=True)
    assert fv.get_inference_vector({"user_id": 1}, passed_features={"score": 9.0}) == [0.0]
    with pytest.raises(mfs.SchemaError, match="feature 'score' holds Float64 values, got 'abc'"):
        fv.get_inference_vector({"user_id": 1}, passed_features={"score": "abc"})
