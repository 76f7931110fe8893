"""The HTTP feature server: a lake's online vectors for processes that cannot import MicroFS.

:func:`create_app` returns an ASGI application (no web framework: five routes do not need
one, and a bare ASGI callable measured the lowest latency); :func:`serve` runs it under
uvicorn, which is what ``microfs serve`` calls. Routes::

    GET  /health                                  {"status": "ok"} (never needs the token)
    GET  /v1/feature-views                        [{"name", "version", "columns"}, ...]
    POST /v1/feature-views/{name}/vectors[?version=N]
         {"entities": [{...}], "passed_features": [{...}], "strict": false}
         -> {"feature_view", "version", "columns", "vectors": [[...], ...]}
    POST /get-online-features                     Feast's feature-server request and response
    GET  /metrics                                 Prometheus text: requests, latency

A vector equals :meth:`microfs.FeatureView.get_inference_vectors` for the same entity
(NaN and missing values are ``null``; datetimes are ISO 8601 strings). Every bad request
gets a 4xx and ``{"error": {"type", "message"}}``: 400 malformed body, 401 token, 404
unknown view, version or route, 405 method, 409 view not fitted, 413 body over 1 MiB, 422
missing, extra or mistyped keys. With a token, every route but ``/health`` needs
``Authorization: Bearer <token>``, compared in constant time and never echoed.

Freshness: at most every half second a request checks, for the views it has served, the
Delta logs' and parameter records' modification stamps (a few ``stat`` calls); when one
moved it brings the online store up to date (:meth:`microfs.FeatureStore.refresh`) before
answering, so commits made by other processes are served within a second. No route writes
to the lake.

The server is the only module that speaks HTTP; it uses MicroFS through its public API.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hmac
import ipaddress
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import polars as pl

try:
    import orjson  # parses and writes JSON several times faster than the json module
except ImportError:  # the serve extra is missing: create_app and serve say which to install
    _ORJSON = False
else:
    _ORJSON = True

from microfs.errors import (
    MicroFSError,
    NotFittedError,
    NotFoundError,
    ServerConfigError,
)
from microfs.feature_view import FeatureView
from microfs.registry import PARAMS
from microfs.serving import VectorServer
from microfs.store import FeatureStore

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "MAX_BODY_BYTES", "TOKEN_ENV", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6566  # Feast's feature server's port, so Feast clients need no change
TOKEN_ENV = "MICROFS_TOKEN"
MAX_BODY_BYTES = 1 << 20
REFRESH_EVERY_S = 0.5
"""How often, at most, a request checks the lake for other processes' commits."""
SINGLE_PATH_MAX = 200
"""Up to this many entities (without passed features) are served by the row path
(:meth:`~microfs.serving.VectorServer.rows`: the single-entity lookups, table by table,
and the compiled row transformation: about 7.5 µs per entity of the seed view, no fixed
cost); a larger request goes through the vectorised path (a frame and one Polars query:
about 1.3 ms, then about 1 µs per entity). Whole requests, server on one core: 150
entities 1.56 ms by rows against 1.87 ms vectorised, 250 entities 2.59 ms against 2.03 ms."""

