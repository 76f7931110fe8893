"""The ``microfs groups ...`` and ``microfs views ...`` verbs of the command line.

This module is part of the command line, so it prints: :mod:`microfs.cli` parses the
arguments and dispatches to the handlers here. Each handler opens an existing lake, does its
one thing and prints text or, with ``--json``, exactly one JSON document on stdout. Also
here: where the lake folder is found, and the aligned tables and JSON the verbs print.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from microfs.errors import DefinitionError, LakeError, NotFoundError
from microfs.store import DEFAULT_LAKE, LAKE_ENV, FeatureStore

# the names microfs.cli uses
__all__ = [
    "groups_compact",
    "groups_head",
    "groups_history",
    "groups_list",
    "groups_report",
    "groups_show",
    "groups_stats",
    "groups_vacuum",
    "lake_path",
    "serve",
    "views_list",
    "views_show",
]


# ---------------------------------------------------------------------------------------
# The lake
# ---------------------------------------------------------------------------------------


def lake_path(args: argparse.Namespace) -> tuple[Path, str]:
    """The lake folder and where its path came from."""
    given: str | None = getattr(args, "lake", None)
    if given:
        return Path(given), "--lake"
    env = os.environ.get(LAKE_ENV)
    if env:
        return Path(env), f"${LAKE_ENV}"
    return Path(DEFAULT_LAKE), "the default"


def _existing_store(args: argparse.Namespace) -> FeatureStore:
    """Open the lake without creating anything; a missing lake is a user error."""
    path, source = lake_path(args)
    demo = f"microfs demo --lake {path}" if source == "--lake" else "microfs demo"
    hint = f"run `{demo}` to create one, or choose another with --lake or ${LAKE_ENV}"
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


def _warn(problems: Sequence[str]) -> None:
    """Report entries a listing skipped, one line each on stderr (stdout stays clean)."""
    for problem in problems:
        line = " ".join(part.strip() for part in problem.splitlines() if part.strip())
        print(f"microfs: warning: {line}", file=sys.stderr, flush=True)


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
# groups
# ---------------------------------------------------------------------------------------


def groups_list(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    entries = []
    problems = fs.registry.problems("feature_groups")
    for name in fs.list_feature_groups():
        try:
            fg = fs.get_feature_group(name)
            rows, table_version = fg.count(), fg.table_version()
        except LakeError as exc:
            problems.append(f"{exc}; skipped")
            continue
        entries.append(
            {
                "name": name,
                "versions": fs.feature_group_versions(name),
                "version": fg.version,
                "rows": rows,
                "table_version": table_version,
                "primary_keys": fg.primary_keys,
                "event_time": fg.event_time,
                "online_keys": fg.online_keys,
            }
        )
    _warn(problems)
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


def groups_show(args: argparse.Namespace) -> int:
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


def groups_history(args: argparse.Namespace) -> int:
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


def groups_head(args: argparse.Namespace) -> int:
    import polars as pl

    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    as_of = _parse_time(args.as_of) if args.as_of is not None else None
    table_version = fg.resolve_version(version=args.table_version, as_of=as_of)
    total = fg.count(table_version)
    # more rows than the table holds is all of them (and keeps huge numbers out of Polars)
    frame = fg.scan(version=table_version).head(min(args.rows, total)).collect()
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


def groups_compact(args: argparse.Namespace) -> int:
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
                "table_version": result.table_version,
                "files_removed": result.files_removed,
                "files_added": result.files_added,
                "seconds": round(seconds, 3),
            }
        )
        return 0
    if result.files_removed == 0:
        print(
            f"feature group {fg.name} version {fg.version}: nothing to compact "
            f"(table version {result.table_version})"
        )
    else:
        print(
            f"compacted feature group {fg.name} version {fg.version} in {seconds:.1f} s: "
            f"{result.files_removed:,} file(s) rewritten into {result.files_added:,}; "
            f"table version {result.table_version}"
        )
    return 0


def groups_vacuum(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    options: dict[str, Any] = {"dry_run": not args.yes, "force": args.force}
    if args.retention_hours is not None:
        try:
            options["retention"] = timedelta(hours=args.retention_hours)
        except OverflowError:
            longest = timedelta.max // timedelta(hours=1)
            raise DefinitionError(
                f"--retention-hours {args.retention_hours:g} is too long; give at most "
                f"{longest} hours"
            ) from None
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


def groups_stats(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    table_version = fg.resolve_version(version=args.table_version)
    frame = fg.statistics(version=table_version)
    if args.json:
        _emit_json(
            {
                "name": fg.name,
                "version": fg.version,
                "table_version": table_version,
                "statistics": [
                    {k: _finite(v) for k, v in row.items()} for row in frame.iter_rows(named=True)
                ],
            }
        )
        return 0
    rows = int(frame["count"][0] + frame["null_count"][0]) if frame.height else 0
    print(
        f"feature group {fg.name} version {fg.version}, table version {table_version}: "
        f"{rows:,} rows"
    )
    shown = [
        ("COLUMN", "column"),
        ("TYPE", "dtype"),
        ("COUNT", "count"),
        ("NULLS", "null_count"),
        ("DISTINCT~", "approx_distinct"),
        ("MIN", "min"),
        ("P01", "p01"),
        ("P25", "p25"),
        ("P50", "p50"),
        ("P75", "p75"),
        ("P99", "p99"),
        ("MAX", "max"),
        ("MEAN", "mean"),
        ("STD", "std"),
    ]
    print(
        _table(
            [h for h, _ in shown],
            [[row[c] for _, c in shown] for row in frame.iter_rows(named=True)],
        )
    )
    return 0


def groups_report(args: argparse.Namespace) -> int:
    from microfs.quality_report import ReportInput, render_report
    from microfs.statistics import NUMERIC_TYPES, top_values

    fs = _existing_store(args)
    fg = fs.get_feature_group(args.name, args.version)
    table_version = fg.resolve_version(version=args.table_version)
    schema = fg.definition.schema
    histograms = {}
    tops = {}
    for column in fg.features:
        if schema[column] in NUMERIC_TYPES:
            histograms[column] = fg.histogram(column, version=table_version)
        elif schema[column] in ("string", "bool"):
            try:
                tops[column] = top_values(fg.scan(version=table_version), column)
            except NotFoundError:
                continue  # the version's files were vacuumed: no chart for this column
    report = ReportInput(
        group=fg.name,
        version=fg.version,
        table_version=table_version,
        statistics=fg.statistics(version=table_version),
        histograms=histograms,
        top_values=tops,
        features=fg.features,
        expectations=[e.to_dict() for e in fg.definition.expectations],
        policy=fg.definition.validation,
        history=fg.validation_history(),
        rejected_rows=fg.rejects().select(pl.len()).collect().item(),
    )
    out = Path(args.out)
    out.write_text(render_report(report), encoding="utf-8")
    if args.json:
        _emit_json(
            {
                "name": fg.name,
                "version": fg.version,
                "table_version": table_version,
                "out": str(out),
            }
        )
        return 0
    print(
        f"wrote the data quality report of feature group {fg.name} version {fg.version}, "
        f"table version {table_version}, to {out}"
    )
    return 0


def _finite(value: object) -> object:
    """A value for strict JSON: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------


def views_list(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    entries = []
    problems = fs.registry.problems("feature_views")
    for name in fs.list_feature_views():
        try:
            fv = fs.get_feature_view(name)
        except LakeError as exc:
            problems.append(f"{exc}; skipped")
            continue
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
    _warn(problems)
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


def views_show(args: argparse.Namespace) -> int:
    fs = _existing_store(args)
    fv = fs.get_feature_view(args.name, args.version)
    definition = fv.definition.to_dict()
    records = [
        {**fv.training_dataset_record(n).to_dict(), "number": n}
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


# ---------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """``microfs serve``: run the HTTP feature server until SIGTERM."""
    from microfs import server  # needs the serve extra; loaded only for this verb

    fs = _existing_store(args)
    token_env = args.token_env or server.TOKEN_ENV
    if args.token_env and not os.environ.get(args.token_env):
        raise NotFoundError(
            f"--token-env names ${args.token_env}, which is not set or empty; export the "
            "token in it, or leave --token-env out"
        )
    server.serve(
        fs.root,
        host=args.host,
        port=args.port,
        workers=args.workers,
        token_env=token_env,
        on_start=lambda line: print(line, flush=True),
    )
    print("microfs: server stopped", flush=True)
    return 0
