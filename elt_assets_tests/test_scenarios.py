"""Ingestion scenarios through the real job: changed files, versions, duplicates, append mode,
several datasets, quarantine replay, file-wide unique checks, incompatible targets, schema drift
and the staging slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import check_results, materialization_metadata, run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

ORDERS = """
    name: orders
    source: {glob: "orders/*"}
    target: {schema: sales, table: orders, primary_key: [order_id], version_column: updated_at}
    columns:
      - {name: order_id, type: bigint, nullable: false}
      - {name: status, type: text, checks: {isin: [new, paid, shipped]}}
      - {name: amount, type: "numeric(12,2)", checks: {ge: 0}}
      - {name: updated_at, type: timestamptz}
    policy: {max_bad_row_ratio: 0.5, duplicate_keys: %s}
"""
HEADER = "order_id,status,amount,updated_at\n"


def orders_contract(duplicate_keys: str = "last") -> str:
    return ORDERS % duplicate_keys


def land(landing: Path, file: str, text: str) -> None:
    path = landing / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def orders_table(warehouse: Warehouse) -> list[tuple[object, ...]]:
    return warehouse.query(
        "SELECT order_id, status, amount::text, updated_at::text FROM sales.orders ORDER BY 1"
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def load(
    contracts_dir: Path, dataset: str, file: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    result = run_file(contracts_dir, dataset, file, instance)
    assert result.success, step_failure(result)
    return result


def target_counts(result: dg.ExecuteInProcessResult, asset: str) -> tuple[int, int, int]:
    meta = materialization_metadata(result, asset)
    return meta["rows_inserted"], meta["rows_updated"], meta["rows_unchanged"]


def test_changed_file_at_same_path_upserts_new_values(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, orders_contract())
    land(
        landing,
        "orders/a.csv",
        HEADER + "1,new,10,2026-01-01 10:00:00+00\n2,new,20,2026-01-01 10:00:00+00\n",
    )
    load(contracts_dir, "orders", "orders/a.csv", instance)
    land(
        landing,
        "orders/a.csv",
        HEADER
        + "1,paid,11.5,2026-01-02 10:00:00+00\n2,new,20,2026-01-01 10:00:00+00\n"
        + "3,new,1,2026-01-02 10:00:00+00\n",
    )
    second = load(contracts_dir, "orders", "orders/a.csv", instance)
    assert target_counts(second, "sales/orders") == (1, 1, 1)
    assert orders_table(warehouse) == [
        (1, "paid", "11.50", "2026-01-02 10:00:00+00"),
        (2, "new", "20.00", "2026-01-01 10:00:00+00"),
        (3, "new", "1.00", "2026-01-02 10:00:00+00"),
    ]
    manifest = warehouse.query(
        "SELECT status, rows_inserted, rows_updated, rows_unchanged FROM elt.ingestion_manifest"
        " WHERE file = 'orders/a.csv' ORDER BY id"
    )
    assert manifest == [("success", 2, 0, 0), ("success", 1, 1, 1)]


def test_older_version_never_overwrites_a_newer_row(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, orders_contract())
    # Within one file: the highest version wins wherever it is; a tie goes to the last row.
    land(
        landing,
        "orders/day2.csv",
        HEADER
        + "5,new,1,2026-01-02 10:00:00+00\n"
        + "5,shipped,3,2026-01-02 12:00:00+00\n"
        + "5,paid,2,2026-01-02 11:00:00+00\n"
        + "6,new,1,2026-01-02 10:00:00+00\n"
        + "6,paid,2,2026-01-02 10:00:00+00\n",
    )
    day2 = load(contracts_dir, "orders", "orders/day2.csv", instance)
    assert materialization_metadata(day2, "sales/orders")["rows_deduplicated"] == 3
    expected = [
        (5, "shipped", "3.00", "2026-01-02 12:00:00+00"),
        (6, "paid", "2.00", "2026-01-02 10:00:00+00"),
    ]
    assert orders_table(warehouse) == expected
    # A late file with older versions of both keys changes nothing.
    land(
        landing,
        "orders/day1.csv",
        HEADER + "5,new,9,2026-01-01 09:00:00+00\n6,new,9,2026-01-02 09:59:59+00\n",
    )
    day1 = load(contracts_dir, "orders", "orders/day1.csv", instance)
    assert target_counts(day1, "sales/orders") == (0, 0, 2)
    assert orders_table(warehouse) == expected


def test_duplicate_keys_last_keeps_the_last_occurrence(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(
        contracts_dir,
        orders_contract().replace(", version_column: updated_at", ""),
    )
    land(
        landing,
        "orders/a.csv",
        HEADER
        + "7,new,1,2026-01-03 00:00:00+00\n"
        + "8,new,5,2026-01-01 00:00:00+00\n"
        + "7,paid,2,2026-01-01 00:00:00+00\n",
    )
    result = load(contracts_dir, "orders", "orders/a.csv", instance)
    assert orders_table(warehouse) == [
        (7, "paid", "2.00", "2026-01-01 00:00:00+00"),  # last in the file, though older
        (8, "new", "5.00", "2026-01-01 00:00:00+00"),
    ]
    assert materialization_metadata(result, "sales/orders")["rows_deduplicated"] == 1
    assert check_results(result)["contract_conformance"].metadata["duplicate_keys"].value == 1


def test_keys_in_order_skip_the_duplicate_query_but_a_repeat_across_batches_is_found(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys that only increase prove there is no duplicate; the proof must span batches."""
    monkeypatch.setenv("ELT_BATCH_ROWS", "1000")
    write_contract(contracts_dir, orders_contract().replace(", version_column: updated_at", ""))
    row = "{},new,1,2026-01-01 00:00:00+00\n"
    land(landing, "orders/sorted.csv", HEADER + "".join(row.format(k) for k in range(1, 2501)))
    result = load(contracts_dir, "orders", "orders/sorted.csv", instance)
    assert check_results(result)["contract_conformance"].metadata["duplicate_keys"].value == 0
    assert materialization_metadata(result, "sales/orders")["rows_inserted"] == 2500
    # Each batch of 1,000 rows increases on its own; the second starts with the first's last key.
    keys = [*range(3001, 4001), *range(4000, 5000)]
    land(landing, "orders/seam.csv", HEADER + "".join(row.format(k) for k in keys))
    result = load(contracts_dir, "orders", "orders/seam.csv", instance)
    assert check_results(result)["contract_conformance"].metadata["duplicate_keys"].value == 1
    assert materialization_metadata(result, "sales/orders")["rows_deduplicated"] == 1
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 2500 + 1999


