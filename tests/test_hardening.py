"""Regression tests of issue 12: wrong or raw answers under odd values, crashes and bad calls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microfs import (
    DefinitionError,
    FeatureGroupDefinition,
    FeatureStore,
    LakeError,
    MicroFSError,
    SchemaError,
    feature_view,
)
from tests.helpers import assert_one_error_line
from tests.test_cli import ROOT

_US_PER_YEAR = 365 * 24 * 3600 * 10**6


@pytest.mark.parametrize("year", [1, 999, 1000, 2024, 9999])
def test_upsert_of_any_year(store: FeatureStore, year: int) -> None:
    group = store.create_feature_group(
        "old",
        primary_keys=["k", "day"],
        event_time="ts",
        schema={"k": "int64", "day": "date", "ts": "datetime", "v": "float64"},
    )
    t = datetime(year, 6, 1, 12, tzinfo=timezone.utc)
    batch = pl.DataFrame(
        {"k": [1, -5], "day": [date(year, 1, 1)] * 2, "ts": [t, t], "v": [1.0, 2.0]}
    )
    assert group.insert(batch).mode == "append"
    again = group.insert(batch.with_columns(v=pl.lit(3.0)))
    assert (again.mode, again.rows_updated, again.rows_inserted) == ("merge", 2, 0)
    assert group.read().sort("k")["v"].to_list() == [3.0, 3.0]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    micros=st.lists(
        st.integers(min_value=-200_000 * _US_PER_YEAR, max_value=200_000 * _US_PER_YEAR),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
# 5083-07-13 18:55:23.229001: outside nanosecond timestamps, Delta pruned its file by an
# overflowed statistic and the upsert appended a duplicate
@example(micros=[98_253_543_323_229_001])
@example(micros=[98_253_543_323_229_001, 1_718_000_000_000_001])
def test_every_storable_event_time_is_upsertable(
    tmp_path_factory: pytest.TempPathFactory, micros: list[int]
) -> None:
    """Event times Python's datetime cannot hold (years 0 and before, 10000 and after) too."""
    store = FeatureStore(tmp_path_factory.mktemp("lake"))
    group = store.create_feature_group(
        "g",
        primary_keys=["k"],
        event_time="ts",
        schema={"k": "int64", "ts": "datetime", "v": "int64"},
    )
    times = pl.Series("ts", micros, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    batch = pl.DataFrame({"k": [7] * len(micros), "ts": times, "v": list(range(len(micros)))})
    group.insert(batch)
    result = group.insert(batch.with_columns(v=pl.col("v") + 100))
    assert result.rows_updated == len(micros)
    assert result.rows_inserted == 0
    stored = group.read().sort("ts")
    assert stored["ts"].dt.epoch("us").to_list() == sorted(micros)
    assert stored.height == len(micros)


# -- shared lake ------------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def small_lake(root: Path) -> FeatureStore:
    """Two timed groups, a view joining them with a fitted scale, one training dataset."""
    fs = FeatureStore(root)
    labels = fs.create_feature_group(
        "labels",
        primary_keys=["user_id"],
        event_time="ts",
        schema={"user_id": "int64", "ts": "datetime", "score": "float64", "y": "int64"},
        online_keys=["user_id"],
    )
    profile = fs.create_feature_group(
        "profile",
        primary_keys=["user_id"],
        event_time="ts",
        schema={"user_id": "int64", "ts": "datetime", "age": "float64"},
        online_keys=["user_id"],
    )
    labels.insert(
        pl.DataFrame({"user_id": [1, 2], "ts": [T0, T0], "score": [1.0, 2.0], "y": [0, 1]})
    )
    profile.insert(pl.DataFrame({"user_id": [1, 2], "ts": [T0, T0], "age": [30.0, 40.0]}))
    fv = fs.create_feature_view(
        "view",
        label_fg="labels",
        label_col="y",
        joins=[{"fg_name": "profile", "on": ["user_id"]}],
        transforms=[{"type": "standard_scale", "column": "score"}],
    )
    fv.create_training_dataset()
    return fs


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "lake"
    small_lake(root)
    return root


@pytest.fixture
def lake(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(pristine, copy)
    return copy


# -- 2: a created training dataset stays readable ----------------------------------------------


def test_a_vacuum_during_create_training_dataset_keeps_what_it_pins(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge and a vacuum(retention 0) run after the versions are chosen, before the record."""
    fs = FeatureStore(lake)
    # a merge, so the dataset pins a table version no earlier dataset pins
    fs.get_feature_group("profile").insert(
        pl.DataFrame({"user_id": [2], "ts": [T0], "age": [41.0]})
    )
    fv = fs.get_feature_view("view")
    collect = feature_view._collect
    ran: list[int] = []

    def merge_and_vacuum_then_collect(frame: pl.LazyFrame) -> pl.DataFrame:
        if not ran:
            ran.append(1)
            other = FeatureStore(lake).get_feature_group("profile")
            other.insert(pl.DataFrame({"user_id": [1], "ts": [T0], "age": [99.0]}))  # merge
            other.vacuum(timedelta(0))
        return collect(frame)

    monkeypatch.setattr(feature_view, "_collect", merge_and_vacuum_then_collect)
    number = fv.create_training_dataset()
    monkeypatch.setattr(feature_view, "_collect", collect)
    data = FeatureStore(lake).get_feature_view("view").get_training_dataset(number)
    assert ran
    assert data.X_train["age"].to_list() == [30.0, 41.0]
    assert not list((lake / "feature_views" / "view" / "v1" / "pins").glob("*.json"))


@pytest.mark.slow
def test_three_processes_create_merge_vacuum_and_every_dataset_reads_back(lake: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from datetime import datetime, timedelta, timezone
        import polars as pl
        from microfs import FeatureStore, MicroFSError
        fs = FeatureStore({str(lake)!r})
        role, stop = sys.argv[1], time.monotonic() + 25
        t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
        made, reads, typed, n = [], 0, 0, 0
        while time.monotonic() < stop:
            n += 1
            if role == "create":
                made.append(fs.get_feature_view("view").create_training_dataset())
            elif role == "merge":
                fs.get_feature_group("profile").insert(
                    pl.DataFrame({{"user_id": [1, 2], "ts": [t0, t0], "age": [float(n), 1.0]}}))
            else:
                group = fs.get_feature_group("profile")
                group.vacuum(timedelta(0))
                try:
                    group.read()
                    reads += 1
                except MicroFSError:
                    typed += 1
        print(role, len(made), reads, typed, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, role],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("create", "merge", "vacuum")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    created = int(outputs[0][0].split()[1])
    assert created > 3
    check = textwrap.dedent(
        f"""
        from microfs import FeatureStore
        fv = FeatureStore({str(lake)!r}).get_feature_view("view")
        numbers = fv.list_training_datasets()
        for n in numbers:
            fv.get_training_dataset(n)
        print(len(numbers))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == created + 1


# -- 4: a crash between definition and table; names Delta cannot store ---------------------------


def test_a_group_whose_table_was_never_created_is_finished_on_use(
    tmp_path: Path, call: Any
) -> None:
    fs = FeatureStore(tmp_path / "lake")
    schema = {"k": "int64", "ts": "datetime", "v": "float64"}
    definition = FeatureGroupDefinition.build(
        name="half", primary_keys=["k"], event_time="ts", schema=schema
    )
    fs.registry.create("feature_groups", "half", 1, definition.to_dict())  # then the crash
    listed = call("groups", "list", "--lake", str(tmp_path / "lake"), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [g["name"] for g in json.loads(listed.stdout)] == ["half"]
    group = FeatureStore(tmp_path / "lake").get_or_create_feature_group(
        "half", primary_keys=["k"], event_time="ts", schema=schema
    )
    group.insert(pl.DataFrame({"k": [1], "ts": [T0], "v": [1.0]}))
    assert group.read()["v"].to_list() == [1.0]


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "new\nline", " padded", "bell\x07"])
def test_control_characters_in_column_names_are_refused_first(
    store: FeatureStore, name: str
) -> None:
    with pytest.raises(SchemaError, match="control character"):
        store.create_feature_group("g", primary_keys=["k"], schema={"k": "int64", name: "int64"})
    assert store.list_feature_groups() == []


# -- 5: a damaged lake ---------------------------------------------------------------------------

DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "a JSON list": lambda b: b"[]",
    "binary": lambda b: b"\x00\xff" * 16,
    "wrong fields": lambda b: b'{"name": 5, "version": "x", "schema": 3, "feature_groups": 1}',
}


def _lake_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "profile" in str(p.relative_to(root)) or "feature_views" in str(p)
    )


