"""`elt contract infer`: a starting contract from a sample of a real file.

Unit tests pin the inference per type (every non-text guess is what the platform's own casts
accept, so each expected type below follows from casts.py's rules plus infer.py's conservative
choices: leading zeros, beyond-bigint and blanks stay text, integer only up to 10^8). The round
trips infer a contract for a realistic CSV and a Parquet file, load it with the real loader, ingest
the file with the real job into a real PostgreSQL, and compare every value with the file's.

Markers are per test: the unit tests are pure, the round trips need the database and Dagster, the
CLI tests spawn `elt`.
"""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from elt_assets.cli.infer import InferError, InferUsageError, dataset_name, infer_contract
from elt_assets.contracts.loader import load_contracts, parse_contract
from elt_assets.contracts.types import PgType
from elt_assets.validation.inference import column_names, infer_text_type
from elt_assets_tests.conftest import Warehouse
from elt_assets_tests.helpers import check_results, run_file, step_failure

pure = pytest.mark.pure
ELT = Path(sys.executable).parent / "elt"


def guess(*values: str) -> tuple[str, str | None]:
    inferred = infer_text_type(pl.Series(list(values), dtype=pl.String))
    return str(inferred.type), inferred.note


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def types_of(path: Path, **options: Any) -> dict[str, str]:
    return {c.name: str(c.type) for c in infer_contract(path, **options).columns}


# -- CSV types ---------------------------------------------------------------------------------


@pure
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["true", "False", "t", "yes", "N"], "boolean"),
        (["0", "1"], "integer"),  # 0/1 could be counts: boolean only with a word
        (["1", "-42", " 7 "], "integer"),  # PostgreSQL trims numbers, so does the cast
        (["100000000"], "integer"),  # the headroom bound itself
        (["100000001"], "bigint"),  # beyond 10^8: ids grow
        (["-9223372036854775808", "9223372036854775807"], "bigint"),  # the exact bigint range
        (["10.50", "3", "1234.56"], "numeric(12,4)"),  # 4 digits -> 8 with headroom, scale 2 + 2
        (["0.5"], "numeric(7,3)"),  # no integer digit: 4 of headroom; scale 1 + 2
        (["1.5", "2.25"], "numeric"),  # varying scale: a fixed scale would round
        (["2026-01-31", "2024-02-29"], "date"),
        (["2026-01-01 10:00:00", "2026-01-01T10:00"], "timestamp"),
        (["2026-01-01T10:00:00Z", "2026-03-29 02:30:00+02:00"], "timestamptz"),
        (["0b3f4c1e-8a2d-4f5e-9c7b-1a2b3c4d5e6f", "{0B3F4C1E8A2D4F5E9C7B1A2B3C4D5E6F}"], "uuid"),
        (["paid", "new"], "text"),
    ],
)
def test_csv_type_per_kind(values: list[str], expected: str) -> None:
    assert guess(*values)[0] == expected


@pure
@pytest.mark.parametrize(
    ("values", "note"),
    [
        (["9223372036854775808"], "whole numbers beyond bigint"),  # past int64: text
        (["007", "12"], "leading zeros"),  # codes keep their zeros
        (["1", ""], 'a quoted "" is an empty string, not NULL'),  # "" fails every typed cast
        ([], "no value in the sample"),  # an all-null column
    ],
)
def test_conservative_cases_stay_text_and_say_why(values: list[str], note: str) -> None:
    kind, why = guess(*values)
    assert kind == "text"
    assert why is not None and note in why


@pure
@pytest.mark.parametrize(
    "values",
    [["1", "abc"], ["2026-01-01", "5"], ["true", "2"], ["2026-02-30"], ["1.5", "1,5"]],
)
def test_mixed_or_invalid_values_are_text(values: list[str]) -> None:
    assert guess(*values) == ("text", None)


@pure
def test_exponents_and_special_floats_get_numeric_or_double_with_a_note() -> None:
    assert guess("1e3", "2.5")[0] == "numeric"
    assert guess("inf", "1.5")[0] == "double precision"  # numeric has no infinity
    assert "exponent or NaN/Infinity" in (guess("NaN", "1.5")[1] or "")


@pure
def test_offsets_present_everywhere_or_mixed() -> None:
    assert guess("2026-01-01 10:00:00+01:00", "2026-07-01 10:00:00+02:00") == ("timestamptz", None)
    kind, note = guess("2026-01-01 10:00:00+01:00", "2026-01-01 11:00:00")
    assert kind == "timestamptz"
    assert note == "1 of 2 values have no offset: they are read in source.timezone"


# -- names -------------------------------------------------------------------------------------


