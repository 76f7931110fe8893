"""The Daft engine gives the Polars engine's frames: rows, order, columns, dtypes, values.

Random worlds (the point-in-time strategies of tests/test_pit.py) are joined by both
engines, first as in-memory plans, then as feature views over real Delta tables (pinned
table versions, windows, a caller's spine, fitted transformations, training datasets and
Parquet files). Daft runs on its native runner here; ``test_the_module_passes_on_a_local_
ray_cluster`` runs this whole module again in a child process whose Daft runs on a local
Ray cluster (Daft's runner can be set once per process).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import microfs as mfs
from microfs import _asof_kernel, synthetic
from microfs._frame_spec import JoinSpec
from microfs.pit import point_in_time_join
from tests.helpers import SEED_JOINS, pit_plans, seed_view
from tests.strategies import PIT_BASE_TIME, PIT_TIME, PitGroup, PitWorld, pit_times, pit_worlds

daft = pytest.importorskip("daft")
daft_engine = pytest.importorskip("microfs.daft_engine")

RUNNER = os.environ.get("MICROFS_TEST_DAFT_RUNNER", "native")
SETTINGS = settings(
    max_examples=int(os.environ.get("MICROFS_TEST_DAFT_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module", autouse=True)
def runner() -> Iterator[str]:
    """Daft's runner for this module: native, or a local Ray cluster started and stopped here."""
    if RUNNER != "ray":
        yield "native"
        return
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        daft.set_runner_ray()
        yield "ray"
    finally:
        ray.shutdown()


def to_polars(frame: Any, schema: pl.Schema) -> pl.DataFrame:
    return daft_engine.collect(frame, schema)


# --- in-memory plans: the join rules alone --------------------------------------------------


def daft_joins(world: PitWorld) -> list[tuple[JoinSpec, Any]]:
    return [
        (
            JoinSpec(
                on=g.on,
                event_time=g.event_time,
                features=g.features,
                output_names=tuple(g.prefix + f for f in g.features),
                max_age=g.max_age,
                prefix=g.prefix,
            ),
            daft.from_arrow(pl.DataFrame(g.rows, schema=g.schema, orient="row").to_arrow()),
        )
        for g in world.groups
    ]


@SETTINGS
@given(world=pit_worlds())
def test_daft_join_equals_the_polars_join(world: PitWorld) -> None:
    labels, plans = pit_plans(world)
    expected = point_in_time_join(
        labels,
        label_time=world.label_time,
        label_keys=world.label_keys,
        joins=plans,
        labels_order="keys" if world.labels_sorted else "none",
    ).collect()
    rows = pl.DataFrame(world.label_rows, schema=world.label_schema, orient="row")
    out = daft_engine.point_in_time_join(
        daft.from_arrow(rows.to_arrow()),
        label_time=world.label_time,
        label_keys=world.label_keys,
        joins=daft_joins(world),
        labels_sorted=world.labels_sorted,
    )
    assert_frame_equal(to_polars(out, expected.schema), expected)


def test_labels_that_tie_on_time_and_keys_keep_their_order() -> None:
    t = PIT_BASE_TIME
    labels = pl.DataFrame({"k": [1, 1, 1, 0], "t": [t] * 4, "y": [3, 1, 2, 9]})
    rows = pl.DataFrame({"k": [1], "ts": [t - timedelta(seconds=1)], "x": [0.5]})
    rule = JoinSpec(("k",), "ts", ("x",), ("x",), timedelta(seconds=1))
    out = daft_engine.point_in_time_join(
        daft.from_arrow(labels.to_arrow()),
        label_time="t",
        label_keys=["k"],
        joins=[(rule, daft.from_arrow(rows.to_arrow()))],
    ).to_pydict()
    assert out["y"] == [9, 3, 1, 2]
    assert out["x"] == [None, 0.5, 0.5, 0.5]  # exactly max_age old: kept


# --- feature views over Delta tables ----------------------------------------------------------

