"""The point-in-time frame through Feast's local offline stores, run inside Feast's own venv.

``bench_pit.py``'s ``feast duckdb`` and ``feast file`` engines run this file with the
Python of a virtual environment holding Feast 0.67 (see ``benchmarks/README.md``), since
Feast pins versions of pandas and pyarrow of its own. It imports neither Polars nor
MicroFS::

    <feast venv>/bin/python benchmarks/feast_pit.py SPEC.json duckdb|file RESULT.parquet|-

``SPEC.json`` is ``bench_pit.world_spec``'s workload: the label Delta table and the two
joined ones. Untimed first: a Feast repository in a temporary folder, with one entity and
one feature view (``ttl`` 0: no age limit, as in MicroFS's view) per joined table, whose
``FileSource`` reads that table's Parquet data files, and ``apply`` of it (MicroFS's
view, too, is created before its timer). Timed: opening the Feast store, reading the
label rows into the pandas entity frame, and ``get_historical_features(...).to_arrow()``.
Printed: one JSON line with ``seconds``, ``cpu_seconds``, ``system_seconds``, ``rows`` and
``peak_rss_mb`` (this process's ``VmHWM`` right after the timed work). With a result path,
the frame (label columns renamed back) is then written there sorted for ``bench_pit``'s
check.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

STORES = {
    "duckdb": "type: duckdb",
    "file": "type: file",
}
"""The offline store settings of ``feature_store.yaml`` for each store name."""

ENTITY_TIME = "event_timestamp"


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def _system_seconds() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_stime)


def _repository(spec: dict[str, Any], store: str, folder: Path) -> list[str]:
    """Write a Feast repository for ``spec`` into ``folder``; return the feature references."""
    (folder / "feature_store.yaml").write_text(
        textwrap.dedent(
            f"""\
            project: microfs_pit
            registry: {folder / "registry.db"}
            provider: local
            offline_store:
                {STORES[store]}
            online_store:
                type: sqlite
                path: {folder / "online.db"}
            entity_key_serialization_version: 3
            """
        ),
        encoding="utf-8",
    )
    return [
        f"view_{number}:{feature}"
        for number, join in enumerate(spec["joins"])
        for feature in join["features"]
    ]


def _objects(spec: dict[str, Any]) -> list[Any]:
    """Feast's entities, sources and feature views over the joined tables' Parquet files."""
    from datetime import timedelta

    import pyarrow as pa
    import pyarrow.parquet as pq
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64, String

    def feast_type(arrow: pa.DataType) -> Any:
        if pa.types.is_integer(arrow):
            return Int64
        if pa.types.is_floating(arrow):
            return Float64
        if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
            return String
        raise TypeError(f"no Feast type for {arrow}")

    objects: list[Any] = []
    for number, join in enumerate(spec["joins"]):
        (key,) = join["on"]
        schema = pq.read_schema(_data_files(join["path"])[0])
        entity = Entity(name=f"entity_{number}", join_keys=[key], value_type=ValueType.INT64)
        source = FileSource(
            name=f"source_{number}",
            path=f"{join['path']}/*.parquet",
            file_format=ParquetFormat(),
            timestamp_field=join["time"],
        )
        view = FeatureView(
            name=f"view_{number}",
            entities=[entity],
            ttl=timedelta(0),
            schema=[
                Field(name=f, dtype=feast_type(schema.field(f).type)) for f in join["features"]
            ],
            source=source,
        )
        objects += [entity, view]
    return objects


def _data_files(path: str) -> list[str]:
    from deltalake import DeltaTable

    return [uri.removeprefix("file://") for uri in DeltaTable(path).file_uris()]


def main(argv: list[str]) -> int:
    spec_path, store, result_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from feast import FeatureStore

    label = spec["label"]
    with tempfile.TemporaryDirectory(prefix="feast-pit-") as scratch:
        folder = Path(scratch)
        features = _repository(spec, store, folder)
        FeatureStore(repo_path=str(folder)).apply(_objects(spec))

        cpu, system, started = _cpu_seconds(), _system_seconds(), time.perf_counter()
        feast = FeatureStore(repo_path=str(folder))
        columns = [*label["keys"], label["time"], *label["values"]]
        labels = pa.concat_tables(
            [pq.read_table(f, columns=columns) for f in _data_files(label["path"])]
        )
        entity_df: pd.DataFrame = labels.to_pandas().rename(columns={label["time"]: ENTITY_TIME})
        del labels
        frame = feast.get_historical_features(entity_df=entity_df, features=features).to_arrow()
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        system = _system_seconds() - system
        peak = _peak_rss_mb()
    del entity_df
    if result_path != "-":
        frame = frame.rename_columns(
            [label["time"] if name == ENTITY_TIME else name for name in frame.column_names]
        )
        frame = frame.select(spec["output"]).sort_by(
            [(c, "ascending") for c in (label["time"], *label["keys"])]
        )
        pq.write_table(frame, result_path)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "system_seconds": system,
                "rows": frame.num_rows,
                "peak_rss_mb": round(peak, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
