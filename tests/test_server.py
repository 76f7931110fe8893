"""The HTTP feature server: routes, errors, token, freshness, and a real server process.

In-process cases go through ``httpx.ASGITransport`` (and, for the fuzz test, straight
through the ASGI callable, so that headers such as a lying content-length can be sent);
the real-server cases start ``python -m microfs serve`` on a free port and talk to it with
httpx over a socket. Every vector over HTTP is compared with ``get_inference_vectors``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microfs as mfs
from microfs import FeatureStore, cli
from microfs import server as server_module
from microfs.server import MAX_BODY_BYTES, SINGLE_PATH_MAX, create_app, is_loopback
from tests.helpers import ACTIVITY, ITEM, PROFILE, at, create_served_groups, same, served_view

ROOT = Path(__file__).resolve().parents[1]
VIEW = "recommendation_model_v1"
VECTORS = f"/v1/feature-views/{VIEW}/vectors"
ERROR_STATUSES = {400, 401, 404, 405, 409, 413, 422}


def call(
    app: Any, method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    """One request to ``app`` in this process; ``body`` is sent as JSON unless bytes."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if isinstance(body, bytes):
                return await client.request(method, url, content=body, headers=headers)
            return await client.request(method, url, json=body, headers=headers)

    return asyncio.run(go())


