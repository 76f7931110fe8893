"""The feature store: one lake folder holding feature groups, feature views and the online store."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from microfs.errors import DefinitionError
from microfs.feature_group import FeatureGroup, FeatureGroupDefinition, InsertResult
from microfs.feature_view import FeatureView, FeatureViewDefinition
from microfs.known import Timeline
from microfs.online import OnlineStore
from microfs.registry import Registry
from microfs.schema import check_name

__all__ = ["DEFAULT_LAKE", "LAKE_ENV", "FeatureStore"]

DEFAULT_LAKE = "lake"
LAKE_ENV = "MICROFS_LAKE"
"""The environment variable that names the lake when no path is given."""
_LAKE_README = """# MicroFS lake

This folder is a MicroFS lake: everything a `FeatureStore` knows lives here.

- `feature_groups/<name>/v<version>.json`: a feature group definition (JSON, immutable)
- `feature_groups/<name>/v<version>/`: its Delta table (readable by any Delta reader); its
  last column, `_microfs_commit_time`, is when MicroFS committed the row
- `feature_groups/<name>/.v<version>.superseded/`: row versions that upserts replaced
- `feature_views/<name>/v<version>.json`: a feature view definition
- `feature_views/<name>/v<version>/params/`, `training_datasets/`: fitted parameters and
  training dataset metadata, one immutable JSON file each
- `models/`: models saved by the pipelines