@pure
def test_headers_become_unique_snake_case_names() -> None:
    headers = ["Customer Name", "orderID", "Prénom", "2024 Sales", "", "_elt_row", "HTTPStatus"]
    assert column_names(headers) == [
        "customer_name",
        "order_id",
        "prenom",
        "col_2024_sales",
        "column_5",
        "elt_row",  # the _elt_ prefix is reserved for the platform
        "http_status",
    ]


@pure
def test_duplicate_names_after_sanitising_get_a_suffix_and_long_names_fit_63_bytes() -> None:
    assert column_names(["Order ID", "order_id", "ORDER-ID"]) == [
        "order_id",
        "order_id_2",
        "order_id_3",
    ]
    long = column_names(["y" * 70, "y" * 70 + "!"])
    assert long == ["y" * 63, "y" * 61 + "_2"]


@pure
def test_dataset_name_from_the_file_name() -> None:
    assert dataset_name(Path("orders_2026-11-21.csv.gz")) == "orders_2026_11_21"
    assert dataset_name(Path("2026 Export.CSV")) == "dataset_2026_export"
    assert dataset_name(Path("€€.csv")) == "dataset"


# -- whole files -------------------------------------------------------------------------------


@pure
def test_weird_headers_keep_their_source_name_and_the_yaml_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Weird Export.csv",
        '"Order ID","Price: ""net""",#,Ünits,order_id\n1,2.50,x,3,4\n',
    )
    inferred = infer_contract(path, primary_key=["Order ID"])
    saved = write(tmp_path / "c" / "weird.yaml", inferred.yaml)
    contract = parse_contract(saved)

    assert contract.name == "weird_export"
    assert contract.target.mode == "upsert"
    assert contract.target.primary_key == ["order_id"]
    assert [(c.name, c.source_name, str(c.type)) for c in contract.columns] == [
        ("order_id", "Order ID", "integer"),
        ("price_net", 'Price: "net"', "numeric(9,4)"),  # 1 digit + 4, scale 2 + 2
        ("column_3", "#", "text"),
        ("units", "Ünits", "integer"),
        ("order_id_2", "order_id", "integer"),
    ]
    assert [c.nullable for c in contract.columns] == [False, True, True, True, True]
    assert inferred.yaml.startswith(
        "# Starting contract inferred by `elt contract infer` from Weird Export.csv\n"
        "# (csv, all 1 rows sampled: the whole file)."
    )
    assert "review" in inferred.yaml


@pure
def test_null_markers_become_null_values_only_where_a_typed_column_needs_them(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "m.csv",
        "id,amount,country,empty\n1,NULL,NA,\n2,3.5,DE,\n3,N/A,NA,\n",
    )
    inferred = infer_contract(path)
    assert inferred.null_values == ["NULL", "N/A"]  # NA stays data: it is only in a text column
    assert types_of(path) == {
        "id": "integer",
        "amount": "numeric(8,3)",  # 1 digit + 4, scale 1 + 2
        "country": "text",
        "empty": "text",  # all NULL
    }
    amount = next(c for c in inferred.columns if c.name == "amount")
    assert amount.nulls == 2
    contract = parse_contract(write(tmp_path / "c" / "m.yaml", inferred.yaml))
    assert contract.source.csv.null_values == ["NULL", "N/A"]


@pure
def test_only_the_first_sample_rows_decide(tmp_path: Path) -> None:
    rows = "".join(f"{i}\n" for i in range(1, 21)) + "not a number\n"
    path = write(tmp_path / "n.csv", "n\n" + rows)
    inferred = infer_contract(path, sample_rows=20)
    assert inferred.rows_sampled == 20
    assert str(inferred.columns[0].type) == "integer"
    assert "# (csv, the first 20 rows sampled)." in inferred.yaml
    assert types_of(path, sample_rows=21) == {"n": "text"}


@pure
def test_gzip_and_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "g.csv.gz"
    path.write_bytes(gzip.compress(b"a;b\n1;x\n2;y\n"))
    inferred = infer_contract(path, delimiter=";")
    assert [(c.name, str(c.type)) for c in inferred.columns] == [("a", "integer"), ("b", "text")]
    contract = parse_contract(write(tmp_path / "c" / "g.yaml", inferred.yaml))
    assert contract.source.csv.delimiter == ";"
    assert contract.source.glob == "g/*.{csv,csv.gz}"


@pure
def test_header_only_file_gives_text_columns(tmp_path: Path) -> None:
    inferred = infer_contract(write(tmp_path / "h.csv", "a,b\n"))
    assert inferred.rows_sampled == 0
    assert [str(c.type) for c in inferred.columns] == ["text", "text"]
    assert "no value in the sample" in inferred.yaml


