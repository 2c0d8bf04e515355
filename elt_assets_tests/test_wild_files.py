"""Files from the wild (issue 22): what other writers put in files loads exactly or is refused for
its true reason. Each file is written here by pyarrow, then `elt contract infer` and `elt ingest`
run as subprocesses from a directory outside the checkout, as a user runs them.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import hashlib
import lzma
import re
import uuid
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elt_assets.contracts.model import Column
from elt_assets.landing.readers import _FIRST_DAY, _days_from_civil
from elt_assets.validation.arrays import _elements
from elt_assets.validation.casts import cast_text_column
from elt_assets_tests.conftest import Server, Warehouse
from elt_assets_tests.helpers import contract, elt, ingest, land, landing_folder
from elt_assets_tests.legacy_parquet import legacy_lists

pytestmark = [pytest.mark.db]


def microseconds(*values: dt.datetime) -> list[int]:
    return [int((v - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000 for v in values]


def test_int96_timestamps_far_from_today_load_exactly_never_wrapped(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """Spark writes INT96; read as nanoseconds, 9999-12-31 03:00 wrapped to 1816-03-29. A value
    beyond what polars can hold (year 290,000) refuses the file, naming the column and row."""
    values = [
        dt.datetime(2020, 1, 1, 3),
        dt.datetime(9999, 12, 31, 3),
        dt.datetime(1, 1, 1),
        dt.datetime(1677, 9, 21),  # just before nanoseconds' range
    ]
    good = pa.table({"id": [1, 2, 3, 4], "at": pa.array(microseconds(*values), pa.timestamp("us"))})
    land(tmp_path, "spark/part-0.parquet", good, use_deprecated_int96_timestamps=True)
    year_290000 = 290_000 * 31_556_952 * 1_000_000  # about then, in microseconds
    far = pa.table({"id": [5, 6], "at": pa.array([0, year_290000], pa.timestamp("us"))})
    land(tmp_path, "spark/part-1.parquet", far, use_deprecated_int96_timestamps=True)
    contract(
        tmp_path,
        "name: spark\nsource: {glob: 'spark/*.parquet'}\n"
        "target: {schema: wild, table: spark, primary_key: [id]}\n"
        "columns:\n  - {name: id, type: bigint, nullable: false}\n"
        "  - {name: at, type: timestamp}\n",
    )
    entries = ingest(tmp_path, warehouse)
    assert entries["spark/part-0.parquet"]["status"] == "success", str(entries)
    assert warehouse.query("SELECT id, at::text FROM wild.spark ORDER BY id") == [
        (1, "2020-01-01 03:00:00"),
        (2, "9999-12-31 03:00:00"),
        (3, "0001-01-01 00:00:00"),
        (4, "1677-09-21 00:00:00"),
    ]
    refused = entries["spark/part-1.parquet"]
    assert refused["status"] == "failed", refused
    assert "spark/part-1.parquet, column 'at': row 2: a timestamp[us] value outside" in str(
        refused["error"]
    )


def test_pandas_nanosecond_timestamps_and_times_of_day_load_exactly(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """pandas writes nanosecond timestamps: the range check of dates and timestamps compared
    them with a bound beyond int64 and raised (a traceback from `elt contract infer` and a
    failed file). A time of day goes in as text (no time type yet): polars' own cast to text
    dropped its fraction. A nanosecond part, which PostgreSQL cannot keep, makes a bad row (it
    was cut off)."""
    at = [dt.datetime(2026, 3, 29, 1, 59, 59, 999_999), None, dt.datetime(1677, 9, 22)]
    ticks = [*pa.array(at, pa.timestamp("ns")).cast(pa.int64()).to_pylist(), 999_999_999]
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "at": pa.array(ticks, pa.timestamp("ns")),
            "at_zone": pa.array(ticks, pa.timestamp("ns", tz="Europe/Berlin")),
            "clock": pa.array(
                [dt.time(23, 59, 59, 999_999), None, dt.time(0, 0, 0, 500), None], pa.time64("ns")
            ),
            "label": pa.array(["a", None, "a", None]).dictionary_encode(),
        }
    )
    land(tmp_path, "pandas/frame.parquet", table, coerce_timestamps=None)
    assert pq.read_schema(tmp_path / "landing/pandas/frame.parquet").field("at").type == (
        pa.timestamp("ns")
    )
    frame = str(tmp_path / "landing/pandas/frame.parquet")
    inferred = elt(tmp_path, warehouse, "contract", "infer", frame)
    assert inferred.returncode == 0, inferred.stderr
    assert (
        "{name: at, type: text}  # empty in 1 of 4 rows; nanoseconds in the sample, which "
        "PostgreSQL's timestamp cannot keep: text keeps them (timestamp would make those rows "
        "bad)" in inferred.stdout
    )
    assert "{name: at_zone, type: text}" in inferred.stdout
    assert "{name: clock, type: text}" in inferred.stdout
    contract(
        tmp_path,
        "name: pandas\nsource: {glob: 'pandas/*.parquet'}\n"
        "target: {schema: wild, table: pandas, primary_key: [id]}\n"
        "columns:\n  - {name: id, type: bigint, nullable: false}\n"
        "  - {name: at, type: timestamp}\n  - {name: at_zone, type: timestamptz}\n"
        "  - {name: clock, type: text}\n  - {name: label, type: text}\n"
        "policy: {max_bad_row_ratio: 0.5}\n",
    )
    entry = ingest(tmp_path, warehouse)["pandas/frame.parquet"]
    assert entry["status"] == "success", entry
    assert warehouse.query(
        "SELECT row_number, reason FROM elt.quarantine WHERE dataset = 'pandas'"
    ) == [
        (
            4,
            "at: '1970-01-01 00:00:00.999999999' has a nanosecond part, and PostgreSQL keeps "
            "microseconds: declare the column text to keep it, or have the sender round the "
            "values (+1 more)",
        )
    ]
    rows = warehouse.query(
        "SELECT id, at::text, (at_zone AT TIME ZONE 'UTC')::text, clock, label"
        " FROM wild.pandas ORDER BY id"
    )
    assert rows == [
        (1, "2026-03-29 01:59:59.999999", "2026-03-29 01:59:59.999999", "23:59:59.999999", "a"),
        (2, None, None, None, None),
        (3, "1677-09-22 00:00:00", "1677-09-22 00:00:00", "00:00:00.000500", "a"),
    ]


def test_pandas_integers_with_gaps_written_as_floats_load_exactly(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """pandas writes an integer column with missing values as float64. Whole numbers in range go
    in as those integers (the whole file was refused before); any other float is a bad row."""
    big = float(2**62)  # a whole float64 beyond 2**53, exact as an integer
    table = pa.table(
        {
            "id": pa.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
            "count": pa.array([-0.0, None, big, 1.5, float("inf"), float("nan"), 7.0]),
            "small": pa.array([32767.0, -32768.0, 1.0, 1.0, 1.0, 1.0, 32768.0], pa.float32()),
        }
    )
    frame = land(tmp_path, "floats/frame.parquet", table)
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(frame))
    assert inferred.returncode == 0, inferred.stderr
    [id_line] = [line for line in inferred.stdout.splitlines() if "{name: id," in line]
    assert "(pandas writes integers with gaps as floats), bigint loads them exactly" in id_line
    contract(
        tmp_path,
        "name: floats\nsource: {glob: 'floats/*.parquet'}\n"
        "target: {schema: wild, table: floats, primary_key: [id]}\n"
        "columns:\n  - {name: id, type: integer, nullable: false}\n"
        "  - {name: count, type: bigint}\n  - {name: small, type: smallint}\n"
        "policy: {max_bad_row_ratio: 0.9}\n",
    )
    entry = ingest(tmp_path, warehouse)["floats/frame.parquet"]
    assert entry["status"] == "success", entry
    assert (entry["rows_read"], entry["rows_quarantined"]) == (7, 4), entry
    assert warehouse.query("SELECT id, count, small FROM wild.floats ORDER BY id") == [
        (1, 0, 32767),
        (2, None, -32768),
        (3, 2**62, 1),
    ]
    reasons = warehouse.query(
        "SELECT row_number, reason FROM elt.quarantine WHERE dataset = 'floats' ORDER BY 1"
    )
    assert reasons == [
        (4, "count: '1.5' is not a whole number in range for bigint"),
        (5, "count: 'inf' is not a whole number in range for bigint"),
        (6, "count: 'NaN' is not a whole number in range for bigint"),
        (7, "small: '32768.0' is not a whole number in range for smallint"),
    ]


def test_infer_leaves_out_a_column_no_type_can_hold_and_the_rest_loads(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A pandas timedelta (a Parquet duration) has no type here yet: `elt contract infer` used to
    refuse the whole file; now that column is left out, said in a comment, and ignored."""
    table = pa.table(
        {"id": [1, 2], "took": pa.array([90, None], pa.duration("s")), "label": ["a", "b"]}
    )
    frame = land(tmp_path, "timings/frame.parquet", table)
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(frame), "--primary-key", "id")
    assert inferred.returncode == 0, inferred.stderr
    assert "  # left out: Parquet column 'took' (Duration(time_unit='ms')) cannot be loaded" in (
        inferred.stdout
    )
    assert "  new_columns: ignore  # the columns left out above are not loaded" in inferred.stdout
    contract(tmp_path, inferred.stdout.replace('"frame/', '"timings/'))
    entry = ingest(tmp_path, warehouse)["timings/frame.parquet"]
    assert entry["status"] == "success", entry
    assert warehouse.query("SELECT id, label FROM imported.frame ORDER BY id") == [
        (1, "a"),
        (2, "b"),
    ]