def assert_error(response: httpx.Response, status: int, kind: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    document = response.json()
    assert set(document) == {"error"}
    assert set(document["error"]) == {"type", "message"}
    assert document["error"]["type"] == kind
    for fragment in fragments:
        assert fragment in document["error"]["message"], document


def assert_vectors_equal(got: list[list[Any]], expected: pl.DataFrame) -> None:
    assert len(got) == expected.height
    for vector, row in zip(got, expected.iter_rows(), strict=True):
        assert len(vector) == len(row)
        for a, b in zip(vector, row, strict=True):
            b = None if isinstance(b, float) and b != b else b  # NaN travels as null
            assert same(a, b), (vector, row)


@pytest.fixture
def app(store: FeatureStore, served: mfs.FeatureView) -> Any:
    return create_app(store.root)


# -- the routes ------------------------------------------------------------------------------


def test_health_and_listing(app: Any, served: mfs.FeatureView) -> None:
    assert call(app, "GET", "/health").json() == {"status": "ok"}
    listing = call(app, "GET", "/v1/feature-views")
    assert listing.status_code == 200
    assert listing.json() == [{"name": VIEW, "version": 1, "columns": served.columns}]


def test_vectors_equal_get_inference_vectors(app: Any, served: mfs.FeatureView) -> None:
    entities = [
        {"user_id": 2, "item_id": 102},
        {"user_id": 1, "item_id": 102},
        {"user_id": 9, "item_id": 999},  # never seen: nulls (and imputed values)
        {"user_id": 1, "item_id": None},  # a null key matches nothing
    ]
    response = call(app, "POST", VECTORS, body={"entities": entities})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["feature_view"] == VIEW
    assert document["version"] == 1
    assert document["columns"] == served.columns
    assert_vectors_equal(document["vectors"], served.get_inference_vectors(entities))


def test_many_entities_take_the_vectorised_path_with_equal_results(
    app: Any, served: mfs.FeatureView
) -> None:
    entities = [{"user_id": 1 + i % 3, "item_id": 102 if i % 2 else 7} for i in range(300)]
    assert len(entities) > SINGLE_PATH_MAX
    response = call(app, "POST", VECTORS + "?version=1", body={"entities": entities})
    assert response.status_code == 200, response.text
    assert response.json()["columns"] == served.columns
    assert_vectors_equal(response.json()["vectors"], served.get_inference_vectors(entities))


def test_batches_on_both_sides_of_the_row_path_limit_equal_get_inference_vectors(
    app: Any, served: mfs.FeatureView
) -> None:
    keys = [(1, 102), (2, 102), (3, 7), (9, 999), (1, None), (2, 7)]
    for count in (2, SINGLE_PATH_MAX, SINGLE_PATH_MAX + 1):
        entities: list[dict[str, Any]] = [
            {"user_id": keys[i % 6][0], "item_id": keys[i % 6][1]} for i in range(count)
        ]
        for i in range(0, count, 3):  # some carry the label time, some do not
            entities[i]["timestamp"] = f"2024-01-01T00:{i % 60:02d}:00+00:00"
        response = call(app, "POST", VECTORS, body={"entities": entities})
        assert response.status_code == 200, response.text
        frame = pl.DataFrame(
            {
                "user_id": [e["user_id"] for e in entities],
                "item_id": [e["item_id"] for e in entities],
                "timestamp": [
                    at(i % 60) if "timestamp" in e else None for i, e in enumerate(entities)
                ],
            }
        )
        assert_vectors_equal(response.json()["vectors"], served.get_inference_vectors(frame))
        strict = call(app, "POST", VECTORS, body={"entities": entities, "strict": True})
        if count > 3:  # holds the unknown (9, 999)
            assert_error(strict, 404, "not_found", "no online row")
        else:
            assert strict.json()["vectors"] == response.json()["vectors"]


def test_passed_features_and_the_event_time(app: Any, served: mfs.FeatureView) -> None:
    entities = [{"user_id": 1, "item_id": 102}, {"user_id": 2, "item_id": 102}]
    passed = [{"age": 40, "price": 1.5}, {"age": None, "price": 2.5}]
    response = call(app, "POST", VECTORS, body={"entities": entities, "passed_features": passed})
    assert response.status_code == 200, response.text
    expected = served.get_inference_vectors(entities, passed_features=pl.DataFrame(passed))
    assert_vectors_equal(response.json()["vectors"], expected)
    timed = [{"user_id": 1, "item_id": 102, "timestamp": "2024-01-01T00:10:00+00:00"}]
    response = call(app, "POST", VECTORS, body={"entities": timed})
    assert response.status_code == 200, response.text
    frame = pl.DataFrame({"user_id": [1], "item_id": [102], "timestamp": [at(10)]})
    assert_vectors_equal(response.json()["vectors"], served.get_inference_vectors(frame))


def test_strict_reports_an_unknown_entity(app: Any) -> None:
    body = {"entities": [{"user_id": 1, "item_id": 102}, {"user_id": 77, "item_id": 102}]}
    assert call(app, "POST", VECTORS, body=body).status_code == 200
    response = call(app, "POST", VECTORS, body={**body, "strict": True})
    assert_error(response, 404, "not_found", "user_activity", "77")


def test_unknown_view_version_and_route(app: Any) -> None:
    response = call(app, "POST", "/v1/feature-views/nope/vectors", body={"entities": [{}]})
    assert_error(response, 404, "not_found", "nope")
    response = call(app, "POST", VECTORS + "?version=3", body={"entities": [{"user_id": 1}]})
    assert_error(response, 404, "not_found", "version 3")
    assert_error(call(app, "GET", "/v2/nothing"), 404, "not_found", "/v2/nothing", "/health")
    assert_error(call(app, "GET", "/v1/feature-views//vectors"), 404, "not_found")
    assert_error(call(app, "POST", VECTORS + "?version=x", body={}), 422, "invalid_request")
    assert_error(call(app, "POST", VECTORS + "?limit=3", body={}), 422, "invalid_request", "limit")


def test_the_vector_route_takes_exactly_its_paths(app: Any) -> None:
    starts = ["", "/", "/v1", "/v1/feature-views", "/v1/feature-views/", "/v2/feature-views/"]
    names = ["", "/", VIEW, "a/b", "vectors", "health"]
    ends = ["", "/", "vectors", "/vectors", "/vectors/", "//vectors", "/vectors/x"]
    for start, name, end in itertools.product(starts, names, ends):
        path = "/" + (start + name + end).lstrip("/")
        segments = path.split("/")  # "", "v1", "feature-views", a name, "vectors"
        expected = (
            len(segments) == 5
            and segments[:3] == ["", "v1", "feature-views"]
            and segments[3] != ""
            and segments[4] == "vectors"
        )
        status, payload = asyncio.run(asgi(app, "GET", path, [], headers=[]))  # it takes POST
        routed = status == 405 and "/v1/feature-views/{name}/vectors" in payload.decode()
        assert routed == expected, (path, status, payload)
        assert status in (200, 404, 405)


def test_wrong_method_says_which_are_allowed(app: Any) -> None:
    response = call(app, "GET", VECTORS)
    assert_error(response, 405, "method_not_allowed", "POST")
    assert response.headers["allow"] == "POST"
    assert_error(call(app, "DELETE", "/health"), 405, "method_not_allowed")
    assert_error(call(app, "POST", "/metrics", body={}), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b'{"entities": [{"user_id": 1' + b"1" * 5000 + b"}]}", "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400(app: Any, body: bytes, fragment: str) -> None:
    assert_error(call(app, "POST", VECTORS, body=body), 400, "malformed_body", fragment)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "JSON object"),
        ({}, "lacks ['entities']"),
        ({"entities": [], "strict": False}, "non-empty list"),
        ({"entities": [{"user_id": 1, "item_id": 102}], "extra": 1}, "unknown key(s) ['extra']"),
        ({"entities": [{"user_id": 1}]}, "entities[0] lacks key(s) ['item_id']"),
        ({"entities": [{"user_id": 1, "item_id": 102}, 5]}, "entities[1] must be a JSON object"),
        (
            {"entities": [{"user_id": 1, "item_id": 102}, {"user_id": 1, "item_id": "2"}]},
            "entities[1]['item_id'] must be an integer",
        ),
        ({"strict": True}, "the body lacks ['entities']; it takes"),
        ({"entities": [{}], "x": 1, "y": 2}, "unknown key(s) ['x', 'y']"),
        ({"entities": [{"user_id": 1, "item_id": 2, "age": 3}]}, "unknown key(s) ['age']"),
        ({"entities": [{"user_id": "1", "item_id": 102}]}, "must be an integer"),
        ({"entities": [{"user_id": True, "item_id": 102}]}, "must be an integer"),
        ({"entities": [{"user_id": 2**63, "item_id": 102}]}, "must be an integer"),
        ({"entities": [{"user_id": 1.5, "item_id": 102}]}, "must be an integer"),
        ({"entities": [{"user_id": 1, "item_id": 1, "timestamp": "2024-01-01"}]}, "time zone"),
        ({"entities": [{"user_id": 1, "item_id": 1, "timestamp": 5}]}, "time zone"),
        ({"entities": [{"user_id": 1, "item_id": 102}], "strict": "yes"}, "true or false"),
        ({"entities": [{"user_id": 1, "item_id": 102}], "passed_features": []}, "non-empty"),
        (
            {"entities": [{"user_id": 1, "item_id": 102}], "passed_features": [{}, {}]},
            "2 object(s) for 1",
        ),
        (
            {"entities": [{"user_id": 1, "item_id": 102}], "passed_features": [{"nope": 1}]},
            "nope",
        ),
        (
            {"entities": [{"user_id": 1, "item_id": 102}], "passed_features": [{"age": "old"}]},
            "passed_features",
        ),
        (
            {"entities": [{"user_id": 1, "item_id": 102}], "passed_features": [{"price": [1]}]},
            "feature 'price'",
        ),
        (
            {
                "entities": [{"user_id": 1, "item_id": 102}, {"user_id": 2, "item_id": 102}],
                "passed_features": [{"age": 1}, {"price": 2.0}],
            },
            "same features",
        ),
    ],
)
def test_bad_requests_are_422_naming_the_problem(app: Any, body: Any, fragment: str) -> None:
    assert_error(call(app, "POST", VECTORS, body=body), 422, "invalid_request", fragment)


