from __future__ import annotations

import html.parser
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import microfs as mfs
from microfs import statistics as stats
from microfs.cli import main
from microfs.expectations import evaluate, parse_expectations, split
from microfs.group_definition import FeatureGroupDefinition
from microfs.known import SUPERSEDED_AT
from tests.helpers import T0, lake_files

SCHEMA = {
    "uid": "int64",
    "ts": "datetime64[ns, utc]",
    "age": "int64",
    "score": "float64",
    "code": "string",
}
KINDS_ON_AGE: list[dict[str, Any]] = [
    {"column": "age", "kind": "not_null"},
    {"column": "age", "kind": "between", "min": 0, "max": 120},
    {"column": "age", "kind": "in_set", "values": [1, 2, 3]},
    {"column": "code", "kind": "matches", "pattern": "[A-Z]{2}[0-9]"},
    {"column": "age", "kind": "unique"},
    {"column": "age", "kind": "max_null_fraction", "value": 0.25},
    {"kind": "row_count_between", "min": 1, "max": 10},
]


def rows(
    ages: Sequence[int | None],
    *,
    codes: Sequence[str | None] | None = None,
    scores: Sequence[float | None] | None = None,
    start: int = 0,
) -> pl.DataFrame:
    n = len(ages)
    return pl.DataFrame(
        {
            "uid": list(range(start, start + n)),
            "ts": [T0 + timedelta(hours=start + i) for i in range(n)],
            "age": list(ages),
            "score": list(scores) if scores is not None else [float(i) for i in range(n)],
            "code": list(codes) if codes is not None else ["AB1"] * n,
        },
        schema={
            "uid": pl.Int64,
            "ts": pl.Datetime("us", "UTC"),
            "age": pl.Int64,
            "score": pl.Float64,
            "code": pl.String,
        },
    )


def group(
    store: mfs.FeatureStore,
    expectations: list[dict[str, Any]],
    validation: str = "strict",
    name: str = "people",
) -> mfs.FeatureGroup:
    return store.create_feature_group(
        name,
        primary_keys=["uid"],
        event_time="ts",
        schema=SCHEMA,
        expectations=expectations,
        validation=validation,  # type: ignore[arg-type]
    )


# -- definitions ------------------------------------------------------------------------------


def test_expectations_round_trip_through_the_stored_definition(store: mfs.FeatureStore) -> None:
    fg = group(store, KINDS_ON_AGE, "quarantine")
    again = mfs.FeatureStore(store.root).get_feature_group("people")
    assert again.definition == fg.definition
    assert again.definition.validation == "quarantine"
    stored = json.loads((store.root / "feature_groups" / "people" / "v1.json").read_text())
    assert [e["kind"] for e in stored["expectations"]] == [e["kind"] for e in KINDS_ON_AGE]
    assert stored["expectations"][1] == {
        "kind": "between",
        "column": "age",
        "name": "age_between",
        "min": 0,
        "max": 120,
    }
    # the same create again returns the stored group
    assert group(store, KINDS_ON_AGE, "quarantine").definition == fg.definition


def test_definitions_without_quality_keys_load_and_stay_unchanged() -> None:
    d = FeatureGroupDefinition.build(name="g", primary_keys=["uid"], schema={"uid": "int64"})
    data = d.to_dict()
    assert not {"expectations", "validation", "statistics"} & set(data)
    loaded = FeatureGroupDefinition.from_dict(data)
    assert (loaded.expectations, loaded.validation, loaded.statistics) == ((), "strict", True)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"column": "age", "kind": "nonsense"}, "kinds: not_null"),
        ({"column": "nope", "kind": "not_null"}, "not in the schema"),
        ({"column": "age", "kind": "between"}, "needs 'min', 'max' or both"),
        ({"column": "age", "kind": "between", "min": 5, "max": 1}, "greater than"),
        ({"column": "age", "kind": "between", "min": "5"}, "must be a number"),
        ({"column": "age", "kind": "in_set", "values": []}, "empty"),
        ({"column": "age", "kind": "in_set", "values": [1.5]}, "does not fit"),
        ({"column": "age", "kind": "matches", "pattern": "x"}, "needs a string column"),
        ({"column": "code", "kind": "matches", "pattern": "("}, "not a valid regex"),
        ({"column": "age", "kind": "max_null_fraction", "value": 2}, "fraction from 0 to 1"),
        ({"column": "age", "kind": "not_null", "max": 3}, "unknown option"),
        ({"column": "age", "kind": "row_count_between", "min": 1}, "leave out column"),
        ({"kind": "row_count_between", "min": -1}, "non-negative"),
    ],
)
def test_bad_expectations_are_refused_by_name(
    store: mfs.FeatureStore, spec: dict[str, Any], words: str
) -> None:
    with pytest.raises(mfs.DefinitionError, match=re.escape(words)):
        group(store, [spec])
    assert store.list_feature_groups() == []


def test_duplicate_names_and_bad_policy_are_refused(store: mfs.FeatureStore) -> None:
    twice = [{"column": "age", "kind": "not_null"}, {"column": "age", "kind": "not_null"}]
    with pytest.raises(mfs.DefinitionError, match="another 'name'"):
        group(store, twice)
    with pytest.raises(mfs.DefinitionError, match="'strict', 'warn', 'quarantine'"):
        group(store, [], validation="loud")