def test_loading_into_a_non_empty_table_does_not_wait_for_autovacuum(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    """Autovacuum holds SHARE UPDATE EXCLUSIVE on a table it works on (often right after a big
    load) and gives way only after deadlock_timeout; the upsert's ROW EXCLUSIVE does not wait for
    it. Only a first load into an empty table locks out other writers."""
    write_contract(contracts_dir, orders_contract())
    row = "{},new,1,2026-01-01 00:00:00+00\n"
    land(landing, "orders/a.csv", HEADER + "".join(row.format(k) for k in range(1, 101)))
    load(contracts_dir, "orders", "orders/a.csv", instance)
    warehouse.query(f"ALTER DATABASE \"{warehouse.name}\" SET lock_timeout = '5s'")
    land(landing, "orders/b.csv", HEADER + "".join(row.format(k) for k in range(50, 201)))
    with psycopg.connect(warehouse.superuser_url) as vacuum_like:
        vacuum_like.execute("LOCK TABLE sales.orders IN SHARE UPDATE EXCLUSIVE MODE")
        result = run_file(contracts_dir, "orders", "orders/b.csv", instance)
        vacuum_like.rollback()
    assert result.success, step_failure(result)
    assert target_counts(result, "sales/orders") == (100, 0, 51)
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 200


def test_duplicate_keys_fail_rejects_the_file_and_names_the_key(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, orders_contract("fail"))
    land(landing, "orders/a.csv", HEADER + "4242,new,1,2026-01-01 00:00:00+00\n")
    load(contracts_dir, "orders", "orders/a.csv", instance)
    before = orders_table(warehouse)
    land(
        landing,
        "orders/b.csv",
        HEADER
        + "4242,paid,2,2026-01-02 00:00:00+00\n"
        + "9,new,1,2026-01-02 00:00:00+00\n"
        + "4242,shipped,3,2026-01-03 00:00:00+00\n",
    )
    result = run_file(contracts_dir, "orders", "orders/b.csv", instance)
    assert not result.success
    conformance = check_results(result)["contract_conformance"]
    assert conformance.passed is False
    assert "1 primary key occurs more than once (2 rows; e.g. 4242)" in conformance.description
    assert "duplicate_keys: fail" in conformance.description
    assert orders_table(warehouse) == before
    status, error = warehouse.query(
        "SELECT status, error FROM elt.ingestion_manifest WHERE file = 'orders/b.csv'"
    )[0]
    assert status == "failed" and error == conformance.description


APPEND = """
    name: clicks
    source: {glob: "clicks/*.csv"}
    target: {schema: web, table: clicks, mode: append}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: page, type: text}
"""


def clicks_table(warehouse: Warehouse) -> list[tuple[object, ...]]:
    return warehouse.query("SELECT _elt_file, id, page FROM web.clicks ORDER BY 1, 2")


def test_append_mode_loads_each_file_once_and_replaces_a_changed_file(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, APPEND)
    land(landing, "clicks/a.csv", "id,page\n1,/home\n1,/home\n2,/cart\n")
    land(landing, "clicks/b.csv", "id,page\n3,/about\n")
    load(contracts_dir, "clicks", "clicks/a.csv", instance)
    load(contracts_dir, "clicks", "clicks/b.csv", instance)
    once = clicks_table(warehouse)
    assert once == [
        ("clicks/a.csv", 1, "/home"),  # append keeps every row, repeated ones too
        ("clicks/a.csv", 1, "/home"),
        ("clicks/a.csv", 2, "/cart"),
        ("clicks/b.csv", 3, "/about"),
    ]
    again = load(contracts_dir, "clicks", "clicks/a.csv", instance)
    assert clicks_table(warehouse) == once
    assert materialization_metadata(again, "web/clicks")["rows_replaced"] == 3
    land(landing, "clicks/a.csv", "id,page\n4,/checkout\n")
    changed = load(contracts_dir, "clicks", "clicks/a.csv", instance)
    assert clicks_table(warehouse) == [
        ("clicks/a.csv", 4, "/checkout"),
        ("clicks/b.csv", 3, "/about"),
    ]
    meta = materialization_metadata(changed, "web/clicks")
    assert (meta["rows_replaced"], meta["rows_inserted"]) == (3, 1)


def test_two_datasets_write_into_two_schemas(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, orders_contract())
    write_contract(contracts_dir, APPEND)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01 00:00:00+00\n")
    land(landing, "clicks/a.csv", "id,page\n1,/home\n")
    load(contracts_dir, "orders", "orders/a.csv", instance)
    load(contracts_dir, "clicks", "clicks/a.csv", instance)
    tables = warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema IN ('sales', 'web') ORDER BY 1"
    )
    assert tables == [("sales", "orders"), ("web", "clicks")]
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 1
    assert warehouse.query("SELECT id, page FROM web.clicks") == [(1, "/home")]
    assert warehouse.query(
        "SELECT dataset, status FROM elt.ingestion_manifest ORDER BY dataset"
    ) == [("clicks", "success"), ("orders", "success")]


