"""``python -m microfs``: the same as the ``microfs`` command."""

from __future__ import annotations

import sys

from microfs.cli import main

if __name__ == "__main__":
    sys.exit(main())
