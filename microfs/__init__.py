"""MicroFS: an embedded feature store.

Feature groups are versioned Delta tables on local disk, feature views run as lazy Polars
query plans with point-in-time joins on event time, and an in-process key-value cache
built from the latest snapshots is the online store.

>>> import microfs as mfs
>>> issubclass(mfs.NotFoundError, mfs.MicroFSError)
True
"""

from __future__ import annotations

from microfs.errors import (
    AlreadyExistsError,
    CommitConflictError,
    DefinitionError,
    DuplicateKeyError,
    InvalidNameError,
    LakeError,
    MicroFSError,
    MissingDependencyError,
    NotFittedError,
    NotFoundError,
    SchemaError,
    ServerConfigError,
    TimestampError,
    VacuumError,
    ValidationError,
)
from microfs.expectations import Expectation, ValidationReport, ValidationWarning
from microfs.feature_group import (
    Commit,
    CompactResult,
    DeleteResult,
    FeatureGroup,
    FeatureGroupDefinition,
    InsertResult,
    SchemaChange,
    VacuumResult,
)
from microfs.feature_view import FeatureView, FeatureViewDefinition, Join, TrainingDataset
from microfs.online import OnlineStore, OnlineTable
from microfs.progress import ProgressEvent
from microfs.store import FeatureStore
from microfs.transformations import FittedParams, Transform

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "Commit",
    "CommitConflictError",
    "CompactResult",
    "DefinitionError",
    "DeleteResult",
    "DuplicateKeyError",
    "Expectation",
    "FeatureGroup",
    "FeatureGroupDefinition",
    "FeatureStore",
    "FeatureView",
    "FeatureViewDefinition",
    "FittedParams",
    "InsertResult",
    "InvalidNameError",
    "Join",
    "LakeError",
    "MicroFSError",
    "MissingDependencyError",
    "NotFittedError",
    "NotFoundError",
    "OnlineStore",
    "OnlineTable",
    "ProgressEvent",
    "SchemaChange",
    "SchemaError",
    "ServerConfigError",
    "TimestampError",
    "TrainingDataset",
    "Transform",
    "VacuumError",
    "VacuumResult",
    "ValidationError",
    "ValidationReport",
    "ValidationWarning",
    "__version__",
]