def test_bodies_over_one_mebibyte_are_413(app: Any) -> None:
    big = b'{"entities": [' + b" " * MAX_BODY_BYTES + b"]}"
    assert_error(call(app, "POST", VECTORS, body=big), 413, "body_too_large", "1 MiB")
    # a body streamed without a length is cut off at the limit too
    status, _ = asyncio.run(asgi(app, "POST", VECTORS, [b"x" * 65536] * 17, headers=[]))
    assert status == 413


def test_a_view_without_fitted_parameters_is_409(store: FeatureStore) -> None:
    create_served_groups(store)
    served_view(store)  # transforms, never fitted
    app = create_app(store.root)
    body = {"entities": [{"user_id": 1, "item_id": 102}]}
    assert_error(call(app, "POST", VECTORS, body=body), 409, "not_fitted", "fitted")
    assert call(app, "GET", "/v1/feature-views").json() == [
        {"name": VIEW, "version": 1, "columns": None}
    ]


def test_a_missing_lake_is_refused_without_creating_it(tmp_path: Path) -> None:
    with pytest.raises(mfs.NotFoundError, match="no lake"):
        create_app(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


# -- the token ----------------------------------------------------------------------------------


def test_the_token_guards_every_route_but_health(
    store: FeatureStore, served: mfs.FeatureView
) -> None:
    secret = "s3cret-token"
    app = create_app(store.root, token=secret)
    body = {"entities": [{"user_id": 1, "item_id": 102}]}
    assert call(app, "GET", "/health").status_code == 200
    for headers in [None, {"authorization": "Bearer wrong"}, {"authorization": secret}]:
        for method, url in [("GET", "/v1/feature-views"), ("GET", "/metrics")]:
            response = call(app, method, url, headers=headers)
            assert_error(response, 401, "unauthorized", "Authorization: Bearer")
            assert secret not in response.text
            assert response.headers["www-authenticate"] == "Bearer"
        response = call(app, "POST", VECTORS, body=body, headers=headers)
        assert_error(response, 401, "unauthorized")
    good = {"authorization": f"Bearer {secret}"}
    response = call(app, "POST", VECTORS, body=body, headers=good)
    assert response.status_code == 200
    assert secret not in response.text
    assert call(app, "GET", "/metrics", headers=good).status_code == 200


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.1.2.3")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("::")
    assert not is_loopback("192.168.1.4")
    assert not is_loopback("example.org")


def test_serve_refuses_a_public_address_without_a_token(
    store: FeatureStore,
    served: mfs.FeatureView,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MICROFS_TOKEN", raising=False)
    lake = str(store.root)
    assert cli.main(["serve", "--lake", lake, "--host", "0.0.0.0", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("microfs: error: refusing to serve on '0.0.0.0' without a token")
    assert err.count("\n") == 1
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    assert cli.main(["serve", "--lake", lake, "--token-env", "NO_SUCH_TOKEN_VAR"]) == 1
    assert "NO_SUCH_TOKEN_VAR" in capsys.readouterr().err


# -- Feast's /get-online-features ----------------------------------------------------------


def test_feast_request_answered_in_feasts_shape(app: Any, served: mfs.FeatureView) -> None:
    entities = {"user_id": [1, 2, 9], "item_id": [102, 102, 102]}
    body = {"features": [f"{VIEW}:price", f"{VIEW}:age"], "entities": entities}
    response = call(app, "POST", "/get-online-features", body=body)
    assert response.status_code == 200, response.text
    document = response.json()
    assert set(document) == {"metadata", "results"}
    assert document["metadata"] == {"feature_names": ["user_id", "item_id", "price", "age"]}
    results = document["results"]
    assert [r["values"] for r in results[:2]] == [[1, 2, 9], [102, 102, 102]]
    expected = served.get_inference_vectors(
        [dict(zip(entities, k, strict=True)) for k in [(1, 102), (2, 102), (9, 102)]]
    )
    for result, column in zip(results[2:], ["price", "age"], strict=True):
        assert set(result) == {"values", "statuses", "event_timestamps"}
        assert_vectors_equal([[v] for v in result["values"]], expected.select(column))
        assert result["event_timestamps"] == ["1970-01-01T00:00:00Z"] * 3
    # user 9 has no activity row and no profile row: its profile values are NOT_FOUND
    assert results[3]["statuses"][2] == ("NOT_FOUND" if expected["age"][2] is None else "PRESENT")
    assert results[2]["statuses"][:2] == ["PRESENT", "PRESENT"]


def test_feast_statuses_tell_a_stored_null_from_a_missing_entity(
    store: FeatureStore, app: Any, served: mfs.FeatureView
) -> None:
    store.get_feature_group("user_profile").insert(
        pl.DataFrame([(1, at(9), None, 33)], schema=PROFILE, orient="row")
    )
    store.get_feature_group("item_feature").insert(
        pl.DataFrame([(103, at(0), None, "y")], schema=ITEM, orient="row")
    )
    store.get_feature_group("user_activity").insert(
        pl.DataFrame([(1, 103, at(9), 5.0, 0)], schema=ACTIVITY, orient="row")
    )
    body = {
        "features": [f"{VIEW}:price", f"{VIEW}:category"],
        "entities": {"user_id": [1, 1], "item_id": [103, 555]},
    }
    results = call(app, "POST", "/get-online-features", body=body).json()["results"]
    assert results[2]["values"][0] is None
    assert results[2]["statuses"] == ["NULL_VALUE", "NOT_FOUND"]


def test_feast_feature_service_and_full_names(app: Any, served: mfs.FeatureView) -> None:
    body = {
        "feature_service": VIEW,
        "entities": {"user_id": [2], "item_id": [102]},
        "full_feature_names": True,
    }
    document = call(app, "POST", "/get-online-features", body=body).json()
    names = document["metadata"]["feature_names"]
    assert names == ["user_id", "item_id", *(f"{VIEW}__{c}" for c in served.columns)]
    vector = [r["values"][0] for r in document["results"][2:]]
    assert_vectors_equal([vector], served.get_inference_vectors([{"user_id": 2, "item_id": 102}]))


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"features": [f"{VIEW}:price"]}, 422, "lacks ['entities']"),
        ({"features": [f"{VIEW}:price"], "entities": {"user_id": [1]}}, 422, "item_id"),
        ({"features": [f"{VIEW}:price"], "entities": {"user_id": 1}}, 422, "list of values"),
        (
            {"features": [f"{VIEW}:price"], "entities": {"user_id": [1], "item_id": [1, 2]}},
            422,
            "same number",
        ),
        (
            {
                "features": [f"{VIEW}:price"],
                "entities": {"user_id": [1], "item_id": [1], "shop": [3]},
            },
            422,
            "shop",
        ),
        ({"features": ["price"], "entities": {"user_id": [1]}}, 422, "'view:feature'"),
        (
            {"features": [f"{VIEW}:price"], "entities": {"user_id": [1, "2"], "item_id": [1, 2]}},
            422,
            "entities row 1['user_id'] must be an integer",
        ),
        ({"features": [], "entities": {"user_id": [1]}}, 422, "give features"),
        ({"feature_service": 3, "entities": {"user_id": [1]}}, 422, "view's name"),
        ({"features": ["other:price"], "entities": {"user_id": [1]}}, 404, "other"),
        (
            {"features": [f"{VIEW}:nope"], "entities": {"user_id": [1], "item_id": [1]}},
            404,
            "no feature 'nope'",
        ),
    ],
)
def test_feast_bad_requests(app: Any, body: Any, status: int, fragment: str) -> None:
    response = call(app, "POST", "/get-online-features", body=body)
    kind = "not_found" if status == 404 else "invalid_request"
    assert_error(response, status, kind, fragment)


