"""The command line: ``microfs demo`` and ``microfs <noun> <verb>`` inspection and maintenance.

Verbs::

    microfs demo [--size tiny|small|medium]     (small, 1M labels, by default)
    microfs groups list
    microfs groups show NAME [--version N]
    microfs groups history NAME [--version N]
    microfs groups head NAME [--version N] [--rows 10] [--table-version N | --as-of TIME]
    microfs groups compact NAME [--version N]
    microfs groups vacuum NAME [--version N] [--retention-hours H] [--dry-run] [--force]
    microfs views list
    microfs views show NAME [--version N]

Every verb takes ``--lake PATH`` (default: ``$MICROFS_LAKE``, else ``./lake``); every verb
but ``demo`` takes ``--json`` and then prints exactly one JSON document on stdout. Only
``demo`` creates a lake: the other verbs refuse a lake folder that does not exist.

A user error prints one line, ``microfs: error: <what was wrong>``, on stderr and exits
with 1 (2 for a malformed command line); it never prints a traceback.

This module and the pipelines are the only code in the package that prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from microfs.errors import DefinitionError, MicroFSError, NotFoundError
from microfs.store import DEFAULT_LAKE, FeatureStore

__all__ = ["main"]

_PROG = "microfs"
_DEMO_SIZES = ("tiny", "small", "medium")
# small ran in 14-25 s from a fresh lake on 2 busy cores (re-runs, which merge 1M rows:
# 28-35 s): quick for a first look, and the join and training run at a realistic size
_DEMO_DEFAULT_SIZE = "small"
_DEMO_VIEW = "recommendation_model_v1"
_LAKE_ENV = "MICROFS_LAKE"
_TRAINING_DATASETS = "training_datasets"

_EPILOG = f"""\
The lake is the folder given by --lake, else ${_LAKE_ENV}, else ./{DEFAULT_LAKE}.
Only `demo` creates it; the other verbs need an existing lake.

examples:
  microfs demo                          run the three pipelines on 1M synthetic labels
  microfs demo --size tiny              the same on 2,000 labels, in a few seconds
  microfs groups list                   feature groups, row counts, table versions
  microfs groups show user_activity     schema, keys, event time, online keys, rows
  microfs groups history user_activity  the table's commits
  microfs groups head user_activity --rows 5 --table-version 1
  microfs groups vacuum user_activity --dry-run
  microfs views show recommendation_model_v1 --json

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
        parser.print_help()
        return 0
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
    lake_help = f"the lake folder (default: ${_LAKE_ENV}, else ./{DEFAULT_LAKE})"
    # --lake works before or after the verb; SUPPRESS keeps a verb's parser from
    # overwriting a value given before it with its own default
    lake = argparse.ArgumentParser(add_help=False)
    lake.add_argument("--lake", metavar="PATH", default=argparse.SUPPRESS, help=lake_help)
    out = argparse.ArgumentParser(add_help=False, parents=[lake])
    out.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout, nothing else"
    )
    named = argparse.ArgumentParser(add_help=False, parents=[out])
    named.add_argument("name", metavar="NAME", help="the feature group's name")
    named.add_argument(
        "--version", type=_positive_int, metavar="N", help="definition version (default: latest)"
    )

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="MicroFS: an embedded feature store. Run the demo, inspect and maintain "
        "a lake of feature groups and feature views.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lake", metavar="PATH", default=None, help=lake_help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
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
        "groups", help="feature groups: list, show, history, head, compact, vacuum"
    )
    group_verbs = groups.add_subparsers(title="verbs", metavar="VERB", required=True)
    verb = group_verbs.add_parser("list", parents=[out], help="list feature groups")
    verb.set_defaults(handler=_groups_list)
    verb = group_verbs.add_parser(
        "show",
        parents=[named],
        help="schema, keys, event time, online keys, row count, table version",
    )
    verb.set_defaults(handler=_groups_show)
    verb = group_verbs.add_parser(
        "history", parents=[named], help="the commits of the group's Delta table"
    )
    verb.set_defaults(handler=_groups_history)
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
    verb.set_defaults(handler=_groups_head)
    verb = group_verbs.add_parser(
        "compact",
        parents=[named],
        help="rewrite small files into larger ones (a new table version, same rows)",
    )
    verb.set_defaults(handler=_groups_compact)
    verb = group_verbs.add_parser(
        "vacuum",
        parents=[named],
        help="delete data files that old table versions need",
        description="Delete data files that only table versions older than the retention "
        "need. Files recorded training datasets read are kept unless --force; time travel "
        "to a vacuumed version fails afterwards.",
    )
    verb.add_argument(
        "--retention-hours",
        type=_non_negative_float,
        metavar="H",
        help="keep files that versions younger than H hours need (default: 168, a week; "
        "0 is unsafe while another process writes)",
    )
    verb.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")
    verb.add_argument(
        "--force",
        action="store_true",
        help="delete files recorded training datasets need too (names the ones it breaks)",
    )
    verb.set_defaults(handler=_groups_vacuum)

    views = nouns.add_parser("views", help="feature views: list, show")
    view_verbs = views.add_subparsers(title="verbs", metavar="VERB", required=True)
    verb = view_verbs.add_parser("list", parents=[out], help="list feature views")
    verb.set_defaults(handler=_views_list)
    verb = view_verbs.add_parser(
        "show",
        parents=[out],
        help="a view's definition and its training datasets",
    )
    verb.add_argument("name", metavar="NAME", help="the feature view's name")
    verb.add_argument(
        "--version", type=_positive_int, metavar="N", help="definition version (default: latest)"
    )
    verb.set_defaults(handler=_views_show)
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
# The lake
# ---------------------------------------------------------------------------------------


