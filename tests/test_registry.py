from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from microfs.errors import AlreadyExistsError, DefinitionError, InvalidNameError, NotFoundError
from microfs.registry import PARAMS, Registry
from microfs.schema import check_name
from tests.helpers import lake_files, training_dataset_record


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "lake")


PAYLOAD = {"name": "user_profile", "schema": {"b": "int64", "a": "string"}, "keys": ("b",)}


def test_create_writes_readable_json_and_returns_what_is_read_back(registry: Registry) -> None:
    stored = registry.create("feature_groups", "user_profile", 1, PAYLOAD)
    assert stored == {
        "name": "user_profile",
        "schema": {"a": "string", "b": "int64"},
        "keys": ["b"],
    }
    path = registry.root / "feature_groups" / "user_profile" / "v1.json"
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert '\n  "keys": [\n' in text  # indented, one item a line
    assert json.loads(text) == stored
    assert registry.get("feature_groups", "user_profile") == stored
    assert lake_files(registry.root) == [
        "feature_groups",
        "feature_groups/user_profile",
        "feature_groups/user_profile/v1.json",
    ]  # no temporary file left behind


def test_identical_definition_returns_the_stored_one(registry: Registry) -> None:
    first = registry.create("feature_views", "model", 1, PAYLOAD)
    assert registry.create("feature_views", "model", 1, dict(PAYLOAD)) == first


def test_a_different_definition_of_the_same_version_is_refused(registry: Registry) -> None:
    registry.create("feature_groups", "user_profile", 1, PAYLOAD)
    registry.create("feature_groups", "user_profile", 2, {"v": 2})
    path = registry.root / "feature_groups" / "user_profile" / "v1.json"
    before = path.read_bytes()
    with pytest.raises(
        AlreadyExistsError, match="'user_profile' version 1 exists already.*create version 3"
    ):
        registry.create("feature_groups", "user_profile", 1, {**PAYLOAD, "name": "other"})
    assert path.read_bytes() == before


def test_versions_and_latest(registry: Registry) -> None:
    for version in (1, 2, 10):
        registry.create("feature_groups", "g", version, {"v": version})
    assert registry.versions("feature_groups", "g") == [1, 2, 10]
    assert registry.get("feature_groups", "g") == {"v": 10}
    assert registry.get("feature_groups", "g", 2) == {"v": 2}
    assert registry.versions("feature_groups", "missing") == []


def test_names_list_only_definitions_with_a_version(registry: Registry) -> None:
    registry.create("feature_groups", "b", 1, {})
    registry.create("feature_groups", "a", 1, {})
    (registry.root / "feature_groups" / "empty").mkdir()
    (registry.root / "feature_groups" / "c").mkdir()
    (registry.root / "feature_groups" / "c" / ".tmp-x.json").write_text("{")
    (registry.root / "feature_groups" / "c" / "v0.json").write_text("{}")
    assert registry.names("feature_groups") == ["a", "b"]
    assert registry.names("feature_views") == []


def test_not_found_messages(registry: Registry) -> None:
    with pytest.raises(
        NotFoundError, match=r"feature view 'm' not found; existing feature views: \(none\)"
    ):
        registry.get("feature_views", "m")
    registry.create("feature_groups", "item_feature", 1, {})
    registry.create("feature_groups", "user_profile", 1, {})
    with pytest.raises(
        NotFoundError,
        match="'user_profil' not found; existing feature groups: item_feature, user_profile",
    ):
        registry.get("feature_groups", "user_profil")
    with pytest.raises(NotFoundError, match="no version 4; existing versions: 1"):
        registry.get("feature_groups", "user_profile", 4)


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0])
def test_bad_versions_are_refused(registry: Registry, version: Any) -> None:
    with pytest.raises(DefinitionError, match="version must be a positive integer"):
        registry.create("feature_groups", "g", version, {})
    assert not registry.root.exists()


@pytest.mark.parametrize("name", ["../g", "a/b", "G", "", "g\n"])
def test_bad_names_touch_nothing(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidNameError):
        registry.create("feature_groups", name, 1, {})
    with pytest.raises(InvalidNameError):
        registry.get("feature_groups", name)
    with pytest.raises(InvalidNameError):
        registry.add_record("feature_views", name, 1, PARAMS, {})
    assert not registry.root.exists()


def test_a_failed_write_leaves_no_file(registry: Registry) -> None:
    with pytest.raises(TypeError):
        registry.create("feature_groups", "g", 1, {"bad": object()})
    assert registry.versions("feature_groups", "g") == []
    assert not list(registry.root.rglob("*.json"))


def test_numbered_records(registry: Registry) -> None:
    assert registry.get_record("feature_views", "m", 1, PARAMS) is None
    assert registry.add_record("feature_views", "m", 1, PARAMS, {"mean": 1.5}) == 1
    assert registry.add_record("feature_views", "m", 1, PARAMS, {"mean": 2.5}) == 2
    assert registry.records("feature_views", "m", 1, PARAMS) == [1, 2]
    assert registry.get_record("feature_views", "m", 1, PARAMS) == {"mean": 2.5, "number": 2}
    assert registry.get_record("feature_views", "m", 1, PARAMS, 1) == {"mean": 1.5, "number": 1}
    assert registry.get_record("feature_views", "m", 1, PARAMS, 3) is None
    assert (registry.folder("feature_views", "m", 1) / PARAMS / "2.json").is_file()


def test_pinned_table_versions(registry: Registry) -> None:
    registry.create("feature_views", "model", 1, {})
    registry.create("feature_views", "model", 2, {})
    for view_version, table_version in ((1, 3), (2, 3), (2, 5)):
        record = training_dataset_record(
            ("user_profile", 1, table_version), ("item_feature", 1, 99)
        )
        number = registry.add_training_dataset("model", view_version, record)
        assert registry.training_dataset("model", view_version, number) == record
    assert registry.pinned_table_versions("user_profile", 1) == {
        3: ["model v1 training dataset 1", "model v2 training dataset 1"],
        5: ["model v2 training dataset 2"],
    }
    assert registry.pinned_table_versions("user_profile", 2) == {}


# --- several processes at once --------------------------------------------------------------


def _pool() -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn"))
    # start every worker and import microfs in it, so that the calls below really race
    list(pool.map(check_name, ["a"] * 8))
    return pool


def test_processes_creating_one_definition_at_once(registry: Registry) -> None:
    with _pool() as pool:
        same = [pool.submit(registry.create, "feature_groups", "g", 1, PAYLOAD) for _ in range(8)]
        results = [f.result() for f in same]
        different = [
            pool.submit(registry.create, "feature_groups", "h", 1, {"writer": i}) for i in range(8)
        ]
        outcomes = [f.exception() or f.result() for f in different]
    assert all(r == results[0] for r in results)
    winners = [o for o in outcomes if isinstance(o, dict)]
    assert len(winners) == 1
    assert all(isinstance(o, AlreadyExistsError) for o in outcomes if o is not winners[0])
    assert registry.get("feature_groups", "h") == winners[0]
    assert sorted(os.listdir(registry.root / "feature_groups" / "h")) == ["v1.json"]


def test_processes_adding_records_at_once_get_distinct_numbers(registry: Registry) -> None:
    with _pool() as pool:
        futures = [
            pool.submit(registry.add_record, "feature_views", "m", 1, PARAMS, {"writer": i})
            for i in range(16)
        ]
        numbers = [f.result() for f in futures]
    assert sorted(numbers) == list(range(1, 17))
    for writer, number in enumerate(numbers):
        assert registry.get_record("feature_views", "m", 1, PARAMS, number) == {
            "writer": writer,
            "number": number,
        }