@pure
def test_key_problems_are_clear_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "k.csv", "id,name\n1,a\n,b\n3,\n")
    with pytest.raises(InferError) as error:
        infer_contract(path, primary_key=["id"])
    assert str(error.value) == (
        f"{path}: primary key column 'id' is empty in 1 of 3 sampled rows; a key must never be "
        "NULL: choose another key or fix the file"
    )
    with pytest.raises(InferUsageError, match=r"\(columns: id, name\)"):
        infer_contract(path, primary_key=["nope"])


@pure
def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.csv": "no such file",
        write(tmp_path / "empty.csv", ""): "the file is empty (0 bytes)",
        write(tmp_path / "dup.csv", "a,b,a\n1,2,3\n"): "the header has column 'a' twice",
        write(tmp_path / "case.csv", "Name,name\n1,2\n"): "differ only in case or spaces",
        write(tmp_path / "bad.parquet", "PAR1 not really"): "not a readable Parquet file",
        tmp_path: "not a regular file",
    }
    for path, message in cases.items():
        with pytest.raises(InferError) as error:
            infer_contract(path)
        assert str(error.value).startswith(str(path)), error.value
        assert message in str(error.value)


def test_a_file_that_is_not_utf8_is_read_as_cp1252_and_said_or_named_with_the_flag(
    tmp_path: Path,
) -> None:
    western = tmp_path / "western.csv"
    western.write_bytes("id;name\n1;Müller \u2013 \u201cquoted\u201d\n".encode("cp1252"))
    inferred = infer_contract(western)
    assert inferred.encoding == "cp1252"
    assert (
        "    encoding: cp1252  # the file is not UTF-8; Windows' Western European reads it: review"
    ) in inferred.yaml
    assert inferred.delimiter == ";"
    # Not cp1252 either (0x81 has no character there): the flag to use is named.
    other = tmp_path / "other.csv"
    other.write_bytes(b"id,name\n1,\x81x\n")
    with pytest.raises(InferError) as error:
        infer_contract(other)
    assert str(error.value) == (
        f"{other}, line 2: bytes that are not valid utf-8 (invalid start byte); pass --encoding "
        "with the file's real encoding (it is not cp1252 either)"
    )
    with pytest.raises(InferError, match=r"pass --encoding with the file's real encoding$"):
        infer_contract(western, encoding="utf8")  # asked for: no guess