Copy the folder and it opens elsewhere; nothing is kept outside it.
"""


class FeatureStore:
    """A feature store rooted at one folder (the lake).

    The store wires the parts together and nothing calls back into it: each feature group
    is given its folder and two callbacks (commits reach the online store; vacuum asks
    which table versions training datasets pin), each feature view is given its
    definition, its groups, the registry and the online store.

    Args:
        path: the lake folder; ``$MICROFS_LAKE`` or ``"lake"`` (relative to the working
            directory) when None. It is created if missing.

    >>> import tempfile
    >>> fs = FeatureStore(tempfile.mkdtemp())
    >>> fs.list_feature_groups()
    []
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            path = os.environ.get(LAKE_ENV) or DEFAULT_LAKE
        self.root = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        readme = self.root / "README.md"
        if not readme.exists():
            readme.write_text(_LAKE_README, encoding="utf-8")
        self.registry = Registry(self.root)
        self._online = OnlineStore(self.root)

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    # -- feature groups ----------------------------------------------------------------

    def create_feature_group(
        self,
        name: str,
        primary_keys: Sequence[str],
        event_time: str | None = None,
        schema: Mapping[str, object] | None = None,
        online_keys: Sequence[str] | None = None,
        *,
        version: int = 1,
        description: str = "",
        feature_descriptions: Mapping[str, str] | None = None,
    ) -> FeatureGroup:
        """Create a feature group version (its definition and its empty Delta table).

        Creating a name and version that exist raises :class:`AlreadyExistsError`,
        unless the stored definition is identical, in which case that group is returned.

        >>> fg = fs.create_feature_group(  # doctest: +SKIP
        ...     name="user_profile", primary_keys=["user_id"], event_time="timestamp",
        ...     schema={"user_id": "int64", "timestamp": "datetime64[ns, utc]", "age": "int64"},
        ...     online_keys=["user_id"])
        """
        check_name(name, what="feature group name")
        if schema is None:
            raise DefinitionError(
                f"feature group {name!r} needs a schema: a mapping of column name to type"
            )
        definition = FeatureGroupDefinition.build(
            name=name,
            version=version,
            primary_keys=primary_keys,
            event_time=event_time,
            schema=schema,
            online_keys=online_keys,
            description=description,
            feature_descriptions=feature_descriptions,
        )
        stored = self.registry.create("feature_groups", name, version, definition.to_dict())
        group = self._group(FeatureGroupDefinition.from_dict(stored))
        group.create_table()
        return group

    def get_feature_group(self, name: str, version: int | None = None) -> FeatureGroup:
        """A feature group: the latest version, or ``version``."""
        data = self.registry.get("feature_groups", name, version)
        return self._group(FeatureGroupDefinition.from_dict(data))

    def get_or_create_feature_group(self, name: str, **kwargs: Any) -> FeatureGroup:
        """The group ``name`` at ``version`` (default 1) if it exists, else create it."""
        version = int(kwargs.get("version", 1))
        if version in self.registry.versions("feature_groups", name):
            return self.get_feature_group(name, version)
        return self.create_feature_group(name, **kwargs)

    def list_feature_groups(self) -> list[str]:
        """Names of the feature groups in the lake, sorted."""
        return self.registry.names("feature_groups")

    def feature_group_versions(self, name: str) -> list[int]:
        """Definition versions of one feature group."""
        return self.registry.versions("feature_groups", name)

    def _group(self, definition: FeatureGroupDefinition) -> FeatureGroup:
        path = self.registry.folder("feature_groups", definition.name, definition.version)
        return FeatureGroup(
            definition,
            path,
            on_commit=self._committed,
            pins=lambda: self._pins(definition.name, definition.version),
            history_pins=lambda: self._history_pins(definition.name, definition.version),
        )

    def _committed(self, group: FeatureGroup, result: InsertResult) -> None:
        self._online.committed(group, result)

    def _pins(self, name: str, version: int) -> dict[int, list[str]]:
        """Table versions of one group that recorded training datasets need."""
        return self.registry.pinned_table_versions(name, version)

    def _history_pins(self, name: str, version: int) -> list[str]:
        """Known-at views that join one group: they need its replaced row versions."""
        views = []
        for view in self.registry.names("feature_views"):
            for number in self.registry.versions("feature_views", view):
                data = self.registry.get("feature_views", view, number)
                if data.get("timeline", "event") == "known" and any(
                    j["fg_name"] == name and int(j["fg_version"]) == version for j in data["joins"]
                ):
                    views.append(f"{view} v{number} (timeline='known')")
        return views

    # -- feature views -----------------------------------------------------------------

    def create_feature_view(
        self,
        name: str,
        label_fg: str,
        label_col: str,
        joins: Sequence[Mapping[str, Any]] = (),
        transforms: Sequence[Mapping[str, Any]] = (),
        *,
        version: int = 1,
        description: str = "",
        timeline: Timeline = "event",
        lag: timedelta = timedelta(0),
    ) -> FeatureView:
        """Create a feature view: a label group joined point-in-time to feature groups.

        ``timeline="known"`` joins, for a label at ``t``, only rows committed at or before
        ``t - lag`` (what a lookup at ``t`` could serve; see :mod:`microfs.known`);
        ``"event"`` (the default) joins on event time alone.
        """
        check_name(name, what="feature view name")
        definition = FeatureViewDefinition.build(
            self._group_definition,
            name=name,
            version=version,
            label_fg=label_fg,
            label_col=label_col,
            joins=joins,
            transforms=transforms,
            description=description,
            timeline=timeline,
            lag=lag,
        )
        stored = self.registry.create("feature_views", name, version, definition.to_dict())
        return self._view(FeatureViewDefinition.from_dict(stored))

    def get_feature_view(self, name: str, version: int | None = None) -> FeatureView:
        """A feature view: the latest version, or ``version``."""
        data = self.registry.get("feature_views", name, version)
        return self._view(FeatureViewDefinition.from_dict(data))

    def _view(self, definition: FeatureViewDefinition) -> FeatureView:
        return FeatureView(
            definition,
            label=self.get_feature_group(definition.label_fg, definition.label_fg_version),
            groups=[self.get_feature_group(j.fg_name, j.fg_version) for j in definition.joins],
            registry=self.registry,
            online=self._online,
        )

    def _group_definition(self, name: str, version: int | None) -> FeatureGroupDefinition:
        return FeatureGroupDefinition.from_dict(self.registry.get("feature_groups", name, version))

    def list_feature_views(self) -> list[str]:
        """Names of the feature views in the lake, sorted."""
        return self.registry.names("feature_views")

    # -- online store ------------------------------------------------------------------

    @property
    def online(self) -> OnlineStore:
        """The in-process online store (its tables are built lazily, group by group)."""
        return self._online

    @property
    def generation(self) -> int:
        """A counter that :meth:`refresh` bumps, so compiled online paths recompile."""
        return self._online.generation

    def refresh(self) -> None:
        """Bring the online store up to date with other processes' commits and parameters."""
        self._online.refresh()
