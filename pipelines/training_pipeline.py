"""Training pipeline: a feature view, a reproducible training dataset and a LightGBM model.

Usage::

    python pipelines/training_pipeline.py [--lake PATH] [--test-size 0.2]

Creates the seed's ``recommendation_model_v1`` view (or reuses it), records a time-split
training dataset, trains LightGBM, reports AUC on the test part and saves the model in
LightGBM's own text format under ``<lake>/models/`` beside a JSON file naming the view and
the training dataset it came from.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

import microfs as mfs
from microfs.progress import track

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


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve, from the Mann-Whitney rank statistic (ties averaged)."""
    ranks = pl.Series(score).rank("average").to_numpy()
    positives = y_true == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; return the process exit code."""
    parser = argparse.ArgumentParser(prog="training_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lake", default=None, help="lake folder (default: $MICROFS_LAKE or ./lake)"
    )
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)

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
    on_terminal = sys.stderr.isatty()  # progress bars only where someone watches
    td_version = fv.create_training_dataset(
        test_size=args.test_size, split="time", progress=on_terminal
    )
    td = fv.get_training_dataset(td_version)
    assert td.X_test is not None
    assert td.y_test is not None
    print(
        f"training dataset {td_version} of {VIEW}: {td.X_train.height:,} train rows, "
        f"{td.X_test.height:,} test rows, table versions {dict(td.table_versions)}",
        flush=True,
    )
    params = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 31,
        "verbose": -1,
        "seed": 0,
        "deterministic": True,
        "num_threads": 1,
    }
    train = lgb.Dataset(
        td.X_train.to_numpy(), label=td.y_train.to_numpy(), feature_name=td.X_train.columns
    )
    with track(on_terminal, task="LightGBM", total=args.rounds, unit="round") as step:
        booster = lgb.train(
            params,
            train,
            num_boost_round=args.rounds,
            callbacks=[lambda env: step(f"round {env.iteration + 1}")],
        )
    score = booster.predict(td.X_test.to_numpy())
    test_auc = auc(td.y_test.to_numpy(), np.asarray(score))
    print(f"test AUC {test_auc:.4f} over {td.X_test.height:,} rows", flush=True)

    models = Path(fs.root) / "models" / VIEW
    models.mkdir(parents=True, exist_ok=True)
    model_path = models / f"td{td_version}.txt"
    booster.save_model(str(model_path))
    meta = {
        "feature_view": VIEW,
        "feature_view_version": fv.version,
        "training_dataset": td_version,
        "columns": td.X_train.columns,
        "model": model_path.name,
        "test_auc": test_auc,
    }
    (models / f"td{td_version}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"model saved to {model_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
