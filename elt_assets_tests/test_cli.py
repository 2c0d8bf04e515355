"""The `elt` command as users run it: a subprocess, its exit status, stdout and stderr.

Every run gets an explicit environment (no ELT_* variable inherited from the caller) and a
temporary ELT_STATE_DIR, so nothing touches the repository's .elt/. Database tests point
ELT_DATABASE_URL / ELT_OWNER_DATABASE_URL at the per-test `warehouse`, so no embedded server starts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from elt_assets.postgres.embedded import free_port
from elt_assets_tests.conftest import EXAMPLES, Warehouse, copy_examples, write_contract

pytestmark = [pytest.mark.slow]

ELT = Path(sys.executable).parent / "elt"
TIMEOUT_SECONDS = 240
SAMPLE_FILES = {
    ("orders", "orders/orders_2026-11-20.csv"),
    ("orders", "orders/orders_2026-11-21.csv.gz"),
    ("customers", "customers/customers_2026-11.parquet"),
    ("events", "events/2026/11/21/events 09h.csv"),
    ("events", "events/2026/11/21/events 10h.csv"),
}
REPORT_KEYS = {
    "dataset",
    "file",
    "status",
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_quarantined",
    "error",
}
DRY_RUN_KEYS = {"schema_change", "quarantine_examples"}
ORDER_STATUSES = {"new", "paid", "shipped", "cancelled"}  # the isin check of orders.yaml
UNREADABLE = "orders/orders_2026-11-22.csv"
# Line 3 (the second record) opens a quote that is never closed: the file cannot be read.
UNREADABLE_TEXT = (
    "order_id,customer_id,status,amount,currency,ordered_at,note,updated_at\n"
    "1,2,new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n"
    '2,2,"new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n'
)


def elt(
    *args: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `elt ARGS` with a clean environment: only the ELT_* variables given in `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    if os.environ.get("ELT_PG_BIN_DIR"):
        base["ELT_PG_BIN_DIR"] = os.environ["ELT_PG_BIN_DIR"]
    state = tmp_path / "state"
    full = {**base, "ELT_STATE_DIR": str(state), "ELT_LOG_FORMAT": "text", **(env or {})}
    return subprocess.run(
        [str(ELT), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def report(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The --json document's entries by file, checked to be exactly one JSON document."""
    try:
        document = json.loads(result.stdout)
    except ValueError as error:
        raise AssertionError(
            f"stdout is not one JSON document ({error})\n{explain(result)}"
        ) from None
    assert set(document) == {"files"}, explain(result)
    for entry in document["files"]:  # a dry run may add what the load would change, and examples
        assert REPORT_KEYS <= set(entry) <= REPORT_KEYS | DRY_RUN_KEYS, entry
    by_file = {entry["file"]: entry for entry in document["files"]}
    assert len(by_file) == len(document["files"]), "a file is reported twice"
    return by_file


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the example landing zone and contracts."""
    landing, contracts = tmp_path / "landing", tmp_path / "contracts"
    landing.mkdir()
    contracts.mkdir()
    copy_examples(landing, contracts)
    return landing, contracts


def dirs_env(dirs: tuple[Path, Path]) -> dict[str, str]:
    return {"ELT_LANDING_DIR": str(dirs[0]), "ELT_CONTRACTS_DIR": str(dirs[1])}


def db_env(warehouse: Warehouse, dirs: tuple[Path, Path]) -> dict[str, str]:
    return {
        **dirs_env(dirs),
        "ELT_DATABASE_URL": warehouse.loader_url,
        "ELT_OWNER_DATABASE_URL": warehouse.owner_url,
    }


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- what the example files should give, derived from the files themselves ----------------------


def csv_rows(path: Path) -> list[dict[str, str]]:
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def good_order_ids(rows: list[dict[str, str]]) -> set[int]:
    """Ids of the rows the orders contract accepts (isin on status, amount >= 0)."""
    return {
        int(row["order_id"])
        for row in rows
        if row["status"] in ORDER_STATUSES and float(row["amount"]) >= 0
    }


def expected_counts() -> dict[str, tuple[int, int, int, int, int]]:
    """file -> (read, inserted, updated, unchanged, quarantined) for a first load in order."""
    landing = EXAMPLES / "landing"
    first = csv_rows(landing / "orders/orders_2026-11-20.csv")
    second = csv_rows(landing / "orders/orders_2026-11-21.csv.gz")
    good_first, good_second = good_order_ids(first), good_order_ids(second)
    ids_first = {int(r["order_id"]) for r in first}
    ids_second = {int(r["order_id"]) for r in second}
    assert len(ids_first & ids_second) == 50  # the generator's promise: 50 orders change
    customers = pl.read_parquet(landing / "customers/customers_2026-11.parquet")
    expected = {
        "orders/orders_2026-11-20.csv": (
            len(first),
            len(good_first),
            0,
            0,
            len(first) - len(good_first),
        ),
        # The second export is a day later (newer updated_at): every accepted row that the first
        # file also loaded is an update, the rest are inserts.
        "orders/orders_2026-11-21.csv.gz": (
            len(second),
            len(good_second - good_first),
            len(good_second & good_first),
            0,
            len(second) - len(good_second),
        ),
        "customers/customers_2026-11.parquet": (customers.height, customers.height, 0, 0, 0),
    }
    for hour in ("09", "10"):
        rows = csv_rows(landing / f"events/2026/11/21/events {hour}h.csv")
        expected[f"events/2026/11/21/events {hour}h.csv"] = (len(rows), len(rows), 0, 0, 0)
    return expected


def counts(entry: dict[str, Any]) -> tuple[int, int, int, int, int]:
    keys = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_quarantined")
    return tuple(entry[k] for k in keys)  # type: ignore[return-value]


# -- help ------------------------------------------------------------------------------------


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = elt("--help", tmp_path=tmp_path)
    assert result.returncode == 0, explain(result)
    for command in ("dev", "ingest", "db", "check-defs", "worker", "exec"):
        assert command in result.stdout
    assert "Exit status" in result.stdout


@pytest.mark.parametrize(("chosen", "used"), [(None, "jemalloc"), ("system", "system")])
def test_commands_that_read_files_use_arrows_lean_pool_unless_the_user_chose_one(
    tmp_path: Path, chosen: str | None, used: str
) -> None:
    """jemalloc hands memory back (a 1M-row CSV peaked 60 MB lower); the user's choice wins."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    script = (
        "import os, pyarrow as pa\n"
        "from elt_assets.cli.command import lean_arrow_memory\n"
        "lean_arrow_memory()\n"
        "print(pa.default_memory_pool().backend_name, os.environ['ARROW_DEFAULT_MEMORY_POOL'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [used, used]  # and the Dagster processes it starts inherit it
    assert result.stderr == ""


