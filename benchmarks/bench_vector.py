"""Online feature vectors of the seed's view: single-vector latency and 1,000-vector batches.

The seed's ``recommendation_model_v1`` (``user_activity`` joined to ``user_profile`` and
``item_feature``, ``scale(duration_sec)`` and ``one_hot_encode(user_level)``) over the
small synthetic world (1M labels, 50k users, 10k items). Measures the first lookup (which
builds the three online tables), ``get_inference_vector`` latency over many single calls,
and ``get_inference_vectors`` for batches of 1,000 entities. Before timing, every vector of
a sample, one by one and as one batch, is checked equal to its training row.

    python benchmarks/bench_vector.py [--lookups 10000] [--batches 50]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from bench_online import summary, vector_latency

import microfs as mfs
from microfs import synthetic  # noqa: E402

SEED_JOINS = [
    {"fg_name": "user_profile", "on": ["user_id"]},
    {"fg_name": "item_feature", "on": ["item_id"]},
]
SEED_TRANSFORMS = [
    {"type": "scale", "column": "duration_sec"},
    {"type": "one_hot_encode", "column": "user_level"},
]


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    return bool(a == b)


def run(*, lookups: int = 10_000, batches: int = 50, size: str = "small") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        fs = mfs.FeatureStore(Path(tmp) / "lake")
        world = synthetic.generate_world(size, seed=0)
        for name, frame in world.frames().items():
            fs.create_feature_group(name, schema=synthetic.SCHEMAS[name], **synthetic.GROUPS[name])
            fs.get_feature_group(name).insert(frame)
        fv = fs.create_feature_view(
            name="recommendation_model_v1",
            label_fg="user_activity",
            label_col="conversion",
            joins=SEED_JOINS,
            transforms=SEED_TRANSFORMS,
        )
        X, _ = fv.get_training_data(compute_params=True)

        started = time.perf_counter()
        fv.get_inference_vector({"user_id": 1, "item_id": 102})
        first_s = time.perf_counter() - started

        # Equality before timing: the latest label row of entities whose latest label is
        # later than every feature row of its user and item (the online store serves the
        # latest features; a training row sees those as of its label time).
        frame = fv.training_frame().collect(engine="in-memory").with_row_index("row")
        latest = frame.group_by("user_id", "item_id").agg(
            pl.col("row").max(), pl.col("timestamp").max().alias("last")
        )
        profile = world.user_profile.group_by("user_id").agg(pl.col("timestamp").max().alias("p"))
        item = world.item_feature.group_by("item_id").agg(pl.col("timestamp").max().alias("i"))
        settled = (
            latest.join(profile, on="user_id", how="left")
            .join(item, on="item_id", how="left")
            .filter((pl.col("last") >= pl.col("p")) & (pl.col("last") >= pl.col("i")))
        )
        sample = settled.sample(n=min(2_000, settled.height), seed=1)
        checked = 0
        for row in sample.iter_rows(named=True):
            vector = fv.get_inference_vector({"user_id": row["user_id"], "item_id": row["item_id"]})
            expected = X.row(row["row"])
            if not all(_same(a, b) for a, b in zip(vector, expected, strict=True)):
                raise AssertionError(f"online vector differs from training row {row}")
            checked += 1
        batch_out = fv.get_inference_vectors(sample.select("user_id", "item_id"))
        for position, row in enumerate(sample.iter_rows(named=True)):
            got, expected = batch_out.row(position), X.row(row["row"])
            if not all(_same(a, b) for a, b in zip(got, expected, strict=True)):
                raise AssertionError(f"batch vector differs from training row {row}")

        rng = np.random.default_rng(0)
        pairs = latest.select("user_id", "item_id")
        picks = rng.integers(0, pairs.height, lookups)
        entities = [
            dict(zip(("user_id", "item_id"), pairs.row(int(i)), strict=True)) for i in picks
        ]
        single = vector_latency(fv.get_inference_vector, entities)

        times = []
        for b in range(batches):
            chosen = entities[(b * 1_000) % len(entities) :][:1_000]
            began = time.perf_counter_ns()
            out = fv.get_inference_vectors(chosen)
            times.append(time.perf_counter_ns() - began)
            assert out.height == len(chosen)
        batch = summary(np.array(times, dtype=np.float64), unit=1e6)
        return {
            "view": "recommendation_model_v1 (3 groups, scale + one_hot_encode)",
            "size": size,
            "labels": world.user_activity.height,
            "first_lookup_builds_tables_s": round(first_s, 3),
            "checked_equal_vectors": checked,
            "single_vector": single,
            "batch_1000": batch,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--size", default="small")
    args = parser.parse_args(argv)
    result = run(lookups=args.lookups, batches=args.batches, size=args.size)
    print(json.dumps(result, indent=2))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(__file__).parent / "results" / f"vector-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
