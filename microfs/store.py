"""The feature store: one lake folder holding feature groups, feature views and the online store."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from microfs.errors import AlreadyExistsError, DefinitionError, MicroFSError, NotFoundError
from microfs.expectations import Policy, parse_expectations
from microfs.feature_group import Committed, FeatureGroup, FeatureGroupDefinition
from microfs.feature_view import FeatureView, FeatureViewDefinition
from microfs.known import Timeline
from microfs.online import OnlineStore
from microfs.registry import Registry
from microfs.schema import SchemaLike, check_name, check_version, normalize_schema

__all__ = ["DEFAULT_LAKE", "LAKE_ENV", "FeatureStore", "is_lake"]

DEFAULT_LAKE = "lake"
LAKE_ENV = "MICROFS_LAKE"
"""The environment variable that names the lake when no path is given."""
_LAKE_README = """# MicroFS lake

This folder is a MicroFS lake: everything a `FeatureStore` knows lives here.

- `feature_groups/<name>/v<version>.json`: a feature group definition (JSON, immutable)
- `feature_groups/<name>/v<version>/`: its Delta table (readable by any Delta reader); its
  last column, `_microfs_commit_time`, is when MicroFS committed the row
- `feature_groups/<name>/v<version>.appended/`: columns added later by `append_features`
- `feature_groups/<name>/v<version>.quality/`: statistics per table version (JSON) and
  the Delta table of rows its expectations rejected
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
            directory) when None. It is created if missing; an existing folder that holds
            something but no lake is refused (a mistyped path must not scatter a lake
            among other files), unless ``create=True``.
        create: make a lake in an existing folder that holds other things.

    >>> import tempfile
    >>> fs = FeatureStore(tempfile.mkdtemp())
    >>> fs.list_feature_groups()
    []
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = False) -> None:
        if path is None:
            path = os.environ.get(LAKE_ENV) or DEFAULT_LAKE
        if not isinstance(path, (str, os.PathLike)):
            raise DefinitionError(f"the lake path must be a str or pathlib.Path, got {path!r}")
        self.root = Path(path)
        if self.root.exists() and not self.root.is_dir():
            raise DefinitionError(
                f"the lake {str(self.root)!r} is a file, not a folder; give a folder (it is "
                "created if missing)"
            )
        if not create and self.root.is_dir() and not is_lake(self.root):
            held = sorted(p.name for p in self.root.iterdir())
            if held:
                shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
                raise NotFoundError(
                    f"the folder {str(self.root)!r} holds {len(held)} entries ({shown}) but no "
                    "MicroFS lake; check the path, or pass create=True to make a lake in it"
                )
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
        schema: SchemaLike | None = None,
        online_keys: Sequence[str] | None = None,
        *,
        version: int = 1,
        description: str = "",
        feature_descriptions: Mapping[str, str] | None = None,
        expectations: Sequence[Mapping[str, Any]] | None = None,
        validation: Policy = "strict",
        statistics: bool = True,
    ) -> FeatureGroup:
        """Create a feature group version (its definition and its empty Delta table).

        Creating a name and version that exist raises :class:`AlreadyExistsError`,
        unless the stored definition is identical, in which case that group is returned.

        ``schema`` is a mapping of column to type, a ``pl.Schema``, a ``pyarrow.Schema``,
        pandas ``df.dtypes``, or a data frame whose schema is used. Omitted, the group
        takes its schema from its first insert: until then it has no definition file and
        no table, and its other options are checked against that first batch.

        ``expectations`` (dicts, see :mod:`microfs.expectations`) are checked on every
        insert; ``validation`` says what a failing batch does: ``"strict"`` refuses it
        (:class:`microfs.ValidationError`, nothing written), ``"warn"`` writes it with a
        :class:`microfs.ValidationWarning`, ``"quarantine"`` writes the passing rows and
        puts the failing ones in the group's rejects table (and
        :meth:`FeatureGroup.append_features` can add expectations on new columns). A table
        version's statistics are stored with it once: by the commit that made it when that
        is cheap, else by the first request or the vacuum that deletes its data (see
        :meth:`FeatureGroup.statistics`); ``statistics=False`` leaves them to the first
        :meth:`FeatureGroup.statistics` call for the version.

        >>> fg = fs.create_feature_group(  # doctest: +SKIP
        ...     name="user_profile", primary_keys=["user_id"], event_time="timestamp",
        ...     schema={"user_id": "int64", "timestamp": "datetime64[ns, utc]", "age": "int64"},
        ...     online_keys=["user_id"])
        """
        check_name(name, what="feature group name")
        if schema is None:
            return self._pending_group(
                name,
                primary_keys,
                event_time,
                online_keys,
                version=version,
                description=description,
                feature_descriptions=feature_descriptions,
                expectations=expectations,
                validation=validation,
                statistics=statistics,
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
            expectations=expectations,
            validation=validation,
            statistics=statistics,
        )
        stored = self.registry.create("feature_groups", name, version, definition.to_dict())
        group = self._group(self._with_appended(FeatureGroupDefinition.from_dict(stored)))
        group.create_table()
        return group

    def _pending_group(
        self,
        name: str,
        primary_keys: Sequence[str],
        event_time: str | None,
        online_keys: Sequence[str] | None,
        **options: Any,
    ) -> FeatureGroup:
        """A group whose schema its first insert gives (see create_feature_group)."""
        version = check_version(options["version"])
        keys = [primary_keys] if isinstance(primary_keys, str) else list(primary_keys)
        online = [online_keys] if isinstance(online_keys, str) else online_keys
        if version in self.registry.versions("feature_groups", name):
            given = {"primary_keys": keys, "event_time": event_time, "online_keys": online}
            return self._matching_group(name, version, {**options, **given})

        def define(schema: Mapping[str, str]) -> FeatureGroup:
            return self.create_feature_group(name, keys, event_time, schema, online, **options)

        placeholder = FeatureGroupDefinition(
            name=name,
            version=version,
            primary_keys=tuple(keys),
            event_time=event_time,
            schema={},
            online_keys=None if online is None else tuple(online),
            description=options.get("description") or "",
        )
        path = self.registry.folder("feature_groups", name, version)
        return FeatureGroup(placeholder, path, first_schema=define, lake=self.root)

    def get_feature_group(self, name: str, version: int | None = None) -> FeatureGroup:
        """A feature group: the latest version, or ``version``."""
        definition = self.registry.load(
            "feature_groups", name, version, FeatureGroupDefinition.from_dict
        )
        return self._group(self._with_appended(definition))

    def get_or_create_feature_group(self, name: str, **kwargs: Any) -> FeatureGroup:
        """The group ``name`` at ``version`` (default 1) if it exists, else create it.

        Takes :meth:`create_feature_group`'s options. When the group exists, every option
        given must equal the stored one: a difference raises :class:`AlreadyExistsError`
        naming each (create another version to change them).
        """
        version = check_version(kwargs.get("version", 1))
        if version in self.registry.versions("feature_groups", name):
            return self._matching_group(name, version, kwargs)
        return self.create_feature_group(name, **kwargs)

    def _matching_group(self, name: str, version: int, given: Mapping[str, Any]) -> FeatureGroup:
        group = self.get_feature_group(name, version)
        stored = group.definition.options()
        wanted: dict[str, Any] = {}
        for option, value in given.items():
            if option == "version":
                continue
            if option not in stored:
                raise DefinitionError(
                    f"unknown option {option!r} for feature group {name!r}; options: "
                    f"{', '.join(stored)}, version"
                )
            if option == "schema":
                if value is None:
                    continue
                value = normalize_schema(value)
            elif option in ("primary_keys", "online_keys") and value is not None:
                value = [value] if isinstance(value, str) else list(value)
            elif option == "feature_descriptions":
                value = dict(value or {})
            elif option == "expectations":
                parsed = parse_expectations(value, group.definition.schema, group=name)
                value = [e.to_dict() for e in parsed]
            wanted[option] = value
        differences = _differences(stored, wanted)
        if differences:
            raise AlreadyExistsError(
                f"feature group {name!r} version {version} exists with other options: "
                f"{'; '.join(differences)}; pass the stored options, or create version "
                f"{max(self.registry.versions('feature_groups', name)) + 1} with the new ones"
            )
        return group

    def delete_feature_group(
        self, name: str, version: int | None = None, force: bool = False
    ) -> list[int]:
        """Delete a feature group version (``version=None``: every version), data and all.

        Refused while a feature view (and so its training datasets) reads it, naming
        them; ``force=True`` deletes it anyway, and those views then fail to open. Returns
        the definition versions deleted.
        """
        versions = self._versions_to_delete("feature_groups", name, version)
        if not force:
            users = self._views_reading(name, versions)
            if users:
                raise DefinitionError(
                    f"feature group {name!r} is read by {'; '.join(users)}; delete those "
                    "views first, or pass force=True (they will no longer open)"
                )
        for number in versions:
            self.registry.delete("feature_groups", name, number)
            self._online.drop(name, number)
        return versions

    def _views_reading(self, group: str, versions: Sequence[int]) -> list[str]:
        """Views (with their training datasets) that read any of a group's ``versions``."""
        users = []
        for view in self.registry.names("feature_views"):
            for number in self.registry.versions("feature_views", view):
                data = self.registry.get("feature_views", view, number)
                reads = [(data["label_fg"], data["label_fg_version"])] + [
                    (j["fg_name"], j["fg_version"]) for j in data["joins"]
                ]
                if any(n == group and int(v) in versions for n, v in reads):
                    datasets = self.registry.training_datasets(view, number)
                    shown = f" and its training datasets {datasets}" if datasets else ""
                    users.append(f"feature view {view!r} v{number}{shown}")
        return users

    def _versions_to_delete(self, kind: Any, name: str, version: int | None) -> list[int]:
        check_name(name)
        existing = self.registry.versions(kind, name)
        if version is None:
            if not existing:
                self.registry.get(kind, name)  # raises the NotFoundError naming the lake
            return existing
        self.registry.get(kind, name, check_version(version))
        return [version]

    def _record_appended(
        self,
        name: str,
        version: int,
        features: Mapping[str, str],
        expectations: Sequence[Mapping[str, Any]],
    ) -> FeatureGroupDefinition:
        """Record columns (and their expectations) added to a group; the definition with them."""
        self.registry.add_appended_features(name, version, features, expectations)
        return self._with_appended(
            FeatureGroupDefinition.from_dict(self.registry.get("feature_groups", name, version))
        )

    def _with_appended(self, definition: FeatureGroupDefinition) -> FeatureGroupDefinition:
        name, version = definition.name, definition.version
        for added in self.registry.appended_features(name, version):
            definition = definition.with_appended(added)
        expectations = self.registry.appended_expectations(name, version)
        return definition.with_appended({}, expectations) if expectations else definition

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
            record_schema=lambda added, expectations: self._record_appended(
                definition.name, definition.version, added, expectations
            ),
            lake=self.root,
            history_pins=lambda: self._history_pins(definition.name, definition.version),
        )

    def _committed(self, group: FeatureGroup, result: Committed) -> None:
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
        label_features: Sequence[str] | None = None,
        timeline: Timeline = "event",
        lag: timedelta = timedelta(0),
    ) -> FeatureView:
        """Create a feature view: a label group joined point-in-time to feature groups.

        ``label_features`` selects the label group's features; by default they are its
        columns that are not primary keys, event time, the label, or the ``on`` column of
        any join. A joined group whose ``online_keys`` differ from the join's ``on`` is
        refused (the view could never be served online; see
        :meth:`FeatureViewDefinition.build`).

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
            label_features=label_features,
            timeline=timeline,
            lag=lag,
        )
        stored = self.registry.create("feature_views", name, version, definition.to_dict())
        return self._view(FeatureViewDefinition.from_dict(stored))

    def get_or_create_feature_view(
        self,
        name: str,
        label_fg: str,
        label_col: str,
        joins: Sequence[Mapping[str, Any]] = (),
        transforms: Sequence[Mapping[str, Any]] = (),
        *,
        version: int = 1,
        description: str = "",
        label_features: Sequence[str] | None = None,
        timeline: Timeline = "event",
        lag: timedelta = timedelta(0),
    ) -> FeatureView:
        """The view ``name`` at ``version`` if it exists with these options, else create it.

        When it exists, the options given are checked against the stored definition (a
        join without ``fg_version`` means the version the view pins); a difference
        raises :class:`AlreadyExistsError` naming each.
        """
        if version not in self.registry.versions("feature_views", check_name(name)):
            return self.create_feature_view(
                name,
                label_fg,
                label_col,
                joins,
                transforms,
                version=version,
                description=description,
                label_features=label_features,
                timeline=timeline,
                lag=lag,
            )
        view = self.get_feature_view(name, version)
        stored = view.definition
        pinned = {stored.label_fg: stored.label_fg_version}
        pinned.update({j.fg_name: j.fg_version for j in stored.joins})

        def lookup(group: str, number: int | None) -> FeatureGroupDefinition:
            return self._group_definition(group, pinned.get(group) if number is None else number)

        try:
            candidate = FeatureViewDefinition.build(
                lookup,
                name=name,
                version=version,
                label_fg=label_fg,
                label_col=label_col,
                joins=joins,
                transforms=transforms,
                description=description,
                label_features=label_features,
                timeline=timeline,
                lag=lag,
            )
        except MicroFSError as exc:
            raise AlreadyExistsError(
                f"feature view {name!r} version {version} exists, and the options given do "
                f"not make a valid view: {exc}"
            ) from exc
        have, want = stored.options(), candidate.options()
        if label_features is None:  # not given: whatever the stored view selected
            have.pop("label_features", None)
            want.pop("label_features", None)
        differences = _differences(have, want)
        if differences:
            raise AlreadyExistsError(
                f"feature view {name!r} version {version} exists with other options: "
                f"{'; '.join(differences)}; pass the stored options, or create version "
                f"{max(self.registry.versions('feature_views', name)) + 1} with the new ones"
            )
        return view

    def delete_feature_view(self, name: str, version: int | None = None) -> list[int]:
        """Delete a feature view version (``version=None``: every version).

        Its fitted parameters and training dataset records go with it; the groups it read
        stay. Returns the definition versions deleted.
        """
        versions = self._versions_to_delete("feature_views", name, version)
        for number in versions:
            self.registry.delete("feature_views", name, number)
        return versions

    def get_feature_view(self, name: str, version: int | None = None) -> FeatureView:
        """A feature view: the latest version, or ``version``."""
        definition = self.registry.load(
            "feature_views", name, version, FeatureViewDefinition.from_dict
        )
        return self._view(definition)

    def _view(self, definition: FeatureViewDefinition) -> FeatureView:
        return FeatureView(
            definition,
            label=self.get_feature_group(definition.label_fg, definition.label_fg_version),
            groups=[self.get_feature_group(j.fg_name, j.fg_version) for j in definition.joins],
            registry=self.registry,
            online=self._online,
        )

    def _group_definition(self, name: str, version: int | None) -> FeatureGroupDefinition:
        definition = self.registry.load(
            "feature_groups", name, version, FeatureGroupDefinition.from_dict
        )
        return self._with_appended(definition)

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


def is_lake(folder: Path) -> bool:
    """Whether ``folder`` holds a MicroFS lake (its definitions or the lake's README)."""
    if (folder / "feature_groups").is_dir() or (folder / "feature_views").is_dir():
        return True
    readme = folder / "README.md"
    try:
        with readme.open(encoding="utf-8") as handle:
            return handle.readline().strip() == "# MicroFS lake"
    except (OSError, UnicodeDecodeError):
        return False


def _differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """``option: stored X, given Y`` for every option of ``given`` that differs."""
    out = []
    for option, value in given.items():
        have = stored.get(option)
        if have == value:
            continue
        if isinstance(have, Mapping) and isinstance(value, Mapping):
            columns = [c for c in {**have, **value} if have.get(c) != value.get(c)]
            shown = ", ".join(
                f"{c}: stored {have.get(c)!r}, given {value.get(c)!r}" for c in columns
            )
            out.append(f"{option} differs ({shown})")
        else:
            out.append(f"{option}: stored {have!r}, given {value!r}")
    return out