def test_ingest_help_lists_its_options(tmp_path: Path) -> None:
    result = elt("ingest", "--help", tmp_path=tmp_path)
    assert result.returncode == 0, explain(result)
    for option in ("--landing", "--contracts", "--dataset", "--json", "--dry-run"):
        assert option in result.stdout
    assert "--retry-failed" in result.stdout and "--file PATH" in result.stdout


# -- configuration errors ---------------------------------------------------------------------


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, explain(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, explain(result)
    assert lines[0].startswith("elt: configuration error: "), explain(result)
    return lines[0]


def test_bad_log_level_is_a_configuration_error(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    result = elt("ingest", tmp_path=tmp_path, env={**dirs_env(dirs), "ELT_LOG_LEVEL": "LOUD"})
    message = one_error_line(result)
    assert "ELT_LOG_LEVEL='LOUD'" in message
    assert "use DEBUG, INFO, WARNING or ERROR" in message


def test_missing_landing_dir_is_a_configuration_error(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    nowhere = tmp_path / "no-such-landing"
    env = {**dirs_env(dirs), "ELT_LANDING_DIR": str(nowhere)}
    message = one_error_line(elt("ingest", tmp_path=tmp_path, env=env))
    assert f"ELT_LANDING_DIR points to {nowhere}, which is not a directory" in message
    assert "create it or fix it" in message


def test_worker_says_which_instance_and_broker_it_needs(tmp_path: Path) -> None:
    message = one_error_line(elt("worker", tmp_path=tmp_path))
    assert "DAGSTER_HOME is not set" in message and "deploy/celery/dagster.yaml" in message
    home = {"DAGSTER_HOME": str(tmp_path)}
    message = one_error_line(elt("worker", tmp_path=tmp_path, env=home))
    assert "set ELT_DAGSTER_DATABASE_URL (or the two Celery URLs)" in message
    message = one_error_line(elt("worker", "--concurrency", "0", tmp_path=tmp_path, env=home))
    assert "--concurrency must be at least 1" in message


def test_exec_names_a_command_that_is_not_installed(tmp_path: Path) -> None:
    message = one_error_line(elt("exec", "--", "no-such-command-here", tmp_path=tmp_path))
    assert "'no-such-command-here' was not found on PATH" in message


def test_malformed_database_url_is_named_but_never_shown(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    value = "mysql://loader:Hunter2-Not-Shown@db.example:3306/shop"
    result = elt("ingest", tmp_path=tmp_path, env={**dirs_env(dirs), "ELT_DATABASE_URL": value})
    message = one_error_line(result)
    assert "ELT_DATABASE_URL must be a URL like postgresql://" in message
    assert "Hunter2-Not-Shown" not in result.stderr + result.stdout
    assert "db.example" not in result.stderr + result.stdout


def test_database_url_file_that_does_not_exist(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    missing = tmp_path / "secrets" / "database_url"
    env = {**dirs_env(dirs), "ELT_DATABASE_URL_FILE": str(missing)}
    message = one_error_line(elt("ingest", tmp_path=tmp_path, env=env))
    assert f"ELT_DATABASE_URL_FILE points to '{missing}'" in message
    assert "mount the secret file there or fix the path" in message


def test_unreachable_database_names_setting_and_address_not_password(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    port = closed_port()
    password = "Unreachable-Pw-4711"
    url = f"postgresql://elt_loader:{password}@127.0.0.1:{port}/warehouse"
    result = elt("ingest", tmp_path=tmp_path, env={**dirs_env(dirs), "ELT_DATABASE_URL": url})
    assert result.returncode == 2, explain(result)
    assert "ELT_DATABASE_URL" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert password not in result.stderr + result.stdout
    assert not (tmp_path / "state" / "postgres").exists()  # no embedded server was started


# -- ingest -----------------------------------------------------------------------------------


@pytest.mark.db
def test_ingest_loads_the_samples_then_a_rerun_loads_nothing_new(
    tmp_path: Path, warehouse: Warehouse, dirs: tuple[Path, Path]
) -> None:
    env = db_env(warehouse, dirs)
    # --file: only the files named (by their landing path, or a path inside the directory).
    chosen = ("orders/orders_2026-11-20.csv", "events/2026/11/21/events 09h.csv")
    only = elt(
        "ingest",
        "--json",
        "--file",
        chosen[0],
        "--file",
        str(dirs[0] / chosen[1]),
        tmp_path=tmp_path,
        env=env,
    )
    assert only.returncode == 0, explain(only)
    assert {file: e["status"] for file, e in report(only).items()} == dict.fromkeys(
        chosen, "success"
    )
    assert sorted(r[0] for r in warehouse.query("SELECT file FROM elt.ingestion_manifest")) == (
        sorted(chosen)
    )

    first = elt("ingest", "--json", tmp_path=tmp_path, env=env)
    assert first.returncode == 0, explain(first)
    entries = report(first)
    assert {(e["dataset"], e["file"]) for e in entries.values()} == SAMPLE_FILES
    assert {file: e["status"] for file, e in entries.items()} == dict.fromkeys(entries, "success")
    assert all(e["error"] is None for e in entries.values())
    expected = expected_counts()
    assert {file: counts(e) for file, e in entries.items()} == expected
    orders = (
        expected["orders/orders_2026-11-20.csv"][1] + expected["orders/orders_2026-11-21.csv.gz"][1]
    )
    assert warehouse.value("SELECT count(*) FROM sales.orders") == orders
    events = sum(c[1] for file, c in expected.items() if file.startswith("events/"))
    assert warehouse.value("SELECT count(*) FROM web.events") == events
    assert not (tmp_path / "state" / "postgres").exists()  # the warehouse fixture was used
    manifest_rows = warehouse.value("SELECT count(*) FROM elt.ingestion_manifest")
    assert manifest_rows == 5

    second = elt("ingest", "--json", tmp_path=tmp_path, env=env)
    assert second.returncode == 0, explain(second)
    again = report(second)
    assert {file: e["status"] for file, e in again.items()} == dict.fromkeys(entries, "success")
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == manifest_rows
    assert warehouse.value("SELECT count(*) FROM sales.orders") == orders


@pytest.mark.db
def test_ingest_reports_an_unreadable_csv_as_failed_with_file_and_line(
    tmp_path: Path, warehouse: Warehouse, dirs: tuple[Path, Path]
) -> None:
    (dirs[0] / UNREADABLE).write_text(UNREADABLE_TEXT)
    result = elt(
        "ingest", "--json", "--dataset", "orders", tmp_path=tmp_path, env=db_env(warehouse, dirs)
    )
    assert result.returncode == 1, explain(result)
    entries = report(result)
    assert set(entries) == {
        "orders/orders_2026-11-20.csv",
        "orders/orders_2026-11-21.csv.gz",
        UNREADABLE,
    }
    broken = entries[UNREADABLE]
    assert broken["status"] == "failed", broken
    assert f"{UNREADABLE}, line 3" in broken["error"], broken
    assert entries["orders/orders_2026-11-20.csv"]["status"] == "success"
    loaded = warehouse.value("SELECT count(*) FROM sales.orders WHERE order_id IN (1, 2)")
    assert loaded == 0


def test_a_file_not_in_the_landing_zone_or_of_no_dataset_exits_2_naming_it(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    (dirs[0] / "stray.csv").write_text("a\n1\n")
    cases = {
        "orders/nope.csv": "--file orders/nope.csv: not in the landing zone",
        "../outside.csv": "is not a plain path inside the landing directory",
        "stray.csv": "--file stray.csv: matches no selected dataset's source.glob (customers:",
    }
    for given, message in cases.items():
        result = elt("ingest", "--file", given, tmp_path=tmp_path, env=dirs_env(dirs))
        assert result.returncode == 2, explain(result)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("elt: error: ") and message in line, explain(result)
        assert result.stdout == ""


def test_unknown_dataset_exits_2_and_lists_the_known_ones(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    result = elt("ingest", "--dataset", "nope", tmp_path=tmp_path, env=dirs_env(dirs))
    assert result.returncode == 2, explain(result)
    assert "no dataset named 'nope' (known: customers, events, orders)" in result.stderr
    assert result.stdout == ""


@pytest.mark.db
def test_dry_run_writes_nothing_and_reports_what_would_happen(
    tmp_path: Path, warehouse: Warehouse, dirs: tuple[Path, Path]
) -> None:
    (dirs[0] / UNREADABLE).write_text(UNREADABLE_TEXT)
    result = elt("ingest", "--json", "--dry-run", tmp_path=tmp_path, env=db_env(warehouse, dirs))
    assert result.returncode == 1, explain(result)
    entries = report(result)
    assert set(entries) == {file for _, file in SAMPLE_FILES} | {UNREADABLE}
    assert entries[UNREADABLE]["status"] == "would_fail"
    assert f"{UNREADABLE}, line 3" in entries[UNREADABLE]["error"]
    expected = expected_counts()
    for file, (read, _, _, _, quarantined) in expected.items():
        entry = entries[file]
        assert entry["status"] == "would_load", entry
        assert (entry["rows_read"], entry["rows_quarantined"]) == (read, quarantined), entry
        # Nothing goes to elt.quarantine: the first rejected rows are shown instead.
        examples = entry.get("quarantine_examples", [])
        assert len(examples) == min(quarantined, 5), entry
        assert all(example.startswith("row ") for example in examples), examples
    assert any(entry.get("quarantine_examples") for entry in entries.values())
    text = elt("ingest", "--dry-run", tmp_path=tmp_path, env=db_env(warehouse, dirs))
    assert text.returncode == 1, explain(text)
    assert "None" not in text.stdout and "elt.quarantine" not in text.stdout, text.stdout
    assert "            quarantined row " in text.stdout, text.stdout
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == 0
    assert warehouse.value("SELECT count(*) FROM elt.landing_files") == 0
    tables = warehouse.value(
        "SELECT count(*) FROM pg_tables WHERE schemaname IN ('sales', 'crm', 'web')"
    )
    assert tables == 0
    assert not (tmp_path / "state" / "postgres").exists()


GADGETS = """
    name: gadgets
    source: {glob: "gadgets/*.csv"}
    target: {schema: shop, table: gadgets, primary_key: [id]}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: label, type: text}
    policy: {schema_drift: %s}
"""


@pytest.mark.db
def test_retry_failed_reruns_a_failed_file_once_its_contract_is_fixed(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    landing, contracts = tmp_path / "landing", tmp_path / "contracts"
    (landing / "gadgets").mkdir(parents=True)
    contracts.mkdir()
    write_contract(contracts, GADGETS % "strict")
    (landing / "gadgets/g.csv").write_text("id,label,colour\n1,bolt,red\n2,nut,blue\n")
    env = db_env(warehouse, (landing, contracts))

    failed = elt("ingest", "--json", tmp_path=tmp_path, env=env)
    assert failed.returncode == 1, explain(failed)
    entry = report(failed)["gadgets/g.csv"]
    assert entry["status"] == "failed" and "colour" in entry["error"], entry

    write_contract(contracts, GADGETS % "tolerant")
    unchanged = elt("ingest", "--json", tmp_path=tmp_path, env=env)
    assert unchanged.returncode == 1, explain(unchanged)
    assert report(unchanged)["gadgets/g.csv"]["status"] == "failed"  # not retried by itself
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == 1

    retried = elt("ingest", "--json", "--retry-failed", tmp_path=tmp_path, env=env)
    assert retried.returncode == 0, explain(retried)
    entry = report(retried)["gadgets/g.csv"]
    assert entry["status"] == "success", entry
    assert (entry["rows_read"], entry["rows_inserted"], entry["error"]) == (2, 2, None)
    assert warehouse.query("SELECT id, label FROM shop.gadgets ORDER BY id") == [
        (1, "bolt"),
        (2, "nut"),
    ]


@pytest.mark.slow
def test_db_init_without_a_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    """No URL configured: `elt db init` names the settings (and --embedded) and exits 2; it does
    not quietly create a new embedded cluster in the user's directory."""
    result = elt("db", "init", tmp_path=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "no database to set up: set ELT_OWNER_DATABASE_URL (or ELT_DATABASE_URL)" in result.stderr
    )
    assert "--embedded" in result.stderr
    assert not (tmp_path / "state" / "postgres").exists()


@pytest.mark.slow
def test_db_init_with_only_the_owner_url_sets_up_that_database(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """ELT_OWNER_DATABASE_URL alone is enough: set-up runs as the owner, nothing embedded."""
    result = elt(
        "db", "init", tmp_path=tmp_path, env={"ELT_OWNER_DATABASE_URL": warehouse.owner_url}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "migrations applied" in result.stdout
    assert not (tmp_path / "state" / "postgres").exists()
    assert warehouse.value("SELECT count(*) FROM elt.schema_migrations") >= 4


@pytest.mark.slow
def test_db_init_embedded_sets_up_the_embedded_server(tmp_path: Path) -> None:
    env = {"ELT_EMBEDDED_PG_PORT": str(free_port())}
    try:
        result = elt("db", "init", "--embedded", tmp_path=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "migrations applied: 0001_platform" in result.stdout
        assert (tmp_path / "state" / "postgres").is_dir()
    finally:
        elt("db", "stop", tmp_path=tmp_path, env=env)