def test_the_first_date_refused_is_the_day_before_postgresqls_first(warehouse: Warehouse) -> None:
    first = warehouse.value("SELECT '4714-11-24 BC'::date - '1970-01-01'::date")
    assert first == _FIRST_DAY
    for year, month, day in [(1970, 1, 1), (1, 1, 1), (1600, 2, 29), (9999, 12, 31)]:
        assert (
            _days_from_civil(year, month, day)
            == (dt.date(year, month, day) - dt.date(1970, 1, 1)).days
        )


def test_a_parquet_page_that_fails_its_checksum_refuses_the_file_naming_the_column(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    table = pa.table({"id": list(range(1000)), "label": [f"value-{i}" for i in range(1000)]})
    path = land(
        tmp_path, "pages/damaged.parquet", table, write_page_checksum=True, compression="none"
    )
    data = bytearray(path.read_bytes())
    data[data.find(b"value-500") + 6] = ord("X")  # one byte of one page, after it was written
    path.write_bytes(bytes(data))
    contract(
        tmp_path,
        "name: pages\nsource: {glob: 'pages/*.parquet'}\n"
        "target: {schema: wild, table: pages, primary_key: [id]}\n"
        "columns:\n  - {name: id, type: bigint, nullable: false}\n  - {name: label, type: text}\n",
    )
    entry = ingest(tmp_path, warehouse)["pages/damaged.parquet"]
    assert entry["status"] == "failed", entry
    error = str(entry["error"])
    assert "pages/damaged.parquet, column 'label': a data page fails its checksum" in error
    assert "ask the sender for the file again" in error
    assert warehouse.value("SELECT count(*) FROM wild.pages") == 0


def test_files_that_are_not_what_they_are_read_as_are_refused_for_their_true_reason(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    text = b"id,label\n1,one\n2,two\n"
    landing = tmp_path / "landing" / "mixed"
    landing.mkdir(parents=True)
    with zipfile.ZipFile(landing / "c.csv.zip", "w") as archive:
        archive.writestr("c.csv", text)
    pq.write_table(pa.table({"id": [1], "label": ["x"]}), landing / "d.csv")  # Parquet inside
    # The magic of a Parquet file whose footer is encrypted (PARE), at both ends.
    (landing / "e.parquet").write_bytes(b"PARE" + bytes(64) + b"PARE")
    (landing / "f.csv").write_bytes(text)
    (landing / "g.csv.zst").write_bytes(_zstd(text)[:-6])  # cut short
    contract(
        tmp_path,
        "name: mixed\nsource: {glob: 'mixed/*'}\n"
        "target: {schema: wild, table: mixed, mode: append}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: label, type: text}\n",
    )
    entries = ingest(tmp_path, warehouse)
    reasons = {file: str(entry["error"]) for file, entry in entries.items()}
    assert entries["mixed/f.csv"]["status"] == "success", reasons
    expected = {
        "mixed/c.csv.zip": "the file is a zip archive, which the platform does not read",
        "mixed/d.csv": "the file is Parquet (its first bytes say so), but the contract reads it "
        "as CSV: name it *.parquet or set source.format: parquet",
        "mixed/e.parquet": "an encrypted Parquet file (its footer is encrypted)",
        "mixed/g.csv.zst": "the zstd data is corrupt or truncated",
    }
    for file, reason in expected.items():
        assert entries[file]["status"] == "failed", (file, reasons[file])
        assert f"{file}: {reason}" in reasons[file], (file, reasons[file])
        assert "utf" not in reasons[file].lower()  # never CSV advice for a file that is not CSV
    assert warehouse.value("SELECT count(*) FROM wild.mixed") == 2  # f.csv only

    # `elt contract infer` says the same of each.
    for name, said in [("c.csv.zip", "a zip archive"), ("e.parquet", "an encrypted Parquet file")]:
        result = elt(tmp_path, warehouse, "contract", "infer", str(landing / name))
        assert result.returncode != 0 and said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def _zstd(data: bytes) -> bytes:
    buffer = pa.BufferOutputStream()
    with pa.CompressedOutputStream(buffer, "zstd") as stream:
        stream.write(data)
    return bytes(buffer.getvalue().to_pybytes())


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz", "zstd"])
def test_csv_compressed_with_gzip_bzip2_xz_or_zstd_is_inferred_and_loaded(
    tmp_path: Path, warehouse: Warehouse, compression: str
) -> None:
    """Read by its first bytes, whatever its name; a ragged row inside is found and numbered."""
    rows = [f"{n},label {n}" for n in range(1, 3001)]
    rows[2499] = "2500,too,many"
    data = ("id,label\n" + "\n".join(rows) + "\n").encode()
    compress = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress, "zstd": _zstd}
    suffix = {"gzip": "gz", "bzip2": "bz2", "xz": "xz", "zstd": "zst"}[compression]
    path = tmp_path / "landing" / "packed" / f"a.csv.{suffix}"
    path.parent.mkdir(parents=True)
    path.write_bytes(compress[compression](data))
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(path), "--name", "packed")
    assert inferred.returncode == 0, inferred.stderr
    assert (
        "# 1 row(s) of the file have the wrong number of fields and are quarantined under this "
        "contract; the first: line 2501: 3 field(s) where the header has 2"
    ) in inferred.stdout
    contract(tmp_path, inferred.stdout)
    entry = ingest(tmp_path, warehouse, {"ELT_MAX_RECORD_BYTES": "65536"})[f"packed/a.csv.{suffix}"]
    assert entry["status"] == "success" and entry["rows_quarantined"] == 1, entry
    loaded = warehouse.query("SELECT id, label FROM imported.packed ORDER BY id")
    assert loaded == [(n, f"label {n}") for n in range(1, 3001) if n != 2500]
    assert (
        warehouse.value(
            "SELECT sha256 FROM elt.ingestion_manifest WHERE file = %s", [f"packed/a.csv.{suffix}"]
        )
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )  # the file as landed, not its content