LABEL_SCHEMA = {
    "label_id": pl.Int64(),
    "t": PIT_TIME,
    "user_id": pl.Int64(),
    "item_id": pl.String(),
    "y": pl.Int8(),
}
TRANSFORMS = [
    {"type": "impute", "column": "user_id", "strategy": "most_frequent"},
    {"type": "scale", "column": "user_id"},
    {"type": "one_hot_encode", "column": "item_id"},
]


def build_view(store: mfs.FeatureStore, world: PitWorld) -> tuple[mfs.FeatureView, dict[str, int]]:
    """The world as Delta tables, inserted in two halves; the table versions after the first.

    Label rows get a unique ``label_id`` (their keys and time may repeat, and keys may be
    null: here the join keys are label features); group rows with a null key are left out
    (a group refuses them, and they match nothing anyway).
    """
    label = store.create_feature_group(
        "labels", primary_keys=["label_id"], event_time="t", schema=LABEL_SCHEMA
    )
    user_id, item_id, t, y = zip(*world.label_rows, strict=True) if world.label_rows else ([],) * 4
    label_rows = pl.DataFrame(
        {
            "label_id": range(len(world.label_rows)),
            "t": t,
            "user_id": user_id,
            "item_id": item_id,
            "y": y,
        },
        schema=LABEL_SCHEMA,
    )
    tables = [(label, label_rows)]
    joins: list[dict[str, Any]] = []
    for group in world.groups:
        name = _group_name(group)
        fg = store.create_feature_group(
            name, primary_keys=list(group.on), event_time=group.event_time, schema=group.schema
        )
        rows = pl.DataFrame(group.rows, schema=group.schema, orient="row")
        tables.append((fg, rows.drop_nulls(list(group.on))))
        joins.append(
            {
                "fg_name": name,
                "on": list(group.on),
                "features": list(group.features),
                "prefix": group.prefix,
                "max_age": group.max_age,
            }
        )
    for fg, rows in tables:
        fg.insert(rows.head(rows.height // 2))
    pinned = {fg.name: fg.table_version() for fg, _ in tables}
    for fg, rows in tables:
        fg.insert(rows)
    view = store.create_feature_view(
        "view",
        label_fg="labels",
        label_col="y",
        joins=joins,
        transforms=TRANSFORMS,
        label_features=["user_id", "item_id"],  # join keys kept as features, transformed
    )
    return view, pinned


def _group_name(group: PitGroup) -> str:
    if group.event_time is None:
        return "static_user"
    return {("user_id",): "user", ("item_id",): "item"}.get(group.on, "pair")


bounds = st.one_of(st.none(), pit_times)


def broadcasts(frame: Any) -> bool:
    """Whether ``frame``'s plan joins groups by broadcasting them (not by Daft's joins)."""
    plan = io.StringIO()
    with contextlib.redirect_stdout(plan):
        frame.explain()
    return "_broadcast_join" in plan.getvalue()


@SETTINGS
@given(
    world=pit_worlds(),
    start=bounds,
    end=bounds,
    pin=st.booleans(),
    broadcast=st.booleans(),
    batch=st.sampled_from([2, 5, 4_000_000]),
    kernel=st.booleans(),
)
def test_training_frame_on_daft_equals_polars(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    world: PitWorld,
    start: datetime | None,
    end: datetime | None,
    pin: bool,
    broadcast: bool,
    batch: int,
    kernel: bool,
) -> None:
    """Groups broadcast to label batches of ``batch`` rows (in order: on the native runner,
    unsorted; with ``kernel``, the compiled kernel takes groups of any number of keys), or
    (the threshold at -1) joined by Daft."""
    monkeypatch.setattr(daft_engine, "BROADCAST_MAX_ROWS", 10**9 if broadcast else -1)
    monkeypatch.setattr(daft_engine, "_BATCH_ROWS", batch)
    if kernel:
        monkeypatch.setattr(_asof_kernel, "KERNEL_MIN_KEYS", 0)
    daft_engine._PREPARED.clear()  # prepared under the other setting
    store = mfs.FeatureStore(tmp_path_factory.mktemp("lake"))
    view, pinned = build_view(store, world)
    versions = pinned if pin else None
    expected = view.training_frame(start=start, end=end, table_versions=versions).collect()
    out = view.training_frame(start=start, end=end, table_versions=versions, engine="daft")
    assert isinstance(out, daft.DataFrame)
    assert broadcasts(out) == (broadcast and any(g.features for g in world.groups))
    assert_frame_equal(to_polars(out, expected.schema), expected)

    try:
        view.fit(expected)
    except mfs.NotFittedError:  # no usable training value: nothing to transform with
        return
    batch = view.get_batch_data(start=start, end=end).collect()
    assert_frame_equal(
        to_polars(view.get_batch_data(start=start, end=end, engine="daft"), batch.schema), batch
    )


PROFILE = {"user_id": pl.Int64(), "ts": PIT_TIME, "score": pl.Float64(), "level": pl.String()}


@pytest.fixture
def seeded(tmp_path: Path) -> mfs.FeatureView:
    """A small fixed world: labels joined to a timed user group with max_age."""
    store = mfs.FeatureStore(tmp_path / "lake")
    world = PitWorld(
        label_schema={"user_id": pl.Int64(), "item_id": pl.String(), "t": PIT_TIME, "y": pl.Int8()},
        label_rows=[(u % 4, "ab"[u % 2], _at(u), u % 2) for u in range(40)],
        label_keys=("user_id", "item_id"),
        label_time="t",
        labels_sorted=False,
        groups=[
            PitGroup(
                PROFILE,
                [(u % 4, _at(u - 1), float(u), ["gold", "red"][u % 2]) for u in range(0, 40, 3)],
                ("user_id",),
                "ts",
                ("score", "level"),
                "u_",
                timedelta(seconds=5),
            )
        ],
    )
    view, _ = build_view(store, world)
    return view


def _at(seconds: int) -> datetime:
    return PIT_BASE_TIME + timedelta(seconds=seconds)


def test_batch_data_over_a_spine_from_polars_or_daft(seeded: mfs.FeatureView) -> None:
    seeded.fit(seeded.training_frame().collect())
    spine = pl.DataFrame(
        {
            "label_id": [7, 3, 3, 99],
            "t": [_at(30), _at(2), _at(2), _at(11)],
            "item_id": ["a", None, "b", "zz"],  # user_id and y are missing: null
        },
        schema={"label_id": pl.Int64(), "t": PIT_TIME, "item_id": pl.String()},
    )
    expected = seeded.get_batch_data(spine=spine, end=_at(31)).collect()
    for given_spine in (spine, spine.lazy(), daft.from_arrow(spine.to_arrow())):
        out = seeded.get_batch_data(spine=given_spine, end=_at(31), engine="daft")
        assert_frame_equal(to_polars(out, expected.schema), expected)
    assert expected.height == 4


def test_write_training_frame_and_training_datasets_on_daft(
    seeded: mfs.FeatureView, tmp_path: Path
) -> None:
    number = seeded.create_training_dataset(test_size=0.25, split="random", seed=3)
    frame = seeded.training_frame().collect()
    seeded.label_group.insert(  # later rows must not change the recorded dataset
        pl.DataFrame(
            {"label_id": [500], "t": [_at(3)], "user_id": [1], "item_id": ["a"], "y": [1]},
            schema=LABEL_SCHEMA,
        )
    )
    recorded = seeded.get_training_dataset(number)
    on_daft = seeded.get_training_dataset(number, engine="daft")
    assert on_daft is not recorded
    for name in ("X_train", "X_test"):
        assert_frame_equal(getattr(on_daft, name), getattr(recorded, name))
    assert on_daft.y_train is not None
    assert recorded.y_train is not None
    assert on_daft.y_train.equals(recorded.y_train)

    rows = seeded.write_training_frame(tmp_path / "d" / "frame.parquet", engine="daft")
    written = pl.read_parquet(tmp_path / "d" / "frame.parquet")
    assert rows == written.height == frame.height + 1
    assert_frame_equal(written, seeded.training_frame().collect())
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["frame.parquet"]


def test_bad_engine_and_a_daft_spine_on_polars_are_refused(seeded: mfs.FeatureView) -> None:
    seeded.fit(seeded.training_frame().collect())
    with pytest.raises(mfs.DefinitionError, match="'polars' or 'daft', got 'spark'"):
        seeded.training_frame(engine="spark")  # type: ignore[call-overload]
    spine = daft.from_pydict({"label_id": [1], "t": [_at(1)]})
    with pytest.raises(mfs.DefinitionError, match="engine='daft'"):
        seeded.get_batch_data(spine=spine)  # type: ignore[call-overload]
    with pytest.raises(mfs.DefinitionError, match="lacks column"):
        seeded.get_batch_data(spine=daft.from_pydict({"t": [_at(1)]}), engine="daft")


def test_a_vacuumed_version_is_refused_before_daft_reads(seeded: mfs.FeatureView) -> None:
    with pytest.raises(mfs.NotFoundError, match="no table version 99"):
        seeded.training_frame(table_versions={"labels": 99}, engine="daft")


def test_importing_microfs_does_not_import_daft(tmp_path: Path) -> None:
    code = "import sys, microfs; print('daft' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    assert out.stdout.strip() == "False"


def test_without_daft_the_engine_asks_for_the_scale_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['daft'] = None\n"
        "import microfs\n"
        "try:\n"
        "    import microfs.daft_engine\n"
        "except microfs.MissingDependencyError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    assert 'pip install "microfs[scale]"' in out.stdout


def _env(**extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}", **extra}


@pytest.mark.skipif(RUNNER == "ray", reason="this is the run on Ray")
def test_the_module_passes_on_a_local_ray_cluster() -> None:
    """Every test above, with Daft on a local Ray cluster (a child process: one runner each)."""
    tests = Path(__file__).resolve().parent
    examples = os.environ.get("MICROFS_TEST_DAFT_RAY_EXAMPLES", "10")
    env = _env(MICROFS_TEST_DAFT_RUNNER="ray", MICROFS_TEST_DAFT_EXAMPLES=examples)
    command = [sys.executable, "-m", "pytest", str(tests / "test_daft.py"), "-q", "-x"]
    command += ["-p", "no:cacheprovider", "-m", "not slow"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tests.parent)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
    assert "skipped" in out.stdout  # this test, there


def test_labels_in_order_match_through_the_kernel_batch_by_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label table proven in order, on the native runner: each batch of labels runs the
    compiled kernel over the groups' rows grouped once, the batches come back in order."""
    store = mfs.FeatureStore(tmp_path / "lake")
    world = synthetic.generate_world("tiny", seed=4)
    for name, rows in world.frames().items():
        store.create_feature_group(name, schema=synthetic.SCHEMAS[name], **synthetic.GROUPS[name])
        store.get_feature_group(name).insert(rows)
    joins = [SEED_JOINS[0], {**SEED_JOINS[1], "max_age": timedelta(days=3)}]
    view = seed_view(store, name="ordered", joins=joins, transforms=())
    expected = view.training_frame().collect()
    monkeypatch.setattr(daft_engine, "_BATCH_ROWS", 150)
    monkeypatch.setattr(_asof_kernel, "KERNEL_MIN_KEYS", 0)
    daft_engine._PREPARED.clear()
    prepared = mock.MagicMock(wraps=daft_engine._prepared_rows)
    monkeypatch.setattr(daft_engine, "_prepared_rows", prepared)
    out = view.training_frame(engine="daft")
    assert_frame_equal(to_polars(out, expected.schema), expected)
    if RUNNER == "native":
        assert any(result is not None for result in daft_engine._PREPARED.values())
        assert prepared.call_count >= 2 * (expected.height // 150)  # two joins, every batch


def test_a_known_at_view_on_daft_gives_the_polars_frames(tmp_path: Path) -> None:
    """Known-at views (with and without lag and max_age) give the same data on both engines.

    A 09:00 price arrives at 11:00 and is corrected at 13:00: labels at 10:00, 12:00 and
    14:00 see 80, 90 and 95 on the known-at timeline, 95 three times on event time.
    """
    store = mfs.FeatureStore(tmp_path / "lake")
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    hour = timedelta(hours=1)
    now = [t0]
    price = store.create_feature_group(
        name="price",
        primary_keys=["k"],
        event_time="ts",
        schema={"k": "int64", "ts": "datetime", "x": "float64"},
    )
    price.commit_clock = lambda: now[0]
    rows = {"k": pl.Int64, "ts": PIT_TIME, "x": pl.Float64}
    for committed, event, value in ((8, 8, 80.0), (11, 9, 90.0), (13, 9, 95.0)):
        now[0] = t0 + committed * hour
        price.insert(pl.DataFrame([(1, t0 + event * hour, value)], schema=rows, orient="row"))
    labels = store.create_feature_group(
        name="labels",
        primary_keys=["k"],
        event_time="ts",
        schema={"k": "int64", "ts": "datetime", "y": "int64"},
    )
    labels.insert(
        pl.DataFrame(
            [(1, t0 + h * hour, h % 2) for h in (10, 12, 14)],
            schema={"k": pl.Int64, "ts": PIT_TIME, "y": pl.Int64},
            orient="row",
        )
    )
    joins: list[dict[str, Any]] = [{"fg_name": "price", "on": ["k"]}]
    views = {
        "known": store.create_feature_view(
            name="known", label_fg="labels", label_col="y", joins=joins, timeline="known"
        ),
        "lagged": store.create_feature_view(
            name="lagged",
            label_fg="labels",
            label_col="y",
            joins=joins,
            timeline="known",
            lag=timedelta(minutes=90),
        ),
        "aged": store.create_feature_view(
            name="aged",
            label_fg="labels",
            label_col="y",
            joins=[{**joins[0], "max_age": timedelta(hours=3)}],
            timeline="known",
        ),
    }
    expected_x = {
        "known": [80.0, 90.0, 95.0],
        "lagged": [80.0, 80.0, 90.0],
        "aged": [80.0, 90.0, None],  # 12:00 - 09:00 is max_age (counts), 14:00 - 09:00 is not
    }
    for name, fv in views.items():
        frame = fv.training_frame().collect()
        assert frame["x"].to_list() == expected_x[name]
        assert_frame_equal(to_polars(fv.training_frame(engine="daft"), frame.schema), frame)
        end = t0 + 13 * hour
        windowed = fv.training_frame(end=end).collect()
        assert_frame_equal(
            to_polars(fv.training_frame(end=end, engine="daft"), windowed.schema), windowed
        )
        number = fv.create_training_dataset()
        recorded = fv.get_training_dataset(number)
        assert_frame_equal(fv.get_training_dataset(number, engine="daft").X_train, recorded.X_train)
        target = tmp_path / f"{name}.parquet"
        assert fv.write_training_frame(target, engine="daft") == frame.height
        assert_frame_equal(pl.read_parquet(target), frame)
        spine = pl.DataFrame({"k": [1, 1], "ts": [t0 + 12 * hour, t0 + 10 * hour]})
        spine = spine.with_columns(pl.col("ts").cast(PIT_TIME))
        batch = fv.get_batch_data(spine=spine).collect()
        for given_spine in (spine, daft.from_arrow(spine.to_arrow())):
            out = fv.get_batch_data(spine=given_spine, engine="daft")
            assert_frame_equal(to_polars(out, batch.schema), batch)
        plain = fv.get_batch_data().collect()
        assert_frame_equal(to_polars(fv.get_batch_data(engine="daft"), plain.schema), plain)
