"""The command line: ``microfs demo`` and ``microfs <noun> <verb>`` inspection and maintenance.

Verbs::

    microfs demo [--size tiny|small|medium]     (small, 1M labels, by default)
    microfs groups list
    microfs groups show NAME [--version N]
    microfs groups history NAME [--version N]
    microfs groups head NAME [--version N] [--rows 10] [--table-version N | --as-of TIME]
    microfs groups compact NAME [--version N]
    microfs groups vacuum NAME [--version N] [--retention-hours H] [--yes] [--force]
    microfs groups stats NAME [--version N] [--table-version N]
    microfs groups report NAME [--version N] [--table-version N] --out FILE.html
    microfs views list
    microfs views show NAME [--version N]
    microfs serve [--host 127.0.0.1] [--port 6566] [--workers N] [--token-env NAME]

Every verb takes ``--lake PATH`` (default: ``$MICROFS_LAKE``, else ``./lake``); every verb
but ``demo`` takes ``--json`` and then prints exactly one JSON document on stdout. Both
global options work before the noun too (``microfs --json groups list``). Only ``demo``
creates a lake: the other verbs refuse a lake folder that does not exist.

Versions are named apart: ``--version N`` is a definition version (of a group or view),
``--table-version N`` a Delta table version (the data), and ``microfs --version``, before
any noun, prints the program's version. ``groups vacuum`` is a dry run unless ``--yes``
(as deltalake's ``vacuum`` is). Bare ``microfs`` prints the help and exits with 2.

A user error prints one line, ``microfs: error: <what was wrong>``, on stderr and exits
with 1 (2 for a malformed command line); it never prints a traceback.

This module holds the entry point, the parser and the demo; the ``groups`` and ``views``
verbs, where the lake is found and how tables and JSON are written are in
:mod:`microfs._cli_verbs`. These two modules and the pipelines are the only code in the
package that prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

from microfs._cli_verbs import (
    groups_compact,
    groups_head,
    groups_history,
    groups_list,
    groups_report,
    groups_show,
    groups_stats,
    groups_vacuum,
    lake_path,
    serve,
    views_list,
    views_show,
)
from microfs.errors import MicroFSError
from microfs.store import DEFAULT_LAKE, LAKE_ENV, FeatureStore

__all__ = ["main"]

_PROG = "microfs"
_DEMO_SIZES = ("tiny", "small", "medium")
# small ran in 14-25 s from a fresh lake on 2 busy cores (re-runs, which merge 1M rows:
# 28-35 s): quick for a first look, and the join and training run at a realistic size
_DEMO_DEFAULT_SIZE = "small"
_DEMO_VIEW = "recommendation_model_v1"

_EPILOG = f"""\
The lake is the folder given by --lake, else ${LAKE_ENV}, else ./{DEFAULT_LAKE}.
Only `demo` creates it; the other verbs need an existing lake.

examples:
  microfs demo                          run the three pipelines on 1M synthetic labels
  microfs demo --size tiny              the same on 2,000 labels, in a few seconds
  microfs groups list                   feature groups, row counts, table versions
  microfs groups show user_activity     schema, keys, event time, online keys, rows
  microfs groups history user_activity  the table's commits
  microfs groups head user_activity --rows 5 --table-version 1
  microfs groups vacuum user_activity  list what a vacuum would delete (--yes deletes)
  microfs groups stats user_profile     statistics of the latest table version
  microfs groups report user_profile --out report.html
  microfs views show recommendation_model_v1 --json
  microfs serve --port 6566             feature vectors over HTTP (pip install "microfs[serve]")

A user error prints one line `microfs: error: ...` on stderr and exits with 1."""

Handler = Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``microfs`` command line; return the process exit code.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 on success, 1 for a user error (one line on stderr), 2 for a malformed command
        line, 130 when interrupted.

    >>> main(["groups", "list", "--lake", "/no/such/lake"])  # one line on stderr
    1
    """
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except MicroFSError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # the reader of stdout went away (e.g. `| head`): stop quietly
            _silence_stdout()
            return 1
        return _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    except (SystemExit, MemoryError):
        raise
    except BaseException as exc:  # a panic from below included: one line, never a traceback
        return _fail(f"unexpected {type(exc).__name__}: {exc}")


