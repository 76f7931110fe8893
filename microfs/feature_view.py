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

Options are keyword-only and, across the methods that share them, come in one order:
``start, end, test_size, split, seed, compute_params, table_versions, window, spine,
passed_features, return_type, strict, progress``. Times are timezone-aware datetimes or
ISO 8601 strings (:func:`microfs.schema.aware_utc`); frames are Polars, pandas or Arrow.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import polars as pl

from microfs._frame_plan import FRAME_ARROW, FramePlanner, check_window, frame_writer
from microfs.arguments import frame as as_frame
from microfs.arguments import integer, mapping
from microfs.arguments import path as as_path
from microfs.errors import DefinitionError, LakeError, NotFittedError, NotFoundError
from microfs.feature_group import FeatureGroup, writers_held
from microfs.online import OnlineStore
from microfs.progress import Progress, track
from microfs.registry import PARAMS, Registry
from microfs.schema import TimeLike, aware_utc, to_polars
from microfs.serving import ReturnType, VectorServer, VectorsReturnType, passed_rows
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

if TYPE_CHECKING:
    import daft

__all__ = [
    "Engine",
    "FeatureView",
    "FeatureViewDefinition",
    "Join",
    "SplitMode",
    "TrainingDataset",
]

Engine = Literal["polars", "daft"]
"""Where a frame is planned and run: Polars (in this process) or Daft (its current runner)."""


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

    @overload
    def training_frame(
        self,
        start: TimeLike | None = ...,
        end: TimeLike | None = ...,
        *,
        table_versions: Mapping[str, int] | None = ...,
        window: timedelta | None = ...,
        engine: Literal["polars"] = ...,
    ) -> pl.LazyFrame: ...

    @overload
    def training_frame(
        self,
        start: TimeLike | None = ...,
        end: TimeLike | None = ...,
        *,
        table_versions: Mapping[str, int] | None = ...,
        window: timedelta | None = ...,
        engine: Literal["daft"],
    ) -> daft.DataFrame: ...

    def training_frame(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        table_versions: Mapping[str, int] | None = None,
        window: timedelta | None = None,
        engine: Engine = "polars",
    ) -> pl.LazyFrame | daft.DataFrame:
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
                after another. The Daft plan is the same with or without it.
            engine: ``"polars"`` gives a ``pl.LazyFrame``; ``"daft"`` a lazy
                ``daft.DataFrame`` with the same rows, order, columns and values, run on
                Daft's current runner (``pip install "microfs[scale]"``). A view on the
                known-at timeline is joined by Polars, in memory, when this is called
                (its segments come from each group's commit log), and handed to Daft.

        >>> frame = fv.training_frame(end=cutoff).collect(engine="in-memory")  # doctest: +SKIP
        >>> fv.training_frame(window=timedelta(days=7)).sink_parquet("t.parquet")  # doctest: +SKIP
        >>> fv.training_frame(engine="daft").write_parquet("frame/")  # doctest: +SKIP
        """
        planner = self._planner
        _check_versions(table_versions)
        start, end = aware_utc(start, what="start"), aware_utc(end, what="end")
        daft_engine = _daft_engine(engine)
        if daft_engine is not None:
            lazy: daft.DataFrame = self._on_daft(daft_engine, start, end, table_versions)[0]
            return lazy
        # every group's version fixed once, here: the plan reads each several times
        versions = dict(table_versions) if table_versions is not None else self.table_versions()
        if window is None:
            return planner.plan(start, end, versions)
        parts = planner.window_plans(start, end, window, versions)
        if not parts:
            return planner.plan(start, end, versions)
        return pl.concat(parts, how="vertical")

    def write_training_frame(
        self,
        path: str | Path,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        table_versions: Mapping[str, int] | None = None,
        window: timedelta = timedelta(days=7),
        progress: Progress = False,
        engine: Engine = "polars",
    ) -> int:
        """Write the training frame to one Parquet file, one event-time window at a time.

        The way to build a frame larger than memory: each window of label time is joined
        and written before the next is read, so memory holds about two windows' rows (one
        is written while the next is joined), and the joined groups' columns while
        together they take under 1 GiB (read once rather than once per window). A
        window whose rows would take more than about 112 MiB is cut into shorter ones,
        so the peak does not grow with ``window`` or with the labels per day. Rows,
        columns and order are ``training_frame(start, end)``'s. The table versions are
        fixed when the call starts, so inserts during the write do not mix in. The file
        appears only when complete (written beside it, then renamed). It holds Parquet's
        own types, no Arrow schema: ``pl.read_parquet`` gives the frame's dtypes back,
        pyarrow reads text as ``string``.

        Args:
            path: The Parquet file to write; its folder is created if missing.
            start: First label event time included, or None.
            end: Label event times must be earlier than this, or None.
            table_versions: Delta table version per group name (latest when absent).
            window: Length of each window of label time.
            progress: True draws a bar over the windows; a callable gets a
                :class:`microfs.progress.ProgressEvent` per window.
            engine: ``"daft"`` runs the frame on Daft's current runner and streams its
                batches, in order, into the file (``window`` is then Polars' alone: Daft
                partitions its plan itself). A view on the known-at timeline is written
                in windows by Polars on either engine (see :meth:`training_frame`).

        Returns:
            The number of rows written.

        >>> fv.write_training_frame("train.parquet", window=timedelta(days=30))  # doctest: +SKIP
        1000000
        """
        target = as_path(path, what="path")
        _check_versions(table_versions)
        versions = dict(table_versions) if table_versions is not None else self.table_versions()
        planner = self._planner
        start, end = aware_utc(start, what="start"), aware_utc(end, what="end")
        daft_engine = _daft_engine(engine)
        if daft_engine is not None and planner.timeline != "known":
            frame, schema = self._on_daft(daft_engine, start, end, versions)
            return int(daft_engine.write_frame(frame, schema, path))
        # (a known-at view's frame is joined by Polars on either engine: in windows here)
        check_window(window)  # before the groups are held (the windows are cut after)
        schema = planner.plan(start, end, versions).collect_schema()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        total = planner.frame_rows(start, end, versions)
        held, prepared = planner.hold(end, versions, max_bytes=_HELD_BYTES, kernel_labels=total)
        # Counted after holding: the count and the first windows then reuse the memory
        # Polars freed while holding (not yet returned to the system), instead of adding
        # to it (100M labels: peaks of 1,820-1,834 MiB against 1,857-1,961 counted first).
        cuts = planner.windows(start, end, window, versions, max_rows=_window_rows(schema))
        rows = 0
        arrow_schema = pl.DataFrame(schema=schema).to_arrow(compat_level=FRAME_ARROW).schema
        try:
            # One window is written on a second thread while the next is joined (the
            # writer releases the interpreter lock): two windows in memory at most.
            with (
                frame_writer(partial, arrow_schema) as out,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="microfs-write") as writer,
                track(
                    progress, task=f"{self.name}: training frame", total=len(cuts), unit="window"
                ) as step,
            ):
                writing: Future[None] | None = None
                latest: list[pl.DataFrame | None] | None = None
                for number, (lo, hi, labels) in enumerate(cuts):
                    spine = planner.spine(lo, hi, versions, rows=labels)
                    part = planner.join(
                        spine,
                        versions,
                        hi,
                        since=lo,
                        latest_before=latest,
                        kernel_labels=total,
                        held=held,
                        prepared=prepared,
                    )
                    frame = _collect(part)
                    if writing is not None:
                        writing.result()
                        writing = None
                    if frame.height:
                        table = frame.to_arrow(compat_level=FRAME_ARROW)
                        writing = writer.submit(out.write_table, table)
                        del table  # the writer holds it until written
                        rows += frame.height
                    del frame
                    if number + 1 < len(cuts):  # carried forward: each row is read once
                        latest = planner.latest_rows(
                            latest, lo, hi, versions, held=held, prepared=prepared
                        )
                    step(f"{lo:%Y-%m-%d}")
                if writing is not None:
                    writing.result()
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return rows

    # -- parameters ----------------------------------------------------------------------

    def fit(self, frame: pl.LazyFrame | pl.DataFrame) -> FittedParams:
        """Fit the view's transformations on the given training rows and store them."""
        fitted = fit_transforms(as_frame(frame, what="frame"), self.definition.transforms)
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
        record = self._registry.load_record(
            "feature_views", self.name, self.version, PARAMS, _params_of
        )
        if record is None:
            if not self.definition.transforms:
                return fit_transforms(pl.LazyFrame(), ())
            raise NotFittedError(
                f"feature view {self.name!r} has no fitted transformation parameters yet; call "
                "get_training_data(compute_params=True), train_test_split() or "
                "create_training_dataset() first"
            )
        return record

    @property
    def columns(self) -> list[str]:
        """The columns of ``X`` (needs fitted parameters when a column is one-hot encoded)."""
        return output_columns(self._feature_columns, self.params())

    def transform(self, frame: pl.LazyFrame, params: FittedParams | None = None) -> pl.LazyFrame:
        """Apply the view's fitted transformations to a frame holding its feature columns."""
        rows = as_frame(frame, what="frame")
        if params is not None and not isinstance(params, FittedParams):
            raise DefinitionError(f"params must be FittedParams or None, got {params!r}")
        fitted = params if params is not None else self.params()
        return apply_transforms(rows, self._feature_columns, fitted)

    def _xy(self, frame: pl.DataFrame, fitted: FittedParams) -> tuple[pl.DataFrame, pl.Series]:
        out = _collect(apply_transforms(frame.lazy(), self._feature_columns, fitted))
        return out.select(output_columns(self._feature_columns, fitted)), out[self.label_col]

    # -- training data ---------------------------------------------------------------------

    def get_training_data(
        self,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        compute_params: bool = False,
    ) -> tuple[pl.DataFrame, pl.Series]:
        """Features ``X`` (transformed) and label ``y``, in ``training_frame()`` order.

        Args:
            start: first label event time included.
            end: label event times must be earlier than this.
            compute_params: fit the transformations on these rows and store the
                parameters; otherwise use the stored ones.
        """
        frame = _read(lambda: self.training_frame(start=start, end=end))
        fitted = self.fit(frame) if compute_params else self.params()
        return self._xy(frame, fitted)

    def train_test_split(
        self,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        test_size: float = 0.2,
        split: SplitMode = "time",
        seed: int = 0,
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series, pl.Series]:
        """``X_train, X_test, y_train, y_test``, with parameters fitted on the train part only.

        ``split="time"`` puts the latest ``test_size`` share of rows in the test part
        (rows with the same event time stay on one side); ``"random"`` draws the test
        rows with ``seed``. Both parts keep ``training_frame()`` order.
        """
        _check_split(test_size, split, seed)
        frame = _read(lambda: self.training_frame(start=start, end=end))
        train, test = _split(frame, self._time, test_size, split, seed)
        fitted = self.fit(train)
        X_train, y_train = self._xy(train, fitted)
        X_test, y_test = self._xy(test, fitted)
        return X_train, X_test, y_train, y_test

    def create_training_dataset(
        self,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        test_size: float | None = None,
        split: SplitMode = "time",
        seed: int = 0,
        progress: Progress = False,
    ) -> int:
        """Record a reproducible training dataset and return its version.

        Pins every group's Delta table version, the window, the split and its seed, and
        the parameters fitted on the train part (stored as the view's latest parameters
        too, so online vectors match the model trained on it). ``progress=True`` draws a
        bar over the steps (join, split, fit, record); a callable gets each step.
        """
        if test_size is not None:
            _check_split(test_size, split, seed)
        start, end = aware_utc(start, what="start"), aware_utc(end, what="end")
        groups = [self._label, *self._groups]
        with track(progress, task=f"{self.name}: training dataset", total=4) as step:
            # The versions read are pinned before a vacuum can remove them: no vacuum of
            # these groups runs while they are resolved and the pin is written (vacuum reads
            # pins under the same lock), and every later vacuum sees the pin.
            with writers_held(groups):
                versions = self.table_versions()
                pin = self._registry.add_pin(
                    self.name,
                    self.version,
                    [PinnedGroup(g.name, g.version, versions[g.name]) for g in groups],
                )
            try:
                frame = _read(
                    lambda: self.training_frame(start=start, end=end, table_versions=versions)
                )
                step("joined")
                train, test = (
                    (frame, frame.clear())
                    if test_size is None
                    else _split(frame, self._time, test_size, split, seed)
                )
                step("split")
                fitted = fit_transforms(train.lazy(), self.definition.transforms)
                step("fitted")
                number = self._record(
                    versions, start, end, test_size, split, seed, fitted, train, test
                )
                step("recorded")
            finally:
                self._registry.remove_pin(pin)
        return number

    def _record(
        self,
        versions: Mapping[str, int],
        start: datetime | None,
        end: datetime | None,
        test_size: float | None,
        split: SplitMode,
        seed: int,
        fitted: FittedParams,
        train: pl.DataFrame,
        test: pl.DataFrame,
    ) -> int:
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

    def get_training_dataset(self, version: int, *, engine: Engine = "polars") -> TrainingDataset:
        """Rebuild a recorded training dataset: identical data, whatever changed since.

        With ``engine="daft"`` the pinned training frame is joined on Daft's current runner
        (a Ray cluster, say) and collected here; the split and the fitted transformations
        then run as with Polars, so the dataset is identical.
        """
        daft_engine = _daft_engine(engine)
        record = self._registry.training_dataset(self.name, self.version, version)
        if record is None:
            existing = self._registry.training_datasets(self.name, self.version)
            raise NotFoundError(
                f"feature view {self.name!r} v{self.version} has no training dataset {version!r}; "
                f"existing: {', '.join(map(str, existing)) or '(none)'}"
            )
        if daft_engine is not None:
            built, schema = self._on_daft(
                daft_engine, record.start, record.end, record.table_versions
            )
            frame = daft_engine.collect(built, schema)
        else:
            frame = _read(
                lambda: self.training_frame(
                    start=record.start, end=record.end, table_versions=record.table_versions
                )
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

    @overload
    def get_batch_data(
        self,
        start: TimeLike | None = ...,
        end: TimeLike | None = ...,
        *,
        spine: object | None = ...,
        engine: Literal["polars"] = ...,
    ) -> pl.LazyFrame: ...

    @overload
    def get_batch_data(
        self,
        start: TimeLike | None = ...,
        end: TimeLike | None = ...,
        *,
        spine: object | None = ...,
        engine: Literal["daft"],
    ) -> daft.DataFrame: ...

    def get_batch_data(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        spine: object | None = None,
        engine: Engine = "polars",
    ) -> pl.LazyFrame | daft.DataFrame:
        """Transformed features for batch scoring, lazily, with the stored parameters.

        Rows are the label group's rows with ``start <= t < end``, or the rows of the given
        ``spine`` (Polars, pandas or Arrow): a frame of the label group's primary keys and
        event time, which may also carry the label group's own features (missing ones are
        null) and join keys. The result holds the label group's primary keys, the event
        time and ``X``'s columns. ``engine="daft"`` gives the same rows as a lazy
        ``daft.DataFrame`` (the spine may then be a Daft frame too); the transformations
        run per batch on Daft's runner.
        """
        label = self._label
        fitted = self.params()
        start, end = aware_utc(start, what="start"), aware_utc(end, what="end")
        daft_engine = _daft_engine(engine)
        if daft_engine is not None:
            frame, schema = self._on_daft(daft_engine, start, end, None, spine=spine)
            batch: daft.DataFrame = daft_engine.batch_data(
                frame,
                keys=[*label.primary_keys, self._time],
                feature_schema={c: schema[c] for c in self._feature_columns},
                fitted=fitted,
            )
            return batch
        if spine is None:
            frame = self.training_frame(start=start, end=end)
        else:
            if type(spine).__module__.split(".")[0] == "daft":
                raise DefinitionError(
                    "spine is a Daft DataFrame; pass engine='daft' to join it on Daft, or give "
                    "a Polars, pandas or Arrow frame"
                )
            rows = spine if isinstance(spine, pl.LazyFrame) else to_polars(spine)
            frame = self._planner.join(self._planner.spine_from(rows, start, end), None, end)
        keys = [*label.primary_keys, self._time]
        out = apply_transforms(frame, self._feature_columns, fitted)
        return out.select([*keys, *output_columns(self._feature_columns, fitted)])

    def _on_daft(
        self,
        daft_engine: ModuleType,
        start: datetime | None,
        end: datetime | None,
        table_versions: Mapping[str, int] | None,
        *,
        spine: object = None,
    ) -> tuple[daft.DataFrame, pl.Schema]:
        """The frame for label times in ``[start, end)`` as a Daft DataFrame, and its schema.

        Joined on Daft from the engine-neutral spec, except on the known-at timeline: its
        joins match segments of served rows read from each group's commit log, which the
        Polars planner builds, so its frame is joined by Polars (in memory, when this is
        called) and handed to Daft. Rows, order and values are the Polars frame's either way.
        """
        planner = self._planner
        spec = planner.spec(start, end, table_versions)
        schema: pl.Schema = daft_engine.expected_schema(spec)
        frame: daft.DataFrame
        if planner.timeline != "known":
            if spine is None:
                frame = daft_engine.frame(spec)
            else:
                frame = daft_engine.frame_from_spine(spec, daft_engine.spine_rows(planner, spine))
            return frame, schema
        if spine is None:
            plan = planner.plan(start, end, table_versions)
        else:
            rows = daft_engine.polars_spine(spine)
            plan = planner.join(planner.spine_from(rows, start, end), table_versions, end)
        frame = daft_engine.from_polars(plan, schema)
        return frame, schema

    # -- online ------------------------------------------------------------------------------

    def get_inference_vector(
        self,
        entity: Mapping[str, Any],
        passed_features: Mapping[str, Any] | None = None,
        return_type: ReturnType = "list",
        strict: bool = False,
    ) -> Any:
        """The transformed online feature vector for one entity, in ``X``'s column order.

        Args:
            entity: the keys the view needs: the label group's online keys and each
                join's ``on`` keys.
            passed_features: raw feature values that replace the stored ones.
            return_type: ``"list"``, ``"dict"`` (keyed by ``X``'s columns), ``"polars"``
                or ``"pandas"`` (a one-row DataFrame) or ``"numpy"`` (float64; a view
                with a text column in ``X`` is refused: encode it with a transform).
            strict: raise :class:`NotFoundError` for an entity the store has never seen,
                instead of giving nulls.
        """
        mapping(entity, what="entity", example="{'user_id': 42}")
        if passed_features is not None:
            mapping(passed_features, what="passed_features", example="{'age': 31}")
        return self._vector_server().vector(
            entity, passed_features=passed_features, return_type=return_type, strict=strict
        )

    def get_inference_vectors(
        self,
        entities: Sequence[Mapping[str, Any]] | object,
        passed_features: object | None = None,
        return_type: VectorsReturnType = "polars",
        strict: bool = False,
    ) -> Any:
        """Transformed online vectors for many entities: one row each, in request order.

        ``entities`` is a list of key dicts or a frame (Polars, pandas or Arrow);
        ``passed_features`` one row per entity, likewise (a list of dicts or a frame). The
        result is a ``pl.DataFrame`` with ``X``'s columns (``return_type="pandas"``: a
        pandas one, ``"numpy"``: a float64 matrix).
        """
        requests: Sequence[Mapping[str, Any]] | pl.DataFrame = (
            entities if isinstance(entities, (list, tuple)) else to_polars(entities)
        )
        passed = None
        if isinstance(passed_features, (list, tuple)):
            passed = passed_rows(passed_features)
        elif passed_features is not None:
            passed = to_polars(passed_features)
        return self._vector_server().vectors(
            requests, passed_features=passed, return_type=return_type, strict=strict
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


def _daft_engine(engine: str) -> ModuleType | None:
    """The Daft engine module for ``engine="daft"``, None for ``"polars"``.

    Imported here, on first use, so that ``import microfs`` never imports Daft.

    Raises:
        DefinitionError: ``engine`` is neither.
        MissingDependencyError: Daft is not installed.
    """
    if engine == "polars":
        return None
    if engine != "daft":
        raise DefinitionError(f"engine must be 'polars' or 'daft', got {engine!r}")
    from microfs import daft_engine

    return daft_engine


def _check_versions(table_versions: object) -> None:
    if table_versions is not None:
        mapping(table_versions, what="table_versions", example="{'user_profile': 3}")


def _check_split(test_size: object, split: object, seed: object) -> None:
    """The split options' checks, made before anything is read or written."""
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, (int, float))
        or not (0 < test_size < 1)
    ):
        raise DefinitionError(f"test_size must be a fraction between 0 and 1, got {test_size!r}")
    if not isinstance(split, str) or split not in ("time", "random"):
        raise DefinitionError(f"split must be 'time' or 'random', got {split!r}")
    seed = integer(seed, what="seed")
    if seed < 0:
        raise DefinitionError(f"seed must be a non-negative integer, got {seed!r}")