@pure
def test_parquet_types_come_from_the_file(tmp_path: Path) -> None:
    table = pa.table(
        {
            "i8": pa.array([1], pa.int8()),
            "i16": pa.array([1], pa.int16()),
            "i32": pa.array([1], pa.int32()),
            "i64": pa.array([1], pa.int64()),
            "u64": pa.array([2**64 - 1], pa.uint64()),
            "f32": pa.array([1.5], pa.float32()),
            "f64": pa.array([1.5], pa.float64()),
            "dec": pa.array([Decimal("1.20")], pa.decimal128(10, 2)),
            "flag": pa.array([True]),
            "day": pa.array([date(2026, 1, 1)], pa.date32()),
            "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
            "local": pa.array([datetime(2026, 1, 1)], pa.timestamp("ms")),
            "s": pa.array(["x"]),
            "nothing": pa.array([None], pa.null()),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    pq.write_table(table.schema.empty_table(), tmp_path / "no_rows.parquet")
    # A file without rows has its types all the same.
    assert types_of(tmp_path / "t.parquet") == types_of(tmp_path / "no_rows.parquet")
    assert types_of(tmp_path / "t.parquet") == {
        "i8": "smallint",
        "i16": "smallint",
        "i32": "integer",
        "i64": "bigint",
        "u64": "numeric(20,0)",
        "f32": "real",
        "f64": "double precision",
        "dec": "numeric(10,2)",
        "flag": "boolean",
        "day": "date",
        "at": "timestamptz",
        "local": "timestamp",
        "s": "text",
        "nothing": "text",
    }


@pure
def test_parquet_types_the_platform_cannot_load_are_named(tmp_path: Path) -> None:
    """Such a column is left out, its reason in a comment; a file polars cannot read (a
    DECIMAL256) is refused whole."""
    spans = pa.array([[timedelta(seconds=1)]], pa.list_(pa.duration("us")))
    pq.write_table(pa.table({"id": [1], "spans": spans}), tmp_path / "l.parquet")
    inferred = infer_contract(tmp_path / "l.parquet")
    assert [c.name for c in inferred.columns] == ["id"]
    assert (
        "  # left out: Parquet column 'spans' (List(Duration(time_unit='us'))) cannot be loaded: "
        "it holds duration[us] values, which the platform does not load"
    ) in inferred.yaml
    wide = pa.array([Decimal("1")], pa.decimal256(50, 0))
    pq.write_table(pa.table({"big": wide}), tmp_path / "d.parquet")
    with pytest.raises(InferError, match=r"'big' is decimal256\(50, 0\).*decimal128"):
        infer_contract(tmp_path / "d.parquet")


# -- round trips through the real job ----------------------------------------------------------

CSV_HEADER = [
    "Order ID",
    "Customer Name",
    "E-mail",
    "Amount (EUR)",
    "Paid?",
    "Order Date",
    "Created At",
    "Shipped At Local",
    "Tracking UUID",
    "Zip",
    "Quantity",
    "Big Counter",
    "Comment",
]
# What each column must become, and why (casts.py rules + the conservative choices):
CSV_TYPES = {
    "order_id": "integer",  # 1..30
    "customer_name": "text",
    "e_mail": "text",
    "amount_eur": "numeric(12,4)",  # at most 4 integer digits (1117.50) -> 8, scale 2 + 2
    "paid": "boolean",  # true/false
    "order_date": "date",  # one NULL (unquoted empty)
    "created_at": "timestamptz",  # every value has an offset or Z
    "shipped_at_local": "timestamp",  # no offset anywhere
    "tracking_uuid": "uuid",
    "zip": "text",  # leading zeros
    "quantity": "integer",
    "big_counter": "bigint",  # 5 000 000 000 + i
    "comment": "text",  # "N/A" stays data: only needed NULL markers are declared
}


def realistic_csv(path: Path) -> None:
    rows = []
    for i in range(1, 31):
        rows.append(
            [
                str(i),
                f'Müller, "Anna" {i}' if i % 3 == 0 else f"Customer {i}",
                f"c{i}@example.com",
                "NULL" if i == 7 else f"{i * 37.25:.2f}",
                "true" if i % 2 else "false",
                "" if i == 5 else f"2026-01-{i:02d}",
                f"2026-01-{i:02d}T08:{i:02d}:00+01:00" if i % 2 else f"2026-01-{i:02d} 09:00:00Z",
                f"2026-02-{i % 28 + 1:02d} 17:30:{i:02d}",
                str(uuid.UUID(int=i * 7919)),
                f"{i:05d}",
                str(i % 5),
                str(5_000_000_000 + i),
                "N/A" if i % 4 == 0 else f"line {i}\nsecond line" if i == 10 else f"note {i}",
            ]
        )
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)


def expected_value(text: str, kind: str) -> Any:
    """The file's text as the Python value psycopg returns for the column's type."""
    if text in {"", "NULL"}:
        return None
    if kind in {"integer", "bigint"}:
        return int(text)
    if kind.startswith("numeric"):
        return Decimal(text)
    if kind == "boolean":
        return text == "true"
    if kind == "date":
        return date.fromisoformat(text)
    if kind in {"timestamp", "timestamptz"}:
        return datetime.fromisoformat(text)
    if kind == "uuid":
        return uuid.UUID(text)
    return text


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def ingest_inferred(
    path: Path, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance, key: str
) -> tuple[Any, dg.ExecuteInProcessResult]:
    inferred = infer_contract(path, primary_key=[key], landing_dir=landing)
    (contracts_dir / f"{inferred.name}.yaml").write_text(inferred.yaml, encoding="utf-8")
    contract_set = load_contracts(contracts_dir)
    assert contract_set.errors == []
    contract = contract_set.get(inferred.name)
    result = run_file(contracts_dir, contract.name, path.relative_to(landing).as_posix(), instance)
    assert result.success, step_failure(result)
    return contract, result


def assert_clean_load(warehouse: Warehouse, result: dg.ExecuteInProcessResult, rows: int) -> None:
    assert warehouse.value("SELECT count(*) FROM elt.quarantine") == 0
    manifest = warehouse.query(
        "SELECT status, rows_read, rows_quarantined FROM elt.ingestion_manifest"
    )
    assert manifest == [("success", rows, 0)]
    assert check_results(result)["contract_conformance"].passed


@pytest.mark.db
@pytest.mark.dagster
def test_csv_round_trip_every_row_arrives_with_the_file_values(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    path = landing / "shop" / "orders_2026-01-31.csv"
    path.parent.mkdir()
    realistic_csv(path)
    contract, result = ingest_inferred(path, landing, contracts_dir, instance, "Order ID")

    assert {c.name: str(c.type) for c in contract.columns} == CSV_TYPES
    assert contract.source.glob == "shop/*.{csv,csv.gz}"
    assert contract.source.csv.null_values == ["NULL"]
    assert_clean_load(warehouse, result, 30)
    names = list(CSV_TYPES)
    table = f"{contract.target.schema_}.{contract.target.table}"
    assert table == "imported.orders_2026_01_31"
    stored = warehouse.query(f"SELECT {', '.join(names)} FROM {table} ORDER BY order_id")
    with path.open(encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))[1:]
    expected = [
        tuple(expected_value(v, CSV_TYPES[n]) for v, n in zip(r, names, strict=True))
        for r in records
    ]
    assert stored == expected


@pytest.mark.db
@pytest.mark.dagster
def test_parquet_round_trip_every_row_arrives_with_the_file_values(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    count = 25
    start = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
    n = range(count)
    table = pa.table(
        {
            "id": pa.array(range(1, count + 1), pa.int64()),
            "Product Name": pa.array([None if i == 3 else f"P, {i}" for i in n]),
            "price": pa.array([Decimal(f"{i}.{i:02d}") for i in n], pa.decimal128(10, 2)),
            "ratio": pa.array([i / 7 for i in n], pa.float64()),
            "flag": pa.array([i % 2 == 0 for i in n]),
            "day": pa.array([date(2026, 1, 1) + timedelta(days=i) for i in n], pa.date32()),
            "at": pa.array([start + timedelta(minutes=i) for i in n], pa.timestamp("us", tz="UTC")),
            "local": pa.array([datetime(2026, 3, 29, 2, 30)] * count, pa.timestamp("us")),
            "small": pa.array([i - 10 for i in n], pa.int16()),
            "qty": pa.array([None if i == 4 else i for i in n], pa.int32()),
            "nothing": pa.array([None] * count, pa.null()),  # pandas writes all-None so
        }
    )
    path = landing / "products" / "products.parquet"
    path.parent.mkdir()
    pq.write_table(table, path, row_group_size=10)
    contract, result = ingest_inferred(path, landing, contracts_dir, instance, "id")

    types = {c.name: str(c.type) for c in contract.columns}
    assert types == {
        "id": "bigint",
        "product_name": "text",
        "price": "numeric(10,2)",
        "ratio": "double precision",
        "flag": "boolean",
        "day": "date",
        "at": "timestamptz",
        "local": "timestamp",
        "small": "smallint",
        "qty": "integer",
        "nothing": "text",
    }
    assert contract.column("product_name").source_name == "Product Name"
    assert_clean_load(warehouse, result, count)
    stored = warehouse.query(f"SELECT {', '.join(types)} FROM imported.products ORDER BY id")
    expected = [tuple(row.values()) for row in table.to_pylist()]
    assert stored == expected


# -- the command -------------------------------------------------------------------------------


def infer_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env["ELT_LANDING_DIR"] = str(cwd)
    return subprocess.run(
        [str(ELT), "contract", "infer", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_command_prints_a_loadable_contract_and_reports_errors_without_traceback(
    tmp_path: Path,
) -> None:
    write(tmp_path / "sales" / "Sales 2026.csv", "Sale ID,Total\n1,9.99\n2,10.00\n")
    ok = infer_cli(
        "sales/Sales 2026.csv", "--primary-key", "Sale ID", "--name", "sales", cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    document = yaml.safe_load(ok.stdout)
    assert document["name"] == "sales"
    assert document["source"]["glob"] == "sales/*.{csv,csv.gz}"
    assert document["target"] == {
        "schema": "imported",
        "table": "sales",
        "mode": "upsert",
        "primary_key": ["sale_id"],
    }
    assert parse_contract(write(tmp_path / "c" / "sales.yaml", ok.stdout)).columns[1].type == (
        PgType("numeric", 10, 4)  # 2 integer digits -> 6, scale 2 + 2
    )

    missing = infer_cli("nope.csv", cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "elt: error: nope.csv: no such file\n"

    # The flags before the file, as people type them: a key of two columns, one flag each.
    keyed = infer_cli(
        "--primary-key", "Sale ID", "--primary-key", "total", "sales/Sales 2026.csv", cwd=tmp_path
    )
    assert keyed.returncode == 0, keyed.stderr
    assert yaml.safe_load(keyed.stdout)["target"]["primary_key"] == ["sale_id", "total"]

    bad_key = infer_cli("sales/Sales 2026.csv", "--primary-key", "id", cwd=tmp_path)
    assert bad_key.returncode == 2
    assert bad_key.stderr == (
        "elt: error: --primary-key 'id' is not a column of the file (columns: sale_id, total)\n"
    )
