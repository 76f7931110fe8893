"""Malformed arguments into every public method: only MicroFSError subclasses come out.

Hypothesis draws values of the wrong shape (None, numbers, text, bytes, lists, dicts,
frames, datetimes without a zone ...) for one argument of one public call at a time,
the other arguments being valid; whatever the call does, it raises a MicroFSError or
succeeds, never a raw TypeError, AttributeError, KeyError or a panic from below.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microfs import FeatureStore, MicroFSError
from tests.test_hardening import small_lake

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
    st.just(datetime(2024, 1, 1)),
    st.just(T0),
    st.just(timedelta(days=-1)),
    st.just(pl.DataFrame({"x": [1]})),
    st.just(object()),
)

Call = Callable[[FeatureStore, Any], object]

CALLS: dict[str, Call] = {
    "create_feature_group name": lambda fs, v: fs.create_feature_group(
        v, primary_keys=["k"], schema={"k": "int64"}
    ),
    "create_feature_group primary_keys": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=v, schema={"k": "int64"}
    ),
    "create_feature_group event_time": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=["k"], event_time=v, schema={"k": "int64", "t": "datetime"}
    ),
    "create_feature_group schema": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=["k"], schema=v
    ),
    "create_feature_group schema type": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=["k"], schema={"k": "int64", "v": v}
    ),
    "create_feature_group online_keys": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=["k"], schema={"k": "int64"}, online_keys=v
    ),
    "create_feature_group version": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=["k"], schema={"k": "int64"}, version=v
    ),
    "create_feature_group description": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=["k"], schema={"k": "int64"}, description=v
    ),
    "create_feature_group feature_descriptions": lambda fs, v: fs.create_feature_group(
        "g", primary_keys=["k"], schema={"k": "int64", "a": "int64"}, feature_descriptions=v
    ),
    "get_feature_group": lambda fs, v: fs.get_feature_group(v),
    "get_feature_group version": lambda fs, v: fs.get_feature_group("labels", v),
    "get_or_create_feature_group version": lambda fs, v: fs.get_or_create_feature_group(
        "other", version=v, primary_keys=["k"], schema={"k": "int64"}
    ),
    "feature_group_versions": lambda fs, v: fs.feature_group_versions(v),
    "get_feature_view": lambda fs, v: fs.get_feature_view(v),
    "get_feature_view version": lambda fs, v: fs.get_feature_view("view", v),
    "create_feature_view label_fg": lambda fs, v: fs.create_feature_view(
        "w", label_fg=v, label_col="y"
    ),
    "create_feature_view label_col": lambda fs, v: fs.create_feature_view(
        "w", label_fg="labels", label_col=v
    ),
    "create_feature_view joins": lambda fs, v: fs.create_feature_view(
        "w", label_fg="labels", label_col="y", joins=v
    ),
    "create_feature_view join": lambda fs, v: fs.create_feature_view(
        "w", label_fg="labels", label_col="y", joins=[v]
    ),
    "create_feature_view on": lambda fs, v: fs.create_feature_view(
        "w", label_fg="labels", label_col="y", joins=[{"fg_name": "profile", "on": v}]
    ),
    "create_feature_view features": lambda fs, v: fs.create_feature_view(
        "w",
        label_fg="labels",
        label_col="y",
        joins=[{"fg_name": "profile", "on": ["user_id"], "features": v}],
    ),
    "create_feature_view prefix": lambda fs, v: fs.create_feature_view(
        "w",
        label_fg="labels",
        label_col="y",
        joins=[{"fg_name": "profile", "on": ["user_id"], "prefix": v}],
    ),
    "create_feature_view max_age": lambda fs, v: fs.create_feature_view(
        "w",
        label_fg="labels",
        label_col="y",
        joins=[{"fg_name": "profile", "on": ["user_id"], "max_age": v}],
    ),
    "create_feature_view transforms": lambda fs, v: fs.create_feature_view(
        "w", label_fg="labels", label_col="y", transforms=v
    ),
    "create_feature_view transform": lambda fs, v: fs.create_feature_view(
        "w", label_fg="labels", label_col="y", transforms=[v]
    ),
    "insert": lambda fs, v: fs.get_feature_group("profile").insert(v),
    "insert column": lambda fs, v: fs.get_feature_group("profile").insert(
        pl.DataFrame({"user_id": [9], "ts": [T0], "age": [v]}, strict=False)
    ),
    "scan version": lambda fs, v: fs.get_feature_group("profile").scan(version=v),
    "scan as_of": lambda fs, v: fs.get_feature_group("profile").scan(as_of=v),
    "read version": lambda fs, v: fs.get_feature_group("profile").read(version=v),
    "count": lambda fs, v: fs.get_feature_group("profile").count(v),
    "resolve_version": lambda fs, v: fs.get_feature_group("profile").resolve_version(version=v),
    "extent": lambda fs, v: fs.get_feature_group("profile").extent(v),
    "added_since": lambda fs, v: fs.get_feature_group("profile").added_since(v),
    "vacuum retention": lambda fs, v: fs.get_feature_group("profile").vacuum(v, dry_run=True),
    "training_frame start": lambda fs, v: fs.get_feature_view("view").training_frame(start=v),
    "training_frame end": lambda fs, v: fs.get_feature_view("view").training_frame(end=v),
    "training_frame table_versions": lambda fs, v: (
        fs.get_feature_view("view").training_frame(table_versions=v).collect()
    ),
    "training_frame window": lambda fs, v: fs.get_feature_view("view").training_frame(window=v),
    "fit": lambda fs, v: fs.get_feature_view("view").fit(v),
    "transform": lambda fs, v: fs.get_feature_view("view").transform(v),
    "get_training_data start": lambda fs, v: fs.get_feature_view("view").get_training_data(start=v),
    "train_test_split test_size": lambda fs, v: fs.get_feature_view("view").train_test_split(
        test_size=v
    ),
    "train_test_split split": lambda fs, v: fs.get_feature_view("view").train_test_split(split=v),
    "train_test_split seed": lambda fs, v: fs.get_feature_view("view").train_test_split(
        split="random", seed=v
    ),
    "create_training_dataset test_size": lambda fs, v: fs.get_feature_view(
        "view"
    ).create_training_dataset(test_size=v),
    "create_training_dataset seed": lambda fs, v: fs.get_feature_view(
        "view"
    ).create_training_dataset(test_size=0.5, split="random", seed=v),
    "create_training_dataset split": lambda fs, v: fs.get_feature_view(
        "view"
    ).create_training_dataset(test_size=0.5, split=v),
    "create_training_dataset start": lambda fs, v: fs.get_feature_view(
        "view"
    ).create_training_dataset(start=v),
    "get_training_dataset": lambda fs, v: fs.get_feature_view("view").get_training_dataset(v),
    "training_dataset_record": lambda fs, v: fs.get_feature_view("view").training_dataset_record(v),
    "get_batch_data spine": lambda fs, v: (
        fs.get_feature_view("view").get_batch_data(spine=v).collect()
    ),
    # text would be a valid path (written in the working folder): only the other shapes
    "write_training_frame path": lambda fs, v: fs.get_feature_view("view").write_training_frame(
        None if isinstance(v, str) else v, window=timedelta(days=1)
    ),
    "get_inference_vector entity": lambda fs, v: fs.get_feature_view("view").get_inference_vector(
        v
    ),
    "get_inference_vector key": lambda fs, v: fs.get_feature_view("view").get_inference_vector(
        {"user_id": v}
    ),
    "get_inference_vector passed_features": lambda fs, v: fs.get_feature_view(
        "view"
    ).get_inference_vector({"user_id": 1}, passed_features=v),
    "get_inference_vector passed value": lambda fs, v: fs.get_feature_view(
        "view"
    ).get_inference_vector({"user_id": 1}, passed_features={"score": v}),
    "get_inference_vector return_type": lambda fs, v: fs.get_feature_view(
        "view"
    ).get_inference_vector({"user_id": 1}, return_type=v),
    "get_inference_vectors entities": lambda fs, v: fs.get_feature_view(
        "view"
    ).get_inference_vectors(v),
    "get_inference_vectors key": lambda fs, v: fs.get_feature_view("view").get_inference_vectors(
        [{"user_id": v}]
    ),
    "get_inference_vectors passed_features": lambda fs, v: fs.get_feature_view(
        "view"
    ).get_inference_vectors([{"user_id": 1}], passed_features=v),
}


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    return small_lake(tmp_path_factory.mktemp("fuzz") / "lake")


@pytest.mark.parametrize("name", list(CALLS))
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=junk)
def test_malformed_arguments_raise_only_microfs_errors(
    fuzz_store: FeatureStore, tmp_path: Path, name: str, value: Any
) -> None:
    try:
        CALLS[name](fuzz_store, value)
    except MicroFSError:
        pass
    except BaseException as exc:  # a panic from below included
        if isinstance(exc, KeyboardInterrupt):
            raise
        pytest.fail(f"{name}({value!r}) raised {type(exc).__name__}: {exc}")
