"""The day-two API: what a data scientist hits after the demo (issue 13, items 1-10)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microfs as mfs
from microfs import cli
from microfs.errors import (
    AlreadyExistsError,
    DefinitionError,
    NotFoundError,
    SchemaError,
    TimestampError,
)
from microfs.progress import ProgressEvent
from microfs.schema import aware_utc
from tests.helpers import ACTIVITY_KEYS, ACTIVITY_SCHEMA, T0, activity_rows, lake_files

ROOT = Path(__file__).resolve().parents[1]
TIME = pl.Datetime("us", "UTC")


def _tx_store(fs: mfs.FeatureStore) -> None:
    """The issue's shape: tx(tx_id, customer_id, ts, amount, fraud) joined on customer_id."""
    fs.create_feature_group(
        "tx",
        primary_keys=["tx_id"],
        event_time="ts",
        schema={
            "tx_id": "int64",
            "customer_id": "int64",
            "ts": "datetime64[ns, utc]",
            "amount": "float64",
            "fraud": "int64",
        },
        online_keys=["tx_id"],
    )
    fs.create_feature_group(
        "customer",
        primary_keys=["customer_id"],
        event_time="ts",
        schema={"customer_id": "int64", "ts": "datetime64[ns, utc]", "country": "string"},
        online_keys=["customer_id"],
    )
    fs.get_feature_group("tx").insert(
        pl.DataFrame(
            {
                "tx_id": [1, 2, 3],
                "customer_id": [10, 11, 10],
                "ts": [T0 + timedelta(hours=h) for h in (1, 2, 3)],
                "amount": [5.0, 7.0, 9.0],
                "fraud": [0, 1, 0],
            },
            schema_overrides={"ts": TIME},
        )
    )
    fs.get_feature_group("customer").insert(
        pl.DataFrame(
            {"customer_id": [10, 11], "ts": [T0, T0], "country": ["US", "DE"]},
            schema_overrides={"ts": TIME},
        )
    )


# -- 1. the README example runs as printed and trains LightGBM --------------------------------


def test_readme_usage_runs_as_printed_and_trains_lightgbm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Usage\n\n```python\n(.*?)```", text, re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    X_train = namespace["X_train"]
    assert all(dtype.is_numeric() for dtype in X_train.dtypes)
    prediction = namespace["model"].predict(namespace["vec"].reshape(1, -1))
    assert prediction.shape == (1,)
    assert 0.0 <= prediction[0] <= 1.0
    assert (tmp_path / "lake" / "feature_views" / "recommendation_model_v1").is_dir()
    # printed as documented: the table version, not the definition version
    assert "InsertResult(table_version=1" in text


