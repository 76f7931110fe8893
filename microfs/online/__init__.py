"""The online store: the latest row per online key of each served feature group, in memory.

Every feature group with ``online_keys`` is served online by an :class:`OnlineTable`, and a
process's tables are held by its :class:`OnlineStore`. The subpackage, from the top down:

- ``store``: :class:`OnlineStore`, one table per group version, told about commits.
- ``table``: :class:`OnlineTable` (lookups of one key or many, kept fresh after inserts)
  and :class:`FoundRows` (the rows of a batch lookup, read from one snapshot).
- ``index``: the open-addressing hash index from a key to its row position and the
  ``Snapshot`` (columns + index) a lookup reads; building it keeps each key's latest row.
- ``keys``: how request values and request frames become stored key values.
- ``columns``: the growable numpy column buffers and their readers.
- ``hashing``: the 64-bit hash of a key, computed alike for one value and a whole column.

Each module imports only those below it in this list; nothing here imports the feature
view, serving or feature store modules.
"""

from __future__ import annotations

from microfs.online.store import OnlineStore
from microfs.online.table import FoundRows, OnlineTable

__all__ = ["FoundRows", "OnlineStore", "OnlineTable"]