_MISSING_EXTRA = 'microfs serve needs the server libraries: pip install "microfs[serve]"'
_LAKE_ENV = "MICROFS_SERVE_LAKE"  # how `serve` hands the lake to worker processes
_TOKEN_ENV_ENV = "MICROFS_SERVE_TOKEN_ENV"  # ... and the name of the token's variable
_SETTLE_NS = 100_000_000  # a stamp this recent may hide a second commit in the same tick
_FEAST_ZERO_TIME = "1970-01-01T00:00:00Z"
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_ROUTES = (
    "/health",
    "/metrics",
    "/v1/feature-views",
    "/v1/feature-views/{name}/vectors",
    "/get-online-features",
)
_VECTORS_START, _VECTORS_END = "/v1/feature-views/", "/vectors"
_INT_RANGES = {
    pl.Int8: (-(2**7), 2**7),
    pl.Int16: (-(2**15), 2**15),
    pl.Int32: (-(2**31), 2**31),
    pl.Int64: (-(2**63), 2**63),
    pl.UInt8: (0, 2**8),
    pl.UInt16: (0, 2**16),
    pl.UInt32: (0, 2**32),
    pl.UInt64: (0, 2**64),
}
_log = logging.getLogger("microfs.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Payload = Any  # a JSON document: dict, list, str, number, bool or None
_Handler = Callable[[Scope, bytes, str], Awaitable[tuple[int, bytes, bytes]]]


# ---------------------------------------------------------------------------------------
# Errors as HTTP answers
# ---------------------------------------------------------------------------------------


class _Reject(Exception):
    """A request answered with a 4xx and ``{"error": {"type", "message"}}``."""

    def __init__(
        self, status: int, kind: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = tuple(headers)


def _invalid(message: str) -> _Reject:
    return _Reject(422, "invalid_request", message)


def _rejection(exc: MicroFSError) -> _Reject:
    """The answer to an error MicroFS raised for what a request asked."""
    if isinstance(exc, NotFittedError):
        return _Reject(409, "not_fitted", str(exc))
    if isinstance(exc, NotFoundError):
        return _Reject(404, "not_found", str(exc))
    return _invalid(str(exc))


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# Metrics (Prometheus text format, this process's requests)
# ---------------------------------------------------------------------------------------


@dataclass
class _Metrics:
    """Request counts by route and status and a latency histogram by route."""

    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    buckets: dict[str, list[int]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        counts = self.buckets.get(route)
        if counts is None:
            counts = self.buckets[route] = [0] * (len(_BUCKETS) + 1)
            self.sums[route] = 0.0
        counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self.sums[route] += seconds

    def text(self) -> str:
        lines = [
            "# HELP microfs_http_requests_total HTTP requests answered, by route and status.",
            "# TYPE microfs_http_requests_total counter",
        ]
        for (route, status), count in sorted(self.counts.items()):
            lines.append(
                f'microfs_http_requests_total{{route="{route}",status="{status}"}} {count}'
            )
        lines += [
            "# HELP microfs_http_request_duration_seconds Time from request to response.",
            "# TYPE microfs_http_request_duration_seconds histogram",
        ]
        name = "microfs_http_request_duration_seconds"
        for route, counts in sorted(self.buckets.items()):
            total = 0
            for bound, count in zip((*_BUCKETS, math.inf), counts, strict=True):
                total += count
                le = "+Inf" if bound == math.inf else repr(bound)
                lines.append(f'{name}_bucket{{route="{route}",le="{le}"}} {total}')
            lines.append(f'{name}_sum{{route="{route}"}} {self.sums[route]!r}')
            lines.append(f'{name}_count{{route="{route}"}} {total}')
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Views as served
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Served:
    """One feature view version and what a request must give it."""

    view: FeatureView
    keys: tuple[str, ...]  # entity keys every request must carry
    types: Mapping[str, pl.DataType]  # the keys' and the optional event time's types
    event_time: str | None  # the label group's event time, optional in a request
    stamps: tuple[Path, ...]  # Delta log folders of the groups it reads
    # per key of an integer or text type: whether a JSON value is already of its type
    plain: Mapping[str, Callable[[Any], bool]]
    key: tuple[str, int]  # the view's name and version, read once rather than per request

    @classmethod
    def of(cls, view: FeatureView) -> _Served:
        label = view.label_group
        keys: list[str] = []
        if [c for c in label.features if c != view.label_col] and label.online_keys:
            keys += label.online_keys
        for join in view.definition.joins:
            if join.features:
                keys += join.on
        types: dict[str, pl.DataType] = {}
        groups = [label, *view.joined_groups]
        for key in dict.fromkeys(keys):
            types[key] = next(g.schema[key] for g in groups if key in g.schema)
        if label.event_time is not None:
            types[label.event_time] = label.schema[label.event_time]
        return cls(
            view,
            tuple(dict.fromkeys(keys)),
            types,
            label.event_time,
            tuple(Path(g.path) / "_delta_log" for g in groups),
            {k: check for k in dict.fromkeys(keys) if (check := _plain_check(types[k]))},
            (view.name, view.version),
        )

    def entity_frame(self, entities: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
        """The request's entities as a typed frame (for the vectorised path)."""
        columns = [c for c in self.types if c in self.keys or any(c in e for e in entities)]
        return pl.DataFrame(
            {c: [e.get(c) for e in entities] for c in columns},
            schema={c: self.types[c] for c in columns},
        )


class _App:
    """The ASGI application :func:`create_app` returns."""

    def __init__(self, store: FeatureStore, token: str | None) -> None:
        self.store = store
        self._token = token.encode("utf-8") if token else None
        self._views: dict[tuple[str, int], _Served] = {}
        self._latest: dict[str, int] = {}
        self._columns: dict[tuple[str, int], tuple[int, list[str]]] = {}
        self._servers: dict[tuple[str, int], tuple[int, VectorServer]] = {}
        self._metrics = _Metrics()
        self._next_check = 0.0
        self._seen: tuple[int, ...] = ()
        self._unsettled = False
        self._refreshing: asyncio.Future[None] | None = None

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.warm()
                except Exception as exc:  # the server must not start half-working
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def warm(self) -> None:
        """Load every servable view's latest version and build its online tables."""
        for name in self.store.list_feature_views():
            try:
                served = self._served(name, None)
                for group in [served.view.label_group, *served.view.joined_groups]:
                    if group.online_keys is not None:
                        self.store.online.table(group)
            except MicroFSError as exc:  # a view that cannot serve answers so when asked
                _log.info("feature view %r is not served: %s", name, exc)
        self._seen = self._stamps()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route = "other"
        headers: Sequence[tuple[bytes, bytes]] = ()
        try:
            route, handler, allowed, name = self._route(scope["path"])
            if scope["method"] not in allowed:
                raise _Reject(
                    405,
                    "method_not_allowed",
                    f"{scope['method']} is not allowed on {route}; use {' or '.join(allowed)}",
                    [(b"allow", ", ".join(allowed).encode())],
                )
            if self._token is not None and route != "/health":
                self._authorize(scope)
            body = await _read_body(scope, receive) if scope["method"] == "POST" else b""
            status, content_type, payload = await handler(scope, body, name)
        except _Reject as exc:
            status, content_type, headers = exc.status, b"application/json", exc.headers
            payload = _dumps({"error": {"type": exc.kind, "message": exc.message}})
        except Exception:  # a defect of the server: logged, never shown to the client
            _log.exception("error while answering %s %s", scope["method"], route)
            status, content_type = 500, b"application/json"
            message = "internal error; the server's log has the details"
            payload = _dumps({"error": {"type": "internal", "message": message}})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(payload)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self._metrics.observe(route, status, time.perf_counter() - started)

    def _route(self, path: str) -> tuple[str, _Handler, tuple[str, ...], str]:
        # /v1/feature-views/{name}/vectors, with a non-empty name without "/"; first: the
        # route nearly every request takes
        if path.startswith(_VECTORS_START) and path.endswith(_VECTORS_END):
            name = path[len(_VECTORS_START) : -len(_VECTORS_END)]
            if name and "/" not in name:
                return "/v1/feature-views/{name}/vectors", self._vectors, ("POST",), name
        if path == "/health":
            return path, self._health, ("GET",), ""
        if path == "/metrics":
            return path, self._metrics_text, ("GET",), ""
        if path == "/v1/feature-views":
            return path, self._list_views, ("GET",), ""
        if path == "/get-online-features":
            return path, self._feast, ("POST",), ""
        raise _Reject(404, "not_found", f"no route {_shown(path)}; routes: {', '.join(_ROUTES)}")

    def _authorize(self, scope: Scope) -> None:
        assert self._token is not None
        given = b""
        for header, value in scope["headers"]:
            if header == b"authorization":
                scheme, _, credentials = bytes(value).partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip()
                break
        # compare_digest takes time independent of where the two first differ
        if not given or not hmac.compare_digest(given, self._token):
            raise _Reject(
                401,
                "unauthorized",
                "missing or wrong token: send the header 'Authorization: Bearer <token>'",
                [(b"www-authenticate", b"Bearer")],
            )

    # -- routes ---------------------------------------------------------------------------

    async def _health(self, scope: Scope, body: bytes, name: str) -> tuple[int, bytes, bytes]:
        return 200, b"application/json", b'{"status":"ok"}'

    async def _metrics_text(self, scope: Scope, body: bytes, name: str) -> tuple[int, bytes, bytes]:
        return 200, b"text/plain; version=0.0.4; charset=utf-8", self._metrics.text().encode()

    async def _list_views(self, scope: Scope, body: bytes, name: str) -> tuple[int, bytes, bytes]:
        _no_query(scope, allowed=())
        await self._fresh()
        listing: list[dict[str, Any]] = []
        for view_name in self.store.list_feature_views():
            for version in self.store.registry.versions("feature_views", view_name):
                try:
                    columns: list[str] | None = self._output_columns(
                        self._served(view_name, version)
                    )
                except MicroFSError:  # not fitted yet: its one-hot columns are unknown
                    columns = None
                listing.append({"name": view_name, "version": version, "columns": columns})
        return 200, b"application/json", _dumps(listing)

    async def _vectors(self, scope: Scope, body: bytes, name: str) -> tuple[int, bytes, bytes]:
        version = _no_query(scope, allowed=("version",)).get("version")
        entities, passed_rows, strict = _vector_request(_parse(body))
        if time.monotonic() >= self._next_check:  # else _fresh returns at once: no coroutine
            await self._fresh()
        served = self._served(name, _version(version))
        checked = []
        for i, entity in enumerate(entities):  # a loop: a comprehension is one more call
            checked.append(_entity(served, entity, "entities[{}]", i))
        columns, vectors = self._compute(served, checked, passed_rows, strict=strict)
        answer = {
            "feature_view": served.key[0],
            "version": served.key[1],
            "columns": columns,
            "vectors": vectors,
        }
        return 200, b"application/json", _dumps(answer)

    async def _feast(self, scope: Scope, body: bytes, name: str) -> tuple[int, bytes, bytes]:
        _no_query(scope, allowed=())
        request = _object(_parse(body), "the body")
        _only_keys(
            request,
            required=("entities",),
            optional=(
                "features",
                "feature_service",
                "full_feature_names",
                "include_feature_view_version_metadata",
            ),
        )
        columns = _object(request["entities"], "entities")
        if not columns:
            raise _invalid("entities is empty; give {key: [values, ...]} for the view's keys")
        lengths = set()
        for key, values in columns.items():
            if not isinstance(values, list):
                raise _invalid(f"entities[{key!r}] must be a list of values, got {_shown(values)}")
            lengths.add(len(values))
        if len(lengths) != 1 or 0 in lengths:
            raise _invalid(
                "every entities list must hold the same number (at least one) of values, got "
                f"{ {k: len(v) for k, v in columns.items()} }"
            )
        full_names = request.get("full_feature_names", False)
        if not isinstance(full_names, bool):
            raise _invalid(f"full_feature_names must be true or false, got {_shown(full_names)}")
        if request.get("include_feature_view_version_metadata", False) is not False:
            raise _invalid("include_feature_view_version_metadata is not supported; leave it out")
        await self._fresh()
        wanted = self._feast_features(request)
        count = lengths.pop()
        rows = [{k: v[i] for k, v in columns.items()} for i in range(count)]
        used: set[str] = set()
        blocks: dict[str, tuple[list[str], list[list[Any]], list[bool]]] = {}
        for view_name in dict.fromkeys(v for v, _ in wanted):
            served = self._served(view_name, None)
            allowed = set(served.types)
            missing = [k for k in served.keys if k not in columns]
            if missing:
                raise _invalid(
                    f"entities lack key(s) {missing} that feature view {view_name!r} needs; "
                    f"it needs {list(served.keys)}"
                )
            entities = [
                _entity(served, {k: r[k] for k in r if k in allowed}, "entities row {}", i)
                for i, r in enumerate(rows)
            ]
            used |= allowed
            names, vectors = self._compute(served, entities, None, strict=False)
            vectors = [[_plain(v) for v in vector] for vector in vectors]
            found = [all(v is not None for v in vector) for vector in vectors]
            for i, ok in enumerate(found):
                if not ok:  # a null value: a missing entity or a stored null?
                    found[i] = self._found(served, entities[i])
            blocks[view_name] = (names, vectors, found)
        extra = [k for k in columns if k not in used]
        if extra:
            raise _invalid(
                f"entities has key(s) {extra} that no requested feature view uses; "
                f"the views use {sorted(used)}"
            )
        feature_names = list(columns)
        results: list[dict[str, Any]] = [
            {
                "values": list(values),
                "statuses": ["PRESENT"] * count,
                "event_timestamps": [_FEAST_ZERO_TIME] * count,
            }
            for values in columns.values()
        ]
        for view_name, feature in wanted:
            names, vectors, found = blocks[view_name]
            if feature not in names:
                raise _Reject(
                    404,
                    "not_found",
                    f"feature view {view_name!r} has no feature {feature!r}; its features: "
                    f"{', '.join(names)}",
                )
            position = names.index(feature)
            values = [vector[position] for vector in vectors]
            statuses = [
                "PRESENT" if v is not None else ("NULL_VALUE" if ok else "NOT_FOUND")
                for v, ok in zip(values, found, strict=True)
            ]
            feature_names.append(f"{view_name}__{feature}" if full_names else feature)
            results.append(
                {
                    "values": values,
                    "statuses": statuses,
                    "event_timestamps": [_FEAST_ZERO_TIME] * count,
                }
            )
        answer = {"metadata": {"feature_names": feature_names}, "results": results}
        return 200, b"application/json", _dumps(answer)

    def _feast_features(self, request: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(view, feature)`` pairs a Feast request asks for, in its order."""
        service = request.get("feature_service")
        features = request.get("features", [])
        if service is not None:
            if features:
                raise _invalid("give features or feature_service, not both")
            if not isinstance(service, str):
                raise _invalid(f"feature_service must be a view's name, got {_shown(service)}")
            try:
                columns = self._output_columns(self._served(service, None))
            except MicroFSError as exc:
                raise _rejection(exc) from None
            return [(service, c) for c in columns]
        if not isinstance(features, list) or not features:
            raise _invalid(
                "give features: ['view:feature', ...] (or feature_service: 'view'), got "
                f"{_shown(features)}"
            )
        wanted = []
        for reference in features:
            if not isinstance(reference, str) or reference.count(":") != 1:
                raise _invalid(f"a feature reference is 'view:feature', got {_shown(reference)}")
            view_name, feature = reference.split(":")
            wanted.append((view_name, feature))
        return wanted

    # -- vectors ---------------------------------------------------------------------------

    def _served(self, name: str, version: int | None) -> _Served:
        if version is None:
            latest = self._latest.get(name)
            if latest is None:
                latest = self._latest[name] = self._view(name, None).view.version
            version = latest
        served = self._views.get((name, version))
        return served if served is not None else self._view(name, version)

    def _view(self, name: str, version: int | None) -> _Served:
        try:
            view = self.store.get_feature_view(name, version)
        except NotFoundError as exc:
            raise _Reject(404, "not_found", str(exc)) from None
        except MicroFSError as exc:  # e.g. a name that cannot be a view's
            raise _Reject(404, "not_found", f"no feature view {_shown(name)}: {exc}") from None
        served = self._views[(name, view.version)] = _Served.of(view)
        return served

    def _output_columns(self, served: _Served) -> list[str]:
        key = served.key
        generation = self.store.generation
        cached = self._columns.get(key)
        if cached is None or cached[0] != generation:
            cached = self._columns[key] = (generation, served.view.columns)
        return cached[1]

    def _vector_server(self, served: _Served) -> VectorServer:
        """The view's compiled online path, what its ``get_inference_vector(s)`` run.

        Compiled again when the store's generation moves (a refresh), as the view does.
        """
        view, key = served.view, served.key
        generation = self.store.generation
        cached = self._servers.get(key)
        if cached is None or cached[0] != generation:
            compiled = VectorServer(
                view.definition,
                view.label_group,
                view.joined_groups,
                self.store.online,
                view.params(),
            )
            cached = self._servers[key] = (generation, compiled)
        return cached[1]

    def _compute(
        self,
        served: _Served,
        entities: Sequence[Mapping[str, Any]],
        passed: Sequence[Mapping[str, Any]] | None,
        *,
        strict: bool,
    ) -> tuple[list[str], list[list[Any]]]:
        """The view's columns and one vector per entity (NaN stays NaN: JSON writes null)."""
        try:
            server = self._vector_server(served)
            if passed is None and len(entities) <= SINGLE_PATH_MAX:
                return server.columns, server.rows(entities, strict=strict)
            frame = server.vectors(
                served.entity_frame(entities),
                passed_features=None if passed is None else _passed_frame(passed),
                strict=strict,
            )
        except MicroFSError as exc:
            raise _rejection(exc) from None
        return frame.columns, frame.rows()

    def _found(self, served: _Served, entity: Mapping[str, Any]) -> bool:
        """Whether every group the view reads has a row for ``entity``."""
        try:
            self._vector_server(served).rows([entity], strict=True)
        except NotFoundError:
            return False
        return True

    # -- freshness -------------------------------------------------------------------------

    async def _fresh(self) -> None:
        """Catch up with other processes' commits, checking at most every half second."""
        if self._refreshing is not None:  # another request is catching up: serve meanwhile
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + REFRESH_EVERY_S
        stamps = self._stamps()
        if stamps == self._seen and not self._unsettled and not self._new_versions():
            return
        loop = asyncio.get_running_loop()
        self._refreshing = loop.run_in_executor(None, self._refresh)
        try:
            await asyncio.shield(self._refreshing)
        finally:
            self._refreshing = None
        self._seen = stamps
        self._unsettled = bool(stamps) and time.time_ns() - max(stamps) < _SETTLE_NS

    def _refresh(self) -> None:
        self.store.refresh()
        self._latest.clear()

    def _stamps(self) -> tuple[int, ...]:
        """Modification stamps of what the served views read (Delta logs, parameters)."""
        stamps: list[int] = []
        registry = self.store.registry
        for (name, version), served in list(self._views.items()):
            for folder in served.stamps:
                stamps.append(_mtime(folder))
            stamps.append(_mtime(registry.folder("feature_views", name, version) / PARAMS))
        return tuple(stamps)

    def _new_versions(self) -> bool:
        registry = self.store.registry
        return any(
            max(registry.versions("feature_views", name), default=latest) != latest
            for name, latest in list(self._latest.items())
        )


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


# ---------------------------------------------------------------------------------------
# Reading requests
# ---------------------------------------------------------------------------------------


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    for header, value in scope["headers"]:
        if header == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise _Reject(400, "malformed_body", "content-length is not a number") from None
            if declared > MAX_BODY_BYTES:
                raise _too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Reject(400, "malformed_body", "the client went away mid-body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        if not message.get("more_body", False):
            if not chunks:  # the whole body in one message, as it nearly always comes
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def _too_large() -> _Reject:
    return _Reject(
        413, "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes (1 MiB); split it"
    )


def _parse(body: bytes) -> Any:
    if not body or body.isspace():
        raise _Reject(400, "malformed_body", "the body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # JSON, UTF-8, nesting and out-of-range numbers
        raise _Reject(400, "malformed_body", f"the body is not valid JSON: {exc}") from None


def _no_query(scope: Scope, *, allowed: Sequence[str]) -> dict[str, str]:
    raw = scope.get("query_string", b"")
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise _invalid(f"the query string {_shown(raw)} is malformed") from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "this route takes none"
            raise _invalid(f"unknown query parameter {_shown(key)}; {hint}")
        query[key] = value
    return query


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise _invalid(f"version must be a positive integer, got {_shown(text)}")
    return int(text)


def _vector_request(
    request: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, bool]:
    """A vector route body's entities, passed features (or None) and strict flag, checked.

    The body most requests send, ``{"entities": [{...}]}``, passes every check of
    :func:`_checked_vector_request`, so it is taken as it is (0.19 against 0.71 µs alone,
    about 2 µs less per request in a loop of requests, where every call costs more).
    """
    if type(request) is dict and len(request) == 1:
        entities = request.get("entities")
        if type(entities) is list and len(entities) == 1 and type(entities[0]) is dict:
            return entities, None, False
    return _checked_vector_request(request)


def _checked_vector_request(
    request: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, bool]:
    request = _object(request, "the body")
    _only_keys(request, required=("entities",), optional=("passed_features", "strict"))
    entities = _objects(request["entities"], "entities")
    passed = request.get("passed_features")
    passed_rows = None if passed is None else _objects(passed, "passed_features")
    strict = request.get("strict", False)
    if not isinstance(strict, bool):
        raise _invalid(f"strict must be true or false, got {_shown(strict)}")
    if passed_rows is not None and len(passed_rows) != len(entities):
        raise _invalid(
            f"passed_features has {len(passed_rows)} object(s) for {len(entities)} "
            "entities; give one per entity, in the same order"
        )
    return entities, passed_rows, strict


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{what} must be a JSON object, got {_shown(value)}")
    return value


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _invalid(f"{what} must be a non-empty list of objects, got {_shown(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            _object(item, f"{what}[{i}]")  # raises
    return value


def _only_keys(
    request: Mapping[str, Any], *, required: Sequence[str], optional: Sequence[str]
) -> None:
    missing = [k for k in required if k not in request]
    if missing:
        raise _invalid(f"the body lacks {missing}; it takes {[*required, *optional]}")
    extra = [k for k in request if k not in required and k not in optional]
    if extra:
        raise _invalid(f"unknown key(s) {extra}; the body takes {[*required, *optional]}")


def _entity(served: _Served, entity: Mapping[str, Any], where: str, i: int) -> Mapping[str, Any]:
    """One entity's keys, checked against the view and converted to their types.

    ``where.format(i)`` names the entity in an error (formatted only then).
    """
    if len(entity) == len(served.keys):  # the common case: exactly the keys, typed already
        plain = served.plain
        for key, value in entity.items():
            check = plain.get(key)
            if check is None or not check(value):
                break
        else:
            return entity
    what = where.format(i)
    missing = [k for k in served.keys if k not in entity]
    if missing:
        raise _invalid(f"{what} lacks key(s) {missing}; the view needs {list(served.keys)}")
    extra = [k for k in entity if k not in served.types]
    if extra:
        raise _invalid(f"{what} has unknown key(s) {extra}; the view takes {list(served.types)}")
    return {k: _typed(v, served.types[k], f"{what}[{k!r}]") for k, v in entity.items()}


def _plain_check(dtype: pl.DataType) -> Callable[[Any], bool] | None:
    """For an integer or text type: a test that a JSON value is one as it is (else None).

    A value passing it is what :func:`_typed` would return unchanged.
    """
    base = dtype.base_type()
    if base in _INT_RANGES:
        low, high = _INT_RANGES[base]
        return lambda value: type(value) is int and low <= value < high
    if base in (pl.String, pl.Categorical, pl.Enum):
        return lambda value: type(value) is str
    return None


def _typed(value: Any, dtype: pl.DataType, what: str) -> Any:
    """A JSON value as a value of ``dtype`` (None stays None: a null key matches nothing)."""
    if value is None:
        return None
    base = dtype.base_type()
    if base in _INT_RANGES:
        low, high = _INT_RANGES[base]
        if isinstance(value, int) and not isinstance(value, bool) and low <= value < high:
            return value
        raise _invalid(f"{what} must be an integer of type {dtype}, got {_shown(value)}")
    if dtype.is_float():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _invalid(f"{what} must be a number, got {_shown(value)}")
    if base in (pl.String, pl.Categorical, pl.Enum):
        if isinstance(value, str):
            return value
        raise _invalid(f"{what} must be a string, got {_shown(value)}")
    if base == pl.Boolean:
        if isinstance(value, bool):
            return value
        raise _invalid(f"{what} must be true or false, got {_shown(value)}")
    if base == pl.Datetime:
        when = _iso_time(value, what)
        return when.astimezone(timezone.utc)
    if base == pl.Date:
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            raise _invalid(f"{what} must be an ISO 8601 date, got {_shown(value)}") from None
    raise _invalid(f"{what} is of type {dtype}, which the HTTP server cannot take as a key")


def _iso_time(value: Any, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        raise _invalid(
            f"{what} must be an ISO 8601 time with a time zone, e.g. 2024-05-01T12:00:00Z, "
            f"got {_shown(value)}"
        )
    return when


def _passed_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    names = list(rows[0])
    for i, row in enumerate(rows):
        if list(row) != names:
            raise _invalid(
                f"passed_features[{i}] has keys {list(row)}, passed_features[0] has {names}; "
                "every object must name the same features"
            )
    try:
        return pl.DataFrame({n: [row[n] for row in rows] for n in names}, strict=False)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
        raise _invalid(f"passed_features cannot be read as a table: {exc}") from None


# ---------------------------------------------------------------------------------------
# Writing answers
# ---------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A vector value as JSON takes it: NaN as null."""
    if isinstance(value, float) and value != value:
        return None
    return value


def _json_default(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    if isinstance(value, Iterable):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def _dumps(document: Payload) -> bytes:
    """The document as compact UTF-8 JSON; NaN and infinities become ``null``.

    orjson writes datetimes and dates as ``isoformat`` does and calls ``_json_default``
    for the rest (durations, bytes, numpy scalars).
    """
    encoded: bytes = orjson.dumps(document, default=_json_default)
    return encoded


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------


def create_app(lake: str | os.PathLike[str], *, token: str | None = None) -> _App:
    """An ASGI application serving the lake's feature views over HTTP.

    Args:
        lake: an existing lake folder (the server never creates or writes one).
        token: when set, every route but ``/health`` needs ``Authorization: Bearer <token>``.

    Raises:
        NotFoundError: the lake folder does not exist.
        ServerConfigError: the server libraries (``microfs[serve]``) are missing.

    >>> app = create_app("/no/such/lake")
    Traceback (most recent call last):
    ...
    microfs.errors.NotFoundError: no lake at '/no/such/lake': the folder does not exist
    """
    if not _ORJSON:
        raise ServerConfigError(_MISSING_EXTRA)
    path = Path(lake)
    if not path.is_dir():
        raise NotFoundError(f"no lake at {str(path)!r}: the folder does not exist")
    return _App(FeatureStore(path), token or None)


def _worker_app() -> _App:
    """The application of one of several worker processes (see :func:`serve`)."""
    token_env = os.environ.get(_TOKEN_ENV_ENV, TOKEN_ENV)
    return create_app(os.environ[_LAKE_ENV], token=os.environ.get(token_env) or None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect).

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    lake: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    token_env: str = TOKEN_ENV,
    on_start: Callable[[str], None] = lambda line: None,
) -> None:
    """Serve the lake over HTTP with uvicorn until SIGTERM or SIGINT (graceful shutdown).

    Args:
        lake: an existing lake folder.
        host: the address to bind; anything but a loopback address needs a token.
        port: the port (0: any free port; ``on_start`` says which).
        workers: processes sharing the socket (each keeps its own online store).
        token_env: the environment variable holding the bearer token.
        on_start: called once with a line naming the address, when the socket listens.

    Raises:
        ServerConfigError: the server libraries are missing, or a non-loopback address was
            asked for without a token.
    """
    try:
        import uvicorn
        from uvicorn.supervisors import Multiprocess
    except ImportError:
        raise ServerConfigError(_MISSING_EXTRA) from None
    if workers < 1:
        raise ServerConfigError(f"workers must be at least 1, got {workers}")
    token = os.environ.get(token_env) or None
    if token is None and not is_loopback(host):
        raise ServerConfigError(
            f"refusing to serve on {host!r} without a token: anyone who reaches that address "
            f"could read every feature; set ${token_env} (or name another variable with "
            "--token-env), or bind 127.0.0.1"
        )
    app = create_app(lake, token=token)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,  # no route uses the client's address: skip the middleware
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        config = uvicorn.Config(app, **options)
    else:
        os.environ[_LAKE_ENV] = str(Path(lake).resolve())
        os.environ[_TOKEN_ENV_ENV] = token_env
        config = uvicorn.Config(
            "microfs.server:_worker_app", factory=True, workers=workers, **options
        )
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    plural = "worker" if workers == 1 else "workers"
    on_start(
        f"microfs: serving the lake {str(Path(lake))!r} on http://{shown}:{bound_port} "
        f"({workers} {plural}{', token required' if token else ''})"
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; a handler of
    # our own makes that a normal return, so SIGTERM ends the command with exit code 0
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        if workers == 1:
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
            if not server.started:
                raise ServerConfigError("the server did not start; the log above says why")
        else:
            Multiprocess(config, sockets=[sock]).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, which the worker processes inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
