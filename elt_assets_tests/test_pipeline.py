"""Files to tables through the real Dagster job, on a real instance and a real PostgreSQL."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest

from elt_assets.landing.keys import path_to_key
from elt_assets.postgres import staging
from elt_assets.postgres.staging import STRAIGHT_INTO_ROWS_BYTES
from elt_assets_tests import helpers
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
    policy: {max_bad_row_ratio: 0.5}
"""
HEADER = "order_id,status,amount,updated_at\n"


def land(landing: Path, file: str, text: str) -> None:
    path = landing / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if file.endswith(".gz") else text.encode())


def orders_table(warehouse: Warehouse) -> list[tuple[object, ...]]:
    return warehouse.query(
        "SELECT order_id, status, amount::text, updated_at::text FROM sales.orders ORDER BY 1"
    )


def test_csv_file_becomes_typed_rows_and_manifest_success(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    land(
        landing,
        "orders/a.csv",
        HEADER + "1,new,10.50,2026-01-01 10:00:00+00\n2,paid,3,2026-01-01 11:00:00+00\n",
    )
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/a.csv", instance)
    assert result.success, step_failure(result)
    assert orders_table(warehouse) == [
        (1, "new", "10.50", "2026-01-01 10:00:00+00"),
        (2, "paid", "3.00", "2026-01-01 11:00:00+00"),
    ]
    manifest = warehouse.query(
        "SELECT status, rows_read, rows_staged, rows_quarantined, rows_inserted, rows_updated,"
        " rows_unchanged, error FROM elt.ingestion_manifest"
    )
    assert manifest == [("success", 2, 2, 0, 2, 0, 0, None)]
    target = materialization_metadata(result, "sales/orders")
    assert target["rows_inserted"] == 2 and target["dagster/row_count"] == 2
    staged_column = dg.TableColumnDep(dg.AssetKey(["staged", "orders_staging"]), "amount")
    assert target["dagster/column_lineage"].deps_by_column["amount"] == [staged_column]
    checks = check_results(result)
    assert checks["contract_conformance"].passed and checks["rows_reconciled"].passed
    assert checks["primary_key_valid"].passed and checks["row_count_not_dropped"].passed


def test_rerun_changes_nothing(warehouse: Warehouse, landing: Path, contracts_dir: Path) -> None:
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv.gz", HEADER + "1,new,1,2026-01-01 10:00:00+00\n")
    with dg.instance_for_test() as instance:
        first = run_file(contracts_dir, "orders", "orders/a.csv.gz", instance)
        table_before = orders_table(warehouse)
        second = run_file(contracts_dir, "orders", "orders/a.csv.gz", instance)
    assert first.success and second.success
    assert orders_table(warehouse) == table_before
    target = materialization_metadata(second, "sales/orders")
    assert (target["rows_inserted"], target["rows_updated"], target["rows_unchanged"]) == (0, 0, 1)
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == 1


def test_an_upserted_table_keeps_room_so_updates_stay_in_their_page(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """A new upsert target leaves 10% of each page free: a changed row's new version is
    written beside the old one (a HOT update, no new index entry) instead of at the table's
    end. With full pages every update of a row not on the last page would move it."""
    write_contract(contracts_dir, ORDERS)
    rows = range(1, 2001)
    land(landing, "orders/a.csv", HEADER + "".join(f"{i},new,1,2026-01-01\n" for i in rows))
    changed = [i for i in rows if i % 20 == 0]  # 5% of the rows, spread over every page
    land(landing, "orders/b.csv", HEADER + "".join(f"{i},paid,2,2026-01-02\n" for i in changed))
    page = "(ctid::text::point)[0]::int"
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "orders", "orders/a.csv", instance).success
        before = dict(warehouse.query(f"SELECT order_id, {page} FROM sales.orders"))
        result = run_file(contracts_dir, "orders", "orders/b.csv", instance)
    assert result.success, step_failure(result)
    assert warehouse.value(
        "SELECT reloptions FROM pg_class WHERE oid = 'sales.orders'::regclass"
    ) == ["fillfactor=90"]
    paid = f"SELECT order_id, {page} FROM sales.orders WHERE status = 'paid'"
    after = dict(warehouse.query(paid))
    assert sorted(after) == changed
    assert max(before.values()) >= 10  # many pages, so full ones would have shown a move
    assert {key: after[key] for key in changed} == {key: before[key] for key in changed}


def test_a_file_in_key_order_is_recorded_so_and_either_order_loads_the_same(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """The staged step records whether the keys came in order (the load then does not sort
    them); a file out of order is sorted by the load, and both load exactly."""
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv", HEADER + "".join(f"{i},new,{i},2026-01-01\n" for i in (1, 2, 5)))
    land(landing, "orders/b.csv", HEADER + "".join(f"{i},paid,{i},2026-01-02\n" for i in (9, 3, 5)))
    with dg.instance_for_test() as instance:
        for file in ("orders/a.csv", "orders/b.csv"):
            result = run_file(contracts_dir, "orders", file, instance)
            assert result.success, step_failure(result)
    in_order = warehouse.query(
        "SELECT file, (stage_report -> 'counts' ->> 'keys_in_order')::boolean"
        " FROM elt.ingestion_manifest ORDER BY file"
    )
    assert in_order == [("orders/a.csv", True), ("orders/b.csv", False)]
    assert [(row[0], row[1], row[2]) for row in orders_table(warehouse)] == [
        (1, "new", "1.00"),
        (2, "new", "2.00"),
        (3, "paid", "3.00"),
        (5, "paid", "5.00"),
        (9, "paid", "9.00"),
    ]


def test_policy_failure_leaves_target_untouched_and_records_why(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/bad.csv", HEADER + "1,new,1,2026-01-01\n2,lost,-1,2026-01-01\n3,x,y,z\n")
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/bad.csv", instance)
    assert not result.success
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 0
    status, error = warehouse.query("SELECT status, error FROM elt.ingestion_manifest")[0]
    assert status == "failed"
    assert "2 of 3 rows" in error and "max_bad_row_ratio" in error
    reasons = warehouse.query(
        "SELECT row_number, check_name FROM elt.quarantine WHERE resolved_at IS NULL ORDER BY 1"
    )
    assert reasons == [(2, "isin"), (3, "type:numeric(12,2)")]
    conformance = check_results(result)["contract_conformance"]
    assert conformance.passed is False
    # The staging IO manager recorded what it wrote in the manifest row; the check shows that
    # record (the asset reads it back, nothing is handed back in memory).
    report = warehouse.value("SELECT stage_report FROM elt.ingestion_manifest")
    assert report["counts"]["rows_read"] == 3 and report["counts"]["rows_quarantined"] == 2
    assert report["violations"] == [error]
    assert [row["row_number"] for row in report["sample"]] == [2, 3]
    assert conformance.metadata["failures_by_check"].value == report["failure_counts"]
    assert conformance.description == error


def test_parquet_file_loads_with_its_types(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    (landing / "orders").mkdir()
    pl.DataFrame(
        {
            "order_id": [7, 8],
            "status": ["new", "shipped"],
            "amount": [1.25, 99.99],
            "updated_at": pl.Series(["2026-01-01T10:00:00", "2026-01-02T00:00:00"]).str.to_datetime(
                time_zone="UTC"
            ),
        }
    ).write_parquet(landing / "orders/p.parquet")
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/p.parquet", instance)
    assert result.success, step_failure(result)
    assert orders_table(warehouse) == [
        (7, "new", "1.25", "2026-01-01 10:00:00+00"),
        (8, "shipped", "99.99", "2026-01-02 00:00:00+00"),
    ]


def test_elt_max_record_bytes_reaches_the_run_through_the_landing_resource(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 200 kB record loads under the default limit (1 MiB) and is refused under 64 kB."""
    write_contract(contracts_dir, ORDERS)
    long_status = "x" * 200_000  # fails the isin check: quarantined, not refused, by default
    land(landing, "orders/long.csv", HEADER + f"1,{long_status},1,2026-01-01\n2,new,1,2026-01-01\n")
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "orders", "orders/long.csv", instance).success
        monkeypatch.setenv("ELT_MAX_RECORD_BYTES", "65536")
        land(landing, "orders/long2.csv", HEADER + f"3,{long_status},1,2026-01-01\n")
        refused = run_file(contracts_dir, "orders", "orders/long2.csv", instance)
    assert not refused.success
    assert "a single record is larger than 65536 bytes" in step_failure(refused)
    assert "ELT_MAX_RECORD_BYTES" in step_failure(refused)


def test_the_table_checks_run_on_their_own_and_see_the_table_as_it_is_now(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    # What the UI's "Execute" button runs: the table's checks alone.
    checks_job = dg.define_asset_job(
        "table_checks", dg.AssetSelection.checks_for_assets(dg.AssetKey(["sales", "orders"]))
    )
    definitions = dg.Definitions.merge(
        helpers.definitions(contracts_dir), dg.Definitions(jobs=[checks_job])
    )
    job = definitions.resolve_job_def("table_checks")
    with dg.instance_for_test() as instance:

        def execute_table_checks() -> dict[str, Any]:
            result = job.execute_in_process(instance=instance, run_config=helpers.QUIET)
            assert result.success, step_failure(result)
            return check_results(result)

        before = execute_table_checks()  # nothing loaded yet: said, not hidden
        assert set(before) == {"primary_key_valid", "row_count_not_dropped"}
        for evaluation in before.values():
            assert not evaluation.passed
            assert "does not exist yet" in (evaluation.description or "")

        land(landing, "orders/a.csv", HEADER + "1,new,1,\n2,new,2,\n3,new,3,\n")
        assert run_file(contracts_dir, "orders", "orders/a.csv", instance).success
        warehouse.query("DELETE FROM sales.orders WHERE order_id = 3")  # outside the platform
        after = execute_table_checks()
    assert after["primary_key_valid"].passed
    dropped = after["row_count_not_dropped"]
    assert not dropped.passed and dropped.severity == dg.AssetCheckSeverity.WARN
    assert dropped.description.startswith("2 rows, 1 fewer than after the previous load")


def staging_rows(warehouse: Warehouse, file: str) -> int:
    return int(
        warehouse.value("SELECT count(*) FROM elt_staging.orders WHERE _elt_file = %s", [file])
    )


def straight(warehouse: Warehouse, file: str) -> bool:
    report = warehouse.value(
        "SELECT stage_report FROM elt.ingestion_manifest WHERE file = %s", [file]
    )
    return bool(report["straight_to_target"])


def test_a_first_load_goes_straight_into_the_empty_table_and_the_next_through_staging(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """The file run's staged step COPYs a first load straight into the empty table (no staging
    slice, one transaction with the manifest's success); the target step reports that load.
    A later file is staged and upserted as always."""
    write_contract(contracts_dir, ORDERS)
    land(
        landing,
        "orders/a.csv",
        HEADER + "1,new,10.50,2026-01-01\n2,paid,3,2026-01-01\n3,x,1,2026-01-01\n",
    )
    land(landing, "orders/b.csv", HEADER + "2,shipped,3,2026-01-02\n4,new,4,2026-01-02\n")
    with dg.instance_for_test() as instance:
        first = run_file(contracts_dir, "orders", "orders/a.csv", instance)
        assert first.success, step_failure(first)
        assert staging_rows(warehouse, "orders/a.csv") == 0 and straight(warehouse, "orders/a.csv")
        staged = materialization_metadata(first, "staged/orders_staging")
        target = materialization_metadata(first, "sales/orders")
        assert staged["straight_to_target"] is True and staged["rows_staged"] == 2
        assert target["straight_to_target"] is True
        assert (target["rows_inserted"], target["dagster/row_count"]) == (2, 2)
        checks = check_results(first)
        assert checks["contract_conformance"].passed and checks["rows_reconciled"].passed
        assert checks["primary_key_valid"].passed and checks["row_count_not_dropped"].passed
        second = run_file(contracts_dir, "orders", "orders/b.csv", instance)
        assert second.success, step_failure(second)
        # Its target alone, later: no slice to load, and the message says what to do instead.
        again = _target_alone(contracts_dir, path_to_key("orders/a.csv"), instance)
        assert not again.success
        assert "went straight into the table from its staged step" in step_failure(again)
        assert "materialise its whole partition" in step_failure(again)
        # The file is loaded all the same: its manifest row says so still.
    assert staging_rows(warehouse, "orders/b.csv") == 2 and not straight(warehouse, "orders/b.csv")
    assert materialization_metadata(second, "sales/orders")["straight_to_target"] is False
    assert [(row[0], row[1]) for row in orders_table(warehouse)] == [
        (1, "new"),
        (2, "shipped"),
        (4, "new"),
    ]
    manifest = warehouse.query(
        "SELECT file, status, rows_read, rows_staged, rows_quarantined, rows_inserted,"
        " rows_updated FROM elt.ingestion_manifest ORDER BY file"
    )
    assert manifest == [
        ("orders/a.csv", "success", 3, 2, 1, 2, 0),
        ("orders/b.csv", "success", 2, 2, 0, 1, 1),
    ]
    assert warehouse.value("SELECT count(*) FROM elt.quarantine WHERE resolved_at IS NULL") == 1
    assert warehouse.value("SELECT row_count FROM elt.target_rows") == 3


def test_a_first_load_that_cannot_go_straight_is_staged_and_loads_the_same(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """A key repeating in the file (the table's key refuses the COPY) takes the staging path,
    where the last version of the key wins, as for any file."""
    write_contract(contracts_dir, ORDERS)
    rows = "1,new,1,2026-01-01\n2,new,2,2026-01-01\n1,paid,1,2026-01-03\n"
    land(landing, "orders/a.csv", HEADER + rows)
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/a.csv", instance)
    assert result.success, step_failure(result)
    assert not straight(warehouse, "orders/a.csv") and staging_rows(warehouse, "orders/a.csv") == 3
    assert [(row[0], row[1]) for row in orders_table(warehouse)] == [(1, "paid"), (2, "new")]
    target = materialization_metadata(result, "sales/orders")
    assert (target["rows_inserted"], target["rows_deduplicated"]) == (2, 1)
    assert warehouse.value("SELECT count(*) FROM elt.quarantine") == 0


def _stage_alone(contracts_dir: Path, key: str, instance: dg.DagsterInstance) -> None:
    """Materialise a file's raw and staged assets, not its target (the UI's selection)."""
    instance.add_dynamic_partitions("orders_files", [key])
    job = helpers.definitions(contracts_dir).resolve_job_def("ingest_orders")
    staged = job.execute_in_process(
        partition_key=key,
        instance=instance,
        raise_on_error=False,
        run_config=helpers.QUIET,
        asset_selection=[
            dg.AssetKey(["raw", "orders_files"]),
            dg.AssetKey(["staged", "orders_staging"]),
        ],
    )
    assert staged.success, step_failure(staged)


def _big(lines: list[str]) -> str:
    """A CSV of ORDERS big enough to go straight into a table that has rows."""
    text = HEADER + "\n".join(lines) + "\n"
    assert len(text) >= STRAIGHT_INTO_ROWS_BYTES
    return text


def test_a_big_file_into_a_table_with_rows_is_upserted_a_part_at_a_time_as_it_is_staged(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of a MiB or more that its run loads into a table with rows is staged in parts on
    a second connection while its staged step's transaction upserts each part, then records
    it with its quarantine rows and the manifest's success: versions and counts as through
    staging, and the slice kept, so that its target alone loads it again."""
    monkeypatch.setattr(staging, "PART_ROWS", 10_000)  # several parts, keys out of order
    write_contract(contracts_dir, ORDERS)
    land(
        landing,
        "orders/a.csv",
        HEADER + "1,new,1,2026-01-01\n2,new,2,2026-01-01\n3,new,3,2026-01-05\n4,new,4,2026-01-01\n",
    )
    lines = [f"{k},new,{k % 100}.25,2026-02-01" for k in range(50_009, 9, -1)]
    lines.insert(20_000, "2,paid,2,2026-01-02")  # newer: updated
    lines.insert(30_000, "3,paid,3,2026-01-04")  # older than the table's: kept
    lines.insert(40_000, "4,new,4,2026-01-01")  # the same: unchanged
    lines.insert(45_000, "12,lost,1,2026-02-03")  # quarantined; 12 itself comes later
    land(landing, "orders/b.csv", _big(lines))
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "orders", "orders/a.csv", instance).success
        second = run_file(contracts_dir, "orders", "orders/b.csv", instance)
        assert second.success, step_failure(second)
        again = _target_alone(contracts_dir, path_to_key("orders/b.csv"), instance)
        assert again.success, step_failure(again)
    assert straight(warehouse, "orders/b.csv") and staging_rows(warehouse, "orders/b.csv") == 50_003
    staged = materialization_metadata(second, "staged/orders_staging")
    assert staged["straight_to_target"] is True and staged["rows_staged"] == 50_003
    target = materialization_metadata(second, "sales/orders")
    counts = ("rows_inserted", "rows_updated", "rows_unchanged", "rows_deduplicated")
    assert [target[name] for name in counts] == [50_000, 1, 2, 0]
    assert target["straight_to_target"] is True and target["dagster/row_count"] == 50_004
    checks = check_results(second)
    assert checks["rows_reconciled"].passed and checks["primary_key_valid"].passed
    reloaded = materialization_metadata(again, "sales/orders")  # from the slice it kept
    assert [reloaded[name] for name in counts] == [0, 0, 50_003, 0]
    table = {row[0]: row[1:] for row in orders_table(warehouse)}
    assert len(table) == 50_004 == warehouse.value("SELECT row_count FROM elt.target_rows")
    assert table[1] == ("new", "1.00", "2026-01-01 00:00:00+00")
    assert table[2] == ("paid", "2.00", "2026-01-02 00:00:00+00")
    assert table[3] == ("new", "3.00", "2026-01-05 00:00:00+00")  # the file's version is older
    assert table[12] == ("new", "12.25", "2026-02-01 00:00:00+00")
    assert table[50_009] == ("new", "9.25", "2026-02-01 00:00:00+00")
    manifest = warehouse.query(
        "SELECT status, rows_read, rows_staged, rows_quarantined, duplicate_key_rows"
        " FROM elt.ingestion_manifest WHERE file = 'orders/b.csv'"
    )
    assert manifest == [("success", 50_004, 50_003, 1, 0)]
    assert warehouse.query(
        "SELECT row_number, column_name FROM elt.quarantine WHERE file = 'orders/b.csv'"
    ) == [(45_001, "status")]  # rows are numbered from the first after the header


def test_keys_repeated_in_a_big_file_send_it_through_staging_where_the_last_row_wins(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts upserted in turn would write a repeated key twice: a big file whose keys repeat,
    within one part (PostgreSQL refuses the part's upsert) or across parts (the file checks
    count them), is rolled back and staged instead, deduplicated and counted as any file."""
    monkeypatch.setattr(staging, "PART_ROWS", 10_000)
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n")
    for repeat, where in ((5, "within"), (40_000, "across")):
        lines = [f"{k},new,{k % 100}.25,2026-02-01" for k in range(10, 50_010)]
        lines.insert(repeat, "10,shipped,7,2026-02-02")  # newer than the first row of key 10
        lines.insert(repeat, "11,shipped,7,2026-01-31")  # older than the first row of key 11
        land(landing, f"orders/{where}.csv", _big(lines))
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "orders", "orders/a.csv", instance).success
        for where in ("within", "across"):
            result = run_file(contracts_dir, "orders", f"orders/{where}.csv", instance)
            assert result.success, step_failure(result)
            target = materialization_metadata(result, "sales/orders")
            assert target["straight_to_target"] is False
            assert staging_rows(warehouse, f"orders/{where}.csv") == 50_002
            counts = ("rows_inserted", "rows_unchanged", "rows_deduplicated")
            expected = [50_000, 0, 2] if where == "within" else [0, 50_000, 2]
            assert [target[name] for name in counts] == expected
    table = {row[0]: row[1:] for row in orders_table(warehouse)}
    assert table[10] == ("shipped", "7.00", "2026-02-02 00:00:00+00")  # the newest of the two
    assert table[11] == ("new", "11.25", "2026-02-01 00:00:00+00")
    repeated = "SELECT file, duplicate_key_rows FROM elt.ingestion_manifest ORDER BY file"
    assert warehouse.query(repeated)[1:] == [("orders/across.csv", 4), ("orders/within.csv", 4)]


def test_a_big_file_that_fails_its_policy_is_staged_and_fails_with_the_table_untouched(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """The straight path gives way to staging when the file would not load: the transaction
    that upserted it is rolled back, the file is staged and fails as any file does, and its
    rows are all in the slice or the quarantine."""
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n")
    lines = [f"{k},{'lost' if k % 3 else 'paid'},1,2026-02-01" for k in range(1, 60_001)]
    land(landing, "orders/b.csv", _big(lines))  # two rows in three bad: over the 50% policy
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "orders", "orders/a.csv", instance).success
        second = run_file(contracts_dir, "orders", "orders/b.csv", instance)
    assert not second.success and "max_bad_row_ratio" in step_failure(second)
    assert orders_table(warehouse) == [(1, "new", "1.00", "2026-01-01 00:00:00+00")]
    assert not straight(warehouse, "orders/b.csv")
    assert staging_rows(warehouse, "orders/b.csv") == 20_000
    failed = "SELECT status, rows_quarantined FROM elt.ingestion_manifest WHERE file = %s"
    assert warehouse.query(failed, ["orders/b.csv"]) == [("failed", 40_000)]


ITEMS = """
    name: items
    source: {glob: "items/*"}
    target: {schema: sales, table: items, primary_key: [sku]}
    columns:
      - {name: sku, type: text, nullable: false}
      - {name: quantity, type: integer}
"""


def test_a_big_file_with_a_text_key_is_upserted_in_parts_once_postgresql_counted_its_keys(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text key, which the reader does not count, is counted by PostgreSQL in the staged
    slice once every part is in: none repeated, the parts' upserts commit; one repeated across
    parts, they are rolled back and the file staged, the last row of the key winning."""
    monkeypatch.setattr(staging, "PART_ROWS", 20_000)
    write_contract(contracts_dir, ITEMS)
    land(landing, "items/a.csv", "sku,quantity\nkept,1\ns-1,1\n")
    lines = [f"s-{k:07d},{k}" for k in range(90_000)]
    land(landing, "items/b.csv", "sku,quantity\n" + "\n".join(lines) + "\n")
    land(landing, "items/c.csv", "sku,quantity\n" + "\n".join([*lines, "s-0000001,-1"]) + "\n")
    assert (landing / "items/b.csv").stat().st_size >= STRAIGHT_INTO_ROWS_BYTES
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "items", "items/a.csv", instance).success
        results = [run_file(contracts_dir, "items", f"items/{f}.csv", instance) for f in "bc"]
        assert all(result.success for result in results), step_failure(results[-1])
    unique, repeated = (materialization_metadata(r, "sales/items") for r in results)
    assert unique["straight_to_target"] is True and unique["rows_inserted"] == 90_000
    assert repeated["straight_to_target"] is False and repeated["rows_deduplicated"] == 1
    quantities = dict(warehouse.query("SELECT sku, quantity FROM sales.items"))
    assert len(quantities) == 90_002 and quantities["kept"] == 1 and quantities["s-1"] == 1
    assert (quantities["s-0000001"], quantities["s-0000002"]) == (-1, 2)
    counted = "SELECT file, duplicate_key_rows FROM elt.ingestion_manifest ORDER BY file"
    assert warehouse.query(counted)[1:] == [("items/b.csv", 0), ("items/c.csv", 2)]


EVENTS = """
    name: events
    source: {glob: "events/*"}
    target: {schema: sales, table: events, mode: append}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: kind, type: text}
"""


def test_a_big_file_into_an_appended_table_with_rows_is_copied_straight_and_replaced_once(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """A big file into an appended table that has rows is COPYed into the table by its staged
    step; loaded again with new content, its earlier rows are replaced, not appended twice."""
    write_contract(contracts_dir, EVENTS)
    land(landing, "events/a.csv", "id,kind\n1,small\n2,small\n")

    def land_big(rows: int, kind: str) -> None:
        lines = [f"{k},{kind}-{k:08d}" for k in range(rows)]
        land(landing, "events/b.csv", "id,kind\n" + "\n".join(lines) + "\n")
        assert (landing / "events/b.csv").stat().st_size >= STRAIGHT_INTO_ROWS_BYTES

    def events_of(file: str) -> int:
        count = "SELECT count(*) FROM sales.events WHERE _elt_file = %s"
        return int(warehouse.value(count, [file]))

    land_big(70_000, "first")
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "events", "events/a.csv", instance).success
        first = run_file(contracts_dir, "events", "events/b.csv", instance)
        assert first.success, step_failure(first)
        assert (events_of("events/a.csv"), events_of("events/b.csv")) == (2, 70_000)
        land_big(65_000, "again")
        again = run_file(contracts_dir, "events", "events/b.csv", instance)
        assert again.success, step_failure(again)
    for result, inserted, replaced in ((first, 70_000, 0), (again, 65_000, 70_000)):
        target = materialization_metadata(result, "sales/events")
        assert target["straight_to_target"] is True
        assert (target["rows_inserted"], target["rows_replaced"]) == (inserted, replaced)
    assert (
        target["dagster/row_count"]
        == 65_002
        == warehouse.value("SELECT row_count FROM elt.target_rows")
    )
    assert (events_of("events/a.csv"), events_of("events/b.csv")) == (2, 65_000)
    kinds = "SELECT min(kind), max(kind) FROM sales.events WHERE _elt_file = 'events/b.csv'"
    assert warehouse.query(kinds) == [("again-00000000", "again-00064999")]
    assert warehouse.value("SELECT count(*) FROM elt_staging.events") == 0


def _target_alone(
    contracts_dir: Path, key: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """Materialise a file's target alone, from its staging slice."""
    job = helpers.definitions(contracts_dir).resolve_job_def("ingest_orders")
    return job.execute_in_process(
        partition_key=key,
        instance=instance,
        raise_on_error=False,
        run_config=helpers.QUIET,
        asset_selection=[dg.AssetKey(["sales", "orders"])],
    )


def test_staged_alone_never_touches_the_table_and_the_target_then_loads_its_slice(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """A run that materialises the staged asset without the target (the UI's selection) keeps
    the slice in staging; the target's own run loads it into the empty table."""
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n2,paid,2,2026-01-01\n")
    key = path_to_key("orders/a.csv")
    with dg.instance_for_test() as instance:
        _stage_alone(contracts_dir, key, instance)
        assert warehouse.value("SELECT count(*) FROM sales.orders") == 0
        assert staging_rows(warehouse, "orders/a.csv") == 2 and not straight(
            warehouse, "orders/a.csv"
        )
        assert warehouse.value("SELECT status FROM elt.ingestion_manifest") == "running"
        target = _target_alone(contracts_dir, key, instance)
        assert target.success, step_failure(target)
    assert [(row[0], row[1]) for row in orders_table(warehouse)] == [(1, "new"), (2, "paid")]
    assert materialization_metadata(target, "sales/orders")["straight_to_target"] is False
    assert warehouse.value("SELECT status FROM elt.ingestion_manifest") == "success"


def staging_key(warehouse: Warehouse) -> list[str]:
    """The columns of the staging table's primary key, in order."""
    return [
        str(name)
        for (name,) in warehouse.query(
            "SELECT a.attname FROM pg_index AS i"
            " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)"
            " JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = 'elt_staging.orders'::regclass AND i.indisprimary ORDER BY k.n"
        )
    ]


def test_a_slice_staged_under_the_file_name_key_loads_after_the_upgrade(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """Migration 0012 keys staging by load: a slice staged before it (keyed by file name) takes
    its manifest row's id and loads; a slice no manifest row accounts for goes."""
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n2,paid,2,2026-01-01\n")
    with dg.instance_for_test() as instance:
        _stage_alone(contracts_dir, path_to_key("orders/a.csv"), instance)
        assert staging_key(warehouse) == ["_elt_load", "_elt_row"]
        # The table as the platform made it before 0012, with a slice of a file long forgotten.
        with psycopg.connect(warehouse.owner_url, autocommit=True) as owner:
            owner.execute("ALTER TABLE elt_staging.orders DROP COLUMN _elt_load")
            owner.execute("ALTER TABLE elt_staging.orders ADD PRIMARY KEY (_elt_file, _elt_row)")
            owner.execute(
                "INSERT INTO elt_staging.orders (order_id, _elt_file, _elt_row)"
                " VALUES (9, 'orders/gone.csv', 1)"
            )
            script = Path(__file__).parents[1] / "sql/migrations/0012_staging_load_key.sql"
            owner.execute(script.read_text())  # type: ignore[call-overload]
        assert staging_key(warehouse) == ["_elt_load", "_elt_row"]
        loads = warehouse.query("SELECT DISTINCT _elt_file, _elt_load FROM elt_staging.orders")
        manifest = warehouse.value("SELECT id FROM elt.ingestion_manifest")
        assert loads == [("orders/a.csv", manifest)]
        target = _target_alone(contracts_dir, path_to_key("orders/a.csv"), instance)
        assert target.success, step_failure(target)
    assert [(row[0], row[1]) for row in orders_table(warehouse)] == [(1, "new"), (2, "paid")]


def test_a_new_slice_is_keyed_by_its_load_and_replaces_the_files_earlier_one(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """Each content of a file stages under its own manifest row's id; staging a file's new
    content removes the slice of its earlier one, whichever load that was."""
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n2,paid,2,2026-01-01\n")
    land(landing, "orders/b.csv", HEADER + "5,new,5,2026-01-01\n")
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "orders", "orders/b.csv", instance).success  # not empty
        _stage_alone(contracts_dir, path_to_key("orders/a.csv"), instance)
        first = warehouse.value("SELECT id FROM elt.ingestion_manifest WHERE file = 'orders/a.csv'")
        assert warehouse.query("SELECT DISTINCT _elt_load FROM elt_staging.orders") == [(first,)]
        land(landing, "orders/a.csv", HEADER + "1,paid,1,2026-01-02\n")
        result = run_file(contracts_dir, "orders", "orders/a.csv", instance)
        assert result.success, step_failure(result)
    second = warehouse.value(
        "SELECT max(id) FROM elt.ingestion_manifest WHERE file = 'orders/a.csv'"
    )
    assert second > first
    slices = warehouse.query("SELECT _elt_load, count(*) FROM elt_staging.orders GROUP BY 1")
    assert slices == [(second, 1)]
    assert [(row[0], row[1]) for row in orders_table(warehouse)] == [(1, "paid"), (5, "new")]


@pytest.mark.parametrize("kind", ["history", "unique", "append"])
def test_a_history_table_a_unique_check_or_a_keyed_append_keeps_even_a_first_load_staged(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, kind: str
) -> None:
    """A history merge, a file-wide unique check and an appended file's repeated keys (an
    append table need not refuse them) are worked out on the staged slice: such a first load is
    staged, then loaded, as any other file."""
    if kind == "append":
        text = ORDERS.replace(
            "version_column: updated_at}", "version_column: updated_at, mode: append}"
        )
    elif kind == "history":
        text = ORDERS.replace(
            "version_column: updated_at}", "version_column: updated_at, mode: history}"
        ).replace(
            "{name: updated_at, type: timestamptz}",
            "{name: updated_at, type: timestamptz, nullable: false}",
        )
    else:
        text = ORDERS.replace(
            "checks: {isin: [new, paid, shipped]}",
            "checks: {isin: [new, paid, shipped], unique: true}",
        )
    assert text != ORDERS
    write_contract(contracts_dir, text)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n2,paid,2,2026-01-01\n")
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/a.csv", instance)
    assert result.success, step_failure(result)
    assert not straight(warehouse, "orders/a.csv") and staging_rows(warehouse, "orders/a.csv") == 2
    assert [(row[0], row[1]) for row in orders_table(warehouse)] == [(1, "new"), (2, "paid")]


def outside_writes(warehouse: Warehouse) -> int:
    return int(warehouse.value("SELECT count(*) FROM elt.outside_writes"))


def test_the_row_count_is_carried_run_to_run_and_counted_after_a_write_outside_the_platform(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """Each load carries the table's count (elt.target_rows) forward by what it changed, run
    after run, with no count(*) of the table; a write made outside the platform, by a role with
    no privilege on the platform's schema, is noted by the table's trigger, and the next load
    counts the table."""
    write_contract(contracts_dir, ORDERS)
    outsider = f"outsider_{warehouse.name}"

    def load(file: str, ids: range) -> int:
        rows = "".join(f"{i},new,1,2026-01-01\n" for i in ids)
        land(landing, file, HEADER + rows)
        result = run_file(contracts_dir, "orders", file, instance)
        assert result.success, step_failure(result)
        return int(materialization_metadata(result, "sales/orders")["dagster/row_count"])

    with dg.instance_for_test() as instance:
        assert load("orders/a.csv", range(1, 4)) == 3
        assert load("orders/b.csv", range(4, 6)) == 5
        assert outside_writes(warehouse) == 0  # the platform's own loads note nothing

        # A write no trigger sees (replication role) shows that the next run carries the count.
        with psycopg.connect(warehouse.superuser_url, autocommit=True) as hidden:
            hidden.execute("SET session_replication_role = replica")
            hidden.execute("INSERT INTO sales.orders (order_id, status) VALUES (100, 'new')")
        assert outside_writes(warehouse) == 0
        assert load("orders/c.csv", range(6, 7)) == 6  # 5 + 1, not counted: 7 rows are there
        assert warehouse.value("SELECT count(*) FROM sales.orders") == 7

        # A role that may only write the table: its delete is noted, the next load counts.
        warehouse.query(f'CREATE ROLE "{outsider}"')
        try:
            warehouse.query(f'GRANT USAGE ON SCHEMA sales TO "{outsider}"')
            warehouse.query(f'GRANT SELECT, DELETE ON sales.orders TO "{outsider}"')
            with psycopg.connect(warehouse.superuser_url, autocommit=True) as other:
                other.execute(f'SET ROLE "{outsider}"')
                other.execute("DELETE FROM sales.orders WHERE order_id IN (1, 2)")
            assert outside_writes(warehouse) == 1
            assert load("orders/d.csv", range(7, 8)) == 6  # counted: 7 - 2 + 1
            assert outside_writes(warehouse) == 0
        finally:
            warehouse.query(f'DROP OWNED BY "{outsider}"')
            warehouse.query(f'DROP ROLE "{outsider}"')

        warehouse.query("TRUNCATE sales.orders")  # noted; the table is empty for the next file
        assert outside_writes(warehouse) == 1
        assert load("orders/e.csv", range(8, 10)) == 2
        assert load("orders/f.csv", range(10, 11)) == 3
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 3
    assert warehouse.value("SELECT row_count FROM elt.target_rows") == 3
    assert outside_writes(warehouse) == 0


def test_what_is_known_of_a_dropped_target_goes_at_the_next_count(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """A target dropped outside the platform leaves its row in elt.target_rows and the notes of
    the writes made to it in elt.outside_writes; the next table the platform counts takes them
    away, so an oid PostgreSQL gives to another table one day inherits neither."""
    write_contract(contracts_dir, ORDERS)
    relid = "SELECT 'sales.orders'::regclass::oid"
    with dg.instance_for_test() as instance:
        land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n2,new,1,2026-01-01\n")
        assert run_file(contracts_dir, "orders", "orders/a.csv", instance).success
        dropped = warehouse.value(relid)
        warehouse.query("DELETE FROM sales.orders WHERE order_id = 1")  # noted: not ours
        warehouse.query("DROP TABLE sales.orders")
        assert warehouse.value("SELECT count(*) FROM elt.outside_writes") == 1
        assert warehouse.value("SELECT count(*) FROM elt.target_rows") == 1

        land(landing, "orders/b.csv", HEADER + "3,new,1,2026-01-01\n")
        result = run_file(contracts_dir, "orders", "orders/b.csv", instance)
    assert result.success, step_failure(result)
    assert int(materialization_metadata(result, "sales/orders")["dagster/row_count"]) == 1
    assert warehouse.value(relid) != dropped  # the table the load created again
    assert outside_writes(warehouse) == 0
    assert warehouse.query("SELECT relid::oid, row_count FROM elt.target_rows") == [
        (warehouse.value(relid), 1)
    ]


def watched(warehouse: Warehouse) -> bool:
    trigger = "SELECT count(*) FROM pg_trigger WHERE tgname = 'elt_outside_write'"
    return bool(warehouse.value(trigger))


def test_a_table_without_the_trigger_gets_it_from_the_owner_and_one_nobody_may_change_is_counted(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A target from before the platform noted outside writes gets the trigger at its next run,
    from the owner's connection. A trigger someone disabled is left disabled, and a table the
    platform may not change (someone else owns it, no owner connection) keeps no trigger: each
    run then counts the table, exact either way."""
    write_contract(contracts_dir, ORDERS)
    land(landing, "orders/a.csv", HEADER + "1,new,1,2026-01-01\n")
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "orders", "orders/a.csv", instance).success
        assert watched(warehouse)
        warehouse.query("DROP TRIGGER elt_outside_write ON sales.orders")  # as before 0010
        land(landing, "orders/b.csv", HEADER + "2,new,1,2026-01-01\n")
        assert run_file(contracts_dir, "orders", "orders/b.csv", instance).success
        assert watched(warehouse)

        # A trigger someone disabled stays disabled, and the next run counts the table.
        warehouse.query("ALTER TABLE sales.orders DISABLE TRIGGER elt_outside_write")
        with psycopg.connect(warehouse.superuser_url, autocommit=True) as unnoted:
            unnoted.execute("INSERT INTO sales.orders (order_id, status) VALUES (99, 'new')")
        land(landing, "orders/x.csv", HEADER + "5,new,1,2026-01-01\n")
        disabled = run_file(contracts_dir, "orders", "orders/x.csv", instance)
        assert disabled.success, step_failure(disabled)
        assert materialization_metadata(disabled, "sales/orders")["dagster/row_count"] == 4
        enabled = "SELECT tgenabled FROM pg_trigger WHERE tgname = 'elt_outside_write'"
        assert warehouse.value(enabled) == "D"

        warehouse.query("DROP TRIGGER elt_outside_write ON sales.orders")
        warehouse.query("ALTER TABLE sales.orders OWNER TO postgres")  # made by someone else
        warehouse.query("GRANT SELECT, INSERT, UPDATE, DELETE ON sales.orders TO elt_loader")
        monkeypatch.delenv("ELT_OWNER_DATABASE_URL")
        with psycopg.connect(warehouse.superuser_url, autocommit=True) as hidden:
            hidden.execute("SET session_replication_role = replica")
            hidden.execute("INSERT INTO sales.orders (order_id, status) VALUES (100, 'new')")
        land(landing, "orders/c.csv", HEADER + "3,new,1,2026-01-01\n")
        with caplog.at_level("INFO", logger="elt_assets"):
            result = run_file(contracts_dir, "orders", "orders/c.csv", instance)
        assert result.success, step_failure(result)
    assert not watched(warehouse)
    assert "cannot note writes made outside the platform" in caplog.text
    assert materialization_metadata(result, "sales/orders")["dagster/row_count"] == 6  # counted
