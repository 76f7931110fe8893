"""HTTP serving: ``microfs serve`` against a hand-written FastAPI app and Feast's server.

The seed view (``recommendation_model_v1``: three groups, scale + one-hot) on synthetic
data; each server runs one worker (and ``microfs serve --workers 2`` once more) on
loopback. The load generator is wrk (Debian's ``wrk``: a C, epoll, one-thread-per-core
HTTP/1.1 client that keeps connections open and whose own cost per request is a few
microseconds, so it does not eat the server's time; its Lua hooks give the exact latency
percentiles of its histogram). The server is pinned to core 0, wrk to core 1 with
taskset (``--workers 2`` gets both cores, sharing core 1 with wrk).

Before timing, every server's answers are checked equal to ``get_inference_vectors`` for
a sample of entities. Single-entity requests rotate over 10,000 entities drawn from the labels.
Each figure is the median of ``--repeat`` wrk runs (every run is kept in the JSON, with
the load average when it started). Feast's own feature server runs in the same run when a
virtual environment with Feast exists (``--feast-venv``). The same MicroFS app also runs
under granian (a Rust HTTP server: the other production ASGI server the issue names), one
worker on core 0, when granian is installed (``microfs[bench]``): the choice of uvicorn
for ``microfs serve`` is this comparison. The end prints a table, the
issue's targets with met/missed, and the ratios against the FastAPI app and Feast; the
JSON in ``benchmarks/results/serve-<time>.json`` holds the same, with ``fields`` saying
what each figure means.

Usage::

    apt-get install wrk
    python benchmarks/bench_serve.py [--size small] [--seconds 5] [--repeat 3] [--no-feast]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vector import SEED_JOINS, SEED_TRANSFORMS  # noqa: E402

import microfs as mfs  # noqa: E402
from microfs import synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIEW = "recommendation_model_v1"
PEER = '''
"""What a user would write by hand: a FastAPI app calling MicroFS in-process."""
import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

import microfs

fs = microfs.FeatureStore(os.environ["LAKE"])
fv = fs.get_feature_view("recommendation_model_v1")
app = FastAPI()


class VectorRequest(BaseModel):
    entities: list[dict[str, Any]]


@app.post("/vectors")
def vectors(request: VectorRequest) -> dict[str, Any]:
    if len(request.entities) == 1:
        return {"vectors": [fv.get_inference_vector(request.entities[0])]}
    return {"vectors": fv.get_inference_vectors(request.entities).rows()}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
'''
ON_GRANIAN = '''
"""MicroFS's own ASGI app (what `microfs serve` runs on uvicorn) under granian."""
import os

from microfs.server import create_app

