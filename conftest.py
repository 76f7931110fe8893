"""Collection rules for the whole repository (the package's doctests and tests/)."""

from __future__ import annotations

import importlib.util

# The Daft engine imports Daft at module level; its doctests run in the `scale`
# environment (see .ci/run), and are not collected where Daft is not installed.
collect_ignore = [] if importlib.util.find_spec("daft") else ["microfs/daft_engine.py"]