def _fail(message: str) -> int:
    """Print ``message`` as one error line on stderr; return the exit code 1."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"{_PROG}: error: {line}", file=sys.stderr, flush=True)
    return 1


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# ---------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    lake_help = f"the lake folder (default: ${LAKE_ENV}, else ./{DEFAULT_LAKE})"
    # --lake works before or after the verb; SUPPRESS keeps a verb's parser from
    # overwriting a value given before it with its own default
    lake = argparse.ArgumentParser(add_help=False)
    lake.add_argument("--lake", metavar="PATH", default=argparse.SUPPRESS, help=lake_help)
    json_help = "print one JSON document on stdout, nothing else"
    out = argparse.ArgumentParser(add_help=False, parents=[lake])
    out.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=json_help)
    named = argparse.ArgumentParser(add_help=False, parents=[out])
    named.add_argument("name", metavar="NAME", help="the feature group's name")
    named.add_argument(
        "--version",
        type=_positive_int,
        metavar="N",
        help="definition version (default: latest); a Delta table version is --table-version",
    )

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="MicroFS: an embedded feature store. Run the demo, inspect and maintain "
        "a lake of feature groups and feature views.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lake", metavar="PATH", default=None, help=lake_help)
    parser.add_argument("--json", action="store_true", default=False, help=json_help)
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {_package_version()}",
        help="print the program's version (before any command) and exit",
    )
    nouns = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = nouns.add_parser(
        "demo",
        parents=[lake],
        help="run the feature, training and inference pipelines on synthetic data",
        description="Run the feature, training and inference pipelines on synthetic data in "
        "the lake (created if missing). Re-running upserts the same data: the groups get new "
        "table versions with the same rows, the view a new training dataset.",
    )
    demo.add_argument(
        "--size",
        choices=_DEMO_SIZES,
        default=_DEMO_DEFAULT_SIZE,
        help="synthetic data size: tiny (2,000 labels, a few seconds), small (1M labels, "
        "10 to 30 seconds; the default), medium (10M labels, minutes)",
    )
    demo.set_defaults(handler=_demo)

    groups = nouns.add_parser(
        "groups",
        help="feature groups: list, show, history, head, compact, vacuum, stats, report",
    )
    group_verbs = groups.add_subparsers(title="verbs", metavar="VERB", required=True)
    verb = group_verbs.add_parser("list", parents=[out], help="list feature groups")
    verb.set_defaults(handler=groups_list)
    verb = group_verbs.add_parser(
        "show",
        parents=[named],
        help="schema, keys, event time, online keys, row count, table version",
    )
    verb.set_defaults(handler=groups_show)
    verb = group_verbs.add_parser(
        "history", parents=[named], help="the commits of the group's Delta table"
    )
    verb.set_defaults(handler=groups_history)
    verb = group_verbs.add_parser(
        "head",
        parents=[named],
        help="print the first rows of a table version",
        description="Print the first rows of the group's table: the latest table version, "
        "or the one --table-version or --as-of selects.",
    )
    verb.add_argument(
        "--rows", type=_non_negative_int, default=10, metavar="N", help="rows (default: 10)"
    )
    when = verb.add_mutually_exclusive_group()
    when.add_argument(
        "--table-version", type=_non_negative_int, metavar="N", help="Delta table version"
    )
    when.add_argument(
        "--as-of",
        metavar="TIME",
        help="the table as it was at this time: ISO 8601 with a time zone, "
        "e.g. 2024-05-01T12:00:00Z",
    )
    verb.set_defaults(handler=groups_head)
    verb = group_verbs.add_parser(
        "compact",
        parents=[named],
        help="rewrite small files into larger ones (a new table version, same rows)",
    )
    verb.set_defaults(handler=groups_compact)
    verb = group_verbs.add_parser(
        "vacuum",
        parents=[named],
        help="list (or, with --yes, delete) data files only old table versions need",
        description="List the data files that only table versions older than the retention "
        "need; with --yes, delete them (a dry run by default, as deltalake's vacuum). Files "
        "recorded training datasets read are kept unless --force; time travel to a vacuumed "
        "version fails afterwards.",
    )
    verb.add_argument(
        "--retention-hours",
        type=_non_negative_float,
        metavar="H",
        help="keep files that versions younger than H hours need (default: 168, a week; "
        "0 is unsafe while another process writes)",
    )
    deleting = verb.add_mutually_exclusive_group()
    deleting.add_argument(
        "--yes",
        action="store_true",
        help="delete the files (without it, a dry run: list them, delete nothing)",
    )
    deleting.add_argument(
        "--dry-run", action="store_true", help="list the files, delete nothing (the default)"
    )
    verb.add_argument(
        "--force",
        action="store_true",
        help="delete files recorded training datasets need too (names the ones it breaks)",
    )
    verb.set_defaults(handler=groups_vacuum)
    verb = group_verbs.add_parser(
        "stats",
        parents=[named],
        help="statistics of a table version: counts, nulls, min, max, mean, percentiles",
        description="Print the statistics stored with a table version (the latest by "
        "default): per column the values, nulls, approximate distinct values and, for "
        "numeric columns, min, max, mean, std and percentiles.",
    )
    verb.add_argument(
        "--table-version", type=_non_negative_int, metavar="N", help="Delta table version"
    )
    verb.set_defaults(handler=groups_stats)
    verb = group_verbs.add_parser(
        "report",
        parents=[named],
        help="write a self-contained HTML data quality report",
        description="Write one HTML page (no scripts, no network) with a histogram per "
        "feature, the version's statistics, the expectations and the validation history.",
    )
    verb.add_argument(
        "--table-version", type=_non_negative_int, metavar="N", help="Delta table version"
    )
    verb.add_argument("--out", required=True, metavar="FILE.html", help="where to write")
    verb.set_defaults(handler=groups_report)

    views = nouns.add_parser("views", help="feature views: list, show")
    view_verbs = views.add_subparsers(title="verbs", metavar="VERB", required=True)
    verb = view_verbs.add_parser("list", parents=[out], help="list feature views")
    verb.set_defaults(handler=views_list)
    verb = view_verbs.add_parser(
        "show",
        parents=[out],
        help="a view's definition and its training datasets",
    )
    verb.add_argument("name", metavar="NAME", help="the feature view's name")
    verb.add_argument(
        "--version",
        type=_positive_int,
        metavar="N",
        help="view definition version (default: latest)",
    )
    verb.set_defaults(handler=views_show)

    verb = nouns.add_parser(
        "serve",
        parents=[lake],
        help="serve the lake's feature vectors over HTTP (Feast-compatible route included)",
        description="Serve the lake's feature views over HTTP until SIGTERM or Ctrl-C: "
        "/health, /v1/feature-views, /v1/feature-views/NAME/vectors, /get-online-features "
        '(Feast\'s request and response) and /metrics. Needs pip install "microfs[serve]".',
    )
    verb.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    verb.add_argument(
        "--port", type=_non_negative_int, default=6566, help="port (default: 6566; 0: any free)"
    )
    verb.add_argument(
        "--workers", type=_positive_int, default=1, metavar="N", help="processes (default: 1)"
    )
    verb.add_argument(
        "--token-env",
        metavar="NAME",
        default=None,
        help="environment variable holding the bearer token every route but /health needs "
        "(default: MICROFS_TOKEN; a non-loopback --host needs one)",
    )
    verb.set_defaults(handler=serve)
    return parser


def _package_version() -> str:
    from microfs import __version__

    return __version__


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of hours >= 0")
    return value


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from microfs import synthetic

    path, _ = lake_path(args)
    lake = str(path)
    user, item = synthetic.DEMO_USER_ID, synthetic.DEMO_ITEM_ID
    steps: list[tuple[str, str, list[str]]] = [
        ("feature pipeline", "feature_pipeline", ["--lake", lake, "--size", args.size]),
        ("training pipeline", "training_pipeline", ["--lake", lake]),
        (
            f"inference pipeline (user {user}, item {item})",
            "inference_pipeline",
            ["--lake", lake, "--user_id", str(user), "--item_id", str(item)],
        ),
    ]
    print(f"MicroFS demo: {args.size} synthetic data, lake folder {lake}", flush=True)
    began = time.perf_counter()
    for number, (title, module, argv) in enumerate(steps, start=1):
        print(f"[{number}/{len(steps)}] {title}", flush=True)
        step_began = time.perf_counter()
        pipeline: Callable[[Sequence[str]], int] = _pipeline(module)
        code = pipeline(argv)
        if code != 0:
            # the pipeline has said what went wrong on stderr
            return code
        print(f"  done in {time.perf_counter() - step_began:.1f} s", flush=True)
    print(f"summary ({time.perf_counter() - began:.1f} s in all):")
    for line in _demo_summary(FeatureStore(path)):
        print(f"  {line}")
    flag = f" --lake {lake}" if getattr(args, "lake", None) else ""
    print(f"next: microfs groups list{flag}; microfs views show {_DEMO_VIEW}{flag}")
    return 0


def _pipeline(module: str) -> Callable[[Sequence[str]], int]:
    """The ``main`` of a pipeline: installed as ``microfs.pipelines``, else from a checkout."""
    import importlib

    try:
        found = importlib.import_module(f"microfs.pipelines.{module}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("microfs.pipelines", f"microfs.pipelines.{module}"):
            raise
        # a source checkout on sys.path without `pip install -e .`: the top-level folder
        found = importlib.import_module(f"pipelines.{module}")
    main_: Callable[[Sequence[str]], int] = found.main
    return main_


def _demo_summary(fs: FeatureStore) -> list[str]:
    groups = [fs.get_feature_group(name) for name in fs.list_feature_groups()]
    counts = [f"{fg.count():,}" for fg in groups]
    name_width = max((len(fg.name) for fg in groups), default=0)
    count_width = max((len(c) for c in counts), default=0)
    lines = [
        f"feature group {fg.name:<{name_width}}  v{fg.version}  {count:>{count_width}} rows  "
        f"table version {fg.table_version()}"
        for fg, count in zip(groups, counts, strict=True)
    ]
    fv = fs.get_feature_view(_DEMO_VIEW)
    datasets = fv.list_training_datasets()
    if datasets:
        number = datasets[-1]
        meta = fs.root / "models" / _DEMO_VIEW / f"td{number}.json"
        auc = (
            json.loads(meta.read_text(encoding="utf-8")).get("test_auc") if meta.exists() else None
        )
        shown = f", model test AUC {auc:.4f}" if isinstance(auc, float) else ""
        lines.append(f"feature view {fv.name} v{fv.version}: training dataset {number}{shown}")
    return lines