@pytest.mark.parametrize(
    ("delimiter", "shown"), [("\t", '"\\t"'), (";", '";"'), ("|", '"|"'), (",", None)]
)
def test_contract_infer_detects_the_delimiter_and_the_contract_loads_the_file(
    tmp_path: Path, warehouse: Warehouse, delimiter: str, shown: str | None
) -> None:
    rows = [["id", "label", "amount"], ["1", "a, b; c | d", "1.50"], ["2", "plain", "2.25"]]
    quoted = [[f'"{v}"' if any(d in v for d in ",;|") else v for v in row] for row in rows]
    path = tmp_path / "landing" / "sniff" / "file.csv"
    path.parent.mkdir(parents=True)
    path.write_text("".join(delimiter.join(row) + "\n" for row in quoted))
    result = elt(tmp_path, warehouse, "contract", "infer", str(path), "--primary-key", "id")
    assert result.returncode == 0, result.stderr
    if shown is None:
        assert "delimiter" not in result.stdout
    else:
        assert f"delimiter: {shown}  # detected from the first lines: review" in result.stdout
    contract(tmp_path, result.stdout.replace("glob: ", "glob: 'sniff/*.csv' #", 1))
    entry = ingest(tmp_path, warehouse)["sniff/file.csv"]
    assert entry["status"] == "success", entry
    loaded = warehouse.query("SELECT id, label, amount::text FROM imported.file ORDER BY id")
    assert loaded == [(1, "a, b; c | d", "1.5000"), (2, "plain", "2.2500")]