def _lake_path(args: argparse.Namespace) -> tuple[Path, str]:
    """The lake folder and where its path came from."""
    given: str | None = getattr(args, "lake", None)
    if given:
        return Path(given), "--lake"
    env = os.environ.get(_LAKE_ENV)
    if env:
        return Path(env), f"${_LAKE_ENV}"
    return Path(DEFAULT_LAKE), "the default"


def _existing_store(args: argparse.Namespace) -> FeatureStore:
    """Open the lake without creating anything; a missing lake is a user error."""
    path, source = _lake_path(args)
    demo = f"microfs demo --lake {path}" if source == "--lake" else "microfs demo"
    hint = f"run `{demo}` to create one, or choose another with --lake or ${_LAKE_ENV}"
    if not path.exists():
        raise NotFoundError(
            f"no lake at {str(path)!r} ({source}): the folder does not exist; {hint}"
        )
    if not path.is_dir():
        raise NotFoundError(f"the lake {str(path)!r} ({source}) is not a folder; {hint}")
    marks = ("README.md", "feature_groups", "feature_views")
    if not any((path / mark).exists() for mark in marks):
        raise NotFoundError(
            f"the folder {str(path)!r} ({source}) is not a MicroFS lake (it has no "
            f"feature_groups/, feature_views/ or README.md); {hint}"
        )
    return FeatureStore(path)


# ---------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------


