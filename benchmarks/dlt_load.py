"""dlt loading the benchmark's files into PostgreSQL, written as its documentation advises for
speed: the files read as Arrow (pyarrow's CSV reader with the contract's column types, or the
Parquet file's own), handed to dlt as Arrow tables, loaded as Parquet through ADBC's binary
COPY, and upserted on the primary key (`merge`, strategy `upsert`). Nothing is validated.

    python -m benchmarks.dlt_load URL STATE_DIR (--per-file) (--key) FILE...

One pipeline run over all FILEs, or with --per-file one run per file (in order, one process).
The table is `bench_dlt.orders`; the pipeline's state lives under STATE_DIR. dlt's upsert needs
a primary key but gives its table none; with --key the key column also gets dlt's `unique` hint,
which its PostgreSQL destination turns into a UNIQUE constraint (`create_indexes`, on by
default): a table that, like ours, keeps its key unique.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.limit import ARROW_TYPES  # the contract's columns as Arrow types

SCHEMA = "bench_dlt"
TABLE = "orders"


def batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The file as Arrow record batches (a .gz CSV is decompressed by pyarrow)."""
    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=100_000)
        return
    options = pacsv.ConvertOptions(
        column_types=ARROW_TYPES, strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    reader = pacsv.open_csv(
        str(path),
        read_options=pacsv.ReadOptions(block_size=16 << 20),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),  # notes hold line breaks
        convert_options=options,
    )
    yield from reader


def orders(paths: list[Path], keyed: bool = False) -> object:
    """The files' rows as one dlt resource, upserted on order_id (kept unique if `keyed`)."""

    def rows() -> Iterator[pa.RecordBatch]:
        for path in paths:
            yield from batches(path)

    return dlt.resource(
        rows(),
        name=TABLE,
        write_disposition={"disposition": "merge", "strategy": "upsert"},
        primary_key="order_id",
        columns={"order_id": {"unique": True}} if keyed else {},
    )


def main(argv: list[str]) -> None:
    url, state, *rest = argv
    per_file, keyed = "--per-file" in rest, "--key" in rest
    paths = [Path(p) for p in rest if p not in ("--per-file", "--key")]
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        pipelines_dir=state,
        destination=dlt.destinations.postgres(credentials=url),
        dataset_name=SCHEMA,
    )
    for group in [[p] for p in paths] if per_file else [paths]:
        pipeline.run(orders(group, keyed), loader_file_format="parquet")


if __name__ == "__main__":
    main(sys.argv[1:])
