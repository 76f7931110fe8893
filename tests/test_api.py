"""The public surface: what ``import microfs`` offers, and the error tree."""

from __future__ import annotations

import inspect

import microfs as mfs
from microfs import errors


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in vars(mfs) if not n.startswith("_") and not inspect.ismodule(vars(mfs)[n])}
    assert set(mfs.__all__) - {"__version__"} == public - {"annotations"}
    for name in mfs.__all__:
        assert hasattr(mfs, name), name


def test_every_error_derives_from_microfs_error() -> None:
    classes = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, Exception)]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, mfs.MicroFSError), cls
        assert cls.__name__ in errors.__doc__ or cls is mfs.MicroFSError


def test_seed_api_names_exist() -> None:
    fs_methods = [
        "create_feature_group",
        "get_feature_group",
        "list_feature_groups",
        "create_feature_view",
        "get_feature_view",
        "list_feature_views",
        "refresh",
    ]
    for name in fs_methods:
        assert callable(getattr(mfs.FeatureStore, name)), name
    fv_methods = [
        "training_frame",
        "get_training_data",
        "train_test_split",
        "create_training_dataset",
        "get_training_dataset",
        "get_batch_data",
        "get_inference_vector",
        "get_inference_vectors",
    ]
    for name in fv_methods:
        assert callable(getattr(mfs.FeatureView, name)), name