def test_quarantine_replay_after_relaxing_the_contract(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(
        contracts_dir, orders_contract().replace("max_bad_row_ratio: 0.5", "bad_rows: fail")
    )
    land(
        landing,
        "orders/a.csv",
        HEADER
        + "1,new,1,2026-01-01 00:00:00+00\n"
        + "2,lost,2,2026-01-01 00:00:00+00\n"
        + "3,new,-3,2026-01-01 00:00:00+00\n",
    )
    failed = run_file(contracts_dir, "orders", "orders/a.csv", instance)
    assert not failed.success
    assert "2 of 3 rows failed validation and the contract says bad_rows: fail" in (
        check_results(failed)["contract_conformance"].description
    )
    open_rows = "SELECT row_number, check_name FROM elt.quarantine WHERE resolved_at IS NULL"
    assert warehouse.query(open_rows + " ORDER BY 1") == [(2, "isin"), (3, "ge")]

    # Relax: 'lost' becomes a valid status; the negative amount is still quarantined.
    write_contract(contracts_dir, orders_contract().replace("shipped]", "shipped, lost]"))
    replay = load(contracts_dir, "orders", "orders/a.csv", instance)
    assert orders_table(warehouse) == [
        (1, "new", "1.00", "2026-01-01 00:00:00+00"),
        (2, "lost", "2.00", "2026-01-01 00:00:00+00"),
    ]
    assert warehouse.query(open_rows) == [(3, "ge")]
    resolved = warehouse.query(
        "SELECT row_number, run_id, resolved_by_run_id FROM elt.quarantine"
        " WHERE resolved_at IS NOT NULL ORDER BY 1"
    )
    assert resolved == [
        (2, failed.run_id, replay.run_id),
        (3, failed.run_id, replay.run_id),
    ]
    assert (
        warehouse.value(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM elt.quarantine"
            " WHERE resolved_at IS NULL GROUP BY dataset, file, row_number) AS o"
        )
        == 1
    )
    assert warehouse.query("SELECT status, rows_quarantined FROM elt.ingestion_manifest") == [
        ("success", 1)
    ]


def test_unique_column_check_quarantines_every_repeated_row(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(
        contracts_dir,
        """
        name: people
        source: {glob: "people/*.csv"}
        target: {schema: crm, table: people, primary_key: [id]}
        columns:
          - {name: id, type: bigint}
          - {name: email, type: text, checks: {unique: true}}
        policy: {max_bad_row_ratio: 0.6}
        """,
    )
    land(
        landing,
        "people/p.csv",
        "id,email\n1,ann@x.org\n2,bob@x.org\n3,ann@x.org\n4,\n5,\n6,ann@x.org\n",
    )
    result = load(contracts_dir, "people", "people/p.csv", instance)
    quarantined = warehouse.query(
        "SELECT row_number, column_name, check_name, reason, raw_record->>'email'"
        " FROM elt.quarantine ORDER BY 1"
    )
    reason = "email: 'ann@x.org' appears 3 times in the file (check unique)"
    assert quarantined == [
        (1, "email", "unique", reason, "ann@x.org"),
        (3, "email", "unique", reason, "ann@x.org"),
        (6, "email", "unique", reason, "ann@x.org"),
    ]
    # Empty emails are NULL, and NULLs never collide.
    assert warehouse.query("SELECT id, email FROM crm.people ORDER BY 1") == [
        (2, "bob@x.org"),
        (4, None),
        (5, None),
    ]
    failures = check_results(result)["contract_conformance"].metadata["failures_by_check"].value
    assert failures == {"email.unique": 3}


def test_incompatible_existing_target_fails_and_is_not_altered(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, orders_contract())
    with psycopg.connect(warehouse.owner_url, autocommit=True) as owner:
        owner.execute("CREATE SCHEMA sales")
        owner.execute(
            "CREATE TABLE sales.orders (order_id bigint PRIMARY KEY, status text,"
            " amount text, updated_at timestamptz)"
        )
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01 00:00:00+00\n")
    result = run_file(contracts_dir, "orders", "orders/a.csv", instance)
    assert not result.success
    message = step_failure(result)
    assert "sales.orders.amount is text in the database but numeric(12,2) in the contract" in (
        message
    )
    assert "never altered" in message
    columns = warehouse.query(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'sales' AND table_name = 'orders' ORDER BY ordinal_position"
    )
    assert columns == [
        ("order_id", "bigint"),
        ("status", "text"),
        ("amount", "text"),
        ("updated_at", "timestamp with time zone"),
    ]
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 0
    assert warehouse.value("SELECT status FROM elt.ingestion_manifest") == "failed"


def test_tolerant_drift_loads_and_reports_ignored_and_missing_columns(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(
        contracts_dir,
        orders_contract().replace("policy: {", "policy: {schema_drift: tolerant, "),
    )
    land(
        landing,
        "orders/drift.csv",
        " ORDER_ID ,Status,Updated_At,Channel\n1,paid,2026-01-01 00:00:00+00,web\n",
    )
    result = load(contracts_dir, "orders", "orders/drift.csv", instance)
    assert orders_table(warehouse) == [(1, "paid", None, "2026-01-01 00:00:00+00")]
    conformance = check_results(result)["contract_conformance"]
    assert conformance.passed
    assert conformance.metadata["extra_columns_ignored"].value == ["Channel"]
    assert conformance.metadata["missing_columns_filled_with_null"].value == ["amount"]


def test_rescued_columns_and_values_are_counted_and_said_in_the_ui(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(
        contracts_dir,
        orders_contract().replace(
            "policy: {",
            "policy: {schema_drift: tolerant, new_columns: rescue, bad_values: rescue, ",
        ),
    )
    land(
        landing,
        "orders/drift.csv",
        "order_id,status,amount,updated_at,Channel\n"
        "1,paid,12;5,2026-01-01 00:00:00+00,web\n"
        "2,paid,3.00,2026-01-01 00:00:00+00,\n",
    )
    result = load(contracts_dir, "orders", "orders/drift.csv", instance)
    checks = check_results(result)
    conformance = checks["contract_conformance"]
    assert conformance.passed and conformance.metadata["rows_rescued"].value == 1
    assert conformance.metadata["extra_columns_rescued"].value == ["Channel"]
    assert "1 loaded with values in the rescue column" in (conformance.description or "")
    assert "1 extra column(s) kept in _rescued: 'Channel'" in (
        checks["schema_drift"].description or ""
    )
    assert materialization_metadata(result, "staged/orders_staging")["rows_rescued"] == 1
    assert warehouse.query("SELECT order_id, _rescued ? 'amount' FROM sales.orders ORDER BY 1") == [
        (1, True),
        (2, None),  # nothing to rescue: the column stays NULL
    ]


def test_a_column_a_file_adds_shows_in_the_tables_schema_in_the_ui(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(
        contracts_dir,
        orders_contract().replace("policy: {", "policy: {new_columns: add, type_changes: widen, "),
    )
    land(
        landing,
        "orders/grown.csv",
        "order_id,status,amount,updated_at,Channel\n1,paid,1.00,2026-01-01 00:00:00+00,web\n",
    )
    result = load(contracts_dir, "orders", "orders/grown.csv", instance)
    metadata = materialization_metadata(result, "sales/orders")
    assert metadata["columns_added_by_files"] == ["channel"]
    assert metadata["schema_version"] == 1
    drift = check_results(result)["schema_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.description.startswith("schema evolved: +channel text (policy.new_columns: add")
    # The next file with the column changes nothing: the check passes again.
    land(
        landing,
        "orders/again.csv",
        "order_id,status,amount,updated_at,Channel\n2,paid,2.00,2026-01-01 00:00:00+00,shop\n",
    )
    again = check_results(load(contracts_dir, "orders", "orders/again.csv", instance))
    assert again["schema_drift"].passed, again["schema_drift"].description
    columns = [(c.name, c.type) for c in metadata["dagster/column_schema"].columns]
    assert columns[-1] == ("channel", "text")
    assert warehouse.query("SELECT order_id, channel FROM sales.orders ORDER BY 1") == [
        (1, "web"),
        (2, "shop"),
    ]
    # A file with a wider amount (three decimals) widens the column: said the same way.
    land(
        landing,
        "orders/wider.csv",
        "order_id,status,amount,updated_at,Channel\n3,paid,2.125,2026-01-01 00:00:00+00,web\n",
    )
    wider = load(contracts_dir, "orders", "orders/wider.csv", instance)
    metadata = materialization_metadata(wider, "sales/orders")
    assert metadata["columns_widened_by_files"] == {"amount": "numeric(12,2)"}
    assert metadata["schema_version"] == 2
    columns = [(c.name, c.type) for c in metadata["dagster/column_schema"].columns]
    assert ("amount", "numeric(13,3)") in columns
    drift = check_results(wider)["schema_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.description.startswith(
        "schema evolved: amount widened numeric(12,2) -> numeric(13,3)"
    ), drift.description
    assert warehouse.value("SELECT amount FROM sales.orders WHERE order_id = 3") == Decimal("2.125")


def test_staged_slice_is_replaced_when_the_file_runs_again(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, orders_contract())
    rows = "".join(f"{i},new,{i},2026-01-01 00:00:00+00\n" for i in range(1, 4))
    land(landing, "orders/a.csv", HEADER + rows)
    land(landing, "orders/b.csv", HEADER + "9,new,9,2026-01-01 00:00:00+00\n")
    load(contracts_dir, "orders", "orders/b.csv", instance)  # straight into the empty table
    load(contracts_dir, "orders", "orders/a.csv", instance)
    slices = "SELECT _elt_file, count(*) FROM elt_staging.orders GROUP BY 1 ORDER BY 1"
    assert warehouse.query(slices) == [("orders/a.csv", 3)]
    load(contracts_dir, "orders", "orders/a.csv", instance)
    assert warehouse.query(slices) == [("orders/a.csv", 3)]
    land(landing, "orders/a.csv", HEADER + "1,paid,1,2026-01-02 00:00:00+00\n")
    load(contracts_dir, "orders", "orders/a.csv", instance)
    assert warehouse.query(slices) == [("orders/a.csv", 1)]
    assert warehouse.query(
        "SELECT order_id, status FROM elt_staging.orders WHERE _elt_file = 'orders/a.csv'"
    ) == [(1, "paid")]