# -- every kind -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", KINDS_ON_AGE[:-1], ids=lambda s: s["kind"])
def test_nulls_pass_every_kind_but_not_null_and_max_null_fraction(spec: dict[str, Any]) -> None:
    expectations = parse_expectations(
        [spec],
        FeatureGroupDefinition.build(
            name="g", primary_keys=["uid"], event_time="ts", schema=SCHEMA
        ).schema,
    )
    frame = rows([1, None, None], codes=["AB1", None, None])
    report = evaluate(frame, expectations)
    failing = report.results["failing_rows"][0]
    if spec["kind"] == "not_null":
        assert failing == (1 if spec["column"] == "code" else 2)
    elif spec["kind"] == "max_null_fraction":
        assert failing == 2  # 2 of 3 null > 0.25: the null rows fail
    else:
        assert failing == 0, spec


@pytest.mark.parametrize(
    ("spec", "ages", "codes", "failing", "sample"),
    [
        (
            {"column": "age", "kind": "between", "min": 0, "max": 120},
            [5, -1, 121, 120],
            None,
            2,
            ["-1", "121"],
        ),
        ({"column": "age", "kind": "between", "min": 10}, [5, 10, 11], None, 1, ["5"]),
        ({"column": "age", "kind": "in_set", "values": [1, 2]}, [1, 2, 3, 3], None, 2, ["3"]),
        (
            {"column": "code", "kind": "matches", "pattern": "[A-Z]{2}[0-9]"},
            [1, 2, 3],
            ["AB1", "AB12", "xAB1"],
            2,
            ["AB12", "xAB1"],
        ),
        ({"column": "age", "kind": "unique"}, [1, 2, 2, 3, 3, 3], None, 5, ["2", "3"]),
        (
            {"column": "age", "kind": "max_null_fraction", "value": 0.5},
            [1, None, None],
            None,
            2,
            [],
        ),
        ({"column": "age", "kind": "max_null_fraction", "value": 0.5}, [1, 2, None], None, 0, []),
        ({"kind": "row_count_between", "max": 2}, [1, 2, 3], None, 3, []),
        ({"kind": "row_count_between", "min": 1, "max": 3}, [1, 2, 3], None, 0, []),
        ({"column": "age", "kind": "not_null"}, [1, None], None, 1, ["null"]),
    ],
)
def test_each_kind_counts_failing_rows_and_samples_them(
    spec: dict[str, Any],
    ages: list[int | None],
    codes: list[str] | None,
    failing: int,
    sample: list[str],
) -> None:
    expectations = parse_expectations([spec], {"age": "int64", "code": "string"})
    frame = rows(ages, codes=codes)
    report = evaluate(frame, expectations)
    assert report.results.row(0, named=True)["failing_rows"] == failing
    assert report.results["sample"][0].to_list() == sample
    assert report.passed is (failing == 0)
    passing, rejected = split(frame, expectations)
    assert (passing.height, rejected.height) == (frame.height - failing, failing)


def test_between_refuses_nan_and_works_on_strings_and_datetimes() -> None:
    expectations = parse_expectations(
        [
            {"column": "score", "kind": "between", "min": 0.0},
            {"column": "code", "kind": "between", "min": "B", "max": "D"},
            {"column": "ts", "kind": "between", "max": "2024-01-01T01:00:00+00:00"},
        ],
        {"score": "float64", "code": "string", "ts": "datetime"},
    )
    frame = rows([1, 2, 3], scores=[float("nan"), 1.0, None], codes=["A", "C", "E"])
    assert evaluate(frame, expectations).results["failing_rows"].to_list() == [1, 2, 1]


def test_report_keeps_five_distinct_samples_in_batch_order() -> None:
    expectations = parse_expectations(
        [{"column": "age", "kind": "between", "min": 0}], {"age": "int64"}
    )
    ages = [-9, -9, 4, -1, -2, -3, -4, -5, -6, 7]
    report = evaluate(rows(ages), expectations)
    row = report.results.row(0, named=True)
    assert row["failing_rows"] == 8
    assert row["sample"] == ["-9", "-1", "-2", "-3", "-4"]
    assert report.results.columns == ["expectation", "kind", "column", "failing_rows", "sample"]
    assert (
        report.summary()
        == "age_between (between on age): 8 of 10 rows fail, e.g. -9, -1, -2, -3, -4"
    )


# -- policies ---------------------------------------------------------------------------------


def test_strict_refuses_the_batch_and_writes_nothing(store: mfs.FeatureStore) -> None:
    fg = group(store, KINDS_ON_AGE[:2])
    fg.insert(rows([30, 40]))
    before = lake_files(store.root)
    version = fg.table_version()
    with pytest.raises(mfs.ValidationError) as caught:
        fg.insert(rows([50, None, 200, 300], start=10))
    assert isinstance(caught.value, mfs.MicroFSError)
    message = str(caught.value)
    assert "\n" not in message
    assert "age_not_null (not_null on age): 1 of 4 rows fail" in message
    assert "age_between (between on age): 2 of 4 rows fail, e.g. 200, 300" in message
    assert caught.value.report.results["failing_rows"].to_list() == [1, 2]
    assert lake_files(store.root) == before
    assert fg.table_version() == version
    assert fg.read().height == 2


