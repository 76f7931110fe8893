"""The online store of one process: an :class:`OnlineTable` per served feature group version.

The feature store owns one :class:`OnlineStore`, tells it about each insert it commits
(:meth:`OnlineStore.committed`) and asks it to catch up with other processes' commits
(:meth:`OnlineStore.refresh`). It is given nothing but the lake folder it serves, for its
repr: tables are built from the feature groups handed to :meth:`OnlineStore.table`.

Freshness across threads: once an insert returns, every lookup started afterwards, from
any thread, sees it. The store notes each commit's table version per group before the
insert returns, and hands a table built concurrently the versions noted meanwhile; the
table's lookups catch up to the noted version or wait for the one catching up
(:meth:`OnlineTable.committed`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from microfs.feature_group import Committed, FeatureGroup
from microfs.online.table import OnlineTable
from microfs.progress import Progress

__all__ = ["OnlineStore"]


class OnlineStore:
    """The in-process online store: one :class:`OnlineTable` per served feature group version.

    Tables are built from a group's latest Delta snapshot the first time they are needed
    and kept up to date: inserts made in this process reach the next lookup, commits of
    other processes arrive with :meth:`refresh`.

    Args:
        root: the lake folder the tables come from (shown in the repr only).

    >>> store = OnlineStore("lake")
    >>> store.refresh()
    >>> store
    OnlineStore('lake', tables=[])
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = None if root is None else Path(root)
        self._tables: dict[tuple[str, int], OnlineTable] = {}
        self._lock = threading.Lock()  # held while a table is built
        self._noted = threading.Lock()  # orders commit notes against tables being added
        self._noted_versions: dict[tuple[str, int], int] = {}  # newest committed table versions
        self._generation = 0

    def __repr__(self) -> str:
        lake = "" if self.root is None else f"{str(self.root)!r}, "
        return f"OnlineStore({lake}tables={sorted(self._tables)})"

    @property
    def generation(self) -> int:
        """A counter that :meth:`refresh` bumps, so compiled vector paths recompile.

        >>> store = OnlineStore()
        >>> store.refresh()
        >>> store.generation
        1
        """
        return self._generation

    def table(self, group: FeatureGroup, *, progress: Progress = False) -> OnlineTable:
        """The online table of ``group`` (built on first use, then cached per name and version).

        ``progress=True`` draws a bar while a table of 1M keys or more is built; a
        callable is told when the build is done.

        Raises:
            DefinitionError: the group has no ``online_keys``.

        >>> fs.online.table(fs.get_feature_group("user_profile")).key_columns  # doctest: +SKIP
        ('user_id',)
        """
        key = (group.name, group.version)
        table = self._tables.get(key)
        if table is None:
            with self._lock:
                table = self._tables.get(key)
                if table is None:
                    table = OnlineTable(group, progress=progress)
                    # an insert that returned while the table was built may be missing
                    # from the snapshot it was built from: the table owes it
                    with self._noted:
                        if key in self._noted_versions:
                            table.committed(self._noted_versions[key])
                        self._tables[key] = table
        return table

    def committed(self, group: FeatureGroup, result: Committed) -> None:
        """Note a commit made in this process: every lookup from now on reflects it.

        Called by the feature store after each insert or delete, before it returns; cheap
        (nothing is read here): the next lookup of the group catches up (a delete makes
        it rebuild from the new snapshot). A schema change (``append_features``) drops
        the group's table and bumps :attr:`generation`, so vector paths are compiled
        again over a table built with the new columns.

        >>> fs.online.committed(fg, fg.insert(batch))  # doctest: +SKIP
        """
        if result.mode == "noop":
            return
        key = (group.name, group.version)
        if result.mode == "schema":
            self.drop(group.name, group.version)
            self._generation += 1
            return
        with self._noted:
            if result.table_version > self._noted_versions.get(key, -1):
                self._noted_versions[key] = result.table_version
            table = self._tables.get(key)
        if table is not None:
            table.committed(result.table_version)

    def drop(self, name: str, version: int) -> None:
        """Forget the table of one group version (deleted, or its schema changed).

        >>> OnlineStore().drop("user_profile", 1)
        """
        key = (name, version)
        with self._lock, self._noted:
            self._tables.pop(key, None)
            self._noted_versions.pop(key, None)

    def refresh(self) -> None:
        """Catch up with every commit since each table was built (other processes' too).

        Reads only the files added since when every commit since was an append, else
        rebuilds the table from the latest snapshot.

        >>> fs.online.refresh()  # doctest: +SKIP
        """
        self._generation += 1
        for table in list(self._tables.values()):
            table.refresh()