def test_numpy_vector_with_a_text_feature_is_a_clear_error(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    fv = fs.create_feature_view(
        "fraud",
        label_fg="tx",
        label_col="fraud",
        joins=[{"fg_name": "customer", "on": "customer_id"}],
    )
    fv.get_training_data(compute_params=True)
    entity = {"tx_id": 1, "customer_id": 10}
    assert fv.get_inference_vector(entity) == [5.0, "US"]
    with pytest.raises(DefinitionError, match=r"\['country'\].*label_encode"):
        fv.get_inference_vector(entity, return_type="numpy")
    with pytest.raises(DefinitionError, match="country"):
        fv.get_inference_vectors([entity], return_type="numpy")


# -- 2. schemas from Polars, Arrow, pandas; or from the first insert ----------------------------


@pytest.mark.parametrize(
    "spelling", ["dict", "pl.Schema", "pa.Schema", "pandas dtypes", "dict(pandas dtypes)", "frame"]
)
def test_schema_spellings(tmp_path: Path, spelling: str) -> None:
    rows = activity_rows([1, 2], [0, 1])
    pdf = rows.to_pandas()
    schema: Any = {
        "dict": ACTIVITY_SCHEMA,
        "pl.Schema": rows.schema,
        "pa.Schema": rows.to_arrow().schema,
        "pandas dtypes": pdf.dtypes,
        "dict(pandas dtypes)": dict(pdf.dtypes),
        "frame": pdf,
    }[spelling]
    fs = mfs.FeatureStore(tmp_path / "lake")
    fg = fs.create_feature_group(
        "user_activity", primary_keys=ACTIVITY_KEYS, event_time="timestamp", schema=schema
    )
    assert dict(fg.definition.schema) == {
        "user_id": "int64",
        "item_id": "int64",
        "timestamp": "datetime",
        "duration_sec": "float64",
        "conversion": "int64",
    }
    assert fg.insert(pdf).rows_inserted == 2


def test_schema_that_is_no_schema_is_refused(store: mfs.FeatureStore) -> None:
    with pytest.raises(SchemaError, match="cannot read a schema from a int"):
        store.create_feature_group("g", primary_keys=["k"], schema=3)


def test_first_insert_defines_the_schema(store: mfs.FeatureStore) -> None:
    fg = store.create_feature_group(
        "user_activity", primary_keys=ACTIVITY_KEYS, event_time="timestamp"
    )
    assert store.list_feature_groups() == []  # nothing stored before the first batch
    with pytest.raises(NotFoundError, match="first insert defines"):
        fg.read()
    naive = activity_rows([1], [0]).with_columns(pl.col("timestamp").dt.replace_time_zone(None))
    with pytest.raises(TimestampError):
        fg.insert(naive)
    with pytest.raises(SchemaError, match="lacks the key or event-time column 'item_id'"):
        fg.insert(activity_rows([1], [0]).drop("item_id"))
    assert store.list_feature_groups() == []  # bad first batches wrote nothing
    result = fg.insert(activity_rows([1, 2], [0, 1]).to_arrow())
    assert (result.table_version, result.rows_inserted) == (1, 2)
    stored = store.get_feature_group("user_activity")
    assert stored.definition.schema["timestamp"] == "datetime"
    assert stored.read().height == 2


# -- 3. label features: join keys are keys ---------------------------------------------------


def test_join_on_columns_are_not_features_by_default(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    joins = [{"fg_name": "customer", "on": ["customer_id"]}]
    fv = fs.create_feature_view("fraud", label_fg="tx", label_col="fraud", joins=joins)
    X, y = fv.get_training_data()
    assert X.columns == ["amount", "country"]
    assert X["country"].to_list() == ["US", "DE", "US"]
    assert fv.get_inference_vector({"tx_id": 2, "customer_id": 11}) == [7.0, "DE"]
    assert fv.definition.to_dict()["label_features"] == ["amount"]

    explicit = fs.create_feature_view(
        "fraud_fk",
        label_fg="tx",
        label_col="fraud",
        joins=joins,
        label_features=["customer_id", "amount"],
    )
    assert explicit.get_training_data()[0].columns == ["customer_id", "amount", "country"]
    with pytest.raises(DefinitionError, match="'fraud'.*not a feature"):
        fs.create_feature_view("bad", label_fg="tx", label_col="fraud", label_features=["fraud"])


def test_a_definition_without_label_features_keeps_the_old_rule(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    joins = [{"fg_name": "customer", "on": ["customer_id"]}]
    fs.create_feature_view("fraud", label_fg="tx", label_col="fraud", joins=joins)
    # a definition written before views stored label_features
    path = fs.root / "feature_views" / "fraud" / "v1.json"
    data = json.loads(path.read_text())
    del data["label_features"]
    path.write_text(json.dumps(data))
    old = mfs.FeatureStore(fs.root).get_feature_view("fraud")
    assert old.get_training_data()[0].columns == ["customer_id", "amount", "country"]


# -- 4. servability at creation, get_or_create with other options ------------------------------


def test_unservable_view_is_refused_at_creation(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    fs.create_feature_group(
        "card",
        primary_keys=["customer_id"],
        event_time="ts",
        schema={"customer_id": "int64", "card_id": "int64", "ts": "datetime", "limit": "float64"},
        online_keys=["card_id"],
    )
    before = lake_files(fs.root)
    with pytest.raises(DefinitionError, match=r"served by online_keys \['card_id'\]: create a "):
        fs.create_feature_view(
            "v", label_fg="tx", label_col="fraud", joins=[{"fg_name": "card", "on": "customer_id"}]
        )
    assert lake_files(fs.root) == before
    # a group without online keys makes an offline-only view: allowed
    fs.create_feature_group(
        "risk",
        primary_keys=["customer_id"],
        event_time="ts",
        schema={"customer_id": "int64", "ts": "datetime", "score": "float64"},
    )
    offline = fs.create_feature_view(
        "offline",
        label_fg="tx",
        label_col="fraud",
        joins=[{"fg_name": "risk", "on": "customer_id"}],
    )
    assert offline.get_training_data()[0].columns == ["amount", "score"]
    with pytest.raises(DefinitionError, match="online_keys"):
        offline.get_inference_vector({"tx_id": 1, "customer_id": 10})


def test_get_or_create_feature_group_with_other_options_names_them(
    store: mfs.FeatureStore,
) -> None:
    options: dict[str, Any] = {
        "primary_keys": ACTIVITY_KEYS,
        "event_time": "timestamp",
        "schema": ACTIVITY_SCHEMA,
    }
    first = store.get_or_create_feature_group("user_activity", **options)
    again = store.get_or_create_feature_group("user_activity", **options)
    assert again.definition == first.definition
    with pytest.raises(AlreadyExistsError, match=r"online_keys: stored None, given \['user_id'\]"):
        store.get_or_create_feature_group("user_activity", **options, online_keys=["user_id"])
    changed = {**ACTIVITY_SCHEMA, "duration_sec": "int64"}
    with pytest.raises(AlreadyExistsError, match="duration_sec: stored 'float64', given 'int64'"):
        store.get_or_create_feature_group("user_activity", **{**options, "schema": changed})
    with pytest.raises(AlreadyExistsError, match="version 2"):
        store.get_or_create_feature_group("user_activity", **{**options, "event_time": None})


def test_get_or_create_feature_view(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    joins = [{"fg_name": "customer", "on": ["customer_id"]}]
    made = fs.get_or_create_feature_view("fraud", label_fg="tx", label_col="fraud", joins=joins)
    # a newer group version does not count as a difference: the view pins its own
    fs.create_feature_group(
        "customer",
        primary_keys=["customer_id"],
        event_time="ts",
        schema={"customer_id": "int64", "ts": "datetime", "country": "string", "x": "int64"},
        online_keys=["customer_id"],
        version=2,
    )
    got = fs.get_or_create_feature_view("fraud", label_fg="tx", label_col="fraud", joins=joins)
    assert got.definition == made.definition
    with pytest.raises(AlreadyExistsError, match="transforms: stored"):
        fs.get_or_create_feature_view(
            "fraud",
            label_fg="tx",
            label_col="fraud",
            joins=joins,
            transforms=[{"type": "scale", "column": "amount"}],
        )


# -- 5. deleting and evolving ----------------------------------------------------------------


def test_delete_rows_by_key_and_by_key_and_time(activity: mfs.FeatureGroup) -> None:
    activity.insert(activity_rows([1, 1, 2, 3], [0, 1, 0, 0]))
    before = activity.table_version()
    result = activity.delete_rows([{"user_id": 1, "item_id": 100}])
    assert (result.table_version, result.rows_deleted, result.mode) == (before + 1, 2, "delete")
    assert sorted(activity.read()["user_id"].to_list()) == [2, 3]
    keyed_at = pd.DataFrame(
        {"user_id": [2, 3], "item_id": [100, 100], "timestamp": [T0, T0 + timedelta(hours=5)]}
    )
    assert activity.delete_rows(keyed_at).rows_deleted == 1  # user 3 has no row at +5h
    assert activity.read()["user_id"].to_list() == [3]
    nothing = activity.delete_rows([{"user_id": 99, "item_id": 1}])
    assert nothing.rows_deleted == 0
    assert activity.read(version=before)["user_id"].len() == 4  # time travel still works
    with pytest.raises(SchemaError, match="primary key column"):
        activity.delete_rows([{"user_id": 3}])
    with pytest.raises(SchemaError, match="got columns"):
        activity.delete_rows(pl.DataFrame({"user_id": [3], "item_id": [100], "conversion": [0]}))


def test_deleted_rows_leave_the_online_store(store: mfs.FeatureStore) -> None:
    fg = store.create_feature_group(
        "profile",
        primary_keys=["user_id"],
        event_time="timestamp",
        schema={"user_id": "int64", "timestamp": "datetime", "age": "int64"},
        online_keys=["user_id"],
    )
    fg.insert(pl.DataFrame({"user_id": [1, 2], "timestamp": [T0, T0], "age": [30, 40]}))
    table = store.online.table(fg)
    assert table.get((1,), ["age"]) == (30,)
    fg.delete_rows(pl.DataFrame({"user_id": [1]}))
    assert table.get((1,), ["age"]) is None
    assert table.get((2,), ["age"]) == (40,)


def test_append_features_evolves_in_place_and_old_views_keep_their_columns(
    tmp_path: Path,
) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    joins = [{"fg_name": "customer", "on": ["customer_id"]}]
    old = fs.create_feature_view("fraud", label_fg="tx", label_col="fraud", joins=joins)
    old.get_training_data(compute_params=True)
    customer = fs.get_feature_group("customer")
    before = customer.table_version()
    change = customer.append_features({"segment": "string", "score": "float64"})
    assert change.table_version == before + 1
    assert customer.version == 1  # same definition version
    read = customer.read()
    assert read.columns == ["customer_id", "ts", "country", "segment", "score"]
    assert read["score"].null_count() == 2
    customer.insert(
        pl.DataFrame(
            {
                "customer_id": [10],
                "ts": [T0 + timedelta(hours=2)],
                "country": ["US"],
                "segment": ["gold"],
                "score": [0.5],
            },
            schema_overrides={"ts": TIME},
        )
    )
    customer.insert(  # a batch of the old shape: the new columns are null
        pl.DataFrame(
            {"customer_id": [12], "ts": [T0], "country": ["FR"]}, schema_overrides={"ts": TIME}
        )
    )
    assert customer.read().filter(pl.col("customer_id") == 12)["segment"].to_list() == [None]
    reopened = mfs.FeatureStore(fs.root)
    assert reopened.get_feature_group("customer").definition.appended == ("segment", "score")
    view = reopened.get_feature_view("fraud")
    assert view.get_training_data()[0].columns == ["amount", "country"]
    assert view.get_inference_vector({"tx_id": 1, "customer_id": 10}) == [5.0, "US"]
    new = reopened.create_feature_view("fraud2", label_fg="tx", label_col="fraud", joins=joins)
    X, _ = new.get_training_data(compute_params=True)
    assert X.columns == ["amount", "country", "segment", "score"]
    assert X["score"].to_list() == [None, None, 0.5]  # tx 3 at +3h sees the +2h row
    assert new.get_inference_vector({"tx_id": 1, "customer_id": 10}) == [5.0, "US", "gold", 0.5]
    with pytest.raises(SchemaError, match="already"):
        customer.append_features({"country": "string"})


def test_delete_feature_view_and_group(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    joins = [{"fg_name": "customer", "on": ["customer_id"]}]
    fv = fs.create_feature_view("fraud", label_fg="tx", label_col="fraud", joins=joins)
    fv.create_training_dataset()
    with pytest.raises(DefinitionError, match="'fraud' v1 and its training datasets \\[1\\]"):
        fs.delete_feature_group("customer")
    assert fs.delete_feature_view("fraud") == [1]
    assert fs.list_feature_views() == []
    assert fs.delete_feature_group("customer") == [1]
    assert fs.list_feature_groups() == ["tx"]
    assert not (fs.root / "feature_groups" / "customer").exists()
    with pytest.raises(NotFoundError, match="not found"):
        fs.delete_feature_group("customer")
    fs.create_feature_view("solo", label_fg="tx", label_col="fraud")
    assert fs.delete_feature_group("tx", version=1, force=True) == [1]
    with pytest.raises(NotFoundError, match="'tx' not found"):
        fs.get_feature_view("solo")


# -- 6. definition version and table version named apart -------------------------------------


def test_table_version_is_named_apart(activity: mfs.FeatureGroup) -> None:
    result = activity.insert(activity_rows([1], [0]))
    assert result.table_version == result.version == 1
    assert activity.compact().table_version == activity.table_version()


def test_cli_version_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"microfs {mfs.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["groups", "head", "--help"])
    text = capsys.readouterr().out
    assert "--table-version N" in text
    assert "definition version" in text


# -- 7. keyword-only options in one order ----------------------------------------------------

FAMILY = [
    "training_frame",
    "write_training_frame",
    "get_training_data",
    "train_test_split",
    "create_training_dataset",
    "get_batch_data",
    "get_inference_vector",
    "get_inference_vectors",
]
ORDER = [
    "start",
    "end",
    "test_size",
    "split",
    "seed",
    "compute_params",
    "table_versions",
    "window",
    "spine",
    "passed_features",
    "return_type",
    "strict",
    "progress",
    "engine",
]


BY_POSITION = {  # the options the design shows by position: get_batch_data(start, end), ...
    "training_frame": ("start", "end"),
    "get_batch_data": ("start", "end"),
    "get_inference_vector": ("passed_features", "return_type", "strict"),
    "get_inference_vectors": ("passed_features", "return_type", "strict"),
}


@pytest.mark.parametrize("method", FAMILY)
def test_options_are_keyword_only_and_in_one_order(method: str) -> None:
    import inspect

    parameters = list(inspect.signature(getattr(mfs.FeatureView, method)).parameters.values())
    options = [p for p in parameters if p.default is not inspect.Parameter.empty]
    assert options
    positional = [p.name for p in options if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == list(BY_POSITION.get(method, ()))
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY for p in options if p.name not in positional
    )
    names = [p.name for p in options]
    assert names == sorted(names, key=ORDER.index)


def test_the_designs_positional_calls(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    fv = fs.create_feature_view("fraud", label_fg="tx", label_col="fraud")
    fv.create_training_dataset(test_size=0.5)
    assert fv.get_batch_data(None, None).collect().equals(fv.get_batch_data().collect())
    assert fv.training_frame(None, None).collect().equals(fv.training_frame().collect())
    entity = {"tx_id": 1}
    assert fv.get_inference_vector(entity, None, "dict", False) == fv.get_inference_vector(
        entity, return_type="dict"
    )
    fs.create_feature_group("spare", primary_keys=["k"], schema={"k": "int64"})
    assert fs.delete_feature_group("spare", None, False) == [1]


def test_positional_options_are_refused(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    fv = fs.create_feature_view("fraud", label_fg="tx", label_col="fraud")
    with pytest.raises(TypeError):
        fv.create_training_dataset(0.2)  # type: ignore[misc]
    assert fv.create_training_dataset(test_size=0.5) == 1


# -- 8. pandas and Arrow everywhere, ISO strings ---------------------------------------------


def test_frames_from_pandas_and_arrow(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    joins = [{"fg_name": "customer", "on": ["customer_id"]}]
    fv = fs.create_feature_view(
        "fraud",
        label_fg="tx",
        label_col="fraud",
        joins=joins,
        transforms=[{"type": "label_encode", "column": "country"}],
    )
    fv.get_training_data(compute_params=True)
    requests = pl.DataFrame({"tx_id": [2, 1], "customer_id": [11, 10]})
    expected = fv.get_inference_vectors(requests)
    assert fv.get_inference_vectors(requests.to_pandas()).equals(expected)
    assert fv.get_inference_vectors(requests.to_arrow()).equals(expected)
    as_pandas = fv.get_inference_vectors(requests, return_type="pandas")
    assert isinstance(as_pandas, pd.DataFrame)
    assert as_pandas.to_numpy().tolist() == expected.to_numpy().tolist()
    matrix = fv.get_inference_vectors(requests, return_type="numpy")
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[7.0, 0.0], [5.0, 1.0]]
    passed = pd.DataFrame({"amount": [1.0, 2.0]})
    assert fv.get_inference_vectors(requests, passed_features=passed)["amount"].to_list() == [
        1.0,
        2.0,
    ]
    one = fv.get_inference_vector({"tx_id": 1, "customer_id": 10}, return_type="pandas")
    assert isinstance(one, pd.DataFrame)
    assert one.shape == (1, 2)
    spine = pd.DataFrame({"tx_id": [1], "ts": [T0 + timedelta(hours=9)], "customer_id": [11]})
    batch = fv.get_batch_data(spine=spine).collect()
    assert batch["country"].to_list() == [0]  # DE sorts before US


def test_iso_time_strings(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    fv = fs.create_feature_view("fraud", label_fg="tx", label_col="fraud")
    frame = fv.training_frame(start="2024-01-01T01:30:00Z", end="2024-01-01T03:00:00+00:00")
    assert frame.collect()["tx_id"].to_list() == [2]
    assert fv.get_training_data(end="2024-01-02")[0].height == 3
    tx = fs.get_feature_group("tx")
    now = datetime.now(timezone.utc).isoformat()
    assert tx.read(as_of=now).height == 3
    with pytest.raises(TimestampError, match="no time zone"):
        fv.training_frame(start="2024-01-01T01:00:00")
    with pytest.raises(TimestampError, match="not an ISO 8601 time"):
        fv.training_frame(end="yesterday")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=timezone.utc)),
        ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
        ("2024-03-01T10:00:00+02:00", datetime(2024, 3, 1, 8, tzinfo=timezone.utc)),
        ("2024-03-01T10:00:00.000001z", datetime(2024, 3, 1, 10, 0, 0, 1, tzinfo=timezone.utc)),
    ],
)
def test_aware_utc_reads_iso_strings(text: str, expected: datetime) -> None:
    assert aware_utc(text, what="as_of") == expected


# -- 9. progress -----------------------------------------------------------------------------


def test_progress_callbacks(tmp_path: Path) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    _tx_store(fs)
    events: list[ProgressEvent] = []
    fs.get_feature_group("tx").insert(
        pl.DataFrame(
            {
                "tx_id": [4],
                "customer_id": [10],
                "ts": [T0 + timedelta(hours=30)],
                "amount": [1.0],
                "fraud": [0],
            },
            schema_overrides={"ts": TIME},
        ),
        progress=events.append,
    )
    assert [(e.done, e.total, e.step) for e in events] == [
        (0, 3, "start"),
        (1, 3, "checked"),
        (2, 3, "ordered"),
        (3, 3, "written"),
    ]
    fv = fs.create_feature_view("fraud", label_fg="tx", label_col="fraud")
    events.clear()
    fv.create_training_dataset(progress=events.append)
    assert [e.step for e in events] == ["start", "joined", "split", "fitted", "recorded"]
    events.clear()
    rows = fv.write_training_frame(
        tmp_path / "t.parquet", window=timedelta(hours=12), progress=events.append
    )
    assert rows == 4
    windows = [e for e in events if e.step != "start"]
    assert len(windows) == events[0].total >= 2
    assert windows[-1].done == windows[-1].total
    with pytest.raises(DefinitionError, match="progress='yes'"):
        fv.create_training_dataset(progress="yes")  # type: ignore[arg-type]


def test_progress_true_draws_a_bar_on_stderr(
    activity: mfs.FeatureGroup, capsys: pytest.CaptureFixture[str]
) -> None:
    from microfs.progress import track

    with track(True, task="work", total=2) as step:
        step("a")
        step("b")
    assert "work" in capsys.readouterr().err
    activity.insert(activity_rows([1], [0]), progress=True)  # small: no bar
    assert capsys.readouterr().err == ""


# -- 10. edges -------------------------------------------------------------------------------


def test_import_does_not_need_fcntl() -> None:
    for source in (ROOT / "microfs").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+fcntl", source.read_text(), re.M), source
    code = (
        "import sys; sys.modules['fcntl'] = None; import microfs, tempfile, polars as pl; "
        "fs = microfs.FeatureStore(tempfile.mkdtemp()); "
        "fg = fs.create_feature_group('g', primary_keys=['k'], schema={'k': 'int64'}); "
        "print(fg.insert(pl.DataFrame({'k': [1]})).rows_inserted)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr


def test_store_refuses_a_folder_that_is_not_a_lake(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(NotFoundError, match=r"holds 1 entries \(notes.txt\) but no MicroFS lake"):
        mfs.FeatureStore(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    forced = mfs.FeatureStore(folder, create=True)
    assert mfs.FeatureStore(folder).root == forced.root  # now it is a lake
    empty = tmp_path / "empty"
    empty.mkdir()
    mfs.FeatureStore(empty)
    mfs.FeatureStore(tmp_path / "new" / "lake")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DefinitionError, match="is a file"):
        mfs.FeatureStore(tmp_path / "file")


def test_not_found_names_the_lake(store: mfs.FeatureStore) -> None:
    with pytest.raises(NotFoundError, match=re.escape(f"(in the lake {str(store.root)!r})")):
        store.get_feature_group("user_activty")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "microfs", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MICROFS_LAKE": ""},
        check=False,
    )


def test_cli_global_json_bare_help_and_vacuum_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = mfs.FeatureStore(tmp_path / "lake")
    fg = fs.create_feature_group(
        "g", primary_keys=["k"], event_time="t", schema={"k": "int64", "t": "datetime"}
    )
    fg.insert(pl.DataFrame({"k": [1]}).with_columns(t=pl.lit(T0)))
    fg.insert(pl.DataFrame({"k": [1]}).with_columns(t=pl.lit(T0)))  # rewrites the file
    lake = ["--lake", str(fs.root)]
    assert cli.main(["--json", *lake, "groups", "list"]) == 0
    assert [g["name"] for g in json.loads(capsys.readouterr().out)] == ["g"]
    assert cli.main([]) == 2
    assert "commands" in capsys.readouterr().err
    vacuum = ["groups", "vacuum", "g", "--retention-hours", "0", *lake]
    files = sorted(fg.path.glob("*.parquet"))
    assert cli.main(["--json", *vacuum]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert len(dry["files"]) == 1
    assert sorted(fg.path.glob("*.parquet")) == files
    assert cli.main([*vacuum, "--yes"]) == 0
    assert "deleted 1 file(s)" in capsys.readouterr().out
    assert len(list(fg.path.glob("*.parquet"))) == 1


def test_demo_banner(tmp_path: Path) -> None:
    source = (ROOT / "microfs" / "cli.py").read_text(encoding="utf-8")
    assert "in the lake {lake}" not in source
    done = _run("demo", "--size", "tiny", "--lake", str(tmp_path / "lake"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == f"MicroFS demo: tiny synthetic data, lake folder {tmp_path / 'lake'}"


# -- delete_rows against a reference ---------------------------------------------------------


_ROWS = st.lists(
    st.tuples(st.integers(1, 4), st.integers(100, 101), st.integers(0, 5)),
    min_size=1,
    max_size=25,
    unique=True,
)
_DELETES = st.lists(
    st.tuples(st.integers(1, 5), st.integers(100, 101), st.one_of(st.none(), st.integers(0, 5))),
    max_size=6,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=_ROWS, deletes=_DELETES, with_time=st.booleans())
def test_delete_rows_matches_a_reference(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[int, int, int]],
    deletes: list[tuple[int, int, int | None]],
    with_time: bool,
) -> None:
    fs = mfs.FeatureStore(tmp_path_factory.mktemp("lake"))
    fg = fs.create_feature_group(
        "a", primary_keys=ACTIVITY_KEYS, event_time="timestamp", schema=ACTIVITY_SCHEMA
    )
    users, items, hours = zip(*rows, strict=True)
    fg.insert(activity_rows(list(users), list(hours), items=list(items)))
    if with_time:
        keys = [
            {"user_id": u, "item_id": i, "timestamp": T0 + timedelta(hours=h or 0)}
            for u, i, h in deletes
        ]
        gone = {(u, i, h or 0) for u, i, h in deletes}
        expected = sorted(r for r in rows if r in gone)
    else:
        keys = [{"user_id": u, "item_id": i} for u, i, _ in deletes]
        gone_keys = {(u, i) for u, i, _ in deletes}
        expected = sorted(r for r in rows if (r[0], r[1]) in gone_keys)
    result = fg.delete_rows(keys)
    assert result.rows_deleted == len(expected)
    left = fg.read()
    kept = sorted(
        (u, i, int((t - T0).total_seconds() // 3600))
        for u, i, t in left.select("user_id", "item_id", "timestamp").iter_rows()
    )
    assert kept == sorted(set(rows) - set(expected))