def _profile_and_view_calls(fs: FeatureStore) -> dict[str, Callable[[], object]]:
    return {
        "read": lambda: fs.get_feature_group("profile").read(),
        "insert": lambda: fs.get_feature_group("profile").insert(
            pl.DataFrame({"user_id": [3], "ts": [T0], "age": [1.0]})
        ),
        "training dataset": lambda: fs.get_feature_view("view").get_training_dataset(1),
        "vector": lambda: fs.get_feature_view("view").get_inference_vector({"user_id": 1}),
        "vacuum": lambda: fs.get_feature_group("profile").vacuum(dry_run=True),
    }


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_each_damaged_lake_file_gives_one_typed_line_and_the_rest_works(
    pristine: Path, tmp_path: Path, damage: str, call: Any
) -> None:
    kinds = {
        "group definition": "feature_groups/profile/v1.json",
        "view definition": "feature_views/view/v1.json",
        "parameters": "feature_views/view/v1/params/1.json",
        "training dataset": "feature_views/view/v1/training_datasets/1.json",
        "delta log": "feature_groups/profile/v1/_delta_log/00000000000000000001.json",
        "parquet": next(
            str(p.relative_to(pristine))
            for p in (pristine / "feature_groups" / "profile" / "v1").glob("*.parquet")
        ),
    }
    for kind, relative in kinds.items():
        if relative.endswith(".parquet") and damage in ("a JSON list", "wrong fields"):
            continue
        root = tmp_path / kind.replace(" ", "_") / "lake"
        shutil.copytree(pristine, root)
        target = root / relative
        target.write_bytes(DAMAGES[damage](target.read_bytes()))
        fs = FeatureStore(root)
        errors: list[MicroFSError] = []
        for what, run_call in _profile_and_view_calls(fs).items():
            try:
                run_call()
            except MicroFSError as exc:
                errors.append(exc)
            except BaseException as exc:  # a panic included
                pytest.fail(f"{kind} {damage}: {what} raised {type(exc).__name__}: {exc}")
        if kind != "delta log" or damage not in ("empty", "wrong fields"):
            # deltalake reads those two as a commit without actions
            assert errors, (kind, damage)
        for error in errors:
            assert "\n" not in str(error), (kind, error)
            if isinstance(error, LakeError):
                assert target.name in str(error) or "'profile'" in str(error), (kind, error)
        # the rest of the lake keeps working
        assert FeatureStore(root).get_feature_group("labels").read().height == 2
        listed = call("groups", "list", "--lake", str(root))
        assert listed.returncode == 0, listed.stderr
        assert "labels" in listed.stdout
        assert all(line.startswith("microfs: warning: ") for line in listed.stderr.splitlines())
        shown = call("groups", "show", "profile", "--lake", str(root))
        assert shown.returncode in (0, 1)
        assert len(shown.stderr.splitlines()) <= 1


