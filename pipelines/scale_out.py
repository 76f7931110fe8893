"""Scale-out pipeline: a recorded training dataset's frame built on Daft, written to Parquet.

Usage::

    python pipelines/scale_out.py [--lake PATH] [--out FILE] [--ray ADDRESS | --local-ray N]

Needs ``pip install "microfs[scale]"``. Uses the training pipeline's view
(``recommendation_model_v1``, created if missing), records a training dataset (pinning
every table version), then builds that dataset's point-in-time frame with
``engine="daft"`` and streams it, in order, into one Parquet file. Daft runs on its
native runner unless ``--ray ADDRESS`` points it at a running Ray cluster
(``daft.set_runner_ray(ADDRESS)``) or ``--local-ray N`` starts a local one of N CPUs for
a try. On a cluster every node must read the lake at the same path. The frame is checked
against the Polars engine's unless ``--no-check``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl

import microfs as mfs

VIEW = "recommendation_model_v1"
JOINS = [
    {"fg_name": "user_profile", "on": ["user_id"]},
    {"fg_name": "item_feature", "on": ["item_id"]},
]
TRANSFORMS = [
    {"type": "scale", "column": "duration_sec"},
    {"type": "one_hot_encode", "column": "user_level"},
    {"type": "label_encode", "column": "category"},
    {"type": "label_encode", "column": "country"},
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; return the process exit code."""
    parser = argparse.ArgumentParser(prog="scale_out", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lake", default=None, help="lake folder (default: $MICROFS_LAKE or ./lake)"
    )
    parser.add_argument("--out", default=None, help="Parquet file (default: <lake>/exports/…)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--ray", metavar="ADDRESS", help="a running Ray cluster, e.g. ray://head:10001"
    )
    where.add_argument("--local-ray", type=int, metavar="N", help="start a local Ray of N CPUs")
    parser.add_argument("--no-check", action="store_true", help="skip the Polars comparison")
    args = parser.parse_args(argv)

    try:
        import daft
    except ImportError:
        print('this pipeline needs Daft: pip install "microfs[scale]"', file=sys.stderr)
        return 2
    if args.local_ray is not None:
        import ray

        ray.init(
            address="local",
            num_cpus=args.local_ray,
            include_dashboard=False,
            log_to_driver=False,
        )
        daft.set_runner_ray()
    elif args.ray is not None:
        daft.set_runner_ray(args.ray)

    fs = mfs.FeatureStore(args.lake)
    if VIEW in fs.list_feature_views():
        fv = fs.get_feature_view(VIEW)
    else:
        fv = fs.create_feature_view(
            name=VIEW,
            label_fg="user_activity",
            label_col="conversion",
            joins=JOINS,
            transforms=TRANSFORMS,
        )
    number = fv.create_training_dataset()
    versions = fv.get_training_dataset(number).table_versions
    out = Path(args.out) if args.out else Path(fs.root) / "exports" / f"{VIEW}_td{number}.parquet"
    runner = "ray" if args.ray or args.local_ray else "native"
    started = time.perf_counter()
    rows = fv.write_training_frame(out, table_versions=versions, engine="daft")
    seconds = time.perf_counter() - started
    print(
        f"{rows:,} rows of training dataset {number} written to {out} by Daft ({runner}) "
        f"in {seconds:.2f} s",
        flush=True,
    )
    if not args.no_check:
        expected = fv.training_frame(table_versions=versions).collect(engine="in-memory")
        if not pl.read_parquet(out).equals(expected):
            print("the Daft frame differs from the Polars frame", file=sys.stderr)
            return 1
        print("equal to the Polars engine's frame", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