def test_warn_writes_the_batch_warns_and_returns_the_report(store: mfs.FeatureStore) -> None:
    fg = group(store, KINDS_ON_AGE[1:2], "warn")
    with pytest.warns(mfs.ValidationWarning, match=r"age_between .* 1 of 3 rows fail, e\.g\. -4"):
        result = fg.insert(rows([1, -4, 3]))
    assert issubclass(mfs.ValidationWarning, UserWarning)
    assert result.validation is not None
    assert not result.validation.passed
    assert result.rows_inserted == 3
    assert fg.read().height == 3
    history = fg.validation_history()
    assert history.select("table_version", "policy", "passed", "rows").rows() == [
        (1, "warn", False, 3)
    ]
    assert json.loads(history["failed"][0]) == {"age_between": 1}


def test_quarantine_writes_passing_rows_and_rejects_the_rest(store: mfs.FeatureStore) -> None:
    fg = group(
        store,
        [KINDS_ON_AGE[1], {"column": "code", "kind": "matches", "pattern": "[A-Z]{2}[0-9]"}],
        "quarantine",
    )
    assert fg.rejects().collect().columns == [*SCHEMA, "reason"]
    result = fg.insert(rows([1, -4, 3, 500], codes=["AB1", "AB1", "zz", "q"]))
    assert (result.rows_inserted, result.rows_rejected, result.mode) == (1, 3, "append")
    assert fg.read()["age"].to_list() == [1]
    rejected = fg.rejects().collect().sort("uid")
    assert rejected["age"].to_list() == [-4, 3, 500]
    assert rejected["reason"].to_list() == [
        "age_between",
        "code_matches",
        "age_between; code_matches",
    ]
    # every row failing: nothing is committed to the table, the rows still go to rejects
    version = fg.table_version()
    again = fg.insert(rows([-1], start=20))
    assert (again.mode, again.rows_rejected, fg.table_version()) == ("noop", 1, version)
    assert fg.rejects().collect().height == 4
    history = fg.validation_history()
    assert history["table_version"].to_list() == [1, None]
    assert history["rows_rejected"].to_list() == [3, 1]


def test_validate_is_a_dry_run_and_checks_the_schema(store: mfs.FeatureStore) -> None:
    fg = group(store, KINDS_ON_AGE[1:2])
    before = lake_files(store.root)
    report = fg.validate(rows([1, 500]))
    assert (report.passed, report.results["failing_rows"].to_list()) == (False, [1])
    assert fg.validate(rows([1, 2])).passed
    with pytest.raises(mfs.SchemaError):
        fg.validate(rows([1]).drop("age"))
    assert lake_files(store.root) == before


def test_groups_without_expectations_report_nothing(store: mfs.FeatureStore) -> None:
    fg = group(store, [])
    result = fg.insert(rows([1, -1]))
    assert result.validation is None
    assert fg.validate(rows([1])).passed
    assert fg.validation_history().height == 0


# -- append_features and delete_rows ---------------------------------------------------------

NOT_NULL_Y = {"column": "y", "kind": "not_null"}


def test_append_features_strict_refuses_failing_stored_rows_and_writes_nothing(
    store: mfs.FeatureStore,
) -> None:
    fg = group(store, KINDS_ON_AGE[1:2])
    fg.insert(rows([30, 40, 50]))
    before, version = lake_files(store.root), fg.table_version()
    with pytest.raises(mfs.ValidationError) as caught:
        fg.append_features({"y": "int64"}, expectations=[NOT_NULL_Y])
    message = str(caught.value)
    assert "\n" not in message
    assert "refused the append of column(s) y (its 3 stored rows read null there)" in message
    assert "y_not_null (not_null on y): 3 of 3 rows fail, e.g. null" in message
    # no commit, no file, no record: the group is as it was, also when opened again
    assert lake_files(store.root) == before
    assert fg.table_version() == version
    assert "y" not in fg.definition.schema
    assert "y" not in store.get_feature_group("people").definition.schema
    # an expectation the nulls meet is added, and later inserts are checked against it
    change = fg.append_features(
        {"y": "int64"}, expectations=[{"column": "y", "kind": "between", "min": 0}]
    )
    assert change.validation is not None
    assert change.validation.passed
    assert change.rows_rejected == 0
    reopened = store.get_feature_group("people")
    assert [e.name for e in reopened.definition.expectations] == ["age_between", "y_between"]
    assert reopened.definition.options()["expectations"] == [
        KINDS_ON_AGE[1] | {"name": "age_between"}
    ]
    with pytest.raises(mfs.ValidationError, match=r"y_between .* 1 of 1 rows fail, e\.g\. -1"):
        reopened.insert(rows([1], start=10).with_columns(y=pl.lit(-1)))
    assert reopened.insert(rows([1], start=10).with_columns(y=pl.lit(1))).rows_inserted == 1


def test_append_features_warn_adds_the_columns_and_records_the_report(
    store: mfs.FeatureStore,
) -> None:
    fg = group(store, [], "warn")
    fg.insert(rows([1, 2]))
    with pytest.warns(mfs.ValidationWarning, match=r"y_not_null .* 2 of 2 rows fail"):
        change = fg.append_features({"y": "int64"}, expectations=[NOT_NULL_Y])
    assert change.validation is not None
    assert not change.validation.passed
    assert fg.read()["y"].to_list() == [None, None]
    history = fg.validation_history()
    assert history.select("table_version", "policy", "passed", "rows").rows()[-1] == (
        change.table_version,
        "warn",
        False,
        2,
    )