# -- metrics and freshness ------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_status(app: Any) -> None:
    call(app, "GET", "/health")
    call(app, "GET", "/health")
    call(app, "POST", VECTORS, body=b"{")
    call(app, "GET", "/elsewhere/secret-looking-path")
    text = call(app, "GET", "/metrics").text
    assert 'microfs_http_requests_total{route="/health",status="200"} 2' in text
    assert (
        'microfs_http_requests_total{route="/v1/feature-views/{name}/vectors",status="400"} 1'
        in text
    )
    assert 'microfs_http_requests_total{route="other",status="404"} 1' in text
    assert "secret-looking-path" not in text
    assert 'microfs_http_request_duration_seconds_bucket{route="/health",le="+Inf"} 2' in text
    assert 'microfs_http_request_duration_seconds_count{route="/health"} 2' in text
    assert "# TYPE microfs_http_request_duration_seconds histogram" in text


def test_commits_through_another_store_are_served_within_a_second(
    store: FeatureStore, app: Any, served: mfs.FeatureView
) -> None:
    body = {"entities": [{"user_id": 1, "item_id": 102}]}
    before = call(app, "POST", VECTORS, body=body).json()["vectors"][0]
    other = FeatureStore(store.root)  # as another process would see the lake
    other.get_feature_group("user_profile").insert(
        pl.DataFrame([(1, at(3), "gold", 44)], schema=PROFILE, orient="row")
    )
    committed = time.monotonic()
    while True:
        after = call(app, "POST", VECTORS, body=body).json()["vectors"][0]
        if after != before:
            break
        assert time.monotonic() - committed < 1.0, "the commit was not served within 1 s"
        time.sleep(0.02)
    store.refresh()
    assert_vectors_equal([after], served.get_inference_vectors(body["entities"]))