app = create_app(os.environ["LAKE"])
'''
WRK_SCRIPT = """
local bodies = dofile("%(bodies)s")
local path = "%(path)s"
local headers = {["Content-Type"] = "application/json"}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("%(method)s", path, headers, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format(
    '\\nRESULT {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"non2xx":%%d,"socket_errors":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float) and b != b:
        b = None
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    return bool(a == b)


def build_lake(root: Path, size: str) -> tuple[mfs.FeatureView, list[dict[str, int]]]:
    fs = mfs.FeatureStore(root)
    world = synthetic.generate_world(size, seed=0)
    for name, frame in world.frames().items():
        fs.create_feature_group(name, schema=synthetic.SCHEMAS[name], **synthetic.GROUPS[name])
        fs.get_feature_group(name).insert(frame)
    fv = fs.create_feature_view(
        name=VIEW,
        label_fg="user_activity",
        label_col="conversion",
        joins=SEED_JOINS,
        transforms=SEED_TRANSFORMS,
    )
    fv.get_training_data(compute_params=True)
    pairs = world.user_activity.select("user_id", "item_id").unique(maintain_order=True)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, pairs.height, 10_000)
    entities = [dict(zip(("user_id", "item_id"), pairs.row(int(i)), strict=True)) for i in picks]
    return fv, entities


@contextmanager
def server(
    command: list[str],
    *,
    cores: str,
    env: dict[str, str],
    url: str | None = None,
    cwd: Path = ROOT,
) -> Iterator[str]:
    """A server process pinned to ``cores``; yields its base URL once /health answers.

    The URL is read from the server's output unless given.
    """
    process = subprocess.Popen(
        ["taskset", "-c", cores, *command],
        stdout=subprocess.PIPE if url is None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if url is None else subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    )
    # Lines are read by a thread: select() on the pipe misses lines that one readline
    # already pulled into the file's buffer (uvicorn writes several lines at once).
    # The thread keeps draining the pipe afterwards, so a talkative server never blocks.
    lines: queue.Queue[str] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for text in stream:
            lines.put(text)

    if url is None:
        assert process.stdout is not None
        threading.Thread(target=pump, args=(process.stdout,), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while url is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                if process.poll() is not None:
                    raise SystemExit(
                        f"{command} exited with {process.returncode}: {''.join(seen)[-2000:]}"
                    ) from None
                if time.monotonic() > deadline:
                    shown = "".join(seen)[-2000:]
                    raise SystemExit(f"no start line from {command}: {shown}") from None
                continue
            seen.append(line)
            found = re.search(r"http://[\d.]+:\d+", line)
            url = found.group(0) if found else None
        while True:
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command} did not answer /health") from None
                time.sleep(0.1)
        yield url
    finally:
        # wait, not communicate: the pump thread owns the pipe (and sees its end)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check(url: str, path: str, fv: mfs.FeatureView, entities: list[dict[str, int]]) -> int:
    """Ask for ``entities`` one by one and all at once; compare with get_inference_vectors."""
    expected = fv.get_inference_vectors(entities)
    with httpx.Client(base_url=url, timeout=30) as client:
        answers = [client.post(path, json={"entities": [e]}) for e in entities]
        singles = [a.json()["vectors"][0] for a in answers]
        batch = client.post(path, json={"entities": entities}).json()["vectors"]
    for got in (singles, batch):
        for vector, row in zip(got, expected.iter_rows(), strict=True):
            if not all(_same(a, b) for a, b in zip(vector, row, strict=True)):
                raise AssertionError(f"{url}{path}: {vector} != {row}")
    return len(entities)


def wrk(
    url: str,
    path: str,
    bodies: Sequence[str],
    *,
    connections: int,
    seconds: int,
    scratch: Path,
    method: str = "POST",
    warm_up: bool = True,
) -> dict[str, Any]:
    """One wrk run (after a one-second warm-up run, unless ``warm_up`` is false)."""
    lua_bodies = scratch / "bodies.lua"
    lua_bodies.write_text(
        "return {\n" + ",\n".join(json.dumps(b) for b in bodies) + "\n}\n", encoding="utf-8"
    )
    script = scratch / "script.lua"
    script.write_text(
        WRK_SCRIPT % {"bodies": lua_bodies, "path": path, "method": method}, encoding="utf-8"
    )
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    command += ["-s", str(script), url]
    if warm_up:
        subprocess.run([*command[:-1], "-d1s", url], capture_output=True, check=True)
    load = os.getloadavg()[0]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    if raw["non2xx"] or raw["socket_errors"]:
        raise AssertionError(f"wrk saw errors: {raw}")
    return {
        "connections": connections,
        "requests": raw["requests"],
        "p50_us": raw["p50_us"],
        "p90_us": raw["p90_us"],
        "p99_us": raw["p99_us"],
        "max_us": raw["max_us"],
        "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6)),
        "loadavg_1m_at_start": round(load, 2),
    }


def measured(
    url: str,
    path: str,
    bodies: Sequence[str],
    *,
    connections: int,
    seconds: int,
    repeat: int,
    scratch: Path,
    method: str = "POST",
) -> dict[str, Any]:
    """``repeat`` wrk runs of one configuration: the median of each figure, and every run."""
    runs = [
        wrk(
            url,
            path,
            bodies,
            connections=connections,
            seconds=seconds,
            scratch=scratch,
            method=method,
            warm_up=i == 0,
        )
        for i in range(repeat)
    ]
    row: dict[str, Any] = {"connections": connections}
    for key in ("p50_us", "p90_us", "p99_us", "max_us", "requests_per_s", "loadavg_1m_at_start"):
        row[key] = statistics.median(r[key] for r in runs)
    row["runs"] = runs
    return row


FEAST_FEATURES = ["user_level", "age", "country", "price", "category"]
FEAST_REPO = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, FeatureService
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"])
item = Entity(name="item", join_keys=["item_id"])
day = timedelta(days=36500)
user_profile = FeatureView(
    name="user_profile", entities=[user], ttl=day,
    schema=[Field(name="user_level", dtype=String), Field(name="age", dtype=Int64),
            Field(name="country", dtype=String)],
    source=FileSource(path="data/user_profile.parquet", timestamp_field="timestamp"),
)
item_feature = FeatureView(
    name="item_feature", entities=[item], ttl=day,
    schema=[Field(name="price", dtype=Float64), Field(name="category", dtype=String)],
    source=FileSource(path="data/item_feature.parquet", timestamp_field="timestamp"),
)
user_activity = FeatureView(
    name="user_activity", entities=[user, item], ttl=day,
    schema=[Field(name="duration_sec", dtype=Float64)],
    source=FileSource(path="data/user_activity.parquet", timestamp_field="timestamp"),
)
recommendation = FeatureService(
    name="recommendation", features=[user_activity, user_profile, item_feature]
)
"""
FEAST_YAML = """project: microfs_bench
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def feast_repo(venv: Path, repo: Path, fv: mfs.FeatureView, entities: list[dict[str, int]]) -> None:
    """A Feast repository with the view's three groups' latest rows, materialised to SQLite.

    The activity table holds the benchmark's entities only (materialising all of it into
    Feast's SQLite store takes long); profiles and items are whole.
    """
    data = repo / "data"
    data.mkdir(parents=True)
    keys = pl.DataFrame(entities).unique()
    for group in [fv.label_group, *fv.joined_groups]:
        frame = group.scan().collect()
        frame = frame.sort("timestamp").unique(group.primary_keys, keep="last")
        if group.name == "user_activity":
            frame = frame.join(keys, on=["user_id", "item_id"]).drop("conversion")
        frame.write_parquet(data / f"{group.name}.parquet")
    (repo / "feature_store.yaml").write_text(FEAST_YAML, encoding="utf-8")
    (repo / "features.py").write_text(FEAST_REPO, encoding="utf-8")
    feast = str(venv / "bin" / "feast")
    subprocess.run([feast, "apply"], cwd=repo, check=True, capture_output=True)
    subprocess.run(
        [feast, "materialize", "2000-01-01T00:00:00", "2100-01-01T00:00:00"],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def feast_check(url: str, fv: mfs.FeatureView, entities: list[dict[str, int]]) -> int:
    """Feast's raw values equal the view's untransformed columns for ``entities``."""
    expected = fv.get_inference_vectors(entities)
    body = {
        "feature_service": "recommendation",
        "entities": {k: [e[k] for e in entities] for k in ("user_id", "item_id")},
    }
    document = httpx.post(url + "/get-online-features", json=body, timeout=60).json()
    names = document["metadata"]["feature_names"]
    for column in ("age", "country", "price", "category"):
        got = document["results"][names.index(column)]["values"]
        for a, b in zip(got, expected[column].to_list(), strict=True):
            if not _same(a, b):
                raise AssertionError(f"Feast {column}: {a} != {b}")
    return len(entities)


TARGETS = (  # issue 14: microfs serve, one worker, single-entity requests unless said
    ("p50 (µs) at 1 connection", "1 entity", 1, "p50_us", "<=", 200),
    ("p99 (µs) at 8 connections", "1 entity", 8, "p99_us", "<=", 1000),
    ("vectors/s at 8 connections", "1 entity", 8, "requests_per_s", ">=", 8000),
    ("p50 (µs) of a 100-entity request", "100 entities", 1, "p50_us", "<=", 2000),
)
FIELDS = {
    "server": "which server answered (all on core 0 but --workers 2: cores 0 and 1)",
    "request": "'1 entity': one entity per request, rotating over 10,000 entities; "
    "'N entities': N per request; 'GET /health': the cheapest route",
    "connections": "wrk's open connections, each sending its next request on an answer",
    "p50_us, p90_us, p99_us, max_us": "latency percentiles in microseconds, from wrk's "
    "histogram (median over the repeated runs)",
    "requests_per_s": "answered requests per second (median over the runs); for 1-entity "
    "requests, vectors per second",
    "loadavg_1m_at_start": "the machine's 1-minute load average when the run started "
    "(median); the machine has few cores, so other work shows here",
    "runs": "each run's figures",
    "checked": "entities whose answers were compared with get_inference_vectors (Feast: "
    "with the untransformed columns) before timing; a mismatch stops the benchmark",
}
DEFAULT_FEAST_VENV = Path("/work/venvs/feast")
"""Where this project's machines keep a virtual environment with Feast (override:
``--feast-venv`` or ``$MICROFS_FEAST_VENV``)."""


def run(
    *, size: str, seconds: int, batch: int, repeat: int, feast_venv: Path | None
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("MICROFS_TOKEN", "MICROFS_LAKE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    began = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="microfs-serve-") as tmp:
        scratch = Path(tmp)
        lake = scratch / "lake"
        fv, entities = build_lake(lake, size)
        singles = [json.dumps({"entities": [e]}) for e in entities]
        batches = [
            json.dumps({"entities": entities[i : i + batch]})
            for i in range(0, len(entities), batch)
        ]
        sample = entities[:200]
        peer_file = scratch / "peer.py"
        peer_file.write_text(PEER, encoding="utf-8")
        serve = [sys.executable, "-m", "microfs", "serve", "--lake", str(lake), "--port", "0"]
        peer = [sys.executable, "-m", "uvicorn", "peer:app", "--app-dir", str(scratch)]
        peer += ["--port", str(free_port()), "--log-level", "info", "--no-access-log"]
        rows: list[dict[str, Any]] = []

        def add(name: str, request: str, row: dict[str, Any], checked: int | None) -> None:
            rows.append({"server": name, "request": request, **row})
            if checked is not None:
                rows[-1]["checked"] = checked
            shown = {k: v for k, v in rows[-1].items() if k != "runs"}
            print(json.dumps(shown), flush=True)

        def measure(name: str, url: str, path: str, *, with_batch: bool = True) -> None:
            measure_requests(
                add,
                name,
                url,
                path,
                singles,
                batches if with_batch else [],
                check(url, path, fv, sample),
                seconds=seconds,
                repeat=repeat,
                scratch=scratch,
                batch=batch,
            )

        vectors = f"/v1/feature-views/{VIEW}/vectors"
        with server(serve, cores="0", env=env) as url:
            measure("microfs serve", url, vectors)
            row = measured(
                url,
                "/health",
                ["{}"],
                connections=8,
                seconds=seconds,
                repeat=repeat,
                scratch=scratch,
                method="GET",
            )
            add("microfs serve", "GET /health", row, None)
        with server([*serve, "--workers", "2"], cores="0,1", env=env) as url:
            measure("microfs serve --workers 2", url, vectors, with_batch=False)
        granian = shutil.which("granian", path=str(Path(sys.executable).parent))
        if granian is not None:
            (scratch / "on_granian.py").write_text(ON_GRANIAN, encoding="utf-8")
            port = free_port()
            command = [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
            command += ["--workers", "1", "--loop", "uvloop", "--log-level", "warning"]
            command += ["--working-dir", str(scratch), "on_granian:app"]
            url = f"http://127.0.0.1:{port}"
            with server(command, cores="0", env={**env, "LAKE": str(lake)}, url=url, cwd=scratch):
                measure("microfs app on granian", url, vectors, with_batch=False)
        with server(peer, cores="0", env={**env, "LAKE": str(lake)}) as url:
            measure("FastAPI in-process (peer)", url, "/vectors")
        if feast_venv is None:
            feast_note = "not run (--no-feast)"
        elif not (feast_venv / "bin" / "feast").exists():
            feast_note = f"not run: no Feast virtual environment at {feast_venv}"
        else:
            feast_note = run_feast(feast_venv, scratch, fv, entities, add, seconds, batch, repeat)
        import fastapi
        import uvicorn

        return {
            "benchmark": "serve",
            "command": "python benchmarks/bench_serve.py " + " ".join(sys.argv[1:]),
            "view": f"{VIEW} (3 groups, scale + one_hot_encode)",
            "size": size,
            "labels": fv.label_group.count(),
            "seconds_per_run": seconds,
            "runs_per_figure": repeat,
            "load_generator": "wrk 4.1.0 (Debian), 1 thread, pinned to core 1, after a 1 s "
            "warm-up run per configuration",
            "server_cores": "core 0 (workers 2: cores 0,1, sharing core 1 with wrk)",
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in began],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "versions": {
                "python": sys.version.split()[0],
                "uvicorn": uvicorn.__version__,
                "fastapi": fastapi.__version__,
                "granian": _version_of("granian"),
            },
            "feast": feast_note,
            "targets": targets(rows),
            "ratios": ratios(rows, batch),
            "fields": FIELDS,
            "results": rows,
        }


def _version_of(package: str) -> str | None:
    """The installed version of ``package``; None when it is not installed (not run)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _row(rows: list[dict[str, Any]], server: str, request: str, connections: int) -> Any:
    return next(
        (
            r
            for r in rows
            if r["server"] == server and r["request"] == request and r["connections"] == connections
        ),
        None,
    )


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets for ``microfs serve`` (one worker) against this run's medians."""
    checked = []
    for label, request, connections, key, op, bound in TARGETS:
        row = _row(rows, "microfs serve", request, connections)
        value = None if row is None else row[key]
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        checked.append({"target": f"{label} {op} {bound:,}", "measured": value, "met": met})
    return checked


def ratios(rows: list[dict[str, Any]], batch: int) -> dict[str, dict[str, float]]:
    """How many times lower MicroFS's p50 is and how many times higher its throughput."""
    out: dict[str, dict[str, float]] = {}
    for peer in ("FastAPI in-process (peer)", "Feast feature server"):
        figures: dict[str, float] = {}
        for request, connections in [("1 entity", 1), ("1 entity", 8), ("1 entity", 64)] + [
            (f"{batch} entities", 1)
        ]:
            ours = _row(rows, "microfs serve", request, connections)
            theirs = _row(rows, peer, request, connections)
            if ours is None or theirs is None:
                continue
            where = f"{request}, {connections} conn"
            figures[f"p50 {where}"] = round(theirs["p50_us"] / ours["p50_us"], 1)
            figures[f"req/s {where}"] = round(ours["requests_per_s"] / theirs["requests_per_s"], 1)
        if figures:
            out[f"microfs serve vs {peer}"] = figures
    return out


def _us(value: float) -> str:
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"


def table(result: dict[str, Any]) -> str:
    """The run as a text table: medians of each configuration, the targets, the ratios."""
    lines = [
        f"bench_serve: {result['view']}, {result['labels']:,} labels; wrk on core 1, servers on "
        f"core 0; {result['runs_per_figure']} run(s) of {result['seconds_per_run']} s per "
        f"figure, medians; load average {result['loadavg_at_start'][0]} at start, "
        f"{result['loadavg_at_end'][0]} at end ({result['cpus']} CPUs)",
        "",
        f"{'server':<28} {'request':<14} {'conns':>5} {'p50':>9} {'p90':>9} {'p99':>9} "
        f"{'req/s':>8} {'load':>5}",
    ]
    for r in result["results"]:
        lines.append(
            f"{r['server']:<28} {r['request']:<14} {r['connections']:>5} {_us(r['p50_us']):>9} "
            f"{_us(r['p90_us']):>9} {_us(r['p99_us']):>9} {r['requests_per_s']:>8,.0f} "
            f"{r['loadavg_1m_at_start']:>5.2f}"
        )
    lines += ["", "targets (microfs serve, one worker):"]
    for t in result["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        value = t["measured"]
        shown = "-" if value is None else f"{value:,.0f}" if "/s" in t["target"] else _us(value)
        lines.append(f"  {t['target']:<42} measured {shown:>9}  {verdict}")
    for name, figures in result["ratios"].items():
        lines.append(f"{name} (x lower p50 / x more req/s):")
        lines += [f"  {k:<32} {v:>6}x" for k, v in figures.items()]
    lines.append(f"Feast: {result['feast']}")
    return "\n".join(lines)


def measure_requests(
    add: Callable[[str, str, dict[str, Any], int | None], None],
    name: str,
    url: str,
    path: str,
    singles: list[str],
    batches: list[str],
    checked: int | None,
    *,
    seconds: int,
    repeat: int,
    scratch: Path,
    batch: int,
) -> None:
    """One server's rows: single entities at 1, 8 and 64 connections, then batches.

    The ``batch``-entity requests run at one connection; none when ``batches`` is empty.
    """
    runs = [("1 entity", singles, connections) for connections in (1, 8, 64)]
    runs += [(f"{batch} entities", batches, 1)] if batches else []
    for request, bodies, connections in runs:
        row = measured(
            url,
            path,
            bodies,
            connections=connections,
            seconds=seconds,
            repeat=repeat,
            scratch=scratch,
        )
        add(name, request, row, checked)


def run_feast(
    venv: Path,
    scratch: Path,
    fv: mfs.FeatureView,
    entities: list[dict[str, int]],
    add: Callable[[str, str, dict[str, Any], int | None], None],
    seconds: int,
    batch: int,
    repeat: int,
) -> str:
    """Feast's own feature server (SQLite online store) on the same data, one worker."""
    repo = scratch / "feast_repo"
    began = time.perf_counter()
    try:
        feast_repo(venv, repo, fv, entities)
    except subprocess.CalledProcessError as exc:
        return f"feast apply/materialize failed: {exc.stderr[-500:]!r}"
    prepared = time.perf_counter() - began
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    port = free_port()
    command = [str(venv / "bin" / "feast"), "serve", "-p", str(port), "--no-access-log"]
    command += ["--max-requests", "100000000", "--workers", "1"]

    def body(chunk: list[dict[str, int]]) -> str:
        keys = {k: [e[k] for e in chunk] for k in ("user_id", "item_id")}
        return json.dumps({"feature_service": "recommendation", "entities": keys})

    singles = [body([e]) for e in entities]
    batches = [body(entities[i : i + batch]) for i in range(0, len(entities), batch)]
    url = f"http://127.0.0.1:{port}"
    with server(command, cores="0", env=env, url=url, cwd=repo):
        checked = feast_check(url, fv, entities[:200])
        measure_requests(
            add,
            "Feast feature server",
            url,
            "/get-online-features",
            singles,
            batches,
            checked,
            seconds=seconds,
            repeat=repeat,
            scratch=scratch,
            batch=batch,
        )
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import feast; print(feast.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"feast {version}, SQLite online store, `feast serve --workers 1`; apply + materialize "
        f"took {prepared:.1f} s; raw values (age, country, price, category) checked equal on "
        f"{checked} entities; Feast serves raw features (no scale/one-hot)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--repeat", type=int, default=3, help="wrk runs per figure; the medians are reported"
    )
    parser.add_argument(
        "--feast-venv",
        type=Path,
        default=Path(os.environ.get("MICROFS_FEAST_VENV", DEFAULT_FEAST_VENV)),
        help="a virtual environment with feast installed, whose feature server runs in the "
        f"same run (default: $MICROFS_FEAST_VENV or {DEFAULT_FEAST_VENV}; skipped, and said "
        "so, when it does not exist)",
    )
    parser.add_argument("--no-feast", action="store_true", help="leave Feast's server out")
    args = parser.parse_args(argv)
    result = run(
        size=args.size,
        seconds=args.seconds,
        batch=args.batch,
        repeat=args.repeat,
        feast_venv=None if args.no_feast else args.feast_venv,
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(__file__).parent / "results" / f"serve-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(result))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
