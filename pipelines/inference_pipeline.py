"""Inference pipeline: fetch an online feature vector and score it with the saved model.

Usage::

    python pipelines/inference_pipeline.py --user_id 1 --item_id 102 [--lake PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np

import microfs as mfs

VIEW = "recommendation_model_v1"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; return the process exit code."""
    parser = argparse.ArgumentParser(prog="inference_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--user_id", type=int, required=True)
    parser.add_argument("--item_id", type=int, required=True)
    parser.add_argument(
        "--lake", default=None, help="lake folder (default: $MICROFS_LAKE or ./lake)"
    )
    args = parser.parse_args(argv)

    fs = mfs.FeatureStore(args.lake)
    models = Path(fs.root) / "models" / VIEW
    metas = (
        sorted(models.glob("td*.json"), key=lambda p: int(p.stem[2:])) if models.is_dir() else []
    )
    if not metas:
        print(
            f"no trained model for {VIEW} in {models}; run the training pipeline first",
            file=sys.stderr,
        )
        return 1
    meta = json.loads(metas[-1].read_text())
    booster = lgb.Booster(model_file=str(models / meta["model"]))
    fv = fs.get_feature_view(meta["feature_view"], meta["feature_view_version"])
    entity = {"user_id": args.user_id, "item_id": args.item_id}
    vector = fv.get_inference_vector(entity, return_type="dict")
    if list(vector) != meta["columns"]:
        print("the view's columns differ from the model's; retrain the model", file=sys.stderr)
        return 1
    values = np.array([[np.nan if v is None else v for v in vector.values()]], dtype=np.float64)
    prediction = float(booster.predict(values)[0])
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in vector.items()
    )
    print(f"entity {entity}")
    print(f"vector [{shown}]")
    print(
        f"predicted conversion probability {prediction:.4f} "
        f"(model of training dataset {meta['training_dataset']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