def test_append_features_quarantine_moves_failing_stored_rows_to_rejects(
    store: mfs.FeatureStore,
) -> None:
    fg = group(store, [], "quarantine")
    fg.insert(rows([1, 2, 3]))
    change = fg.append_features(
        {"y": "int64", "z": "string"},
        expectations=[NOT_NULL_Y, {"column": "z", "kind": "max_null_fraction", "value": 0.5}],
    )
    assert (change.rows_rejected, change.validation is not None) == (3, True)
    assert fg.read().columns == [*SCHEMA, "y", "z"]
    assert fg.read().height == 0
    rejected = fg.rejects().collect().sort("uid")
    assert rejected.columns == [*SCHEMA, "y", "z", "reason"]
    assert rejected["age"].to_list() == [1, 2, 3]
    assert set(rejected["reason"]) == {"y_not_null; z_max_null_fraction"}
    assert fg.statistics(version=change.table_version)["count"].to_list() == [0] * 7
    # a known-at join still sees what was served until the rows left
    history = fg.scan_versions().collect()
    assert history.height == 3
    assert history[SUPERSEDED_AT].null_count() == 0
    # rows meeting the new expectations go in; failing ones join the widened rejects table
    result = fg.insert(rows([4, 5], start=10).with_columns(y=pl.Series([7, None]), z=pl.lit("a")))
    assert (result.rows_inserted, result.rows_rejected) == (1, 1)
    assert fg.rejects().collect().height == 4


def test_append_features_on_an_empty_table_passes_and_bad_expectations_are_refused(
    store: mfs.FeatureStore,
) -> None:
    fg = group(store, [])
    before = lake_files(store.root)
    for specs, words in (
        ([{"column": "age", "kind": "not_null"}], "must name a column it adds (y)"),
        ([{"kind": "row_count_between", "min": 1}], "must name a column it adds (y)"),
        ([{"column": "y", "kind": "in_set", "values": ["a"]}], "does not fit column type int64"),
        ([NOT_NULL_Y, NOT_NULL_Y], "give one of them another 'name'"),
    ):
        with pytest.raises(mfs.DefinitionError, match=re.escape(words)):
            fg.append_features({"y": "int64"}, expectations=specs)
    assert lake_files(store.root) == before
    change = fg.append_features({"y": "int64"}, expectations=[NOT_NULL_Y])
    assert change.validation is not None
    assert change.validation.passed
    fg2 = group(store, [KINDS_ON_AGE[1]], name="other")
    with pytest.raises(mfs.DefinitionError, match="named 'age_between' already"):
        fg2.append_features(
            {"y": "int64"},
            expectations=[{"column": "y", "kind": "not_null", "name": "age_between"}],
        )


_NULL_KINDS: list[dict[str, Any]] = [
    {"column": "y", "kind": "not_null"},
    {"column": "y", "kind": "between", "min": 0},
    {"column": "y", "kind": "in_set", "values": [1]},
    {"column": "y", "kind": "unique"},
    {"column": "y", "kind": "max_null_fraction", "value": 0.0},
    {"column": "y", "kind": "max_null_fraction", "value": 0.5},
    {"column": "y", "kind": "max_null_fraction", "value": 1.0},
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stored=st.integers(0, 3),
    picked=st.sets(st.integers(0, len(_NULL_KINDS) - 1), min_size=1, max_size=3),
    policy=st.sampled_from(["strict", "warn", "quarantine"]),
)
def test_append_features_follows_the_policy_like_a_reference(
    tmp_path_factory: pytest.TempPathFactory, stored: int, picked: set[int], policy: str
) -> None:
    specs = [_NULL_KINDS[i] | {"name": f"e{i}"} for i in sorted(picked)]
    # reference: the stored rows read null in y, so an expectation fails all of them or none
    failing = {
        s["name"]: stored
        if stored
        and (s["kind"] == "not_null" or (s["kind"] == "max_null_fraction" and s["value"] < 1))
        else 0
        for s in specs
    }
    fails = any(failing.values())
    store = mfs.FeatureStore(tmp_path_factory.mktemp("lake"))
    fg = group(store, [], policy)
    if stored:
        fg.insert(rows(list(range(stored))))
    before, version = lake_files(store.root), fg.table_version()
    if fails and policy == "strict":
        with pytest.raises(mfs.ValidationError) as caught:
            fg.append_features({"y": "int64"}, expectations=specs)
        assert (
            dict(caught.value.report.results.select("expectation", "failing_rows").rows())
            == failing
        )
        assert (lake_files(store.root), fg.table_version()) == (before, version)
        return
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        change = fg.append_features({"y": "int64"}, expectations=specs)
    assert change.validation is not None
    assert dict(change.validation.results.select("expectation", "failing_rows").rows()) == failing
    assert len(caught_warnings) == (1 if fails and policy == "warn" else 0)
    moved = stored if fails and policy == "quarantine" else 0
    assert change.rows_rejected == moved
    assert fg.read().height == stored - moved
    reasons = fg.rejects().collect()["reason"].to_list()
    assert reasons == ["; ".join(n for n, c in failing.items() if c)] * moved
    assert fg.statistics().filter(pl.col("column") == "y")["null_count"].item() == stored - moved


