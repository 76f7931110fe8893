"""Feature pipeline: create the seed's three feature groups and fill them with synthetic data.

Usage::

    python pipelines/feature_pipeline.py [--lake PATH] [--size tiny|small|medium] [--seed N]

Re-running is safe: inserts are upserts on (primary keys, event time), so the same data
gives new table versions with the same rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import polars as pl

import microfs as mfs
from microfs import synthetic


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; return the process exit code."""
    parser = argparse.ArgumentParser(prog="feature_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lake", default=None, help="lake folder (default: $MICROFS_LAKE or ./lake)"
    )
    parser.add_argument("--size", default="tiny", choices=sorted(synthetic.SIZES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    fs = mfs.FeatureStore(args.lake)
    started = time.perf_counter()
    print(f"generating the {args.size} synthetic world (seed {args.seed}) ...", flush=True)
    world = synthetic.generate_world(args.size, seed=args.seed)
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    for name, frame in world.frames().items():
        fg = fs.get_or_create_feature_group(
            name,
            schema=synthetic.SCHEMAS[name],
            **synthetic.GROUPS[name],
            **synthetic.QUALITY[name],
        )
        began = time.perf_counter()
        # one corrupt catalogue row shows the quarantine: it goes to the rejects table
        corrupt = name == "item_feature" and fg.definition.validation == "quarantine"
        result = fg.insert(
            pl.concat([frame, _corrupt_item()]) if corrupt else frame, progress=sys.stderr.isatty()
        )
        print(
            f"  {name:<14} {frame.height:>11,} rows -> table version {result.table_version} "
            f"({result.mode}: {result.rows_inserted:,} inserted, {result.rows_updated:,} updated, "
            f"{time.perf_counter() - began:.1f} s)",
            flush=True,
        )
        if result.rows_rejected:
            reasons = fg.rejects().select("reason").collect()["reason"][-result.rows_rejected :]
            print(
                f"  {'':<14} {result.rows_rejected:>11,} corrupt row(s) quarantined "
                f"({', '.join(reasons)}): see fg.rejects()",
                flush=True,
            )
    profiles = fs.get_feature_group("user_profile")
    if profiles.definition.expectations and profiles.definition.validation == "strict":
        # a bad batch shows the strict policy: refused whole, nothing written
        try:
            profiles.insert(_bad_profiles())
        except mfs.ValidationError as exc:
            print(f"  refused a bad user_profile batch: {exc}", flush=True)
    return 0


def _corrupt_item() -> pl.DataFrame:
    """A catalogue row with a negative price, at a time after all the generated rows."""
    return pl.DataFrame(
        {
            "item_id": [synthetic.FIRST_ITEM_ID],
            "timestamp": [synthetic.DEFAULT_END],
            "price": [-1.0],
            "category": ["books"],
        },
        schema=synthetic.POLARS_SCHEMAS["item_feature"],
    )


def _bad_profiles() -> pl.DataFrame:
    """Two profile rows a careless upstream job might send: an unknown level, age 250."""
    return pl.DataFrame(
        {
            "user_id": [synthetic.FIRST_USER_ID, synthetic.FIRST_USER_ID + 1],
            "timestamp": [synthetic.DEFAULT_END, synthetic.DEFAULT_END],
            "user_level": ["diamond", "gold"],
            "age": [34, 250],
            "country": ["US", "GB"],
        },
        schema=synthetic.POLARS_SCHEMAS["user_profile"],
    )


if __name__ == "__main__":
    sys.exit(main())