def _params_of(record: Mapping[str, Any]) -> FittedParams:
    return FittedParams.from_dict(record["params"])


_READ_ATTEMPTS = 3


def _read(plan: Callable[[], pl.LazyFrame]) -> pl.DataFrame:
    """Collect a plan over the groups' files, planned again if a vacuum removed a file.

    Planning resolves table versions afresh (the latest ones, where none are pinned) and
    checks each version's files, so a version whose files are gone raises NotFoundError
    there; a file that vanishes between planning and reading is retried, and never
    surfaces as a raw FileNotFoundError.
    """
    for attempt in range(_READ_ATTEMPTS):
        try:
            return _collect(plan())
        except OSError as exc:
            if attempt == _READ_ATTEMPTS - 1:
                raise LakeError(
                    f"a file of the feature groups could not be read {_READ_ATTEMPTS} times "
                    f"({type(exc).__name__}: {exc}); another process may be vacuuming, retry"
                ) from exc
    raise AssertionError("unreachable")


_HELD_BYTES = 2**30
"""``write_training_frame`` reads joined groups into memory once, smallest first, while
together their columns take less than this (see ``FramePlanner.hold``), instead of once
per window. At 50M labels both 5M-row groups are held (about 0.45 GB): 55.7 s and 2.80 GB
peak when the larger one's latest rows per key were carried from window to window
instead, 25.0 s and 1.79 GB with both held (and 256 MiB windows); at 100M labels, both
10M-row groups (about 0.95 GB)."""

_WINDOW_BYTES = 112 * 2**20
"""``write_training_frame`` cuts a window whose joined rows would take more than this
(estimated from the frame's schema: 8 bytes per value, 24 per text value) into windows
of fewer labels; two windows are in memory at once (one joined while one is written). At
100M labels, 256 MiB gave a 2.34 GB peak and 128 MiB 2.08 GB, the hold's peak then. With
the joined groups read one at a time: 128 MiB 1,975 and 2,008 MiB in 30.4 and 30.9 s,
112 MiB 1,857-1,961 MiB in 29.9-32.3 s (four runs), 96 MiB 1,841 and 1,859 MiB in 32.0
and 33.7 s; at 50M and 10M labels 112 MiB took the time 128 MiB took."""


def _window_rows(schema: pl.Schema) -> int:
    """How many rows of ``schema`` make a window of about ``_WINDOW_BYTES``.

    >>> _window_rows(pl.Schema({"a": pl.Int64, "b": pl.String}))
    3670016
    """
    width = sum(24 if dtype in (pl.String, pl.Binary) else 8 for dtype in schema.dtypes())
    return max(_WINDOW_BYTES // max(width, 1), 1)


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