def test_delete_rows_checks_no_expectation(store: mfs.FeatureStore) -> None:
    # expectations describe written batches; a delete writes no value, and an erasure is
    # never refused by a data-quality policy (even one the remaining table would not meet)
    fg = group(store, [KINDS_ON_AGE[0], {"kind": "row_count_between", "min": 2}])
    fg.insert(rows([1, 2]))
    result = fg.delete_rows([{"uid": 0}])
    assert (result.mode, result.rows_deleted) == ("delete", 1)
    assert fg.read()["uid"].to_list() == [1]
    assert fg.validation_history()["table_version"].to_list() == [1]


# -- validation against a brute-force reference -----------------------------------------------

_PATTERNS = ["a+", "[ab]c?", "(ab)*", "b"]


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[int | None], list[str | None], list[dict[str, Any]]]:
    n = draw(st.integers(0, 30))
    ints = draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=n, max_size=n))
    texts = draw(
        st.lists(
            st.one_of(st.none(), st.sampled_from(["a", "aa", "ab", "abc", "b", "c", ""])),
            min_size=n,
            max_size=n,
        )
    )
    low = draw(st.one_of(st.none(), st.integers(-5, 5)))
    high = draw(st.one_of(st.none(), st.integers(-5, 5)))
    if low is None and high is None:
        low = 0
    if low is not None and high is not None and low > high:
        low, high = high, low
    specs: list[dict[str, Any]] = [
        {"column": "x", "kind": "not_null"},
        {"column": "x", "kind": "between", "min": low, "max": high},
        {"column": "x", "kind": "in_set", "values": draw(st.lists(st.integers(-5, 5), min_size=1))},
        {"column": "s", "kind": "in_set", "values": ["a", "b"], "name": "s_in"},
        {"column": "s", "kind": "matches", "pattern": draw(st.sampled_from(_PATTERNS))},
        {"column": "x", "kind": "unique"},
        {"column": "s", "kind": "unique"},
        {"column": "s", "kind": "max_null_fraction", "value": draw(st.floats(0, 1))},
        {"kind": "row_count_between", "min": draw(st.integers(0, 10)), "max": 25},
    ]
    return ints, texts, [{k: v for k, v in s.items() if v is not None} for s in specs]


def reference_failures(
    ints: list[int | None], texts: list[str | None], spec: dict[str, Any]
) -> list[bool]:
    values: list[Any] = ints if spec.get("column") == "x" else texts
    n = len(values)
    kind = spec["kind"]
    if kind == "row_count_between":
        return [not (spec["min"] <= n <= spec["max"])] * n
    if kind == "not_null":
        return [v is None for v in values]
    if kind == "max_null_fraction":
        nulls = sum(v is None for v in values)
        return [v is None and nulls > spec["value"] * n for v in values]
    out = []
    for v in values:
        if v is None:
            out.append(False)
        elif kind == "between":
            out.append(("min" in spec and v < spec["min"]) or ("max" in spec and v > spec["max"]))
        elif kind == "in_set":
            out.append(v not in spec["values"])
        elif kind == "matches":
            out.append(re.fullmatch(spec["pattern"], v) is None)
        else:
            out.append(values.count(v) > 1)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_validation_counts_match_a_brute_force_reference(
    case: tuple[list[int | None], list[str | None], list[dict[str, Any]]],
) -> None:
    ints, texts, specs = case
    expectations = parse_expectations(specs, {"x": "int64", "s": "string"})
    frame = pl.DataFrame({"x": ints, "s": texts}, schema={"x": pl.Int64, "s": pl.String})
    report = evaluate(frame, expectations)
    masks = [reference_failures(ints, texts, spec) for spec in specs]
    assert report.results["failing_rows"].to_list() == [sum(m) for m in masks]
    assert report.passed is (not any(any(m) for m in masks))
    for spec, mask, sample in zip(specs, masks, report.results["sample"].to_list(), strict=True):
        if spec["kind"] in ("row_count_between", "max_null_fraction"):
            assert sample == []
            continue
        column = ints if spec["column"] == "x" else texts
        expected: list[str] = []
        for value, failed in zip(column, mask, strict=True):
            text = "null" if value is None else str(value)
            if failed and text not in expected and len(expected) < 5:
                expected.append(text)
        assert sample == expected
    passing, rejected = split(frame, expectations)
    failed_any = [any(m[i] for m in masks) for i in range(len(ints))]
    assert passing["x"].to_list() == [v for v, f in zip(ints, failed_any, strict=True) if not f]
    assert rejected.height == sum(failed_any)
    names = [e.name for e in expectations]
    reasons = [
        "; ".join(name for name, m in zip(names, masks, strict=True) if m[i])
        for i in range(len(ints))
        if failed_any[i]
    ]
    assert rejected["reason"].to_list() == reasons


# -- statistics -------------------------------------------------------------------------------

