"""The command line, run as a user runs it: `python -m microfs ...` in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import microfs as mfs
from microfs import cli, synthetic
from tests.helpers import assert_one_error_line

ROOT = Path(__file__).resolve().parents[1]
VIEW = "recommendation_model_v1"
GROUPS = ["item_feature", "user_activity", "user_profile"]
TINY = synthetic.SIZES["tiny"]
TINY_ROWS = {
    "user_activity": TINY["n_labels"],
    "user_profile": TINY["n_profile_rows"],
    "item_feature": TINY["n_item_rows"],
}


def run(
    *args: str, cwd: Path, lake_env: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MICROFS_LAKE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if lake_env is not None:
        env["MICROFS_LAKE"] = lake_env
    return subprocess.run(
        [sys.executable, "-m", "microfs", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(*args: str, cwd: Path, lake_env: str | None = None) -> Any:
    result = run(*args, "--json", cwd=cwd, lake_env=lake_env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


@dataclass(frozen=True)
class Demo:
    cwd: Path
    lake: Path
    output: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """One tiny demo in the default lake (./lake) of a fresh folder; tests only read it."""
    cwd = tmp_path_factory.mktemp("demo")
    output = run("demo", "--size", "tiny", cwd=cwd)
    assert output.returncode == 0, output.stdout + output.stderr
    return Demo(cwd=cwd, lake=cwd / "lake", output=output)


@pytest.fixture
def lake_copy(demo: Demo, tmp_path: Path) -> Path:
    """A private copy of the demo lake, for tests that change it."""
    copy = tmp_path / "lake"
    shutil.copytree(demo.lake, copy)
    return copy


# -- demo -----------------------------------------------------------------------------------


def test_demo_fills_the_default_lake_and_says_what_happened(demo: Demo) -> None:
    out = demo.output.stdout
    assert demo.output.stderr == ""
    assert (demo.lake / "feature_groups").is_dir()
    assert (demo.lake / "feature_views" / VIEW / "v1.json").is_file()
    for step in ("[1/3] feature pipeline", "[2/3] training pipeline", "[3/3] inference pipeline"):
        assert step in out
    assert out.count("done in") == 3
    assert "(user 1, item 102)" in out
    assert "test AUC" in out
    assert "predicted conversion probability" in out
    summary = out[out.index("summary") :]
    for name, rows in TINY_ROWS.items():
        line = next(line for line in summary.splitlines() if f"feature group {name} " in line)
        assert f"{rows:,} rows" in line
        assert "table version 1" in line
    assert f"feature view {VIEW} v1: training dataset 1, model test AUC 0." in summary


def test_demo_again_upserts_and_advances_versions(lake_copy: Path, call: Any) -> None:
    again = run("demo", "--lake", str(lake_copy), "--size", "tiny", cwd=lake_copy.parent)
    assert again.returncode == 0, again.stderr
    assert "training dataset 2" in again.stdout
    assert "predicted conversion probability" in again.stdout
    groups = call("groups", "list", "--lake", str(lake_copy), "--json")
    assert {g["name"]: (g["rows"], g["table_version"]) for g in json.loads(groups.stdout)} == {
        name: (rows, 2) for name, rows in TINY_ROWS.items()
    }
    view = json.loads(call("views", "show", VIEW, "--lake", str(lake_copy), "--json").stdout)
    assert [td["number"] for td in view["training_datasets"]] == [1, 2]
    assert view["versions"] == [1]


# -- help -----------------------------------------------------------------------------------


def test_help_documents_every_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top = run("--help", cwd=tmp_path)
    assert top.returncode == 0
    for word in ("demo", "groups", "views", "MICROFS_LAKE", "--json"):
        assert word in top.stdout
    assert not (tmp_path / "lake").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(["groups", "--help"])
    assert exited.value.code == 0
    verbs = capsys.readouterr().out
    for verb in ("list", "show", "history", "head", "compact", "vacuum"):
        assert f"    {verb} " in verbs


# -- groups ---------------------------------------------------------------------------------


def test_groups_list(demo: Demo, call: Any) -> None:
    groups = run_json("groups", "list", cwd=demo.cwd)
    assert [g["name"] for g in groups] == GROUPS
    for group in groups:
        assert group["rows"] == TINY_ROWS[group["name"]]
        assert (group["version"], group["versions"], group["table_version"]) == (1, [1], 1)
    text = call("groups", "list", "--lake", str(demo.lake))
    assert (text.returncode, text.stderr) == (0, "")
    lines = text.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "VERSION"]
    assert [line.split()[0] for line in lines[1:]] == GROUPS
    assert f"{TINY_ROWS['user_activity']:,}" in lines[2]


def test_groups_show(demo: Demo, call: Any) -> None:
    doc = run_json("groups", "show", "user_activity", cwd=demo.cwd)
    assert doc["primary_keys"] == ["user_id", "item_id"]
    assert doc["event_time"] == "timestamp"
    assert doc["online_keys"] == ["user_id", "item_id"]
    assert list(doc["schema"]) == list(synthetic.SCHEMAS["user_activity"])
    assert doc["schema"]["timestamp"] == "datetime"
    assert (doc["rows"], doc["table_version"], doc["version"]) == (TINY["n_labels"], 1, 1)
    text = call("groups", "show", "user_profile", "--version", "1", "--lake", str(demo.lake))
    assert (text.returncode, text.stderr) == (0, "")
    assert "feature group user_profile version 1" in text.stdout
    assert "primary keys   user_id" in text.stdout
    assert f"rows           {TINY['n_profile_rows']}" in text.stdout
    schema_lines = text.stdout[text.stdout.index("schema") :].splitlines()
    assert schema_lines[2].split() == ["user_id", "int64", "primary", "key"]


def test_groups_history(demo: Demo, call: Any) -> None:
    doc = run_json("groups", "history", "item_feature", cwd=demo.cwd)
    commits = doc["commits"]
    assert [c["table_version"] for c in commits] == [0, 1]
    assert commits[1]["rows"] == TINY["n_item_rows"]
    assert datetime.fromisoformat(commits[1]["timestamp"]).tzinfo is not None
    text = call("groups", "history", "item_feature", "--lake", str(demo.lake))
    assert (text.returncode, text.stderr) == (0, "")
    assert "2 commit(s)" in text.stdout
    assert "WRITE" in text.stdout


def test_groups_head_at_versions_and_times(demo: Demo, call: Any) -> None:
    doc = run_json("groups", "head", "user_profile", "--rows", "3", cwd=demo.cwd)
    assert (doc["table_version"], doc["total_rows"], len(doc["rows"])) == (
        1,
        TINY["n_profile_rows"],
        3,
    )
    assert set(doc["rows"][0]) == set(synthetic.SCHEMAS["user_profile"])
    stored = mfs.FeatureStore(demo.lake).get_feature_group("user_profile").read().head(3)
    assert [r["user_id"] for r in doc["rows"]] == stored["user_id"].to_list()
    lake = ["--lake", str(demo.lake), "--json"]
    empty = json.loads(call("groups", "head", "user_profile", "--table-version", "0", *lake).stdout)
    assert (empty["table_version"], empty["rows"]) == (0, [])
    now = datetime.now(timezone.utc).isoformat()
    latest = json.loads(call("groups", "head", "user_profile", "--as-of", now, *lake).stdout)
    assert latest["table_version"] == 1
    text = call("groups", "head", "item_feature", "--rows", "2", "--lake", str(demo.lake))
    assert (text.returncode, text.stderr) == (0, "")
    assert "table version 1: 2 of 200 rows" in text.stdout
    assert "category" in text.stdout


def test_compact_and_vacuum_keep_what_training_datasets_need(lake_copy: Path, call: Any) -> None:
    fs = mfs.FeatureStore(lake_copy)
    fg = fs.get_feature_group("user_profile")
    stored = fg.read()
    fg.insert(synthetic.append_batch(stored, n_rows=20, seed=1))  # table version 2: 2 files
    lake = ["--lake", str(lake_copy)]

    compacted = run_json("groups", "compact", "user_profile", *lake, cwd=lake_copy.parent)
    assert compacted["table_version"] == 3
    assert compacted["files_removed"] == 2
    assert compacted["files_added"] == 1
    shown = json.loads(call("groups", "show", "user_profile", *lake, "--json").stdout)
    assert (shown["rows"], shown["table_version"]) == (stored.height + 20, 3)

    files = sorted(p.name for p in fg.path.glob("*.parquet"))
    vacuum = ["groups", "vacuum", "user_profile", "--retention-hours", "0", *lake]
    dry = run_json(*vacuum, "--dry-run", cwd=lake_copy.parent)
    assert dry["dry_run"] is True
    assert dry["kept_versions"] == [1]  # training dataset 1 read table version 1
    assert len(dry["files"]) == 1  # only the appended file: version 1's file is kept
    assert sorted(p.name for p in fg.path.glob("*.parquet")) == files

    done = call(*vacuum, "--yes")
    assert (done.returncode, done.stderr) == (0, "")
    assert "deleted 1 file(s)" in done.stdout
    assert "kept the files of table version(s) 1" in done.stdout
    assert len(list(fg.path.glob("*.parquet"))) == len(files) - 1
    gone = call("groups", "head", "user_profile", "--table-version", "2", *lake)
    assert_one_error_line(gone, "table version 2", "vacuumed")
    pinned = call("groups", "head", "user_profile", "--table-version", "1", *lake, "--json")
    assert json.loads(pinned.stdout)["total_rows"] == stored.height

    forced = json.loads(call(*vacuum, "--dry-run", "--force", "--json").stdout)
    assert forced["broken"] == [f"{VIEW} v1 training dataset 1"]


# -- views ----------------------------------------------------------------------------------


def test_views_list_and_show(demo: Demo, call: Any) -> None:
    views = run_json("views", "list", cwd=demo.cwd)
    assert views == [
        {
            "name": VIEW,
            "versions": [1],
            "version": 1,
            "label_fg": "user_activity",
            "label_col": "conversion",
            "joins": ["user_profile", "item_feature"],
            "training_datasets": [1],
        }
    ]
    doc = run_json("views", "show", VIEW, cwd=demo.cwd)
    assert doc["definition"]["name"] == VIEW
    assert doc["definition"]["label_fg"] == "user_activity"
    assert "duration_sec" in doc["feature_columns"]
    (td,) = doc["training_datasets"]
    assert td["number"] == 1
    assert td["rows"]["train"] + td["rows"]["test"] == TINY["n_labels"]
    text = call("views", "show", VIEW, "--lake", str(demo.lake))
    assert (text.returncode, text.stderr) == (0, "")
    assert "label        conversion of user_activity v1" in text.stdout
    assert "user_profile v1 on user_id" in text.stdout
    assert "user_activity@1, user_profile@1, item_feature@1" in text.stdout
    listed = call("views", "list", "--lake", str(demo.lake))
    assert listed.stdout.splitlines()[1].split()[:3] == [VIEW, "1", "user_activity.conversion"]


# -- choosing the lake ----------------------------------------------------------------------


def test_environment_and_flag_choose_the_lake(demo: Demo, tmp_path: Path) -> None:
    by_env = run_json("views", "list", cwd=tmp_path, lake_env=str(demo.lake))
    assert [v["name"] for v in by_env] == [VIEW]
    missing = str(tmp_path / "missing")
    flag_first = run("--lake", str(demo.lake), "groups", "list", cwd=tmp_path, lake_env=missing)
    assert flag_first.returncode == 0, flag_first.stderr
    assert "user_activity" in flag_first.stdout
    assert list(tmp_path.iterdir()) == []


# -- user errors ----------------------------------------------------------------------------


def test_a_bad_name_is_one_line(demo: Demo) -> None:
    result = run("groups", "show", "../x", cwd=demo.cwd)
    assert_one_error_line(result, "invalid", "'../x'", "lower-case letters")


def test_an_unknown_version_is_one_line(demo: Demo) -> None:
    result = run("groups", "show", "user_activity", "--version", "7", "--json", cwd=demo.cwd)
    assert_one_error_line(result, "'user_activity' has no version 7", "existing versions: 1")


def test_a_missing_lake_is_one_line_and_is_not_created(tmp_path: Path, call: Any) -> None:
    assert_one_error_line(run("groups", "list", cwd=tmp_path), "does not exist", "lake")
    missing = tmp_path / "nowhere"
    assert_one_error_line(call("views", "list", "--lake", str(missing)), str(missing))
    assert_one_error_line(call("groups", "compact", "x", "--lake", str(missing)), str(missing))
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_no_lake_is_left_alone(tmp_path: Path, call: Any) -> None:
    (tmp_path / "notes.txt").write_text("not a lake")
    assert_one_error_line(call("groups", "list", "--lake", str(tmp_path)), "not a MicroFS lake")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["groups", "show", "user_activty"], ["'user_activty' not found", "user_activity"]),
        (["groups", "history", "user_activity", "--version", "7"], ["no version 7"]),
        (["groups", "head", "user_activity", "--table-version", "9"], ["no table version 9"]),
        (["groups", "head", "user_activity", "--as-of", "2024-01-01"], ["time zone"]),
        (["groups", "head", "user_activity", "--as-of", "soon"], ["not an ISO 8601 time"]),
        (["groups", "head", "user_activity", "--as-of", "2000-01-01T00:00Z"], ["did not exist"]),
        (["groups", "vacuum", "../x", "--dry-run"], ["invalid"]),
        (["views", "show", VIEW, "--version", "2", "--json"], ["no version 2"]),
        (["views", "show", "../x"], ["invalid", "'../x'"]),
    ],
)
def test_user_errors_print_one_line(
    demo: Demo, call: Any, args: list[str], fragments: list[str]
) -> None:
    assert_one_error_line(call(*args, "--lake", str(demo.lake)), *fragments)


def test_a_malformed_command_line_exits_2(tmp_path: Path) -> None:
    result = run("groups", "head", "user_activity", "--rows", "many", cwd=tmp_path)
    assert result.returncode == 2
    assert "--rows" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_matches_python_m(demo: Demo) -> None:
    script = Path(sys.executable).with_name("microfs")
    if not script.exists():
        pytest.skip("the package is not installed in this environment")
    result = subprocess.run(
        [str(script), "views", "list", "--json"],
        cwd=demo.cwd,
        env={k: v for k, v in os.environ.items() if k != "MICROFS_LAKE"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == VIEW
