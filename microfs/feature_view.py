"""Feature views: lazy point-in-time training frames, fitted transformations, training datasets.

A feature view names a label group (the spine: one output row per label row) and the
feature groups joined onto it as of each label's event time. Its definition is stored as
JSON and pins the definition version of every group it reads; fitted transformation
parameters and training datasets are further immutable JSON records beside it.

The columns of ``X`` come in one fixed order: the label group's features (its columns
that are not primary keys, event time or the label) in schema order, then each join's
features in join order (prefixed); a transformed column is replaced in place by its
output column(s), and ``one_hot_encode`` expands in place to ``<col>_<value>`` columns in
sorted category order. Inference vectors use the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from microfs._frame_plan import FramePlanner
from microfs.errors import DefinitionError, NotFittedError, NotFoundError
from microfs.feature_group import FeatureGroup
from microfs.online import OnlineStore
from microfs.registry import PARAMS, Registry
from microfs.schema import aware_utc
from microfs.serving import VectorServer
from microfs.transformations import (
    FittedParams,
    apply_transforms,
    fit_transforms,
    output_columns,
)
from microfs.view_definition import (
    FeatureViewDefinition,
    Join,
    PinnedGroup,
    SplitMode,
    TrainingDatasetRecord,
)

__all__ = [
    "FeatureView",
    "FeatureViewDefinition",
    "Join",
    "SplitMode",
    "TrainingDataset",
]


@dataclass(frozen=True)
class TrainingDataset:
    """A reproducible training dataset: its data and the record that pins it.

    ``X_test`` and ``y_test`` are None when the dataset has no split. The record's fields
    (table versions, window, split, seed, fitted parameters) read as attributes too.
    """

    version: int
    X_train: pl.DataFrame
    y_train: pl.Series
    X_test: pl.DataFrame | None
    y_test: pl.Series | None
    record: TrainingDatasetRecord

    @property
    def table_versions(self) -> dict[str, int]:
        """The pinned Delta table version per group name."""
        return self.record.table_versions

    @property
    def start(self) -> datetime | None:
        """First label event time included, or None."""
        return self.record.start

    @property
    def end(self) -> datetime | None:
        """Label event times are earlier than this, or None."""
        return self.record.end

    @property
    def test_size(self) -> float | None:
        """The test share, or None without a split."""
        return self.record.test_size

    @property
    def split(self) -> SplitMode:
        """How the test rows were chosen."""
        return self.record.split

    @property
    def seed(self) -> int:
        """The seed of a random split."""
        return self.record.seed

    @property
    def params(self) -> FittedParams:
        """The transformation parameters fitted on the train part."""
        return self.record.params

    @property
    def metadata(self) -> dict[str, Any]:
        """The record as stored (JSON form), with its number."""
        return {**self.record.to_dict(), "number": self.version}


class FeatureView:
    """A label group joined point-in-time to feature groups, with fitted transformations.

    Get one from :meth:`microfs.FeatureStore.create_feature_view` or
    :meth:`microfs.FeatureStore.get_feature_view`, which give it what it reads: its
    definition, its groups, the registry that holds its parameters and training datasets,
    and the online store its vectors come from.

    Args:
        definition: The view's definition.
        label: The label group (the spine).
        groups: The joined groups, one per join, in join order.
        registry: Where fitted parameters and training dataset records are stored.
        online: The online store that serves the groups' latest rows.
    """

    def __init__(
        self,
        definition: FeatureViewDefinition,
        *,
        label: FeatureGroup,
        groups: Sequence[FeatureGroup],
        registry: Registry,
        online: OnlineStore,
    ) -> None:
        self.definition = definition
        self._label = label
        self._groups = list(groups)
        self._registry = registry
        self._online = online
        self._planner = FramePlanner(definition, label, self._groups)
        self._feature_columns = list(self._planner.feature_columns)
        self._time: str = self._planner.time
        self._server: tuple[int, VectorServer] | None = None

    # -- definition ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The view's name."""
        return self.definition.name

    @property
    def version(self) -> int:
        """The view's version."""
        return self.definition.version

    @property
    def label_col(self) -> str:
        """The label column."""
        return self.definition.label_col

    @property
    def feature_columns(self) -> list[str]:
        """Untransformed feature columns in ``X`` order."""
        return list(self._feature_columns)

    @property
    def label_group(self) -> FeatureGroup:
        """The label group (the spine)."""
        return self._label

    @property
    def joined_groups(self) -> list[FeatureGroup]:
        """The joined groups, in join order."""
        return list(self._groups)

    def __repr__(self) -> str:
        return f"FeatureView(name={self.name!r}, version={self.version})"

    # -- plans ---------------------------------------------------------------------------

    def table_versions(self) -> dict[str, int]:
        """The current Delta table version of every group the view reads."""
        versions = {self._label.name: self._label.table_version()}
        for group in self._groups:
            versions[group.name] = group.table_version()
        return versions

    def training_frame(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        table_versions: Mapping[str, int] | None = None,
        window: timedelta | None = None,
    ) -> pl.LazyFrame:
        """The lazy point-in-time frame: label keys, event time, features, label.

        One row per label row with ``start <= t < end``, ordered by label event time then
        the label group's primary keys. Features are untransformed. For a frame that fits
        in memory, ``collect(engine="in-memory")`` is the fastest way to run it (Polars'
        default streaming engine runs the as-of joins more slowly).

        Args:
            start: first label event time included (inclusive), or None.
            end: label event times must be earlier than this, or None.
            table_versions: Delta table version per group name (latest when absent).
            window: build the plan as a sequence of event-time windows of this length,
                each joining only its own feature rows plus the latest row per key from
                before it (same result, for ``collect(engine="streaming")`` or
                ``sink_parquet``). Polars' streaming engine may run the windows at the
                same time, so this alone does not bound memory (at 10M labels it used
                more than the single plan): :meth:`write_training_frame` runs them one
                after another.

        >>> frame = fv.training_frame(end=cutoff).collect(engine="in-memory")  # doctest: +SKIP
        >>> fv.training_frame(window=timedelta(days=7)).sink_parquet("t.parquet")  # doctest: +SKIP
        """
        planner = self._planner
        if window is None:
            return planner.plan(start, end, table_versions)
        versions = dict(table_versions) if table_versions is not None else self.table_versions()
        parts = planner.window_plans(start, end, window, versions)
        if not parts:
            return planner.plan(start, end, versions)
        return pl.concat(parts, how="vertical")

    def write_training_frame(
        self,
        path: str | Path,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        window: timedelta = timedelta(days=7),
        table_versions: Mapping[str, int] | None = None,
    ) -> int:
        """Write the training frame to one Parquet file, one event-time window at a time.

        The way to build a frame larger than memory: each window of label time is joined
        and written before the next is read, so memory holds about one window's rows (at
        10M labels, 30-day windows: about a third of what the whole frame needs), and a
        joined group's columns when they take under 256 MiB (read once rather than once
        per window); one window is written while the next is joined. Rows,
        columns and order are ``training_frame(start, end)``'s. The table versions are
        fixed when the call starts, so inserts during the write do not mix in. The file
        appears only when complete (written beside it, then renamed).

        Args:
            path: The Parquet file to write; its folder is created if missing.
            start: First label event time included, or None.
            end: Label event times must be earlier than this, or None.
            window: Length of each window of label time.
            table_versions: Delta table version per group name (latest when absent).

        Returns:
            The number of rows written.

        >>> fv.write_training_frame("train.parquet", window=timedelta(days=30))  # doctest: +SKIP
        1000000
        """
        versions = dict(table_versions) if table_versions is not None else self.table_versions()
        planner = self._planner
        edges = planner.windows(start, end, window, versions)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        schema = planner.plan(start, end, versions).collect_schema()
        total = planner.frame_rows(start, end, versions)
        held = planner.hold(end, versions, max_bytes=_HELD_GROUP_BYTES)
        rows = 0
        arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
        try:
            # One window is written on a second thread while the next is joined (the
            # writer releases the interpreter lock): two windows in memory at most.
            with (
                pq.ParquetWriter(partial, arrow_schema) as out,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="microfs-write") as writer,
            ):
                writing: Future[None] | None = None
                latest: list[pl.DataFrame | None] | None = None
                for number, (lo, hi) in enumerate(edges):
                    spine = planner.spine(lo, hi, versions)
                    part = planner.join(
                        spine,
                        versions,
                        hi,
                        since=lo,
                        latest_before=latest,
                        kernel_labels=total,
                        held=held,
                    )
                    frame = _collect(part)
                    if writing is not None:
                        writing.result()
                        writing = None
                    if frame.height:
                        writing = writer.submit(out.write_table, frame.to_arrow())
                        rows += frame.height
                    del frame
                    if number + 1 < len(edges):  # carried forward: each row is read once
                        latest = planner.latest_rows(latest, lo, hi, versions, held=held)
                if writing is not None:
                    writing.result()
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return rows

    # -- parameters ----------------------------------------------------------------------

    def fit(self, frame: pl.LazyFrame | pl.DataFrame) -> FittedParams:
        """Fit the view's transformations on the given training rows and store them."""
        fitted = fit_transforms(frame.lazy(), self.definition.transforms)
        self._store_params(fitted)
        return fitted

    def _store_params(self, fitted: FittedParams) -> int:
        registry = self._registry
        self._server = None
        payload = {"params": fitted.to_dict()}
        latest = registry.get_record("feature_views", self.name, self.version, PARAMS)
        if latest is not None and latest.get("params") == payload["params"]:
            return int(latest["number"])
        return registry.add_record("feature_views", self.name, self.version, PARAMS, payload)

    def params(self) -> FittedParams:
        """The latest stored transformation parameters.

        Raises:
            NotFittedError: no parameters were fitted yet (and the view has transforms).
        """
        record = self._registry.get_record("feature_views", self.name, self.version, PARAMS)
        if record is None:
            if not self.definition.transforms:
                return fit_transforms(pl.LazyFrame(), ())
            raise NotFittedError(
                f"feature view {self.name!r} has no fitted transformation parameters yet; call "
                "get_training_data(compute_params=True), train_test_split() or "
                "create_training_dataset() first"
            )
        return FittedParams.from_dict(record["params"])

    @property
    def columns(self) -> list[str]:
        """The columns of ``X`` (needs fitted parameters when a column is one-hot encoded)."""
        return output_columns(self._feature_columns, self.params())

    def transform(self, frame: pl.LazyFrame, params: FittedParams | None = None) -> pl.LazyFrame:
        """Apply the view's fitted transformations to a frame holding its feature columns."""
        fitted = params if params is not None else self.params()
        return apply_transforms(frame, self._feature_columns, fitted)

    def _xy(self, frame: pl.DataFrame, fitted: FittedParams) -> tuple[pl.DataFrame, pl.Series]:
        out = _collect(apply_transforms(frame.lazy(), self._feature_columns, fitted))
        return out.select(output_columns(self._feature_columns, fitted)), out[self.label_col]

    # -- training data ---------------------------------------------------------------------

    def get_training_data(
        self,
        compute_params: bool = False,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[pl.DataFrame, pl.Series]:
        """Features ``X`` (transformed) and label ``y``, in ``training_frame()`` order.

        Args:
            compute_params: fit the transformations on these rows and store the
                parameters; otherwise use the stored ones.
            start: first label event time included.
            end: label event times must be earlier than this.
        """
        frame = _collect(self.training_frame(start, end))
        fitted = self.fit(frame) if compute_params else self.params()
        return self._xy(frame, fitted)

    def train_test_split(
        self,
        test_size: float = 0.2,
        split: SplitMode = "time",
        seed: int = 0,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series, pl.Series]:
        """``X_train, X_test, y_train, y_test``, with parameters fitted on the train part only.

        ``split="time"`` puts the latest ``test_size`` share of rows in the test part
        (rows with the same event time stay on one side); ``"random"`` draws the test
        rows with ``seed``. Both parts keep ``training_frame()`` order.
        """
        frame = _collect(self.training_frame(start, end))
        train, test = _split(frame, self._time, test_size, split, seed)
        fitted = self.fit(train)
        X_train, y_train = self._xy(train, fitted)
        X_test, y_test = self._xy(test, fitted)
        return X_train, X_test, y_train, y_test

    def create_training_dataset(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        test_size: float | None = None,
        split: SplitMode = "time",
        seed: int = 0,
    ) -> int:
        """Record a reproducible training dataset and return its version.

        Pins every group's Delta table version, the window, the split and its seed, and
        the parameters fitted on the train part (stored as the view's latest parameters
        too, so online vectors match the model trained on it).
        """
        versions = self.table_versions()
        frame = _collect(self.training_frame(start, end, table_versions=versions))
        train, test = (
            (frame, frame.clear())
            if test_size is None
            else _split(frame, self._time, test_size, split, seed)
        )
        fitted = fit_transforms(train.lazy(), self.definition.transforms)
        record = TrainingDatasetRecord(
            feature_groups=tuple(
                PinnedGroup(g.name, g.version, versions[g.name])
                for g in [self._label, *self._groups]
            ),
            start=aware_utc(start, what="start"),
            end=aware_utc(end, what="end"),
            test_size=test_size,
            split=split,
            seed=seed,
            params=fitted,
            params_number=self._store_params(fitted),
            rows_train=train.height,
            rows_test=test.height if test_size else None,
            created_at=datetime.now(timezone.utc),
        )
        return self._registry.add_training_dataset(self.name, self.version, record)

    def get_training_dataset(self, version: int) -> TrainingDataset:
        """Rebuild a recorded training dataset: identical data, whatever changed since."""
        record = self._registry.training_dataset(self.name, self.version, version)
        if record is None:
            existing = self._registry.training_datasets(self.name, self.version)
            raise NotFoundError(
                f"feature view {self.name!r} v{self.version} has no training dataset {version!r}; "
                f"existing: {', '.join(map(str, existing)) or '(none)'}"
            )
        frame = _collect(
            self.training_frame(record.start, record.end, table_versions=record.table_versions)
        )
        fitted = record.params
        if record.test_size is None:
            X_train, y_train = self._xy(frame, fitted)
            X_test: pl.DataFrame | None = None
            y_test: pl.Series | None = None
        else:
            train, test = _split(frame, self._time, record.test_size, record.split, record.seed)
            X_train, y_train = self._xy(train, fitted)
            X_test, y_test = self._xy(test, fitted)
        return TrainingDataset(version, X_train, y_train, X_test, y_test, record)

    def list_training_datasets(self) -> list[int]:
        """Versions of the recorded training datasets."""
        return self._registry.training_datasets(self.name, self.version)

    def training_dataset_record(self, version: int) -> TrainingDatasetRecord:
        """What training dataset ``version`` pins, without rebuilding its data."""
        record = self._registry.training_dataset(self.name, self.version, version)
        if record is None:
            raise NotFoundError(
                f"feature view {self.name!r} v{self.version} has no training dataset {version!r}"
            )
        return record

    def get_batch_data(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        spine: pl.LazyFrame | pl.DataFrame | None = None,
    ) -> pl.LazyFrame:
        """Transformed features for batch scoring, lazily, with the stored parameters.

        Rows are the label group's rows with ``start <= t < end``, or the rows of the given
        ``spine``: a frame of the label group's primary keys and event time, which may
        also carry the label group's own features (missing ones are null). The result
        holds the label group's primary keys, the event time and ``X``'s columns.
        """
        label = self._label
        fitted = self.params()
        if spine is None:
            frame = self.training_frame(start, end)
        else:
            frame = self._planner.join(self._planner.spine_from(spine, start, end), None, end)
        keys = [*label.primary_keys, self._time]
        out = apply_transforms(frame, self._feature_columns, fitted)
        return out.select([*keys, *output_columns(self._feature_columns, fitted)])

    # -- online ------------------------------------------------------------------------------

    def get_inference_vector(
        self,
        entity: Mapping[str, Any],
        passed_features: Mapping[str, Any] | None = None,
        return_type: Literal["list", "dict", "polars", "numpy"] = "list",
        strict: bool = False,
    ) -> Any:
        """The transformed online feature vector for one entity, in ``X``'s column order.

        Args:
            entity: the keys the view needs: the label group's online keys and each
                join's ``on`` keys.
            passed_features: raw feature values that replace the stored ones.
            return_type: ``"list"``, ``"dict"`` (keyed by ``X``'s columns), ``"polars"``
                (a one-row DataFrame) or ``"numpy"``.
            strict: raise :class:`NotFoundError` for an entity the store has never seen,
                instead of giving nulls.
        """
        return self._vector_server().vector(
            entity, passed_features=passed_features, return_type=return_type, strict=strict
        )

    def get_inference_vectors(
        self,
        entities: Sequence[Mapping[str, Any]] | pl.DataFrame,
        passed_features: pl.DataFrame | None = None,
        strict: bool = False,
    ) -> pl.DataFrame:
        """Transformed online vectors for many entities: one row each, in request order."""
        return self._vector_server().vectors(
            entities, passed_features=passed_features, strict=strict
        )

    def _vector_server(self) -> VectorServer:
        """The compiled online path for the latest parameters (recompiled after a refresh)."""
        generation = self._online.generation
        if self._server is None or self._server[0] != generation:
            server = VectorServer(
                self.definition, self._label, self._groups, self._online, self.params()
            )
            self._server = (generation, server)
        return self._server[1]


_HELD_GROUP_BYTES = 256 * 2**20
"""``write_training_frame`` reads a joined group into memory once when its columns take
less than this (see ``FramePlanner.hold``), instead of once per window."""


def _collect(frame: pl.LazyFrame) -> pl.DataFrame:
    """Collect a plan that fits in memory.

    Polars' default (streaming) engine runs ``join_asof`` as an in-memory node behind its
    streaming machinery: at 10M labels it took 6.3 s where the in-memory engine took 3.9 s
    (``benchmarks/run.py --size medium``). Frames larger than memory go through
    :meth:`FeatureView.write_training_frame` instead.
    """
    return frame.collect(engine="in-memory")


def _split(
    frame: pl.DataFrame, time_column: str, test_size: float, split: SplitMode, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows into train and test parts, both in the frame's order."""
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, (int, float))
        or not (0 < test_size < 1)
    ):
        raise DefinitionError(f"test_size must be a fraction between 0 and 1, got {test_size!r}")
    n = frame.height
    n_test = round(n * test_size)
    if split == "time":
        if n_test == 0:
            return frame, frame.clear()
        cut = frame[time_column][n - n_test]
        is_test = frame[time_column] >= cut
        return frame.filter(~is_test), frame.filter(is_test)
    if split == "random":
        order = np.random.default_rng(seed).permutation(n)
        mask = np.zeros(n, dtype=bool)
        mask[order[:n_test]] = True
        is_test = pl.Series(mask)
        return frame.filter(~is_test), frame.filter(is_test)
    raise DefinitionError(f"split must be 'time' or 'random', got {split!r}")