finite_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(st.none(), finite_floats), min_size=1, max_size=60),
    st.lists(st.one_of(st.none(), st.integers(-1000, 1000)), min_size=1, max_size=60),
)
def test_statistics_match_numpy(floats: list[float | None], ints: list[int | None]) -> None:
    n = min(len(floats), len(ints))
    floats, ints = floats[:n], ints[:n]
    frame = pl.DataFrame({"f": floats, "i": ints}, schema={"f": pl.Float64, "i": pl.Int64})
    document = stats.compute(frame, {"f": "float64", "i": "int64"}, rows=n)
    # one statistic at a time (beside a write) gives the same document
    assert stats.compute(frame, {"f": "float64", "i": "int64"}, rows=n, sequential=True) == document
    table = stats.statistics_frame(document)
    assert table.columns == list(stats.STATISTICS_SCHEMA)
    for row, values in zip(table.iter_rows(named=True), (floats, ints), strict=True):
        present = np.array([v for v in values if v is not None], dtype=np.float64)
        assert row["count"] == present.size
        assert row["null_count"] == n - present.size
        if present.size == 0:
            assert row["mean"] is None
            assert row["p50"] is None
            continue
        assert row["min"] == present.min()
        assert row["max"] == present.max()
        assert row["mean"] == pytest.approx(present.mean(), rel=1e-9, abs=1e-6)
        if present.size > 1:
            assert row["std"] == pytest.approx(present.std(ddof=1), rel=1e-6, abs=1e-6)
        for p in stats.PERCENTILES:
            assert row[f"p{p:02d}"] == pytest.approx(np.percentile(present, p), rel=1e-9, abs=1e-6)
        assert abs(row["approx_distinct"] - len(set(present.tolist()))) <= max(
            1, 0.05 * present.size
        )
        hist = stats.histogram_frame(document["histograms"][row["column"]])
        check_histogram(hist, present.tolist(), bins=stats.HISTOGRAM_BINS)


def check_histogram(hist: pl.DataFrame, values: list[float], *, bins: int) -> None:
    """Edges evenly spaced from min to max; each value counted in exactly its bin."""
    assert hist.height == bins
    starts, ends = hist["bin_start"].to_list(), hist["bin_end"].to_list()
    low, high = min(values), max(values)
    if low == high:
        low, high = low - 0.5, high + 0.5
    assert starts[0] == pytest.approx(low)
    assert ends[-1] == pytest.approx(high)
    assert np.allclose(np.diff(ends), (high - low) / bins, rtol=1e-6, atol=1e-9)
    expected = [0] * bins
    for v in values:
        for k in range(bins):
            if starts[k] < v <= ends[k] or (k == 0 and v == starts[0]):
                expected[k] += 1
                break
    assert hist["count"].to_list() == expected


def test_statistics_of_strings_and_times_leave_numeric_fields_null() -> None:
    frame = rows([1, 2, None], codes=["a", None, "a"])
    document = stats.compute(
        frame,
        FeatureGroupDefinition.build(
            name="g", primary_keys=["uid"], event_time="ts", schema=SCHEMA
        ).schema,
        rows=3,
    )
    table = stats.statistics_frame(document).filter(pl.col("column").is_in(["ts", "code"]))
    assert table.select("count", "null_count", "approx_distinct").rows() == [(3, 0, 3), (2, 1, 1)]
    assert table.select("min", "mean", "p50").null_count().row(0) == (2, 2, 2)


def test_statistics_with_infinities_keep_them_out_of_the_histogram() -> None:
    inf = float("inf")
    frame = pl.DataFrame({"v": [-inf, 1.0, 2.0, inf, inf, float("nan")]})
    document = stats.compute(frame, {"v": "float64"}, rows=6)
    row = stats.statistics_frame(document).row(0, named=True)
    assert (row["count"], row["min"], row["max"], row["p99"], row["p01"]) == (
        6,
        -inf,
        inf,
        inf,
        -inf,
    )
    hist = stats.histogram_frame(document["histograms"]["v"])
    assert (hist["bin_start"][0], hist["bin_end"][-1], hist["count"].sum()) == (1.0, 2.0, 2)


def test_percentiles_between_finite_values_further_apart_than_the_float_range_stay_finite() -> None:
    # b - a overflows for -1.7e308 and 1.7e308 (a warning, an error under the test run);
    # the percentile between them is still the finite interpolation.
    document = stats.compute(pl.LazyFrame({"x": [-1.7e308, 1.7e308]}), {"x": "float64"}, rows=2)
    (column,) = document["columns"]
    assert column["p50"] == 0.0
    assert column["p25"] == pytest.approx(-8.5e307)
    assert column["p75"] == pytest.approx(8.5e307)
    assert all(math.isfinite(column[f"p{p:02d}"]) for p in stats.PERCENTILES)


def test_percentiles_of_a_large_column_come_from_a_sample_within_a_tenth_percent() -> None:
    values = np.random.default_rng(3).normal(size=2_500_000)
    document = stats.compute(pl.DataFrame({"v": values}), {"v": "float64"}, rows=values.size)
    assert document["sampled_every"] == 3
    row = stats.statistics_frame(document).row(0, named=True)
    for p in stats.PERCENTILES:
        rank = float(np.mean(values <= row[f"p{p:02d}"]))
        assert abs(rank - p / 100) < 0.001
    assert row["mean"] == pytest.approx(values.mean())


def test_statistics_are_stored_per_version_and_time_travel(store: mfs.FeatureStore) -> None:
    fg = group(store, [])
    fg.insert(rows([10, 20, 30]))
    first_commit = fg.history()[-1].timestamp
    fg.insert(rows([100, 200], start=10))
    fg.insert(rows([1000], start=20))
    folder = store.root / "feature_groups" / "people" / "v1.quality" / "statistics"
    # the first batch was the whole version; the small appends left theirs to a request
    assert sorted(p.name for p in folder.iterdir()) == ["1.json"]
    age = pl.col("column") == "age"
    assert fg.statistics(version=1).filter(age)["mean"].item() == 20.0
    assert fg.statistics(version=2).filter(age)["mean"].item() == 72.0
    assert fg.statistics().filter(age)["max"].item() == 1000.0
    assert fg.statistics(as_of=first_commit).filter(age)["mean"].item() == 20.0
    assert fg.histogram("age", version=1)["count"].sum() == 3
    assert sorted(p.name for p in folder.iterdir()) == ["1.json", "2.json", "3.json"]
    # the old version's data files are gone: its statistics are still read
    for path in (fg.path).glob("*.parquet"):
        path.unlink()
    assert fg.statistics(version=2).filter(age)["count"].item() == 5
    with pytest.raises(mfs.NotFoundError):
        fg.histogram("age", version=2, bins=3)
    with pytest.raises(mfs.NotFoundError, match="no table version 9"):
        fg.statistics(version=9)


