"""Online vectors of a feature view equal its training rows, value for value."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microfs as mfs
from microfs import FeatureStore
from microfs.serving import VectorServer
from tests.helpers import (
    ACTIVITY,
    ITEM,
    PROFILE,
    TIME,
    at,
    create_served_groups,
    same,
    seed_view,
    served_view,
)

FINAL = 100  # minute of every entity's final event, later than every feature row
CUT = 40  # parameters are fitted on label rows before this minute only


def vector_server(fs: FeatureStore, fv: mfs.FeatureView) -> VectorServer:
    """The view's online path compiled anew, as the HTTP server compiles it."""
    return VectorServer(fv.definition, fv.label_group, fv.joined_groups, fs.online, fv.params())


users = st.integers(1, 4)
items = st.integers(10, 13)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, pl.DataFrame]:
    def unique(rows: list[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
        return list({r[:width]: r for r in rows}.values())

    maybe_float = st.one_of(st.none(), st.floats(0, 100, allow_nan=False))
    activity = unique(
        draw(
            st.lists(
                st.tuples(users, items, st.integers(0, 60), maybe_float, st.integers(0, 1)),
                min_size=1,
                max_size=30,
            )
        ),
        3,
    )
    entities = draw(st.lists(st.tuples(users, items), min_size=1, max_size=6, unique=True))
    finals = [(u, i, FINAL, draw(maybe_float), 0) for u, i in entities]
    # Known rows early on, so that every parameter has data to be fitted on.
    activity = unique([*activity, (1, 10, 0, 5.0, 1), (2, 11, 1, 7.0, 0)], 3)
    profile = unique(
        [
            *draw(
                st.lists(
                    st.tuples(
                        users,
                        st.integers(0, 80),
                        st.one_of(st.none(), st.sampled_from("abcd")),
                        st.one_of(st.none(), st.integers(18, 90)),
                    ),
                    max_size=20,
                )
            ),
            (1, 0, "a", 30),
        ],
        2,
    )
    item = unique(
        [
            *draw(
                st.lists(
                    st.tuples(
                        items,
                        st.integers(0, 80),
                        maybe_float,
                        st.one_of(st.none(), st.sampled_from(["x", "y", "z"])),
                    ),
                    max_size=20,
                )
            ),
            (10, 0, 5.0, "x"),
            (11, 0, 8.0, "y"),
        ],
        2,
    )

    def timed(rows: list[tuple[Any, ...]], where: int) -> list[tuple[Any, ...]]:
        return [(*r[:where], at(r[where]), *r[where + 1 :]) for r in rows]

    return {
        "user_activity": pl.DataFrame(
            timed([*activity, *finals], 2), schema=ACTIVITY, orient="row"
        ),
        "user_profile": pl.DataFrame(timed(profile, 1), schema=PROFILE, orient="row"),
        "item_feature": pl.DataFrame(timed(item, 1), schema=ITEM, orient="row"),
        "entities": pl.DataFrame(
            entities, schema={"user_id": pl.Int64, "item_id": pl.Int64}, orient="row"
        ),
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_online_vectors_equal_training_rows(world: dict[str, pl.DataFrame]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fs = FeatureStore(tmp)
        create_served_groups(fs)
        for name in ("user_activity", "user_profile", "item_feature"):
            fs.get_feature_group(name).insert(world[name])
        fv = served_view(fs)
        # Fitted on early rows only, so later categories are unseen.
        fv.get_training_data(compute_params=True, end=at(CUT))
        X, _ = fv.get_training_data()
        frame = fv.training_frame().collect().with_row_index("row")
        finals = frame.filter(pl.col("timestamp") == at(FINAL))
        entities = world["entities"].to_dicts()
        batch = fv.get_inference_vectors(entities)
        assert batch.columns == X.columns
        rows = vector_server(fs, fv).rows(entities)  # table by table, one snapshot each
        for position, entity in enumerate(entities):
            row = finals.filter(
                (pl.col("user_id") == entity["user_id"]) & (pl.col("item_id") == entity["item_id"])
            )["row"].item()
            expected = X.row(row)
            vector = fv.get_inference_vector(entity)
            assert all(same(a, b) for a, b in zip(vector, expected, strict=True)), (
                vector,
                expected,
            )
            assert all(same(a, b) for a, b in zip(batch.row(position), expected, strict=True))
            assert all(same(a, b) for a, b in zip(rows[position], expected, strict=True))
            as_dict = fv.get_inference_vector(entity, return_type="dict")
            assert list(as_dict) == X.columns


def not_found(call: Callable[..., object], entities: list[dict[str, Any]]) -> str | None:
    """The message of the NotFoundError ``call(entities, strict=True)`` raises, or None."""
    try:
        call(entities, strict=True)
    except mfs.NotFoundError as exc:
        return str(exc)
    return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    world=worlds(),
    minutes=st.lists(st.one_of(st.none(), st.integers(0, 130)), min_size=1, max_size=6),
)
def test_one_entity_rows_equal_the_frame_path_with_max_age_between_joins(
    world: dict[str, pl.DataFrame], minutes: list[int | None]
) -> None:
    # The aged join sits between two others: a row too old leaves nulls in the middle.
    with tempfile.TemporaryDirectory() as tmp:
        fs = FeatureStore(tmp)
        create_served_groups(fs)
        for name in ("user_activity", "user_profile", "item_feature"):
            fs.get_feature_group(name).insert(world[name])
        fv = seed_view(
            fs,
            name="aged",
            joins=[
                {"fg_name": "item_feature", "on": ["item_id"], "max_age": timedelta(minutes=30)},
                {"fg_name": "user_profile", "on": ["user_id"]},
            ],
        )
        fv.get_training_data(compute_params=True)
        keys = [*world["entities"].rows(), (4, 13), (99, 10)]  # and maybe unknown entities
        entities: list[dict[str, Any]] = [
            {"user_id": u, "item_id": i, **({} if m is None else {"timestamp": at(m)})}
            for (u, i), m in zip(keys, itertools.cycle(minutes))
        ]
        batch = fv.get_inference_vectors(entities)  # vectorised: a frame and one query
        compiled = vector_server(fs, fv)
        singles = [compiled.rows([entity])[0] for entity in entities]
        for position, single in enumerate(singles):
            assert all(same(a, b) for a, b in zip(single, batch.row(position), strict=True)), (
                entities[position],
                single,
                batch.row(position),
            )
            assert single == fv.get_inference_vector(entities[position])
        assert compiled.rows(entities) == singles
        for entity in entities:  # strict: the same error exactly when the frame path has one
            frame_error = not_found(fv.get_inference_vectors, [entity])
            assert not_found(compiled.rows, [entity]) == frame_error


def test_seed_inference_call_and_return_types(served: mfs.FeatureView) -> None:
    features = served.get_inference_vector({"user_id": 1, "item_id": 102})
    assert isinstance(features, list)
    assert len(features) == len(served.columns)
    frame = served.get_inference_vector({"user_id": 1, "item_id": 102}, return_type="polars")
    assert frame.columns == served.columns
    assert frame.row(0) == tuple(features)
    array = served.get_inference_vector({"user_id": 1, "item_id": 102}, return_type="numpy")
    assert array.dtype == np.float64
    assert array.tolist() == [float(v) for v in features]
    with pytest.raises(mfs.DefinitionError, match="return_type"):
        served.get_inference_vector({"user_id": 1, "item_id": 102}, return_type="xml")  # type: ignore[arg-type]


def test_an_insert_is_visible_to_the_next_lookup(
    store: FeatureStore, served: mfs.FeatureView
) -> None:
    before = served.get_inference_vector({"user_id": 1, "item_id": 102}, return_type="dict")
    assert before["user_level_gold"] == 1
    store.get_feature_group("user_profile").insert(
        pl.DataFrame([(1, at(50), "silver", 31)], schema=PROFILE, orient="row")
    )
    after = served.get_inference_vector({"user_id": 1, "item_id": 102}, return_type="dict")
    assert (after["user_level_gold"], after["user_level_silver"], after["age"]) == (0, 1, 31.0)


def test_missing_and_unknown_keys(served: mfs.FeatureView) -> None:
    with pytest.raises(mfs.DefinitionError, match="item_id"):
        served.get_inference_vector({"user_id": 1})
    with pytest.raises(mfs.DefinitionError, match="item_id"):
        served.get_inference_vectors([{"user_id": 1}])
    unknown = served.get_inference_vector({"user_id": 77, "item_id": 102}, return_type="dict")
    assert unknown["age"] == pytest.approx(30.0)  # imputed, as training imputes a null
    assert unknown["duration_sec"] is None
    assert unknown["user_level_gold"] == unknown["user_level_silver"] == 0
    with pytest.raises(mfs.NotFoundError, match="77"):
        served.get_inference_vector({"user_id": 77, "item_id": 102}, strict=True)
    with pytest.raises(mfs.NotFoundError):
        served.get_inference_vectors([{"user_id": 77, "item_id": 102}], strict=True)
    with pytest.raises(mfs.SchemaError):
        served.get_inference_vector({"user_id": "one", "item_id": 102})


def test_passed_features_replace_stored_values(served: mfs.FeatureView) -> None:
    got = served.get_inference_vector(
        {"user_id": 1, "item_id": 102}, passed_features={"user_level": "silver"}, return_type="dict"
    )
    assert got["user_level_silver"] == 1
    with pytest.raises(mfs.SchemaError, match="nope"):
        served.get_inference_vector({"user_id": 1, "item_id": 102}, passed_features={"nope": 1})


@pytest.mark.parametrize(
    "wrong",
    [
        {"age": "old"},  # text for an integer
        {"price": "2.5"},  # text for a float, even when it reads as one
        {"price": {"a": 1}},  # a nested value
        {"price": [1.0]},
        {"user_level": 3},  # a number for text
        {"age": 31.5},  # a fraction for an integer
        {"age": True},  # a boolean for a number
        {"age": datetime(2024, 1, 1, tzinfo=timezone.utc)},  # a time for a number
    ],
)
def test_passed_features_of_another_type_are_refused_on_both_paths(
    served: mfs.FeatureView, wrong: dict[str, Any]
) -> None:
    entity = {"user_id": 1, "item_id": 102}
    (name,) = wrong
    with pytest.raises(mfs.SchemaError, match=f"passed_features: feature {name!r}"):
        served.get_inference_vector(entity, passed_features=wrong)
    with pytest.raises(mfs.SchemaError, match=f"passed_features: feature {name!r}"):
        served.get_inference_vectors([entity, entity], passed_features=[wrong, wrong])


@pytest.mark.parametrize(
    "fitting", [{"age": 31.0}, {"age": 31}, {"price": 3}, {"age": None}, {"user_level": "gold"}]
)
def test_passed_features_that_fit_give_one_answer_on_both_paths(
    served: mfs.FeatureView, fitting: dict[str, Any]
) -> None:
    entity = {"user_id": 1, "item_id": 102}
    single = served.get_inference_vector(entity, passed_features=fitting)
    for passed in ([fitting], pl.DataFrame([fitting])):
        batch = served.get_inference_vectors([entity], passed_features=passed)
        assert all(same(a, b) for a, b in zip(batch.row(0), single, strict=True))


def test_vectors_keep_request_order_and_accept_a_frame(served: mfs.FeatureView) -> None:
    requests = pl.DataFrame({"user_id": [2, 77, 1], "item_id": [102, 102, 102]})
    got = served.get_inference_vectors(requests)
    for position, entity in enumerate(requests.to_dicts()):
        single = served.get_inference_vector(entity)
        assert all(same(a, b) for a, b in zip(got.row(position), single, strict=True))


def test_refresh_brings_in_new_parameters_fitted_elsewhere(
    store: FeatureStore, served: mfs.FeatureView
) -> None:
    served.get_inference_vector({"user_id": 1, "item_id": 102})
    other = FeatureStore(store.root).get_feature_view("recommendation_model_v1")
    other.get_training_data(compute_params=True, end=at(6))  # another "process" refits
    stale = served.get_inference_vector({"user_id": 1, "item_id": 102}, return_type="dict")
    store.refresh()
    fresh = served.get_inference_vector({"user_id": 1, "item_id": 102}, return_type="dict")
    assert stale["duration_sec"] == pytest.approx(1.0)  # (30 - 20) / 10 with both rows
    assert fresh["duration_sec"] == 0.0  # one training row: zero spread gives 0


def fresh_prices(store: FeatureStore) -> mfs.FeatureView:
    """A view of the item price only, when at most 10 minutes old."""
    return store.create_feature_view(
        name="fresh_prices",
        label_fg="user_activity",
        label_col="conversion",
        joins=[
            {
                "fg_name": "item_feature",
                "on": ["item_id"],
                "features": ["price"],
                "max_age": timedelta(minutes=10),
            }
        ],
    )


def test_max_age_online_is_measured_from_the_request_time(
    store: FeatureStore, served: mfs.FeatureView
) -> None:
    fv = fresh_prices(store)
    entity = {"user_id": 1, "item_id": 102}
    assert fv.get_inference_vector({**entity, "timestamp": at(10)}) == [30.0, 9.5]
    assert fv.get_inference_vector({**entity, "timestamp": at(11)}) == [30.0, None]
    assert fv.get_inference_vector(entity) == [30.0, None]  # measured from now
    many = fv.get_inference_vectors(
        pl.DataFrame({"user_id": [1, 1], "item_id": [102, 102], "timestamp": [at(10), at(11)]})
    )
    assert many["price"].to_list() == [9.5, None]
    # The training row at the final event agrees (the label at minute 5 sees the price).
    X, _ = fv.get_training_data()
    assert X.row(0) == (30.0, 9.5)


def test_batch_equals_single_vectors_for_string_int_and_composite_keys(
    store: FeatureStore,
) -> None:
    # "plumless" and "buckeroo" share a CRC-32: only the first is a stored city.
    city_time = {"city": pl.String, "ts": TIME}
    groups = {
        "visits": (
            {**city_time, "user_id": pl.Int64, "minutes": pl.Float64, "bought": pl.Int64},
            ["city", "user_id"],
        ),
        "cities": ({**city_time, "region": pl.String, "pop": pl.Float64}, ["city"]),
        "users": (
            {"user_id": pl.Int64, "ts": TIME, "level": pl.String, "age": pl.Int64},
            ["user_id"],
        ),
        "loyalty": ({**city_time, "user_id": pl.Int64, "points": pl.Int32}, ["city", "user_id"]),
    }
    rows: dict[str, list[tuple[Any, ...]]] = {
        "visits": [
            ("plumless", at(5), 1, 3.0, 1),
            ("oslo", at(6), 2, 9.0, 0),
            ("ünï", at(7), 3, None, 1),
            ("oslo", at(8), 1, 4.5, 0),
        ],
        "cities": [
            ("plumless", at(0), "north", 1.5),
            ("oslo", at(0), "south", None),
            ("ünï", at(1), "north", 7.0),
        ],
        "users": [(1, at(0), "gold", 30), (2, at(0), "iron", None), (3, at(2), None, 50)],
        "loyalty": [("plumless", at(0), 1, 10), ("oslo", at(1), 2, 20)],
    }
    for name, (schema, keys) in groups.items():
        group = store.create_feature_group(
            name=name, primary_keys=keys, event_time="ts", schema=schema, online_keys=keys
        )
        group.insert(pl.DataFrame(rows[name], schema=schema, orient="row"))
    fv = store.create_feature_view(
        name="visits_v1",
        label_fg="visits",
        label_col="bought",
        joins=[
            {"fg_name": "cities", "on": ["city"]},
            {"fg_name": "users", "on": ["user_id"]},
            {"fg_name": "loyalty", "on": ["city", "user_id"]},
        ],
        transforms=[
            {"type": "scale", "column": "minutes"},
            {"type": "one_hot_encode", "column": "region"},
            {"type": "label_encode", "column": "level"},
            {"type": "impute", "column": "age", "strategy": "mean"},
        ],
    )
    X, _ = fv.get_training_data(compute_params=True)
    entities: list[dict[str, Any]] = [
        {"city": "oslo", "user_id": 1},
        {"city": "buckeroo", "user_id": 1},  # unknown city, same hash as a known one
        {"city": "plumless", "user_id": 1},
        {"city": "ünï", "user_id": 3},
        {"city": "plumless", "user_id": 2},  # no visit or loyalty row; city and user known
        {"city": "oslo", "user_id": 99},
        {"city": None, "user_id": 2},
        {"city": "nowhere", "user_id": 99},
    ]
    singles = [fv.get_inference_vector(e) for e in entities]
    as_frame = pl.DataFrame(
        entities, schema={"city": pl.Categorical, "user_id": pl.Int32}, orient="row"
    )
    for batch in (fv.get_inference_vectors(entities), fv.get_inference_vectors(as_frame)):
        assert batch.columns == X.columns
        assert batch.height == len(entities)
        for position, single in enumerate(singles):
            assert all(same(a, b) for a, b in zip(batch.row(position), single, strict=True)), (
                entities[position],
                batch.row(position),
                single,
            )
    known = singles[2]
    assert known[X.columns.index("region_north")] == 1
    assert singles[1][X.columns.index("region_north")] == 0  # buckeroo is not plumless
    # passed features: per entity in the batch, as in a single call
    passed = pl.DataFrame({"minutes": [float(i) for i in range(len(entities))]})
    batch = fv.get_inference_vectors(entities, passed_features=passed)
    for position, entity in enumerate(entities):
        single = fv.get_inference_vector(entity, passed_features={"minutes": float(position)})
        assert all(same(a, b) for a, b in zip(batch.row(position), single, strict=True))
    with pytest.raises(mfs.SchemaError, match="1 row"):
        fv.get_inference_vectors(entities, passed_features=passed.head(1))
    with pytest.raises(mfs.NotFoundError, match="buckeroo"):
        fv.get_inference_vectors(entities[:2], strict=True)
    with pytest.raises(mfs.NotFoundError, match="buckeroo"):
        fv.get_inference_vector(entities[1], strict=True)
    # the row path (table by table) gives each entity its single vector, errors alike
    compiled = vector_server(store, fv)
    assert compiled.rows(entities) == singles
    assert compiled.rows(entities[:1]) == singles[:1]
    with pytest.raises(mfs.NotFoundError, match="buckeroo"):
        compiled.rows(entities[:2], strict=True)
    with pytest.raises(mfs.DefinitionError, match="user_id"):
        compiled.rows([*entities[:2], {"city": "oslo"}])
    with pytest.raises(mfs.DefinitionError, match="user_id"):
        fv.get_inference_vectors(pl.DataFrame({"city": ["oslo"]}))


def test_max_age_in_a_batch_is_measured_as_for_a_single_vector(
    store: FeatureStore, served: mfs.FeatureView
) -> None:
    now = datetime.now(timezone.utc)
    store.get_feature_group("item_feature").insert(
        pl.DataFrame([(103, now - timedelta(minutes=5), 4.0, "y")], schema=ITEM, orient="row")
    )
    fv = fresh_prices(store)
    entities: list[dict[str, Any]] = [
        {"user_id": 1, "item_id": 103, "timestamp": None},  # measured from now
        {"user_id": 1, "item_id": 103, "timestamp": now + timedelta(hours=1)},
        {"user_id": 1, "item_id": 103, "timestamp": now},
        {"user_id": 1, "item_id": 102, "timestamp": at(10)},
    ]
    singles = [fv.get_inference_vector(e) for e in entities]
    assert [s[1] for s in singles] == [4.0, None, 4.0, 9.5]
    assert fv.get_inference_vectors(entities).rows() == [tuple(s) for s in singles]
    assert vector_server(store, fv).rows(entities) == singles
    naive = pl.DataFrame({"user_id": [1], "item_id": [103], "timestamp": [datetime(2024, 1, 1)]})
    with pytest.raises(mfs.SchemaError, match="timestamp"):
        fv.get_inference_vectors(naive)