# -- fuzzing ------------------------------------------------------------------------------------


async def asgi(
    app: Any,
    method: str,
    path: str,
    chunks: list[bytes],
    *,
    headers: list[tuple[bytes, bytes]],
    query: bytes = b"",
) -> tuple[int, bytes]:
    """One request straight through the ASGI callable: (status, body)."""
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks or [b""])
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers,
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
keys = st.sampled_from(["user_id", "item_id", "timestamp", "age", "price", "x"])
entity = st.dictionaries(keys, json_values | st.integers(0, 3), max_size=4)
vector_bodies = st.fixed_dictionaries(
    {"entities": st.lists(entity, max_size=3) | json_values},
    optional={
        "passed_features": st.lists(entity, max_size=3) | json_values,
        "strict": json_values,
        "junk": json_values,
    },
)
feast_bodies = st.fixed_dictionaries(
    {},
    optional={
        "entities": st.dictionaries(keys, st.lists(json_values | st.integers(0, 3), max_size=3))
        | json_values,
        "features": st.lists(
            st.sampled_from([f"{VIEW}:price", f"{VIEW}:age", "x:y", "a:b:c", "z"]), max_size=3
        )
        | json_values,
        "feature_service": st.sampled_from([VIEW, "nope"]) | json_values,
        "full_feature_names": json_values,
    },
)
bodies = (
    vector_bodies.map(lambda b: json.dumps(b).encode())
    | feast_bodies.map(lambda b: json.dumps(b).encode())
    | json_values.map(lambda b: json.dumps(b).encode())
    | st.binary(max_size=64)
)
paths = st.sampled_from(
    ["/health", "/metrics", "/v1/feature-views", VECTORS, "/get-online-features", "/"]
) | st.text(max_size=20).map(lambda t: "/" + t)
header_lists = st.lists(
    st.tuples(
        st.sampled_from([b"authorization", b"content-length", b"content-type", b"x-any"]),
        st.binary(max_size=16),
    ),
    max_size=3,
)


