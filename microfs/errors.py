"""Errors raised by MicroFS.

Every error MicroFS raises on purpose derives from :class:`MicroFSError`. Messages name
the offending value and say what would be right.

The tree::

    MicroFSError
    ├── InvalidNameError          a name that is not lower-case letters, digits and `_`
    ├── NotFoundError             a group, view, version or training dataset that does not exist
    ├── AlreadyExistsError        a definition of that name and version exists already
    ├── DefinitionError           a feature view or transformation definition that cannot work
    ├── SchemaError               data whose columns or types do not fit the group's schema
    │   └── TimestampError        a naive, null or sub-microsecond event time
    ├── DuplicateKeyError         two rows of one batch with the same key and event time
    ├── NotFittedError            transformation parameters were asked for before fitting
    ├── CommitConflictError       a concurrent commit that could not be retried
    ├── VacuumError               a vacuum that would break recorded training datasets
    ├── ServerConfigError         a feature server that cannot start as asked
    ├── MissingDependencyError    an optional engine asked for but not installed
    ├── LakeError                 a lake file that is damaged, truncated or not MicroFS's
    └── ValidationError           a batch that fails its group's expectations (strict policy)

(A batch written in spite of failing expectations, under the ``warn`` policy, raises no
error but a warning: :class:`microfs.ValidationWarning`, a ``UserWarning``.)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExistsError",
    "CommitConflictError",
    "DefinitionError",
    "DuplicateKeyError",
    "InvalidNameError",
    "LakeError",
    "MicroFSError",
    "MissingDependencyError",
    "NotFittedError",
    "NotFoundError",
    "SchemaError",
    "ServerConfigError",
    "TimestampError",
    "VacuumError",
    "ValidationError",
]


class MicroFSError(Exception):
    """Base class of every error MicroFS raises on purpose."""


class InvalidNameError(MicroFSError, ValueError):
    """A name of a group, view or column that MicroFS cannot accept."""


class NotFoundError(MicroFSError, LookupError):
    """A feature group, feature view, version or training dataset that does not exist."""


class AlreadyExistsError(MicroFSError):
    """A definition with that name and version exists already."""


class DefinitionError(MicroFSError, ValueError):
    """A feature view, join or transformation definition that cannot work."""


class SchemaError(MicroFSError, ValueError):
    """Data whose columns or types do not fit the feature group's schema."""


class TimestampError(SchemaError):
    """An event time that is null, naive (no time zone) or finer than a microsecond."""


class DuplicateKeyError(MicroFSError, ValueError):
    """Two rows of one batch share their primary key and event time."""


class NotFittedError(MicroFSError):
    """Transformation parameters were needed before they were fitted."""


class CommitConflictError(MicroFSError):
    """A concurrent commit conflicted in a way that retrying cannot resolve."""


class VacuumError(MicroFSError):
    """A vacuum that would delete files recorded training datasets still need."""


class ServerConfigError(MicroFSError):
    """An HTTP feature server that cannot start as asked (libraries missing, no token)."""


class MissingDependencyError(MicroFSError, ImportError):
    """An optional engine was asked for but its packages are not installed."""


class LakeError(MicroFSError):
    """A file of the lake that cannot be read: damaged, truncated or not written by MicroFS.

    The message names the file; the rest of the lake keeps working.
    """


class ValidationError(MicroFSError, ValueError):
    """A batch that fails its feature group's expectations; nothing was written.

    Attributes:
        report: the :class:`microfs.ValidationReport` of the batch: per expectation, how
            many rows fail and up to five sample values.
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report
