"""Progress of long work: inserts, training frames and datasets, online builds.

Long-running methods take ``progress=``: ``False`` (the default) reports nothing,
``True`` draws a ``tqdm`` bar on stderr when the work is large (see each method), and a
callable is called with a :class:`ProgressEvent` at every step, whatever the size, so a
notebook widget, a log line or a test can follow along.

>>> events = []
>>> with track(events.append, task="insert", total=2, unit="step") as step:
...     step("checked")
...     step("written")
>>> [(e.done, e.total, e.step) for e in events]
[(0, 2, 'start'), (1, 2, 'checked'), (2, 2, 'written')]
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from microfs.errors import DefinitionError

__all__ = ["Progress", "ProgressEvent", "Step", "track"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of long work.

    Attributes:
        task: What runs (``"insert into user_activity"``, ``"training frame"`` ...).
        done: Units done so far.
        total: Units in all.
        unit: What a unit is (``"step"``, ``"window"`` ...).
        step: What the last unit was (``"start"`` before the first).
    """

    task: str
    done: int
    total: int
    unit: str
    step: str


Progress = bool | Callable[[ProgressEvent], Any] | None
"""What ``progress=`` takes: False or None (silent), True (a bar), or a callable."""

Step = Callable[[str], None]
"""Marks one unit done, naming it."""


def _silent(_: str) -> None:
    return None


@contextlib.contextmanager
def track(
    progress: Progress,
    *,
    task: str,
    total: int,
    unit: str = "step",
    large: bool = True,
) -> Iterator[Step]:
    """Report ``total`` units of work to ``progress``; yields the function that marks one done.

    Args:
        progress: False/None, True (a ``tqdm`` bar on stderr, drawn only when ``large``)
            or a callable given a :class:`ProgressEvent` per unit (and one at the start).
        task: What runs, shown beside the bar.
        total: Units in all.
        unit: What a unit is.
        large: Whether the work is big enough for a bar (callables are always called).
    """
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise DefinitionError(
            f"progress={progress!r} must be True, False or a callable taking a ProgressEvent"
        )
    if progress is None or progress is False:
        yield _silent
        return
    if progress is True:
        if not large:
            yield _silent
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=task, unit=unit, file=sys.stderr, leave=False) as bar:

            def advance(step: str) -> None:
                bar.set_postfix_str(step, refresh=False)
                bar.update(1)

            yield advance
        return
    callback = progress
    done = 0
    callback(ProgressEvent(task, 0, total, unit, "start"))

    def report(step: str) -> None:
        nonlocal done
        done += 1
        callback(ProgressEvent(task, done, total, unit, step))

    yield report