def test_infer_with_the_landing_directory_writes_a_glob_that_finds_the_files_as_printed(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """With --landing (or ELT_LANDING_DIR) the glob follows where the file lies (a dated tree
    takes the whole tree), and the contract loads the files unedited; without it, the comment
    says the glob is a guess and how to make it right."""
    landing = tmp_path / "landing"
    for relative in ("shop/orders_2026-01-31.csv", "events/2026/01/31/e.csv"):
        (landing / relative).parent.mkdir(parents=True)
        (landing / relative).write_text("id,label\n1,a\n2,b\n")
    orders = str(landing / "shop/orders_2026-01-31.csv")
    plain = elt(tmp_path, warehouse, "contract", "infer", orders)
    assert plain.returncode == 0, plain.stderr
    assert (
        'glob: "orders_2026_01_31/*.{csv,csv.gz}"  # relative to the landing directory: review '
        "(the file is not in a landing directory the command knows: --landing DIR)" in plain.stdout
    )
    shop = elt(tmp_path, warehouse, "contract", "infer", "--landing", str(landing), "--name",
               "shop", orders)  # fmt: skip
    assert shop.returncode == 0, shop.stderr
    assert 'glob: "shop/*.{csv,csv.gz}"  # relative to the landing directory: from where' in (
        shop.stdout
    )
    contract(tmp_path, shop.stdout)
    events = elt(tmp_path, warehouse, "contract", "infer", "--name", "events",
                 str(landing / "events/2026/01/31/e.csv"),
                 settings={"ELT_LANDING_DIR": str(landing)})  # fmt: skip
    assert events.returncode == 0, events.stderr
    assert 'glob: "events/**/*.{csv,csv.gz}"' in events.stdout
    contract(tmp_path, events.stdout)
    (landing / "events/2026/02/01").mkdir(parents=True)
    (landing / "events/2026/02/01/f.csv").write_text("id,label\n3,c\n")
    entries = ingest(tmp_path, warehouse)
    assert {file: entry["status"] for file, entry in entries.items()} == {
        "shop/orders_2026-01-31.csv": "success",
        "events/2026/01/31/e.csv": "success",
        "events/2026/02/01/f.csv": "success",
    }
    assert warehouse.value("SELECT count(*) FROM imported.events") == 3


def test_a_blank_header_and_a_utf16_file_are_inferred_and_loaded(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = landing_folder(tmp_path, "first")
    (folder / "blank.csv").write_text("a,b,\n1,2,3\n4,5,6\n")
    (folder / "wide.csv").write_bytes("id,näme\n1,Zoë\n2,Ünal\n".encode("utf-16"))  # with a BOM
    blank = elt(tmp_path, warehouse, "contract", "infer", str(folder / "blank.csv"))
    assert blank.returncode == 0, blank.stderr
    assert "- {name: column_3, type: integer}" in blank.stdout  # named by its position
    wide = elt(tmp_path, warehouse, "contract", "infer", str(folder / "wide.csv"), "--name", "wide")
    assert wide.returncode == 0, wide.stderr
    assert 'encoding: "utf-16"  # from the file\'s byte-order mark' in wide.stdout
    contract(tmp_path, blank.stdout.replace("glob: ", "glob: 'first/blank.csv' #", 1))
    contract(tmp_path, wide.stdout.replace("glob: ", "glob: 'first/wide.csv' #", 1))
    entries = ingest(tmp_path, warehouse)
    assert {f: e["status"] for f, e in entries.items()} == {
        "first/blank.csv": "success",
        "first/wide.csv": "success",
    }, entries
    assert warehouse.query("SELECT a, b, column_3 FROM imported.blank ORDER BY a") == [
        (1, 2, 3),
        (4, 5, 6),
    ]
    assert warehouse.query("SELECT id, name FROM imported.wide ORDER BY id") == [  # snake_case
        (1, "Zoë"),
        (2, "Ünal"),
    ]

    # The same UTF-16 file under a contract that says UTF-8: refused with the fix.
    (tmp_path / "contracts" / "wide.yaml").write_text(
        wide.stdout.replace('    encoding: "utf-16"', "    encoding: utf8", 1).replace(
            "glob: ", "glob: 'first/wide.csv' #", 1
        )
    )
    (folder / "wide.csv").write_bytes("id,näme\n3,Ōno\n".encode("utf-16"))
    entry = ingest(tmp_path, warehouse)["first/wide.csv"]
    assert entry["status"] == "failed", entry
    assert "the file is UTF-16 text (its byte-order mark says so): set source.csv.encoding" in str(
        entry["error"]
    )


def test_empty_lines_before_the_header_are_skipped(tmp_path: Path, warehouse: Warehouse) -> None:
    folder = landing_folder(tmp_path, "late")
    (folder / "crlf.csv").write_bytes(b"\r\n\r\nid,label\r\n1,one\r\n2,two\r\n")
    (folder / "lf.csv").write_bytes(b"\nid,label\n3,three\n")
    first = str(folder / "crlf.csv")
    inferred = elt(tmp_path, warehouse, "contract", "infer", first, "--name", "late")
    assert inferred.returncode == 0, inferred.stderr
    assert "- {name: label, type: text}" in inferred.stdout
    contract(tmp_path, inferred.stdout.replace("glob: ", "glob: 'late/*.csv' #", 1))
    entries = ingest(tmp_path, warehouse)
    assert {f: e["status"] for f, e in entries.items()} == {
        "late/crlf.csv": "success",
        "late/lf.csv": "success",
    }, entries
    assert warehouse.query("SELECT id, label FROM imported.late ORDER BY id") == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]


def test_a_parquet_bomb_is_refused_unread_by_infer_and_ingest(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A few KB of Parquet declaring 80 MB for one row: refused from the footer, before reading."""
    huge = pa.table({"id": [1], "blob": ["a" * (80 << 20)]})
    path = land(tmp_path, "bomb/bomb.parquet", huge, compression="zstd")
    del huge
    assert path.stat().st_size < 100_000
    said = "row group 0 declares"
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(path))
    assert inferred.returncode != 0 and said in inferred.stderr, inferred.stderr
    assert "a likely decompression bomb" in inferred.stderr
    contract(
        tmp_path,
        "name: bomb\nsource: {glob: 'bomb/*.parquet'}\n"
        "target: {schema: wild, table: bomb, mode: append}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: blob, type: text}\n",
    )
    entry = ingest(tmp_path, warehouse)["bomb/bomb.parquet"]
    assert entry["status"] == "failed" and said in str(entry["error"]), entry


def test_parquet_binary_columns_are_inferred_as_bytea_and_load_byte_for_byte(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    blobs = [b"\x00\xff\x10", b"", None, bytes(range(256))]
    table = pa.table(
        {
            "id": [1, 2, 3, 4],
            "blob": pa.array(blobs, pa.binary()),
            "digest": pa.array([bytes([n]) * 4 for n in range(4)], pa.binary(4)),  # fixed size
        }
    )
    path = land(tmp_path, "bin/part-0.parquet", table)
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(path), "--name", "bin")
    assert inferred.returncode == 0, inferred.stderr
    assert "- {name: blob, type: bytea}" in inferred.stdout
    assert "- {name: digest, type: bytea}" in inferred.stdout
    contract(tmp_path, inferred.stdout.replace("glob: ", "glob: 'bin/*.parquet' #", 1))
    entry = ingest(tmp_path, warehouse)["bin/part-0.parquet"]
    assert entry["status"] == "success", entry
    rows = warehouse.query("SELECT id, blob, digest FROM imported.bin ORDER BY id")
    assert [(i, b if b is None else bytes(b), bytes(d)) for i, b, d in rows] == [
        (n + 1, blobs[n], bytes([n]) * 4) for n in range(4)
    ]

    # Declared text, a binary column is refused with the type to use.
    contract(
        tmp_path,
        "name: bin_text\nsource: {glob: 'bin_text/*.parquet'}\n"
        "target: {schema: wild, table: bin_text, mode: append}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: blob, type: text}\n",
    )
    land(tmp_path, "bin_text/part-1.parquet", table.select(["id", "blob"]))
    refused = ingest(tmp_path, warehouse)["bin_text/part-1.parquet"]
    assert refused["status"] == "failed", refused
    assert "column 'blob' holds bytes (Parquet binary) in the file; declare it bytea" in str(
        refused["error"]
    )


class _Wkb(pa.ExtensionType):
    """geoarrow.wkb, as geoarrow-pyarrow defines it: pyarrow writes it as Parquet GEOMETRY."""

    def __init__(self) -> None:
        super().__init__(pa.binary(), "geoarrow.wkb")

    def __arrow_ext_serialize__(self) -> bytes:
        return b"{}"

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> _Wkb:
        return cls()


def test_a_parquet_geometry_column_loads_as_its_wkb_bytes(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    point = bytes.fromhex("0101000000000000000000f03f0000000000000040")  # POINT(1 2)
    pa.register_extension_type(_Wkb())
    try:
        shapes = pa.ExtensionArray.from_storage(_Wkb(), pa.array([point, None], pa.binary()))
        path = land(tmp_path, "geo/shapes.parquet", pa.table({"id": [1, 2], "geom": shapes}))
    finally:
        pa.unregister_extension_type("geoarrow.wkb")
    assert "Geometry" in str(pq.ParquetFile(path).metadata.schema)  # the logical type
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(path), "--name", "geo")
    assert inferred.returncode == 0, inferred.stderr
    assert "- {name: geom, type: bytea}" in inferred.stdout
    contract(tmp_path, inferred.stdout.replace("glob: ", "glob: 'geo/*.parquet' #", 1))
    entry = ingest(tmp_path, warehouse)["geo/shapes.parquet"]
    assert entry["status"] == "success", entry
    rows = warehouse.query("SELECT id, geom FROM imported.geo ORDER BY id")
    assert [(i, g if g is None else bytes(g)) for i, g in rows] == [(1, point), (2, None)]


def test_a_parquet_uuid_column_is_inferred_as_uuid_and_loads_as_text_or_bytes(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """The UUID logical type (DuckDB, Arrow) is 16 bytes in the file: `uuid` (proposed) and
    `text` get the UUID as PostgreSQL writes it, `bytea` its 16 bytes."""
    ids = [uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"), None, uuid.UUID(int=0)]
    storage = pa.array([u.bytes if u else None for u in ids], pa.binary(16))
    values = pa.ExtensionArray.from_storage(pa.uuid(), storage)
    path = land(tmp_path, "ids/part-0.parquet", pa.table({"n": [1, 2, 3], "u": values}))
    assert "UUID" in str(pq.ParquetFile(path).metadata.schema)  # the logical type
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(path), "--name", "ids")
    assert inferred.returncode == 0, inferred.stderr
    assert "- {name: u, type: uuid}" in inferred.stdout
    contract(tmp_path, inferred.stdout.replace("glob: ", "glob: 'ids/*.parquet' #", 1))
    for name, declared in (("ids_text", "text"), ("ids_bytes", "bytea")):
        land(tmp_path, f"{name}/part-0.parquet", pa.table({"n": [1, 2, 3], "u": values}))
        contract(
            tmp_path,
            f"name: {name}\nsource: {{glob: '{name}/*.parquet'}}\n"
            f"target: {{schema: wild, table: {name}, mode: append}}\n"
            f"columns:\n  - {{name: n, type: bigint}}\n  - {{name: u, type: {declared}}}\n",
        )
    entries = ingest(tmp_path, warehouse)
    assert all(entry["status"] == "success" for entry in entries.values()), entries
    assert warehouse.query("SELECT n, u FROM imported.ids ORDER BY n") == list(
        zip([1, 2, 3], ids, strict=True)
    )
    assert warehouse.query("SELECT u FROM wild.ids_text ORDER BY n") == [
        ("00112233-4455-6677-8899-aabbccddeeff",),
        (None,),
        ("00000000-0000-0000-0000-000000000000",),
    ]
    stored = warehouse.query("SELECT u FROM wild.ids_bytes ORDER BY n")
    assert [None if b is None else bytes(b) for (b,) in stored] == [
        u.bytes if u else None for u in ids
    ]


def _nested_table() -> pa.Table:
    """Lists, structs and maps as Spark, Arrow and parquet-mr write them."""
    utc = dt.UTC
    return pa.table(
        {
            "id": [1, 2, 3, 4],
            "ints": pa.array([[1, 2, None], [], None, [2**31 - 1]], pa.list_(pa.int32())),
            "tags": pa.array(
                [["a", 'b"c', "d,e"], ["{x}", "NULL", "back\\slash"], None, [None]],
                pa.list_(pa.string()),
            ),
            "prices": pa.array(
                [[Decimal("1.50")], [Decimal("-0.01"), None], [], None],
                pa.list_(pa.decimal128(6, 2)),
            ),
            "ats": pa.array(
                [
                    [dt.datetime(2020, 1, 1, tzinfo=utc)],
                    None,
                    [],
                    [dt.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=utc)],
                ],
                pa.list_(pa.timestamp("us", "UTC")),
            ),
            "floats": pa.array([[0.1, 2.5], [1e30], [], None], pa.list_(pa.float32())),
            "point": pa.array(
                [
                    {"z": 1, "a": [1.5, None], "d": dt.date(2020, 1, 2), "b": b"\x00\xff"},
                    None,
                    {"z": None, "a": [], "d": None, "b": None},
                    {"z": 2**62, "a": None, "d": dt.date(1, 1, 1), "b": b""},
                ],
                pa.struct(
                    [
                        ("z", pa.int64()),
                        ("a", pa.list_(pa.float64())),
                        ("d", pa.date32()),
                        ("b", pa.binary()),
                    ]
                ),
            ),
            "attrs": pa.array(
                [[("k", 1), ("a", None)], [], None, [("é", 2)]], pa.map_(pa.string(), pa.int64())
            ),
            "deep": pa.array([[[1], [2, 3]], None, [], [[]]], pa.list_(pa.list_(pa.int8()))),
            "legacy": pa.array([[1.25], None, [], [None]], pa.large_list(pa.float64())),
        }
    )


def test_parquet_lists_structs_and_maps_are_inferred_and_load_exactly(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """Lists of a scalar type become PostgreSQL arrays; structs, maps and lists of lists jsonb."""
    # The same lists under the older element naming ("item", as Arrow wrote before 2.0): alike.
    path = land(tmp_path, "nest/part-0.parquet", _nested_table())
    land(
        tmp_path,
        "nest/part-1.parquet",
        _nested_table().slice(0, 1).set_column(0, "id", pa.array([5])),
        use_compliant_nested_type=False,
    )
    inferred = elt(
        tmp_path, warehouse, "contract", "infer", str(path), "--name", "nest", "--primary-key", "id"
    )
    assert inferred.returncode == 0, inferred.stderr
    for line in [
        '- {name: ints, type: "integer[]"}',
        '- {name: tags, type: "text[]"}',
        '- {name: prices, type: "numeric(6,2)[]"}',
        '- {name: ats, type: "timestamptz[]"}',
        '- {name: floats, type: "real[]"}',
        '- {name: legacy, type: "double precision[]"}',
        "- {name: point, type: jsonb}  # empty in 1 of 4 rows; structs in the file, loaded as JSON",
        "- {name: attrs, type: jsonb}  # empty in 1 of 4 rows; maps in the file, loaded as JSON",
        "- {name: deep, type: jsonb}  # empty in 1 of 4 rows; nested lists in the file",
    ]:
        assert line in inferred.stdout, inferred.stdout
    contract(tmp_path, inferred.stdout.replace("glob: ", "glob: 'nest/*.parquet' #", 1))
    entries = ingest(tmp_path, warehouse)
    assert {f: e["status"] for f, e in entries.items()} == {
        "nest/part-0.parquet": "success",
        "nest/part-1.parquet": "success",
    }, entries
    rows = warehouse.query(
        "SELECT id, ints, tags, prices::text, ats, floats::text, point::text, attrs::text, "
        "deep::text, legacy FROM imported.nest ORDER BY id"
    )
    utc = dt.UTC
    assert rows[:4] == [
        (
            1,
            [1, 2, None],
            ["a", 'b"c', "d,e"],
            "{1.50}",
            [dt.datetime(2020, 1, 1, tzinfo=utc)],
            "{0.1,2.5}",
            '{"a": [1.5, null], "b": "\\\\x00ff", "d": "2020-01-02", "z": 1}',
            '{"a": null, "k": 1}',
            "[[1], [2, 3]]",
            [1.25],
        ),
        (
            2,
            [],
            ["{x}", "NULL", "back\\slash"],
            "{-0.01,NULL}",
            None,
            "{1e+30}",
            None,
            "{}",
            None,
            None,
        ),
        (
            3,
            None,
            None,
            "{}",
            [],
            "{}",
            '{"a": [], "b": null, "d": null, "z": null}',
            None,
            "[]",
            [],
        ),
        (
            4,
            [2**31 - 1],
            [None],
            None,
            [dt.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=utc)],
            None,
            '{"a": null, "b": "\\\\x", "d": "0001-01-01", "z": 4611686018427387904}',
            '{"é": 2}',
            "[[]]",
            [None],
        ),
    ]
    assert rows[4][:2] == (5, [1, 2, None])  # the legacy two-level file reads the same
    assert rows[4][2:] == rows[0][2:]


def test_nested_values_that_cannot_be_kept_exactly_are_refused_or_quarantined(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A map with a key twice (jsonb keeps one) refuses the file, naming the row and column; a
    NaN in a struct (no JSON holds it) or an array element that does not fit its type
    quarantines the row, its value kept in the quarantine's raw record; a nested
    column declared as a scalar type, or a struct declared as an array, says what to declare."""
    ints = pa.array([[1, 2], [2**40], [3]], pa.list_(pa.int64()))
    amounts = pa.array([["1.5", "5.15"], ["1.5"], None], pa.list_(pa.string()))
    land(
        tmp_path,
        "arr/part-0.parquet",
        pa.table({"id": [1, 2, 3], "ints": ints, "amounts": amounts}),
    )
    contract(
        tmp_path,
        "name: arr\nsource: {glob: 'arr/*.parquet'}\n"
        "target: {schema: wild, table: arr, primary_key: [id]}\n"
        "policy: {max_bad_row_ratio: 1}\n"
        "columns:\n  - {name: id, type: bigint, nullable: false}\n"
        "  - {name: ints, type: 'integer[]'}\n  - {name: amounts, type: 'numeric(6,1)[]'}\n",
    )
    dup = pa.array([[("a", 1)], [("b", 1), ("b", 2)]], pa.map_(pa.string(), pa.int64()))
    land(tmp_path, "dup/part-0.parquet", pa.table({"id": [1, 2], "m": dup}))
    contract(
        tmp_path,
        "name: dup\nsource: {glob: 'dup/*.parquet'}\n"
        "target: {schema: wild, table: dup, mode: append}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: m, type: jsonb}\n",
    )
    nan = pa.array([{"x": 1.0}, {"x": float("nan")}], pa.struct([("x", pa.float64())]))
    land(tmp_path, "nan/part-0.parquet", pa.table({"id": [1, 2], "s": nan}))
    contract(
        tmp_path,
        "name: nan\nsource: {glob: 'nan/*.parquet'}\n"
        "target: {schema: wild, table: nan, mode: append}\n"
        "policy: {max_bad_row_ratio: 1}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: s, type: jsonb}\n",
    )
    land(tmp_path, "flat/part-0.parquet", pa.table({"id": [1], "ints": ints.slice(0, 1)}))
    contract(
        tmp_path,
        "name: flat\nsource: {glob: 'flat/*.parquet'}\n"
        "target: {schema: wild, table: flat, mode: append}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: ints, type: bigint}\n",
    )
    land(tmp_path, "shape/part-0.parquet", pa.table({"id": [1], "s": nan.slice(0, 1)}))
    contract(
        tmp_path,
        "name: shape\nsource: {glob: 'shape/*.parquet'}\n"
        "target: {schema: wild, table: shape, mode: append}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: s, type: 'double precision[]'}\n",
    )
    entries = ingest(tmp_path, warehouse)
    arrays = entries["arr/part-0.parquet"]
    assert arrays["status"] == "success" and arrays["rows_quarantined"] == 2, arrays
    assert warehouse.query("SELECT id, ints, amounts::text FROM wild.arr") == [(3, [3], None)]
    reasons = dict(
        warehouse.query(
            "SELECT row_number, reason FROM elt.quarantine WHERE file = 'arr/part-0.parquet'"
        )
    )
    assert reasons == {
        1: "amounts: '5.15' is not a number that fits numeric(6,1) as written: at most 1 decimal "
        "places (a value is never rounded) (an element of the array)",
        2: "ints: '1099511627776' is not a whole number in integer range (an element of the array)",
    }
    expected = {
        "dup/part-0.parquet": "dup/part-0.parquet, column 'm': row 2: a map with the key 'b' "
        "twice; jsonb keeps one value per key",
        "flat/part-0.parquet": "column 'ints' holds nested values (List(Int64)) in the Parquet "
        "file and cannot become bigint; declare it jsonb or an array such as integer[]",
        "shape/part-0.parquet": "shape/part-0.parquet, column 's': the column cannot be "
        "double precision[]: it holds struct<x: double> values, not lists; declare it jsonb",
    }
    for file, said in expected.items():
        assert entries[file]["status"] == "failed", entries[file]
        assert said in str(entries[file]["error"]), entries[file]
    assert warehouse.value("SELECT count(*) FROM wild.dup") == 0  # nothing of the file loaded
    nans = entries["nan/part-0.parquet"]
    assert nans["status"] == "success" and nans["rows_quarantined"] == 1, nans
    assert warehouse.query("SELECT id, s FROM wild.nan") == [(1, {"x": 1.0})]
    [(row, column, reason, raw)] = warehouse.query(
        "SELECT row_number, column_name, reason, raw_record FROM elt.quarantine "
        "WHERE file = 'nan/part-0.parquet'"
    )
    assert (row, column, raw) == (2, "s", {"id": "2", "s": '{"x":NaN}'})
    assert "invalid input syntax for type json" in reason and "NaN" in reason, reason


def test_csv_array_literals_load_and_a_bad_element_is_a_bad_row(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = landing_folder(tmp_path, "lists")
    (folder / "a.csv").write_text(
        'id,ints,tags\n1,"{1, 2 ,NULL}","{a,""b,c"",""d\\""e"",NULL,""NULL""}"\n'
        '2,{},{}\n3,,\n4,"{1,x}",{ok}\n5,"{1,{2}}",{ok}\n'
    )
    contract(
        tmp_path,
        "name: lists\nsource: {glob: 'lists/*.csv'}\n"
        "target: {schema: wild, table: lists, primary_key: [id]}\n"
        "policy: {max_bad_row_ratio: 1}\n"
        "columns:\n  - {name: id, type: bigint, nullable: false}\n"
        "  - {name: ints, type: 'int[]'}\n  - {name: tags, type: 'text[]'}\n",
    )
    entry = ingest(tmp_path, warehouse)["lists/a.csv"]
    assert entry["status"] == "success" and entry["rows_quarantined"] == 2, entry
    assert warehouse.query("SELECT id, ints, tags FROM wild.lists ORDER BY id") == [
        (1, [1, 2, None], ["a", "b,c", 'd"e', None, "NULL"]),
        (2, [], []),
        (3, None, None),
    ]
    assert warehouse.query(
        "SELECT row_number, reason FROM elt.quarantine WHERE file = 'lists/a.csv' ORDER BY 1"
    ) == [
        (4, "ints: 'x' is not a whole number in integer range (an element of the array)"),
        (
            5,
            "ints: '{1,{2}}' is not an array of integer written as {1,2,NULL} (one dimension, "
            'elements with a comma, brace, quote or backslash in "double quotes")',
        ),
    ]


_LITERAL_PARTS = ["{", "}", ",", '"', "\\", " ", "1", "-2", "a", "NULL", "null", "{}", "\t", "é"]
_PLAIN = st.sampled_from(["1", "-2", " 3 ", "a", "a b", "NULL", "null", "é", "1e3", "x\\y"])
_QUOTED = st.text(alphabet='ab1 ,{}"\\\tN', max_size=6).map(
    lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
)


@st.composite
def _array_literals(draw: st.DrawFn) -> str:
    """Mostly well-formed literals (elements plain or quoted, spaces around), some broken."""
    if draw(st.booleans()):
        parts = draw(st.lists(st.sampled_from(_LITERAL_PARTS), max_size=12))
        return "{" + "".join(parts) + "}"
    elements = draw(st.lists(st.one_of(_PLAIN, _QUOTED), max_size=5))
    space = draw(st.sampled_from(["", " ", "\t"]))
    return "{" + space + f"{space},{space}".join(elements) + space + "}"


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(literal=_array_literals(), element=st.sampled_from(["text", "integer"]))
def test_every_array_literal_accepted_is_one_postgresql_reads_the_same(
    array_oracle: psycopg.Connection, literal: str, element: str
) -> None:
    """The array cast accepts a subset of PostgreSQL's literals, with the same elements: where it
    says a literal is good, PostgreSQL reads it and finds the elements it found."""
    column = Column.model_validate({"name": "v", "type": f"{element}[]"})
    cast = cast_text_column(column, "UTC")
    frame = pl.DataFrame({"v": [literal]}).select(cast.failed, elements=_elements(cast.text))
    if frame["v"][0]:
        return  # refused: a bad row (PostgreSQL may or may not read it)
    try:
        with array_oracle.transaction():
            read = array_oracle.execute(f"SELECT %s::{element}[]::text[]", [literal]).fetchone()
    except psycopg.DataError as error:
        raise AssertionError(
            f"{literal!r} accepted as {element}[] but PostgreSQL: {error}"
        ) from None
    assert read is not None
    expected = frame["elements"][0].to_list()
    if element == "integer":
        expected = [None if e is None else str(int(e)) for e in expected]
    assert read[0] == expected, literal


@pytest.fixture(scope="module")
def array_oracle(pg_server: Server) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_server.superuser_url) as connection:
        yield connection


def test_the_glob_infer_writes_takes_csv_and_gzip_but_not_other_compressions(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = landing_folder(tmp_path, "drops")
    (folder / "a.csv").write_text("id,label\n1,one\n")
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"id,label\n2,two\n"))
    (folder / "c.csv.bz2").write_bytes(bz2.compress(b"id,label\n3,three\n"))
    inferred = elt(
        tmp_path, warehouse, "contract", "infer", str(folder / "a.csv"), "--name", "drops"
    )
    assert inferred.returncode == 0, inferred.stderr
    assert 'glob: "drops/*.{csv,csv.gz}"' in inferred.stdout
    contract(tmp_path, inferred.stdout)
    entries = ingest(tmp_path, warehouse)
    assert {f: e["status"] for f, e in entries.items()} == {
        "drops/a.csv": "success",
        "drops/b.csv.gz": "success",
    }, entries  # the .csv.bz2 is not the dataset's: never taken, never failed
    assert warehouse.query("SELECT id, label FROM imported.drops ORDER BY id") == [
        (1, "one"),
        (2, "two"),
    ]


def _quarantined(warehouse: Warehouse, file: str) -> list[tuple[object, ...]]:
    return warehouse.query(
        "SELECT row_number, check_name, reason, raw_record FROM elt.quarantine WHERE file = %s "
        "ORDER BY row_number",
        [file],
    )


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_ragged_rows_are_bad_rows_quarantined_with_their_line_and_fields(
    tmp_path: Path, warehouse: Warehouse, ending: str
) -> None:
    """A record with too few or too many fields, its quoting intact, is quarantined with its
    line and fields; the rest loads, each row once, numbered as in the file. Late in a file of
    several batches (the first already staged when it is met), in gzip, with quoted line breaks
    before it, and with every line ending (CR-only too: old Mac exports)."""
    rows = [f'{n},"label {n}",{n * 2}' for n in range(1, 5001)]
    rows[9] = '10,"two\nlines",20'  # a quoted line break: lines and records differ from here
    rows[3999] = "4000,short"  # record 4000 is on line 4002 (header, and the line break)
    rows[4499] = "4500,too,many,fields"
    rows[4799] = "4800,bad number,x"
    text = ending.join(["id,label,amount", *rows]) + ending
    folder = landing_folder(tmp_path, "ragged")
    (folder / "a.csv.gz").write_bytes(gzip.compress(text.encode()))
    contract(
        tmp_path,
        "name: ragged\nsource: {glob: 'ragged/*.csv.gz'}\n"
        "target: {schema: wild, table: ragged, primary_key: [id]}\n"
        "columns:\n  - {name: id, type: bigint, nullable: false}\n"
        "  - {name: label, type: text}\n  - {name: amount, type: integer}\n",
    )
    # Small blocks and batches: the first batches are staged before the short row is met.
    small = {"ELT_MAX_RECORD_BYTES": "65536", "ELT_BATCH_ROWS": "1000"}
    entry = ingest(tmp_path, warehouse, small)["ragged/a.csv.gz"]
    assert entry["status"] == "success", entry
    assert (entry["rows_read"], entry["rows_quarantined"]) == (5000, 3), entry
    assert _quarantined(warehouse, "ragged/a.csv.gz") == [
        (
            4000,
            "fields",
            "line 4002: 2 field(s) where the header has 3 (a ragged row: an unquoted "
            "delimiter or a missing value?)",
            {"id": "4000", "label": "short"},
        ),
        (
            4500,
            "fields",
            "line 4502: 4 field(s) where the header has 3 (a ragged row: an unquoted "
            "delimiter or a missing value?)",
            {"id": "4500", "label": "too", "amount": "many", "field_4": "fields"},
        ),
        (  # numbered as in the file after the two set aside
            4800,
            "type:integer",
            "amount: 'x' is not a whole number in integer range",
            {"id": "4800", "label": "bad number", "amount": "x"},
        ),
    ]
    loaded = warehouse.query("SELECT id, label, amount FROM wild.ragged ORDER BY id")
    expected = [(n, f"label {n}", n * 2) for n in range(1, 5001) if n not in (4000, 4500, 4800)]
    expected[9] = (10, "two\nlines", 20)
    assert loaded == expected


def test_a_ragged_row_fails_the_file_when_bad_rows_fail_and_a_broken_quote_always_does(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = landing_folder(tmp_path, "strict")
    (folder / "a.csv").write_text("id,label\n1,one\n2\n3,three\n")
    (folder / "b.csv").write_text('id,label\n1,one\n2,"never closed\n3,three\n')
    contract(
        tmp_path,
        "name: strict\nsource: {glob: 'strict/*.csv'}\n"
        "target: {schema: wild, table: strict, mode: append}\n"
        "policy: {bad_rows: fail}\n"
        "columns:\n  - {name: id, type: bigint}\n  - {name: label, type: text}\n",
    )
    entries = ingest(tmp_path, warehouse)
    assert entries["strict/a.csv"]["status"] == "failed"
    assert "strict/a.csv, line 3: expected 2 fields like the first line, found 1" in str(
        entries["strict/a.csv"]["error"]
    )
    assert entries["strict/b.csv"]["status"] == "failed"
    assert "line 3: a quoted field starting here is never closed" in str(
        entries["strict/b.csv"]["error"]
    )
    assert warehouse.value("SELECT count(*) FROM wild.strict") == 0


def test_a_file_without_a_header_is_suspected_and_read_with_no_header(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = landing_folder(tmp_path, "bare")
    path = folder / "a.csv"
    path.write_text("1,Ann,1990-01-01,2.5\n2,Bob,1991-02-02,3\n")
    guessed = elt(tmp_path, warehouse, "contract", "infer", str(path), "--name", "bare")
    assert guessed.returncode == 0, guessed.stderr
    said = (
        "the first line looks like data, not column names (3 of 4 are numbers or dates: '1', "
        "'1990-01-01', '2.5'); if the file has no header, run again with --no-header"
    )
    assert f"elt: warning: {path}: {said}" in guessed.stderr
    assert f"# WARNING: {said}." in guessed.stdout
    bare = elt(tmp_path, warehouse, "contract", "infer", str(path), "--name", "bare", "--no-header")
    assert bare.returncode == 0 and "warning" not in bare.stderr, bare.stderr
    assert "    header: false  # the first line is data: columns by position" in bare.stdout
    assert "- {name: column_1, type: integer}" in bare.stdout
    contract(tmp_path, bare.stdout)
    entry = ingest(tmp_path, warehouse)["bare/a.csv"]
    assert entry["status"] == "success" and entry["rows_read"] == 2, entry
    assert warehouse.query(
        "SELECT column_1, column_2, column_3::text, column_4::text FROM imported.bare ORDER BY 1"
    ) == [(1, "Ann", "1990-01-01", "2.500"), (2, "Bob", "1991-02-02", "3.000")]

    # Names that look like names raise no doubt; a Parquet file has names of its own.
    (folder / "named.csv").write_text("id,name,born\n1,Ann,1990-01-01\n")
    named = elt(tmp_path, warehouse, "contract", "infer", str(folder / "named.csv"))
    assert named.returncode == 0 and "warning" not in named.stderr + named.stdout.lower()
    parquet = land(tmp_path, "bare/b.parquet", pa.table({"id": [1]}))
    refused = elt(tmp_path, warehouse, "contract", "infer", str(parquet), "--no-header")
    assert refused.returncode == 2, refused.stderr
    assert "--no-header is for CSV; Parquet names its columns" in refused.stderr


def test_legacy_two_level_lists_and_unannotated_repeated_fields_load_as_arrays(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """parquet-mr's 2-level lists and a bare repeated field: pyarrow no longer writes them, so
    the file is written by hand (legacy_parquet.py); the platform reads them as lists."""
    path = tmp_path / "landing" / "old" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(legacy_lists())
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(path), "--name", "old")
    assert inferred.returncode == 0, inferred.stderr
    assert '- {name: tags, type: "integer[]"}  # empty in 1 of 3 rows' in inferred.stdout
    assert '- {name: numbers, type: "integer[]"}' in inferred.stdout
    contract(tmp_path, inferred.stdout)
    entry = ingest(tmp_path, warehouse)["old/part-0.parquet"]
    assert entry["status"] == "success", entry
    assert warehouse.query("SELECT id, tags, numbers FROM imported.old ORDER BY id") == [
        (1, [1, 2], [7]),
        (2, None, []),
        (3, [], [8, 9]),
    ]


# -- schema evolution (issue 23): rescue -------------------------------------------------------


def test_rescue_keeps_new_columns_and_bad_values_in_a_jsonb_column_and_loads_the_rows(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """policy.new_columns / bad_values: rescue. A column the contract does not name, and a value
    that does not fit a nullable column, go to `_rescued` as the file had them, with the reason;
    the row loads (NULL in the column). A bad key or a failed check still quarantines."""
    folder = landing_folder(tmp_path, "evolving")
    (folder / "a.csv").write_text("id,amount,label\n1,1.50,one\n2,2.25,two\n")
    columns = (
        "columns:\n  - {name: id, type: bigint, nullable: false}\n"
        "  - {name: amount, type: 'numeric(6,2)', checks: {ge: 0}}\n"
        "  - {name: label, type: text}\n"
    )
    head = (
        "name: evolving\nsource: {glob: 'evolving/*.csv'}\n"
        "target: {schema: wild, table: evolving, primary_key: [id]}\n"
    )
    contract(tmp_path, head + columns)  # the table is first made without rescuing
    assert ingest(tmp_path, warehouse)["evolving/a.csv"]["status"] == "success"
    # The policy starts rescuing: the platform adds the rescue column to the existing table.
    rescuing = "policy: {new_columns: rescue, bad_values: rescue, max_bad_row_ratio: 1}\n"
    contract(tmp_path, head + rescuing + columns)
    (folder / "b.csv").write_text(
        'id,amount,label,coupon,"Zoë ""x"""\n'
        "3,12;5,three,C1,z\n"  # a bad value and two new columns
        "4,4.00,four,,\n"  # new columns empty: nothing to rescue
        "x,5.00,five,C2,\n"  # a bad key: quarantined, new columns kept in raw_record
        "6,-1,six,,\n",  # a failed check (ge: 0): quarantined, not rescued
        encoding="utf-8",
    )
    entries = ingest(tmp_path, warehouse)
    b = entries["evolving/b.csv"]
    assert b["status"] == "success" and b["rows_quarantined"] == 2, b
    rows = warehouse.query(
        "SELECT id, amount::text, label, _rescued FROM wild.evolving ORDER BY id"
    )
    assert rows == [
        (1, "1.50", "one", None),
        (2, "2.25", "two", None),
        (
            3,
            None,
            "three",
            {
                "amount": {
                    "value": "12;5",
                    "reason": "amount: '12;5' is not a number that fits "
                    "numeric(6,2) as written: at most 2 decimal places (a value is never rounded)",
                },
                "coupon": {"value": "C1", "reason": "a column the contract does not name"},
                'Zoë "x"': {"value": "z", "reason": "a column the contract does not name"},
            },
        ),
        (4, "4.00", "four", None),
    ]
    quarantined = dict(
        warehouse.query(
            "SELECT row_number, raw_record FROM elt.quarantine WHERE file = 'evolving/b.csv'"
        )
    )
    assert quarantined[3] == {
        "id": "x",
        "amount": "5.00",
        "label": "five",
        "coupon": "C2",
        'Zoë "x"': None,
    }
    assert quarantined[4]["amount"] == "-1"
    staged = warehouse.value(
        "SELECT stage_report->'counts'->>'rows_rescued' FROM elt.ingestion_manifest "
        "WHERE file = 'evolving/b.csv'"
    )
    assert staged == "1"


def test_rescue_keeps_typed_parquet_values_as_text(tmp_path: Path, warehouse: Warehouse) -> None:
    table = pa.table(
        {
            "id": [1, 2],
            "small": pa.array([7, 2**40], pa.int64()),  # declared integer: 2^40 does not fit
            "born": pa.array([dt.date(2020, 1, 2), None], pa.date32()),  # not in the contract
            "tags": pa.array([["a", 'b"'], None], pa.list_(pa.string())),  # nor this one
        }
    )
    land(tmp_path, "typed/part-0.parquet", table)
    contract(
        tmp_path,
        "name: typed\nsource: {glob: 'typed/*.parquet'}\n"
        "target: {schema: wild, table: typed, primary_key: [id]}\n"
        "policy: {new_columns: rescue, bad_values: rescue, rescue_column: leftovers}\n"
        "columns:\n  - {name: id, type: bigint, nullable: false}\n"
        "  - {name: small, type: integer}\n",
    )
    entry = ingest(tmp_path, warehouse)["typed/part-0.parquet"]
    assert entry["status"] == "success" and entry["rows_quarantined"] == 0, entry["error"]
    not_named = "a column the contract does not name"
    assert warehouse.query("SELECT id, small, leftovers FROM wild.typed ORDER BY id") == [
        (
            1,
            7,
            {
                "born": {"value": "2020-01-02", "reason": not_named},
                "tags": {"value": '["a","b\\""]', "reason": not_named},
            },
        ),
        (
            2,
            None,
            {
                "small": {
                    "value": "1099511627776",
                    "reason": "small: '1099511627776' is not in range for integer",
                }
            },
        ),
    ]


# -- schema evolution (issue 23): add ----------------------------------------------------------


def test_a_file_wider_than_a_table_can_be_is_inferred_loaded_and_never_grows_it_beyond(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """1,700 columns: infer keeps the key and the first others up to the 1,597 a dataset's
    tables can have, says which it left out, and the contract loads the file. A dataset that
    adds the columns its files bring stops at the limit with a message, not PostgreSQL's."""
    folder = landing_folder(tmp_path, "wide")
    names = [f"c{n}" for n in range(1700)]
    rows = [[str(r * 1000 + n) for n in range(1700)] for r in range(2)]
    (folder / "a.csv").write_text("\n".join(",".join(r) for r in [names, *rows]) + "\n")
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(folder / "a.csv"), "--name",
                   "wide", "--primary-key", "c1650")  # fmt: skip
    assert inferred.returncode == 0, inferred.stderr
    declared = re.findall(r"- \{name: (c\d+),", inferred.stdout)
    assert declared == [f"c{n}" for n in range(1596)] + ["c1650"]
    assert (
        "# left out: 103 columns beyond the 1,597 a dataset's table can have (PostgreSQL's "
        "limit): c1596 to c1699 are not loaded" in inferred.stdout
    )
    assert "new_columns: ignore" in inferred.stdout
    contract(tmp_path, inferred.stdout.replace("glob: ", "glob: 'wide/*.csv' #", 1))
    entry = ingest(tmp_path, warehouse)["wide/a.csv"]
    assert entry["status"] == "success" and entry["rows_inserted"] == 2, entry
    assert warehouse.query("SELECT c0, c1595, c1650 FROM imported.wide ORDER BY c0") == [
        (0, 1595, 1650),
        (1000, 2595, 2650),
    ]

    grown = inferred.stdout.replace("glob: ", "glob: 'grows/*.csv' #", 1)
    grown = grown.replace("name: wide", "name: grows").replace("table: wide", "table: grows")
    contract(tmp_path, grown.replace("new_columns: ignore", "new_columns: add"))
    (landing_folder(tmp_path, "grows") / "a.csv").write_text((folder / "a.csv").read_text())
    refused = ingest(tmp_path, warehouse)["grows/a.csv"]
    assert refused["status"] == "failed", refused
    assert (
        "the file brings 103 new column(s) (c1596, c1597, c1598, c1599, c1600, ...), and "
        "dataset 'grows' has 1,597: a table of it holds at most 1,597" in str(refused["error"])
    ), refused
    assert warehouse.value("SELECT count(*) FROM imported.grows") == 0


def test_excels_delimiter_hint_on_the_first_line_is_skipped_and_names_the_delimiter(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """`sep=;` before the header (Excel writes and reads it) is neither header nor data: infer
    takes the delimiter from it, ingest skips it, and line numbers still count it."""
    folder = landing_folder(tmp_path, "excel")
    (folder / "a.csv").write_bytes(b"\xef\xbb\xbfsep=;\r\n\r\nid;name\r\n1;a\r\n2;x;y\r\n3;c\r\n")
    inferred = elt(tmp_path, warehouse, "contract", "infer", str(folder / "a.csv"), "--name",
                   "excel", "--landing", str(tmp_path / "landing"))  # fmt: skip
    assert inferred.returncode == 0, inferred.stderr
    assert 'delimiter: ";"' in inferred.stdout
    assert "- {name: id, type: integer}" in inferred.stdout
    assert "the first: line 5: 3 field(s) where the header has 2" in inferred.stdout
    contract(tmp_path, inferred.stdout.replace("max_bad_row_ratio: 0.01", "max_bad_row_ratio: 1"))
    entry = ingest(tmp_path, warehouse)["excel/a.csv"]
    assert entry["status"] == "success" and entry["rows_quarantined"] == 1, entry
    assert warehouse.query("SELECT id, name FROM imported.excel ORDER BY id") == [
        (1, "a"),
        (3, "c"),
    ]
    [(row, reason)] = warehouse.query("SELECT row_number, reason FROM elt.quarantine")
    assert row == 2 and reason.startswith("line 5: 3 field(s)"), reason