def test_commits_store_their_statistics_and_a_vacuum_keeps_the_rest(
    store: mfs.FeatureStore,
) -> None:
    fg = group(store, [])
    fg.insert(rows([10, 20, 30]))  # 1: the batch is the version
    fg.insert(rows([40, 50, 60], start=10))  # 2: an append of half the version
    fg.insert(rows([99, 98, 97, 96], start=0))  # 3: an upsert (3 updated, 1 inserted)
    fg.delete_rows([{"uid": u} for u in (0, 1, 2, 3)])  # 4
    fg.append_features({"y": "float64"})  # 5: copied from 4, with y null
    fg.insert(rows([1, 2, 3], start=20).with_columns(y=pl.lit(0.5)))  # 6
    fg.compact()  # 7: copied from 6
    folder = store.root / "feature_groups" / "people" / "v1.quality" / "statistics"

    def expected(version: int) -> dict[str, Any]:
        # a commit summarises the columns the group had then
        schema = {c: t for c, t in fg.definition.schema.items() if c != "y" or version >= 5}
        frame = fg.scan(version=version).select(list(schema))
        return stats.compute(frame, schema, rows=fg.count(version))

    def check(version: int, document: dict[str, Any] | None, want: dict[str, Any]) -> None:
        assert document is not None, version
        # the same rows in another order (a compaction) may move a sum's last bit
        assert_frame_equal(
            stats.statistics_frame(document), stats.statistics_frame(want), rel_tol=1e-12
        )
        assert (document["histograms"], document["table_version"]) == (want["histograms"], version)

    assert sorted(int(p.stem) for p in folder.iterdir()) == [1, 2, 3, 4, 5, 6, 7]
    for version in range(1, 8):
        check(version, stats.read_document(folder / f"{version}.json"), expected(version))
    assert fg.read(version=1)["y"].to_list() == [None] * 3
    # a one-row append into six rows is left to a request (or a vacuum), and so is the
    # compaction after it, which has no statistics to copy
    fg.insert(rows([7], start=50))  # 8
    fg.compact()  # 9
    assert not (folder / "8.json").exists()
    assert not (folder / "9.json").exists()
    want = expected(8)
    fg.vacuum(retention=timedelta(0))  # deletes the files of version 8 (9 compacted them)
    with pytest.raises(mfs.NotFoundError, match="was vacuumed"):
        fg.read(version=8)
    check(8, stats.read_document(folder / "8.json"), want)
    assert not (folder / "9.json").exists()  # still readable: left to a request
    assert fg.statistics(version=8).equals(stats.statistics_frame(want))


def test_statistics_missing_for_a_version_are_computed_once_and_stored(
    store: mfs.FeatureStore,
) -> None:
    fg = store.create_feature_group(
        "later", primary_keys=["uid"], event_time="ts", schema=SCHEMA, statistics=False
    )
    fg.insert(rows([5, 7]))
    path = store.root / "feature_groups" / "later" / "v1.quality" / "statistics" / "1.json"
    assert not path.exists()
    assert fg.statistics(version=1).filter(pl.col("column") == "age")["mean"].item() == 6.0
    assert path.exists()
    assert json.loads(path.read_text())["table_version"] == 1
    # the empty version 0 has statistics too
    assert fg.statistics(version=0)["count"].to_list() == [0] * len(SCHEMA)


def test_histogram_with_other_bins_and_bad_columns(store: mfs.FeatureStore) -> None:
    fg = group(store, [])
    ages = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    fg.insert(rows(ages))
    check_histogram(fg.histogram("age", bins=4), [float(a) for a in ages], bins=4)
    with pytest.raises(mfs.SchemaError, match="not numeric"):
        fg.histogram("code")
    with pytest.raises(mfs.NotFoundError, match="no column 'nope'"):
        fg.histogram("nope")
    with pytest.raises(mfs.DefinitionError, match="positive integer"):
        fg.histogram("age", bins=0)


def test_psi_on_a_known_case() -> None:
    a = pl.DataFrame({"v": np.arange(100, dtype=np.float64)})
    b = pl.DataFrame({"v": np.arange(50, dtype=np.float64)})
    # a's deciles cut it into ten bins of 10%; b fills the lower five with 20% each
    expected = 5 * (0.2 - 0.1) * math.log(0.2 / 0.1) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    got = stats.psi(a, b, {"v": "float64"}, rows=100)["v"]
    assert got == pytest.approx(expected)
    assert stats.psi(a, a, {"v": "float64"}, rows=100)["v"] == 0.0
    empty = pl.DataFrame({"v": [None]}, schema={"v": pl.Float64})
    assert stats.psi(a, empty, {"v": "float64"}, rows=100)["v"] is None


