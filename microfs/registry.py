"""The registry: human-readable JSON definitions in the lake.

Layout under the lake root::

    feature_groups/<name>/v<version>.json          a feature group definition
    feature_groups/<name>/v<version>/              its Delta table
    feature_groups/<name>/v<version>.appended/<n>.json  columns added by append_features
    feature_views/<name>/v<version>.json           a feature view definition
    feature_views/<name>/v<version>/params/<n>.json           fitted transformation parameters
    feature_views/<name>/v<version>/training_datasets/<n>.json training dataset metadata

Every file is written once and never changed: to a temporary file first, then linked
into place, which fails if the target exists. So two processes creating the same
definition at once cannot leave a half-written file: one wins, and the other gets the
same definition back (if identical) or :class:`AlreadyExistsError`.

A file that cannot be read as what it should be (truncated, empty, not a JSON object,
missing fields, a ``"name"`` other than its folder's) raises :class:`LakeError` naming
it. Listing skips folders that are not valid entries (``.ipynb_checkpoints``,
``Old Copy``) and :meth:`Registry.problems` reports them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from microfs.errors import AlreadyExistsError, InvalidNameError, LakeError, NotFoundError
from microfs.schema import check_name, check_version
from microfs.view_definition import PinnedGroup, TrainingDatasetRecord

__all__ = ["PARAMS", "Kind", "Registry", "parsed"]

PARAMS = "params"
TRAINING_DATASETS = "training_datasets"
PINS = "pins"

Kind = Literal["feature_groups", "feature_views"]
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")
_NUMBERED_FILE = re.compile(r"^([1-9][0-9]*)\.json$")
_LABELS = {"feature_groups": "feature group", "feature_views": "feature view"}
APPENDED = "appended"
_T = TypeVar("_T")


class Registry:
    """Reads and writes definition files under one lake root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths ------------------------------------------------------------------------

    def folder(self, kind: Kind, name: str, version: int) -> Path:
        """The folder that holds data belonging to one version of a definition."""
        return self.root / kind / check_name(name) / f"v{check_version(version)}"

    def _definition_path(self, kind: Kind, name: str, version: int) -> Path:
        return self.root / kind / check_name(name) / f"v{check_version(version)}.json"

    # -- definitions ------------------------------------------------------------------

    def create(
        self, kind: Kind, name: str, version: int, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write a new definition; return the stored one.

        If the same name and version exist already with an identical payload, that
        stored payload is returned; a different one raises :class:`AlreadyExistsError`.
        """
        path = self._definition_path(kind, name, version)
        data = _normalise(payload)
        if _write_once(path, data):
            return data
        existing = _read(path)
        if existing == data:
            return existing
        raise AlreadyExistsError(
            f"{_LABELS[kind]} {name!r} version {version} exists already with another "
            f"definition; use get_{_LABELS[kind].replace(' ', '_')}({name!r}, version={version}) "
            f"or create version {max(self.versions(kind, name)) + 1}"
        )

    def get(self, kind: Kind, name: str, version: int | None = None) -> dict[str, Any]:
        """The stored definition of ``name`` at ``version`` (the latest when None)."""
        check_name(name)
        versions = self.versions(kind, name)
        label = _LABELS[kind]
        if not versions:
            existing = self.names(kind)
            raise NotFoundError(
                f"{label} {name!r} not found; existing {label}s: "
                f"{', '.join(existing) if existing else '(none)'} (in the lake {str(self.root)!r})"
            )
        if version is None:
            version = versions[-1]
        if isinstance(version, bool) or not isinstance(version, int) or version not in versions:
            raise NotFoundError(
                f"{label} {name!r} has no version {version!r}; existing versions: "
                f"{', '.join(map(str, versions))} (in the lake {str(self.root)!r})"
            )
        return _read(self._definition_path(kind, name, version))

    def delete(self, kind: Kind, name: str, version: int) -> None:
        """Remove one definition version: its file first (so it is gone at once), then its data.

        The data folder (a group's Delta table, a view's parameters and training datasets)
        is moved aside before it is deleted, so a half-deleted folder is never read as
        the version's data.
        """
        path = self._definition_path(kind, name, version)
        path.unlink(missing_ok=True)
        # everything the version keeps beside its definition: its data folder (a group's
        # Delta table, a view's parameters and training datasets) and the files and
        # folders named after it (v<n>.appended/, v<n>.quality/, .v<n>.lock, ...)
        for entry in sorted(path.parent.iterdir()) if path.parent.is_dir() else []:
            stem = entry.name.removeprefix(".")
            if stem != f"v{version}" and not stem.startswith(f"v{version}."):
                continue
            if entry.is_dir():
                doomed = entry.with_name(f".deleted-{entry.name}-{os.getpid()}")
                entry.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        parent = path.parent
        if parent.is_dir() and not any(p for p in parent.iterdir() if not p.name.startswith(".")):
            shutil.rmtree(parent, ignore_errors=True)

    # -- schema evolution of feature groups -------------------------------------------------

    def _appended_folder(self, name: str, version: int) -> Path:
        return (
            self.root / "feature_groups" / check_name(name) / f"v{check_version(version)}.appended"
        )

    def add_appended_features(
        self,
        name: str,
        version: int,
        features: Mapping[str, str],
        expectations: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Record columns added to feature group ``name`` v``version``; return the record number.

        ``expectations`` (JSON dicts) are the added columns' expectations, kept in the record.
        """
        folder = self._appended_folder(name, version)
        record: dict[str, Any] = {"features": dict(features), "column_order": list(features)}
        if expectations:
            record["expectations"] = [dict(e) for e in expectations]
        data = _normalise(record)
        while True:
            found = (
                (_NUMBERED_FILE.match(p.name) for p in folder.iterdir()) if folder.is_dir() else ()
            )
            numbers = sorted(int(m.group(1)) for m in found if m)
            number = (numbers[-1] if numbers else 0) + 1
            if _write_once(folder / f"{number}.json", {**data, "number": number}):
                return number

    def appended_features(self, name: str, version: int) -> list[dict[str, str]]:
        """Columns added to group ``name`` v``version``: one mapping per record, in order."""
        folder = self._appended_folder(name, version)
        if not folder.is_dir():
            return []
        found = (_NUMBERED_FILE.match(p.name) for p in folder.iterdir())
        out = []
        for number in sorted(int(m.group(1)) for m in found if m):
            data = _read(folder / f"{number}.json")
            features = data["features"]
            out.append({c: features[c] for c in data.get("column_order") or features})
        return out

    def appended_expectations(self, name: str, version: int) -> list[dict[str, Any]]:
        """Expectations recorded with columns added to group ``name`` v``version``, in order."""
        folder = self._appended_folder(name, version)
        if not folder.is_dir():
            return []
        found = (_NUMBERED_FILE.match(p.name) for p in folder.iterdir())
        out: list[dict[str, Any]] = []
        for number in sorted(int(m.group(1)) for m in found if m):
            out += [dict(e) for e in _read(folder / f"{number}.json").get("expectations") or ()]
        return out

    def load(
        self,
        kind: Kind,
        name: str,
        version: int | None,
        parse: Callable[[dict[str, Any]], _T],
    ) -> _T:
        """The stored definition of ``name`` at ``version``, read by ``parse``.

        A file ``parse`` cannot read raises :class:`LakeError` naming it.
        """
        check_name(name)
        if version is None:
            version = (self.versions(kind, name) or [1])[-1]
        data = self.get(kind, name, version)
        path = self._definition_path(kind, name, version)
        if data.get("name") != name or data.get("version") != version:
            raise LakeError(
                f"{path}: the definition says name={data.get('name')!r}, "
                f"version={data.get('version')!r}, but its place in the lake says {name!r} "
                f"version {version}; restore the file or move it where it belongs"
            )
        return parsed(path, data, parse)

    def versions(self, kind: Kind, name: str) -> list[int]:
        """Sorted versions of one definition (empty when it does not exist)."""
        folder = self.root / kind / check_name(name)
        if not folder.is_dir():
            return []
        found = (_VERSION_FILE.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def names(self, kind: Kind) -> list[str]:
        """Sorted names that have at least one version."""
        folder = self.root / kind
        if not folder.is_dir():
            return []
        return sorted(
            p.name
            for p in folder.iterdir()
            if p.is_dir() and _valid_name(p.name) and self.versions(kind, p.name)
        )

    def problems(self, kind: Kind) -> list[str]:
        """What listing ``kind`` skipped, one line each: entries that are not valid.

        Folders whose name is not a valid name (``.ipynb_checkpoints``, ``Old Copy``) and
        files where a folder belongs; a definition file that cannot be read is reported
        when it is read.
        """
        folder = self.root / kind
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") and path.is_file():
                continue  # lock and order files of the groups' tables
            if not path.is_dir():
                found.append(f"{path}: a file where a {_LABELS[kind]} folder belongs; skipped")
            elif not _valid_name(path.name):
                found.append(f"{path}: not a valid {_LABELS[kind]} name; skipped")
        return found

    # -- numbered records (fitted parameters, training datasets) -------------------------

    def add_record(
        self, kind: Kind, name: str, version: int, collection: str, payload: Mapping[str, Any]
    ) -> int:
        """Store ``payload`` under the next free number of ``collection``; return the number."""
        folder = self.folder(kind, name, version) / collection
        data = _normalise(payload)
        while True:
            numbers = self.records(kind, name, version, collection)
            number = (numbers[-1] if numbers else 0) + 1
            if _write_once(folder / f"{number}.json", {**data, "number": number}):
                return number

    def get_record(
        self, kind: Kind, name: str, version: int, collection: str, number: int | None = None
    ) -> dict[str, Any] | None:
        """The record ``number`` of ``collection`` (the latest when None); None if there is none."""
        numbers = self.records(kind, name, version, collection)
        if not numbers:
            return None
        if number is None:
            number = numbers[-1]
        if isinstance(number, bool) or not isinstance(number, int) or number not in numbers:
            return None
        return _read(self.folder(kind, name, version) / collection / f"{number}.json")

    def load_record(
        self,
        kind: Kind,
        name: str,
        version: int,
        collection: str,
        parse: Callable[[dict[str, Any]], _T],
        number: int | None = None,
    ) -> _T | None:
        """Like :meth:`get_record`, read by ``parse`` (a LakeError naming a damaged file)."""
        numbers = self.records(kind, name, version, collection)
        if not numbers:
            return None
        number = numbers[-1] if number is None else number
        if isinstance(number, bool) or not isinstance(number, int):
            return None
        data = self.get_record(kind, name, version, collection, number)
        if data is None:
            return None
        path = self.folder(kind, name, version) / collection / f"{number}.json"
        return parsed(path, data, parse)

    # -- training datasets -----------------------------------------------------------------

    def add_training_dataset(self, view: str, version: int, record: TrainingDatasetRecord) -> int:
        """Store a training dataset record of view ``view`` v``version``; return its number."""
        return self.add_record("feature_views", view, version, TRAINING_DATASETS, record.to_dict())

    def training_dataset(
        self, view: str, version: int, number: int
    ) -> TrainingDatasetRecord | None:
        """Training dataset ``number`` of view ``view`` v``version``, or None."""
        return self.load_record(
            "feature_views",
            view,
            version,
            TRAINING_DATASETS,
            TrainingDatasetRecord.from_dict,
            number,
        )

    def training_datasets(self, view: str, version: int) -> list[int]:
        """Numbers of the training datasets recorded for view ``view`` v``version``."""
        return self.records("feature_views", view, version, TRAINING_DATASETS)

    def pinned_table_versions(self, group: str, version: int) -> dict[int, list[str]]:
        """Table versions of one feature group that recorded training datasets read.

        Training dataset records list the groups they read under ``"feature_groups"`` as
        ``{"name", "version", "table_version"}`` entries. The result maps each pinned table
        version to the training datasets that need it, as ``"<view> v<version> td <n>"``.
        """
        pins: dict[int, list[str]] = {}
        for view in self.names("feature_views"):
            for view_version in self.versions("feature_views", view):
                # pins first: a creator removes its pin only after writing its record
                pin_folder = self.folder("feature_views", view, view_version) / PINS
                for pin in sorted(pin_folder.glob("*.json")) if pin_folder.is_dir() else []:
                    if pin.name.startswith("."):
                        continue  # a pin being written (see _write_once)
                    with contextlib.suppress(FileNotFoundError):  # its creator is done
                        for pinned in parsed(pin, _read(pin), _pinned_groups):
                            if pinned.name == group and pinned.version == version:
                                pins.setdefault(pinned.table_version, []).append(
                                    f"{view} v{view_version} training dataset being created ({pin})"
                                )
                for number in self.training_datasets(view, view_version):
                    record = self.training_dataset(view, view_version, number)
                    if record is None:
                        continue
                    for pinned in record.feature_groups:
                        if pinned.name == group and pinned.version == version:
                            pins.setdefault(pinned.table_version, []).append(
                                f"{view} v{view_version} training dataset {number}"
                            )
        return pins

    def add_pin(self, view: str, version: int, groups: Sequence[PinnedGroup]) -> Path:
        """Durably note table versions a training dataset being created will read.

        Vacuum keeps what pins and training dataset records name; the creator removes
        its pin (:meth:`remove_pin`) once the record is written. A pin left by a process
        that died stays until removed by hand, keeping files rather than losing them.
        """
        folder = self.folder("feature_views", view, version) / PINS
        payload = {
            "feature_groups": [
                {"name": g.name, "version": g.version, "table_version": g.table_version}
                for g in groups
            ]
        }
        while True:
            path = folder / f"{uuid.uuid4().hex}.json"
            if _write_once(path, payload):
                return path

    def remove_pin(self, path: Path) -> None:
        """Remove a pin written by :meth:`add_pin`."""
        path.unlink(missing_ok=True)

    def records(self, kind: Kind, name: str, version: int, collection: str) -> list[int]:
        """Sorted numbers stored in ``collection``."""
        folder = self.folder(kind, name, version) / collection
        if not folder.is_dir():
            return []
        found = (_NUMBERED_FILE.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)


def _normalise(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so that what is returned equals what is read back later."""
    result: dict[str, Any] = json.loads(json.dumps(payload, sort_keys=True))
    return result


def parsed(path: Path, data: dict[str, Any], parse: Callable[[dict[str, Any]], _T]) -> _T:
    """``parse(data)``, where ``data`` was read from ``path``; a LakeError naming it if that fails.

    Whatever ``parse`` raises means the stored file is not what MicroFS wrote there.
    """
    try:
        return parse(data)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:
        raise LakeError(
            f"{path}: damaged or not written by MicroFS ({type(exc).__name__}: "
            f"{_first_line(exc)}); restore it from a copy of the lake"
        ) from exc


def _read(path: Path) -> dict[str, Any]:
    """A stored JSON object; :class:`LakeError` naming ``path`` if it is anything else."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LakeError(f"{path}: not UTF-8 text ({exc.reason}); restore it") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        what = "empty" if not text.strip() else f"not valid JSON ({_first_line(exc)})"
        raise LakeError(f"{path}: {what}; the file is damaged, restore it") from exc
    if not isinstance(data, dict):
        raise LakeError(
            f"{path}: holds a JSON {type(data).__name__}, not the object MicroFS writes; restore it"
        )
    return data


def _pinned_groups(data: Mapping[str, Any]) -> list[PinnedGroup]:
    return [
        PinnedGroup(str(g["name"]), int(g["version"]), int(g["table_version"]))
        for g in data["feature_groups"]
    ]


def _valid_name(name: str) -> bool:
    try:
        check_name(name)
    except InvalidNameError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _write_once(path: Path, data: Mapping[str, Any]) -> bool:
    """Atomically create ``path`` holding ``data``; False if it exists already."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)