def _emit_json(document: object) -> None:
    print(json.dumps(document, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain aligned columns; columns of numbers are right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        bool(rows) and all(_is_number(row[i]) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells]:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return _when(value)
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _versions_text(versions: Sequence[int]) -> str:
    return ", ".join(map(str, versions))


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise DefinitionError(
            f"--as-of {text!r} is not an ISO 8601 time; write e.g. 2024-05-01T12:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise DefinitionError(
            f"--as-of {text!r} has no time zone; add one, e.g. {text}Z for UTC or {text}+02:00"
        )
    return value


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from microfs import synthetic

    path, _ = _lake_path(args)
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
    print(f"MicroFS demo: {args.size} synthetic data in the lake {lake}", flush=True)
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


# ---------------------------------------------------------------------------------------
# groups
# ---------------------------------------------------------------------------------------


def _groups_list(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    entries = []
    for name in fs.list_feature_groups():
        fg = fs.get_feature_group(name)
        entries.append(
            {
                "name": name,
                "versions": fs.feature_group_versions(name),
                "version": fg.version,
                "rows": fg.count(),
                "table_version": fg.table_version(),
                "primary_keys": fg.primary_keys,
                "event_time": fg.event_time,
                "online_keys": fg.online_keys,
            }
        )
    if args.json:
        _emit_json(entries)
    elif not entries:
        print(f"no feature groups in the lake {str(fs.root)!r}")
    else:
        headers = ["NAME", "VERSION", "ROWS", "TABLE VERSION", "PRIMARY KEYS", "EVENT TIME"]
        headers.append("ONLINE KEYS")
        print(
            _table(
                headers,
                [
                    [
                        e["name"],
                        e["version"],
                        e["rows"],
                        e["table_version"],
                        e["primary_keys"],
                        e["event_time"],
                        e["online_keys"],
                    ]
                    for e in entries
                ],
            )
        )
    return 0


def _group_document(fs: FeatureStore, args: argparse.Namespace) -> dict[str, Any]:
    fg = fs.get_feature_group(args.name, args.version)
    definition = fg.definition.to_dict()
    definition.pop("column_order", None)  # the order of "schema" says it already
    return {
        **definition,
        "versions": fs.feature_group_versions(fg.name),
        "rows": fg.count(),
        "table_version": fg.table_version(),
        "path": str(fg.path),
    }


def _groups_show(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    doc = _group_document(fs, args)
    if args.json:
        _emit_json(doc)
        return 0
    keys, event_time = doc["primary_keys"], doc["event_time"]
    described: Mapping[str, str] = doc.get("feature_descriptions") or {}
    roles = {
        column: "primary key"
        if column in keys
        else "event time"
        if column == event_time
        else "feature"
        for column in doc["schema"]
    }
    print(
        f"feature group {doc['name']} version {doc['version']} "
        f"(versions: {_versions_text(doc['versions'])})"
    )
    if doc.get("description"):
        print(f"  description    {doc['description']}")
    print(f"  primary keys   {_cell(keys)}")
    print(f"  event time     {_cell(event_time) if event_time else '- (a static group)'}")
    online = doc["online_keys"]
    print(f"  online keys    {_cell(online) if online else '- (offline only)'}")
    print(f"  rows           {doc['rows']:,}")
    print(f"  table version  {doc['table_version']}")
    print(f"  path           {doc['path']}")
    print("  schema")
    rows = [
        [column, dtype, roles[column], described.get(column)]
        for column, dtype in doc["schema"].items()
    ]
    headers = ["COLUMN", "TYPE", "ROLE", "DESCRIPTION"]
    if not described:
        headers, rows = headers[:3], [row[:3] for row in rows]
    print("\n".join(f"    {line}" for line in _table(headers, rows).splitlines()))
    return 0


def _groups_history(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    commits = fg.history()
    if args.json:
        _emit_json(
            {
                "name": fg.name,
                "version": fg.version,
                "commits": [
                    {
                        "table_version": c.version,
                        "timestamp": c.timestamp,
                        "operation": c.operation,
                        "rows": c.rows,
                    }
                    for c in commits
                ],
            }
        )
        return 0
    print(f"feature group {fg.name} version {fg.version}: {len(commits)} commit(s)")
    print(
        _table(
            ["TABLE VERSION", "COMMITTED", "OPERATION", "ROWS"],
            [[c.version, c.timestamp, c.operation, c.rows] for c in commits],
        )
    )
    return 0


def _groups_head(args: argparse.Namespace) -> int:
    import polars as pl

    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    as_of = _parse_time(args.as_of) if args.as_of is not None else None
    table_version = fg.resolve_version(version=args.table_version, as_of=as_of)
    frame = fg.scan(version=table_version).head(args.rows).collect()
    total = fg.count(table_version)
    if args.json:
        _emit_json(
            {
                "name": fg.name,
                "version": fg.version,
                "table_version": table_version,
                "total_rows": total,
                "rows": json.loads(frame.write_json()),
            }
        )
        return 0
    print(
        f"feature group {fg.name} version {fg.version}, table version {table_version}: "
        f"{frame.height:,} of {total:,} rows"
    )
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_hide_dataframe_shape=True,
        fmt_str_lengths=40,
        tbl_width_chars=200,
    ):
        print(frame)
    return 0


def _groups_compact(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    began = time.perf_counter()
    result = fg.compact()
    seconds = time.perf_counter() - began
    if args.json:
        _emit_json(
            {
                "name": fg.name,
                "version": fg.version,
                "table_version": result.version,
                "files_removed": result.files_removed,
                "files_added": result.files_added,
                "seconds": round(seconds, 3),
            }
        )
        return 0
    if result.files_removed == 0:
        print(
            f"feature group {fg.name} version {fg.version}: nothing to compact "
            f"(table version {result.version})"
        )
    else:
        print(
            f"compacted feature group {fg.name} version {fg.version} in {seconds:.1f} s: "
            f"{result.files_removed:,} file(s) rewritten into {result.files_added:,}; "
            f"table version {result.version}"
        )
    return 0


def _groups_vacuum(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    options: dict[str, Any] = {"dry_run": args.dry_run, "force": args.force}
    if args.retention_hours is not None:
        options["retention"] = timedelta(hours=args.retention_hours)
    result = fg.vacuum(**options)
    if args.json:
        _emit_json(
            {
                "name": fg.name,
                "version": fg.version,
                "dry_run": result.dry_run,
                "files": list(result.files),
                "kept_versions": list(result.kept_versions),
                "broken": list(result.broken),
            }
        )
        return 0
    verb = "would delete" if result.dry_run else "deleted"
    print(
        f"{'dry run: ' if result.dry_run else ''}vacuum of feature group {fg.name} version "
        f"{fg.version} {verb} {len(result.files):,} file(s)"
    )
    for file in result.files:
        print(f"  {file}")
    if result.kept_versions:
        print(
            "kept the files of table version(s) "
            f"{_versions_text(result.kept_versions)}: recorded training datasets read them"
        )
    if result.broken:
        print(
            f"{'would break' if result.dry_run else 'broke'} training dataset(s): "
            f"{'; '.join(result.broken)}"
        )
    return 0


# ---------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------


def _views_list(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    entries = []
    for name in fs.list_feature_views():
        fv = fs.get_feature_view(name)
        definition = fv.definition.to_dict()
        entries.append(
            {
                "name": name,
                "versions": fs.registry.versions("feature_views", name),
                "version": fv.version,
                "label_fg": definition["label_fg"],
                "label_col": definition["label_col"],
                "joins": [j["fg_name"] for j in definition["joins"]],
                "training_datasets": fv.list_training_datasets(),
            }
        )
    if args.json:
        _emit_json(entries)
    elif not entries:
        print(f"no feature views in the lake {str(fs.root)!r}")
    else:
        print(
            _table(
                ["NAME", "VERSION", "LABEL", "JOINS", "TRAINING DATASETS"],
                [
                    [
                        e["name"],
                        e["version"],
                        f"{e['label_fg']}.{e['label_col']}",
                        e["joins"],
                        len(e["training_datasets"]),
                    ]
                    for e in entries
                ],
            )
        )
    return 0


def _views_show(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    fv = fs.get_feature_view(args.name, args.version)
    definition = fv.definition.to_dict()
    records = [
        fs.registry.get_record("feature_views", fv.name, fv.version, _TRAINING_DATASETS, n)
        or {"number": n}
        for n in fv.list_training_datasets()
    ]
    if args.json:
        _emit_json(
            {
                "definition": definition,
                "versions": fs.registry.versions("feature_views", fv.name),
                "feature_columns": fv.feature_columns,
                "training_datasets": records,
            }
        )
        return 0
    versions = fs.registry.versions("feature_views", fv.name)
    print(f"feature view {fv.name} version {fv.version} (versions: {_versions_text(versions)})")
    if definition.get("description"):
        print(f"  description  {definition['description']}")
    print(
        f"  label        {definition['label_col']} of {definition['label_fg']} "
        f"v{definition['label_fg_version']}"
    )
    for number, join in enumerate(definition["joins"]):
        extra = ""
        if join.get("prefix"):
            extra += f", prefix {join['prefix']!r}"
        if join.get("max_age_us") is not None:
            extra += f", max age {timedelta(microseconds=int(join['max_age_us']))}"
        print(
            f"  {'joins' if number == 0 else '':<11}  {join['fg_name']} v{join['fg_version']} "
            f"on {_cell(join['on'])}: {_cell(join['features'])}{extra}"
        )
    transforms = ", ".join(f"{t['type']}({t['column']})" for t in definition["transforms"])
    print(f"  transforms   {transforms or '-'}")
    print(f"  features     {_cell(fv.feature_columns)}")
    if not records:
        print("  training datasets: none")
        return 0
    print("  training datasets")
    rows = []
    for record in records:
        counts = record.get("rows") or {}
        split = record.get("split")
        test_size = record.get("test_size")
        tables = ", ".join(
            f"{g['name']}@{g['table_version']}" for g in record.get("feature_groups", [])
        )
        rows.append(
            [
                record.get("number"),
                _created(record.get("created_at")),
                counts.get("train"),
                counts.get("test"),
                f"{split} {test_size:g}" if split and test_size else "none",
                tables or None,
            ]
        )
    table = _table(["#", "CREATED", "TRAIN", "TEST", "SPLIT", "TABLE VERSIONS"], rows)
    print("\n".join(f"    {line}" for line in table.splitlines()))
    return 0


def _created(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return _when(datetime.fromisoformat(text))
    except ValueError:
        return text