def test_psi_matches_numpy_on_random_samples() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=5000), rng.normal(0.3, 1.2, size=4000)
    cuts = np.unique(np.quantile(a, np.arange(1, 10) / 10))
    fa = np.bincount(np.searchsorted(cuts, a, side="left"), minlength=cuts.size + 1) / a.size
    fb = np.bincount(np.searchsorted(cuts, b, side="left"), minlength=cuts.size + 1) / b.size
    fa, fb = np.maximum(fa, 1e-4), np.maximum(fb, 1e-4)
    expected = float(np.sum((fb - fa) * np.log(fb / fa)))
    got = stats.psi(pl.DataFrame({"v": a}), pl.DataFrame({"v": b}), {"v": "float64"}, rows=5000)
    assert got["v"] == pytest.approx(expected)


def test_compare_statistics_between_versions(store: mfs.FeatureStore) -> None:
    fg = group(store, [])
    fg.insert(rows(list(range(100)), scores=[1.0] * 100))
    fg.insert(rows([None] * 100, start=100, scores=[3.0] * 100))
    table = fg.compare_statistics(1, 2)
    assert table.columns == ["column", "psi", "mean_change", "null_fraction_change"]
    assert table["column"].to_list() == ["uid", "age", "score"]
    by = {r["column"]: r for r in table.iter_rows(named=True)}
    assert by["age"]["mean_change"] == 0.0
    assert by["age"]["null_fraction_change"] == 0.5
    assert by["age"]["psi"] == 0.0
    assert by["score"]["mean_change"] == 1.0
    assert by["score"]["psi"] > 1
    assert by["uid"]["mean_change"] == pytest.approx(50.0)


# -- command line and report -------------------------------------------------------------------


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, int] = {}
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag == "section":
            self._section = found.get("data-column")
            self.sections[self._section or ""] = 0
        if tag == "rect" and self._section is not None:
            self.sections[self._section] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None


@pytest.fixture
def reported_lake(store: mfs.FeatureStore) -> mfs.FeatureStore:
    fg = group(store, [KINDS_ON_AGE[1]], "quarantine")
    fg.insert(rows([1, 2, 3, -1], codes=["a", "b", "a", "c"]))
    fg.insert(rows([4, 5], start=10))
    return store


def test_cli_groups_stats(
    reported_lake: mfs.FeatureStore, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = ["--lake", str(reported_lake.root)]
    assert main(["groups", "stats", "people", "--table-version", "1", "--json", *lake]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["table_version"] == 1
    age = next(r for r in doc["statistics"] if r["column"] == "age")
    assert (age["count"], age["mean"]) == (3, 2.0)
    assert main(["groups", "stats", "people", *lake]) == 0
    out = capsys.readouterr().out
    assert "table version 2: 5 rows" in out
    assert out.splitlines()[1].split()[:4] == ["COLUMN", "TYPE", "COUNT", "NULLS"]


def test_cli_groups_report_is_one_offline_page(
    reported_lake: mfs.FeatureStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    code = main(
        ["groups", "report", "people", "--lake", str(reported_lake.root), "--out", str(out)]
    )
    assert code == 0
    assert str(out) in capsys.readouterr().out
    text = out.read_text()
    page = _Page()
    page.feed(text)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    assert not any(k in ("src", "href") for _, attrs in page.tags for k in attrs)
    assert "url(" not in text
    assert "@import" not in text
    # one chart per feature: 20 histogram bars for each numeric one, a bar per value else
    assert page.sections == {"age": 20, "score": 20, "code": 3}
    assert sum(1 for tag, _ in page.tags if tag == "svg") == 3
    assert "age_between" in text
    history = [attrs.get("class") for tag, attrs in page.tags if tag == "tr"]
    assert history.count("failed") == 1
    assert history.count("passed") == 1


@pytest.mark.slow
def test_report_renders_in_headless_chromium(
    reported_lake: mfs.FeatureStore, tmp_path: Path
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    out = tmp_path / "report.html"
    assert (
        main(["groups", "report", "people", "--lake", str(reported_lake.root), "--out", str(out)])
        == 0
    )
    shot = tmp_path / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        # a report must load nothing: any request would fail
        "--proxy-server=127.0.0.1:9",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    page = _Page()
    page.feed(dom)
    assert page.sections == {"age": 20, "score": 20, "code": 3}
    assert "Validation history" in dom
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,1600", out.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    # a rendered page with charts is not a blank image
    assert len(png) > 20_000


def test_quality_benchmark_runs_and_checks_every_engine(tmp_path: Path) -> None:
    pytest.importorskip("pandera.polars", reason="the bench extra (pandera) is not installed")
    pytest.importorskip("dataframely", reason="the bench extra (dataframely) is not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_quality
    finally:
        sys.path.pop(0)
    clean, bad = bench_quality.make_data(3000, seed=1)
    results = bench_quality.bench_validation(clean, bad, repeats=1)
    assert {r["engine"] for r in results} == {
        "microfs",
        "pandera (polars)",
        "dataframely validate",
        "dataframely filter",
    }
    inserts = bench_quality.bench_insert(clean, 1, tmp_path)
    assert [r["benchmark"] for r in inserts] == ["insert"] * 2 + [
        "append 1,000 rows onto 3,000"
    ] * 2
    read = bench_quality.bench_statistics(clean, 1, tmp_path)
    assert read[-1]["benchmark"] == "read old version's statistics"