def test_stray_folders_are_skipped_and_reported(lake: Path, call: Any) -> None:
    for stray in (
        "feature_groups/.ipynb_checkpoints",
        "feature_groups/Old Copy",
        "feature_views/Old Copy",
    ):
        (lake / stray).mkdir()
        (lake / stray / "v1.json").write_text("{}")
    fs = FeatureStore(lake)
    assert fs.list_feature_groups() == ["labels", "profile"]
    assert fs.list_feature_views() == ["view"]
    listed = call("groups", "list", "--lake", str(lake), "--json")
    assert listed.returncode == 0
    assert [g["name"] for g in json.loads(listed.stdout)] == ["labels", "profile"]
    assert "Old Copy" in listed.stderr
    assert ".ipynb_checkpoints" in listed.stderr
    assert "Old Copy" in call("views", "list", "--lake", str(lake)).stderr


def test_a_definition_named_unlike_its_folder_is_refused(lake: Path) -> None:
    path = lake / "feature_groups" / "profile" / "v1.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "name": "labels"}))
    with pytest.raises(LakeError, match="name='labels'"):
        FeatureStore(lake).get_feature_group("profile")
    assert FeatureStore(lake).get_feature_group("labels").read().height == 2


def test_a_file_as_the_lake_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(DefinitionError, match="is a file"):
        FeatureStore(path)
    assert path.read_text() == "x"


