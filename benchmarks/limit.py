"""The hand-written limit: what a careful engineer would write without validation or bookkeeping.

Two paths, each into an UNLOGGED staging table followed by `INSERT ... ON CONFLICT DO UPDATE` into
the target, in one transaction:
- text: the file's CSV bytes streamed into `COPY ... FROM STDIN (FORMAT csv)` (gzip decompressed
  on the way; Parquet written to CSV by pyarrow first);
- binary: the file read into typed Arrow data and sent with binary COPY (ADBC's PostgreSQL driver,
  which encodes Arrow columns in C++).
The faster of the two is the limit for a format.
"""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from benchmarks.data import COLUMN_NAMES, COLUMNS_DDL

STAGE = "limit_stage"
CHUNK = 1 << 20
ARROW_TYPES = {
    "order_id": pa.int64(),
    "customer_id": pa.int64(),
    "ordered_at": pa.timestamp("us", tz="UTC"),
    "ship_date": pa.date32(),
    "amount": pa.decimal128(12, 2),
    "weight_kg": pa.float64(),
    "quantity": pa.int32(),
    "is_gift": pa.bool_(),
    "status": pa.string(),
    "country": pa.string(),
    "note": pa.string(),
    "updated_at": pa.timestamp("us", tz="UTC"),
}


def reset(url: str, target: str) -> None:
    """An empty target (with its primary key) and an empty UNLOGGED staging table."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {target}, {STAGE}")
        connection.execute(f"CREATE TABLE {target} ({COLUMNS_DDL})")
        stage_ddl = COLUMNS_DDL.replace(" PRIMARY KEY", "")
        connection.execute(f"CREATE UNLOGGED TABLE {STAGE} ({stage_ddl})")


def _upsert_sql(target: str) -> str:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMN_NAMES if c != "order_id")
    return (
        f"INSERT INTO {target} SELECT * FROM {STAGE} ON CONFLICT (order_id) DO UPDATE SET {updates}"
    )


def _csv_bytes(path: Path) -> io.BufferedIOBase:
    if path.name.endswith(".parquet"):
        buffer = io.BytesIO()
        pa_csv.write_csv(pq.read_table(path), buffer)
        buffer.seek(0)
        return buffer
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def text_path(url: str, target: str, path: Path) -> float:
    """COPY the CSV text into staging, then upsert; returns seconds."""
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        connection.execute(f"TRUNCATE {STAGE}")
        with (
            _csv_bytes(path) as source,
            connection.cursor() as cursor,
            cursor.copy(f"COPY {STAGE} FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            while chunk := source.read(CHUNK):
                copy.write(chunk)
        connection.execute(_upsert_sql(target))
        connection.commit()
    return time.perf_counter() - started


def _typed_table(path: Path) -> pa.Table:
    if path.name.endswith(".parquet"):
        return pq.read_table(path)
    return pa_csv.read_csv(
        path,
        convert_options=pa_csv.ConvertOptions(
            column_types=ARROW_TYPES, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
    )


def binary_available() -> bool:
    """ADBC's PostgreSQL driver is installed (the `bench` dependency group)."""
    import importlib.util

    return importlib.util.find_spec("adbc_driver_postgresql") is not None


def binary_path(url: str, target: str, path: Path) -> float:
    """Binary COPY of typed Arrow data into staging (ADBC), then upsert; returns seconds."""
    import adbc_driver_postgresql.dbapi as adbc

    started = time.perf_counter()
    table = _typed_table(path).cast(pa.schema([(n, ARROW_TYPES[n]) for n in COLUMN_NAMES]))
    with adbc.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {STAGE}")
        cursor.adbc_ingest(STAGE, table, mode="append")
        cursor.execute(_upsert_sql(target))
        connection.commit()
    return time.perf_counter() - started
