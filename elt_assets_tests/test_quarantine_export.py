"""`elt quarantine export`: a file's rejected rows as CSV for its sender, through the real job.

The file is ingested by the real Dagster job into a real PostgreSQL; the export runs as the real
`elt` command (a subprocess, as the runtime role elt_loader) and its CSV is compared line by line:
the reasons are the platform's own (casts.py `_reason`, schema.py checks, the file-wide unique
check), the fields are the file's values in the file's header order, NULL as an empty unquoted
field and an empty string as "" (PostgreSQL's CSV convention, the same one the reader applies).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster, pytest.mark.slow]

ELT = Path(sys.executable).parent / "elt"
CONTRACT = """
    name: orders
    source: {glob: "orders/*.csv"}
    target: {schema: sales, table: orders, primary_key: [order_id]}
    columns:
      - {name: order_id, type: bigint, nullable: false}
      - {name: status, type: text, checks: {isin: [new, paid]}}
      - {name: amount, type: "numeric(12,2)", checks: {ge: 0}}
      - {name: code, type: text, checks: {unique: true}}
      - {name: note, type: text, source_name: "Customer Note"}
    policy: {max_bad_row_ratio: 0.9}
"""
FILE = "orders/a.csv"
BAD = (
    "order_id,status,amount,code,Customer Note\n"
    "1,paid,10.00,A,ok\n"
    'x2,new,5,B,"has, comma"\n'  # not a bigint
    "3,lost,7,C,\n"  # not in isin; note NULL (unquoted empty)
    '4,paid,-1,D,""\n'  # below ge 0; note an empty string
    '5,new,1.50,E,"say ""hi"""\n'  # code E twice in the file: both rows fail unique
    "6,new,2,E,dup\n"
)
HEADER = "row_number,column_name,check_name,reason,order_id,status,amount,code,Customer Note"
UNIQUE = "code: 'E' appears 2 times in the file (check unique)"
# (row_number,column_name,check_name ; reason as a CSV field ; the file's fields). Rows the unique
# check moves out of staging carry the staged (typed) values: numeric(12,2) holds 2 as 2.00; the
# export writes raw_record as it is.
ROWS = [
    (
        "2,order_id,type:bigint",
        "order_id: 'x2' is not a whole number in bigint range",
        'x2,new,5,B,"has, comma"',
    ),
    ("3,status,isin", "\"status: 'lost' must be one of ['new', 'paid']\"", "3,lost,7,C,"),
    ("4,amount,ge", "amount: '-1' must be >= 0", '4,paid,-1,D,""'),
    ("5,code,unique", UNIQUE, '5,new,1.50,E,"say ""hi"""'),
    ("6,code,unique", UNIQUE, "6,new,2.00,E,dup"),
]
EXPECTED_LINES = [f"{check},{reason},{fields}" for check, reason, fields in ROWS]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def elt(
    *args: str, tmp_path: Path, warehouse: Warehouse | None = None, contracts: Path
) -> subprocess.CompletedProcess[str]:
    """Run the real `elt` with a clean environment pointed at this test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env |= {
        "ELT_STATE_DIR": str(tmp_path / "state"),
        "ELT_CONTRACTS_DIR": str(contracts),
        "ELT_LANDING_DIR": str(tmp_path / "landing"),
        "ELT_LOG_FORMAT": "text",
    }
    if warehouse is not None:
        env |= {"ELT_DATABASE_URL": warehouse.loader_url}
    return subprocess.run(
        [str(ELT), "quarantine", "export", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def ingest(contracts_dir: Path, instance: dg.DagsterInstance) -> None:
    result = run_file(contracts_dir, "orders", FILE, instance)
    assert result.success, step_failure(result)


@pytest.fixture
def quarantined(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> Path:
    write_contract(contracts_dir, CONTRACT)
    (landing / "orders").mkdir()
    (landing / FILE).write_text(BAD, encoding="utf-8")
    ingest(contracts_dir, instance)
    assert warehouse.value("SELECT count(*) FROM elt.quarantine WHERE resolved_at IS NULL") == 5
    return contracts_dir


def test_export_writes_every_open_row_with_its_reason_and_the_file_fields(
    warehouse: Warehouse, quarantined: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rejected.csv"
    result = elt(
        "--dataset", "orders", "--file", FILE, "--output", str(out),
        tmp_path=tmp_path, warehouse=warehouse, contracts=quarantined,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"5 rows written to {out}" in result.stderr
    assert not out.with_name("rejected.csv.part").exists()
    text = out.read_text(encoding="utf-8")
    assert text.splitlines() == [HEADER, *EXPECTED_LINES]
    # A plain CSV reader sees the same fields, the quoted comma and quotes included.
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["row_number"] for r in rows] == ["2", "3", "4", "5", "6"]
    assert rows[0]["Customer Note"] == "has, comma"
    assert rows[3]["Customer Note"] == 'say "hi"'


def test_a_field_the_contract_no_longer_has_comes_last(
    warehouse: Warehouse, quarantined: Path, tmp_path: Path
) -> None:
    """Dropping `code` from the contract leaves it in raw_record: it moves to the end."""
    contract = (quarantined / "orders.yaml").read_text(encoding="utf-8")
    without_code = re.sub(r"\n  - \{name: code[^\n]*", "", contract)
    (quarantined / "orders.yaml").write_text(without_code, encoding="utf-8")
    result = elt(
        "--dataset", "orders", "--file", FILE,
        tmp_path=tmp_path, warehouse=warehouse, contracts=quarantined,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "row_number,column_name,check_name,reason,order_id,status,amount,Customer Note,code"
    )
    assert lines[1].endswith('x2,new,5,"has, comma",B')
    assert lines[5].endswith("6,new,2.00,dup,E")


def test_fixed_file_leaves_nothing_open_and_all_shows_the_resolved_rows(
    warehouse: Warehouse,
    quarantined: Path,
    landing: Path,
    tmp_path: Path,
    instance: dg.DagsterInstance,
) -> None:
    fixed = "order_id,status,amount,code,Customer Note\n" + "".join(
        f"{i},new,{i}.00,C{i},fine\n" for i in range(1, 7)
    )
    (landing / FILE).write_text(fixed, encoding="utf-8")
    ingest(quarantined, instance)

    open_rows = elt(
        "--dataset", "orders", "--file", FILE,
        tmp_path=tmp_path, warehouse=warehouse, contracts=quarantined,
    )  # fmt: skip
    assert open_rows.returncode == 0, open_rows.stderr
    assert open_rows.stdout.splitlines() == [HEADER]
    assert "0 rows written to stdout" in open_rows.stderr

    every = elt(
        "--dataset", "orders", "--all",
        tmp_path=tmp_path, warehouse=warehouse, contracts=quarantined,
    )  # fmt: skip
    assert every.returncode == 0, every.stderr
    assert "5 rows written to stdout (open and resolved quarantine rows of dataset orders)" in (
        every.stderr
    )
    lines = every.stdout.splitlines()
    # Without --file a leading file column says where each row came from.
    assert lines[0] == (
        "file,row_number,column_name,check_name,reason,resolved_at,"
        "order_id,status,amount,code,Customer Note"
    )
    resolved_at = warehouse.value(
        "SELECT DISTINCT to_char(resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
        "FROM elt.quarantine"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", resolved_at)
    assert lines[1:] == [
        f"{FILE},{check},{reason},{resolved_at},{fields}" for check, reason, fields in ROWS
    ]


def test_unknown_dataset_and_unknown_file_are_clear_errors(
    warehouse: Warehouse, quarantined: Path, tmp_path: Path
) -> None:
    unknown = elt(
        "--dataset", "invoices", tmp_path=tmp_path, warehouse=warehouse, contracts=quarantined
    )  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert f"elt: error: no dataset named 'invoices' in {quarantined} (known: orders)" in (
        unknown.stderr
    )
    assert "Traceback" not in unknown.stderr

    no_file = elt(
        "--dataset", "orders", "--file", "orders/b.csv",
        tmp_path=tmp_path, warehouse=warehouse, contracts=quarantined,
    )  # fmt: skip
    assert no_file.returncode == 2
    assert "dataset 'orders' has no file 'orders/b.csv'" in no_file.stderr
    assert f"(files: {FILE})" in no_file.stderr
    assert "Traceback" not in no_file.stderr