# -- 7: lossy coercions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "declared"),
    [
        (pl.Series("v", [{"a": 1, "b": "x"}]), "string"),
        (pl.Series("v", [[1, 2]]), "string"),
        (pl.Series("v", [1.5]), "string"),
        (pl.Series("v", [timedelta(seconds=1)]), "float64"),
        (pl.Series("v", [timedelta(seconds=1)]), "int64"),
        (pl.Series("v", [date(2024, 1, 1)]), "int64"),
        (pl.Series("v", [date(2024, 1, 1)]), "string"),
        (pl.Series("v", [T0]), "date"),
        (pl.Series("v", [2]), "bool"),
        (pl.Series("v", [b"x"]), "string"),
    ],
)
def test_lossy_coercions_are_refused(store: FeatureStore, values: pl.Series, declared: str) -> None:
    group = store.create_feature_group(
        "g", primary_keys=["k"], schema={"k": "int64", "v": declared}
    )
    with pytest.raises(SchemaError, match="'v'"):
        group.insert(pl.DataFrame({"k": [1], "v": values}))
    assert group.count() == 0


def test_lossless_casts_still_work(store: FeatureStore) -> None:
    group = store.create_feature_group(
        "g", primary_keys=["k"], schema={"k": "int64", "s": "string", "f": "float64", "i": "int32"}
    )
    group.insert(pl.DataFrame({"k": [1], "s": [7], "f": [2], "i": [True]}))
    assert group.read().row(0) == (1, "7", 2.0, 1)


# -- 8: the command line with huge numbers -------------------------------------------------------


def test_huge_numbers_on_the_command_line(lake: Path, call: Any) -> None:
    head = call("groups", "head", "labels", "--rows", "99999999999999999999", "--lake", str(lake))
    assert head.returncode == 0
    assert "2 of 2 rows" in head.stdout
    vacuum = ["groups", "vacuum", "labels", "--retention-hours", "1e12", "--lake", str(lake)]
    assert_one_error_line(call(*vacuum), "--retention-hours")


def test_a_storage_method_called_with_a_wrong_argument_is_a_type_error_not_a_damaged_lake(
    store: FeatureStore,
) -> None:
    group = store.create_feature_group(
        "profile", schema={"user_id": pl.Int64, "age": pl.Int64}, primary_keys=["user_id"]
    )
    group.insert(pl.DataFrame({"user_id": [1], "age": [30]}))
    with pytest.raises(TypeError, match="lazy"):
        group.read(lazy=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        group.count(1, 2)  # type: ignore[call-arg]
    assert group.read().height == 1