def request_outcome(read: Any, document: Any) -> tuple[Any, ...]:
    """What reading a vector route body gives: its parts, or the rejection."""
    try:
        return ("read", *read(document))
    except server_module._Reject as exc:
        return ("rejected", exc.status, exc.kind, exc.message)


@settings(max_examples=300, deadline=None)
@given(
    document=vector_bodies
    | json_values
    | st.fixed_dictionaries({"entities": st.lists(entity | json_values, min_size=1, max_size=1)})
)
def test_the_common_body_is_read_as_every_check_reads_it(document: Any) -> None:
    # {"entities": [{...}]} skips the checks; any body reads as the checks read it
    document = json.loads(json.dumps(document))  # as the server parses it
    assert request_outcome(server_module._vector_request, document) == request_outcome(
        server_module._checked_vector_request, document
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=paths,
    query=st.sampled_from([b"", b"version=1", b"version=0", b"version=abc", b"a=b&&", b"%ff"]),
    body=bodies,
    headers=header_lists,
    split=st.integers(1, 3),
)
def test_fuzzed_requests_never_get_a_5xx(
    app: Any,
    method: str,
    path: str,
    query: bytes,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    split: int,
) -> None:
    step = max(1, -(-len(body) // split))
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    status, payload = asyncio.run(asgi(app, method, path, chunks, headers=headers, query=query))
    assert status < 500, payload
    document = json.loads(payload) if path != "/metrics" or status != 200 else None
    if status >= 400:
        assert status in ERROR_STATUSES
        assert isinstance(document, dict)
        assert set(document) == {"error"}
        assert set(document["error"]) == {"type", "message"}


# -- a real server process ------------------------------------------------------------------


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MICROFS_LAKE", "MICROFS_TOKEN")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


@contextmanager
def running_server(
    lake: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m microfs serve`` on a free port: the process and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "microfs", "serve", "--lake", str(lake), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or server_env(),
        cwd=ROOT,
    )
    selector = selectors.DefaultSelector()
    try:
        assert process.stdout is not None
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=60):
            raise AssertionError("the server printed no start line within 60 s")
        line = process.stdout.readline()
        found = re.search(r"http://[\w.:\[\]]+", line)
        assert found, (line, process.stderr.read() if process.stderr else "")
        url = found.group(0)
        deadline = time.monotonic() + 60
        while True:  # the socket listens already; the app answers once it has warmed up
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never answered /health"
            time.sleep(0.05)
        yield process, url
    finally:
        selector.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed view on 30 users x 8 items, some profiles and items missing, fitted."""
    root = tmp_path_factory.mktemp("served") / "lake"
    fs = FeatureStore(root)
    create_served_groups(fs)
    fs.get_feature_group("user_activity").insert(
        pl.DataFrame(
            [
                (u, 100 + i, at(u + i), float(u * i % 7) or None, (u + i) % 2)
                for u in range(1, 31)
                for i in range(8)
            ],
            schema=ACTIVITY,
            orient="row",
        )
    )
    fs.get_feature_group("user_profile").insert(
        pl.DataFrame(
            [
                (u, at(0), ["gold", "silver", None][u % 3], None if u % 4 == 0 else 20 + u)
                for u in range(1, 26)
            ],
            schema=PROFILE,
            orient="row",
        )
    )
    fs.get_feature_group("item_feature").insert(
        pl.DataFrame(
            [(100 + i, at(0), 1.5 * i, "abc"[i % 3]) for i in range(6)], schema=ITEM, orient="row"
        )
    )
    served_view(fs).get_training_data(compute_params=True)
    return root


def test_a_real_server_answers_every_vector_as_get_inference_vectors(lake: Path) -> None:
    fv = FeatureStore(lake).get_feature_view(VIEW)
    entities = [{"user_id": u, "item_id": 100 + i} for u in range(0, 33) for i in range(10)]
    expected = fv.get_inference_vectors(entities)
    with running_server(lake) as (_, url), httpx.Client(base_url=url, timeout=30) as client:
        for entity, row in zip(entities, expected.iter_rows(), strict=True):
            response = client.post(VECTORS, json={"entities": [entity]})
            assert response.status_code == 200, response.text
            assert_vectors_equal(response.json()["vectors"], pl.DataFrame([row], orient="row"))
        response = client.post(VECTORS, json={"entities": entities})  # the vectorised path
        assert_vectors_equal(response.json()["vectors"], expected)
        feast = client.post(
            "/get-online-features",
            json={
                "feature_service": VIEW,
                "entities": {k: [e[k] for e in entities] for k in ("user_id", "item_id")},
            },
        ).json()
        columns = [r["values"] for r in feast["results"][2:]]
        assert_vectors_equal([list(v) for v in zip(*columns, strict=True)], expected)


def test_a_commit_from_another_process_is_served_within_a_second(lake: Path) -> None:
    commit = (
        "import sys, polars as pl\n"
        "from datetime import datetime, timezone\n"
        "from microfs import FeatureStore\n"
        "FeatureStore(sys.argv[1]).get_feature_group('item_feature').insert(pl.DataFrame(\n"
        "    {'item_id': [101], 'timestamp': [datetime(2024, 1, 2, tzinfo=timezone.utc)],\n"
        "     'price': [float(sys.argv[2])], 'category': ['b']},\n"
        "    schema={'item_id': pl.Int64, 'timestamp': pl.Datetime('us', 'UTC'),\n"
        "            'price': pl.Float64, 'category': pl.String}))\n"
    )
    body = {"entities": [{"user_id": 1, "item_id": 101}]}
    with running_server(lake) as (_, url), httpx.Client(base_url=url, timeout=30) as client:
        before = client.post(VECTORS, json=body).json()["vectors"][0]
        writer = subprocess.run(
            [sys.executable, "-c", commit, str(lake), "123.0"],
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert writer.returncode == 0, writer.stderr
        committed = time.monotonic()
        while True:
            after = client.post(VECTORS, json=body).json()["vectors"][0]
            if after != before:
                break
            assert time.monotonic() - committed < 1.0, "the commit was not served within 1 s"
            time.sleep(0.02)
        seen = time.monotonic() - committed
        fv = FeatureStore(lake).get_feature_view(VIEW)
        assert_vectors_equal([after], fv.get_inference_vectors(body["entities"]))
    assert seen < 1.0


def test_sigterm_stops_the_server_cleanly(lake: Path) -> None:
    with running_server(lake) as (process, url):
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "microfs: server stopped" in out
    assert "Traceback" not in err


def test_two_workers_and_a_token(lake: Path) -> None:
    env = server_env(SERVE_TEST_TOKEN="tok-123")
    args = ("--workers", "2", "--token-env", "SERVE_TEST_TOKEN")
    fv = FeatureStore(lake).get_feature_view(VIEW)
    entity = {"user_id": 3, "item_id": 102}
    with running_server(lake, *args, env=env) as (_, url):
        assert httpx.post(url + VECTORS, json={"entities": [entity]}).status_code == 401
        headers = {"authorization": "Bearer tok-123"}
        for _ in range(6):  # the kernel spreads connections over both workers
            response = httpx.post(url + VECTORS, json={"entities": [entity]}, headers=headers)
            assert response.status_code == 200, response.text
            assert_vectors_equal(response.json()["vectors"], fv.get_inference_vectors([entity]))


def test_serve_without_the_server_libraries_names_the_extra(
    store: FeatureStore,
    served: mfs.FeatureView,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what a missing package looks like
    assert cli.main(["serve", "--lake", str(store.root), "--port", "0"]) == 1
    err = capsys.readouterr().err
    expected = 'microfs serve needs the server libraries: pip install "microfs[serve]"'
    assert err == f"microfs: error: {expected}\n"


def test_create_app_without_the_json_library_names_the_extra(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "_ORJSON", False)  # what a missing orjson leaves
    with pytest.raises(mfs.ServerConfigError, match=r"pip install \"microfs\[serve\]\""):
        create_app(store.root)
