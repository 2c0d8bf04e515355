"""The schema_drift asset check on staged, through the real job: a WARN, never a blocker.

Under `schema_drift: tolerant` a file whose header drifts still loads, and the check reports
exactly what was tolerated; an exact header passes. Under `strict` drift rejects the file before
any check runs, so the check is not evaluated then (the step's error names the columns).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import check_results, run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

CONTRACT = """
    name: orders
    source: {glob: "orders/*.csv"}
    target: {schema: sales, table: orders, primary_key: [order_id]}
    columns:
      - {name: order_id, type: bigint, nullable: false}
      - {name: status, type: text}
      - {name: amount, type: "numeric(12,2)"}
      - {name: note, type: text, source_name: "Customer Note"}
    policy: {schema_drift: %s}
"""


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def land(landing: Path, name: str, text: str) -> str:
    (landing / "orders").mkdir(exist_ok=True)
    (landing / "orders" / name).write_text(text, encoding="utf-8")
    return f"orders/{name}"


def test_drifting_header_loads_and_warns_with_exact_metadata(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, CONTRACT % "tolerant")
    # order_id trimmed and case-folded, note's header case-folded, amount missing, two extras.
    file = land(
        landing,
        "drift.csv",
        " ORDER_ID ,status,customer note,Channel,Coupon\n1,paid,hi,web,X1\n2,new,,shop,\n",
    )
    result = run_file(contracts_dir, "orders", file, instance)

    assert result.success, step_failure(result)  # a WARN never stops the load
    drift = check_results(result)["schema_drift"]
    assert drift.passed is False
    assert drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["extra_columns"].value == ["Channel", "Coupon"]
    assert drift.metadata["missing_columns"].value == ["amount"]
    assert drift.metadata["renamed_headers"].value == {
        " ORDER_ID ": "order_id",
        "customer note": "Customer Note",
    }
    assert drift.metadata["file"].value == file
    description = drift.description or ""
    assert description.startswith(f"{file}: the header drifted from the contract")
    assert "2 extra column(s) ignored: 'Channel', 'Coupon'" in description
    assert "1 contract column(s) missing, filled with NULL: 'amount'" in description
    assert "' ORDER_ID ' -> 'order_id'" in description
    assert "set the columns' source_name" in description
    # The tolerated file is in the table, with NULL for the missing column.
    assert warehouse.query(
        "SELECT order_id, status, amount, note FROM sales.orders ORDER BY 1"
    ) == [
        (1, "paid", None, "hi"),
        (2, "new", None, None),
    ]


def test_exact_header_passes(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, CONTRACT % "tolerant")
    file = land(landing, "exact.csv", "order_id,status,amount,Customer Note\n1,paid,2.50,hi\n")
    result = run_file(contracts_dir, "orders", file, instance)

    assert result.success, step_failure(result)
    drift = check_results(result)["schema_drift"]
    assert drift.passed is True
    assert drift.metadata["extra_columns"].value == []
    assert drift.metadata["missing_columns"].value == []
    assert drift.metadata["renamed_headers"].value == {}
    assert drift.description == "the header matches the contract exactly (4 columns)"


def test_only_missing_nullable_column_warns_without_other_drift(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, CONTRACT % "tolerant")
    file = land(landing, "short.csv", "order_id,status,Customer Note\n1,paid,hi\n")
    result = run_file(contracts_dir, "orders", file, instance)

    assert result.success, step_failure(result)
    drift = check_results(result)["schema_drift"]
    assert drift.passed is False
    assert drift.metadata["missing_columns"].value == ["amount"]
    assert drift.metadata["extra_columns"].value == []
    assert drift.metadata["renamed_headers"].value == {}
    assert "extra" not in (drift.description or "")


def test_strict_exact_file_passes_and_strict_drift_fails_the_file_before_the_check(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, CONTRACT % "strict")
    exact = land(landing, "exact.csv", "order_id,status,amount,Customer Note\n1,paid,2.50,hi\n")
    result = run_file(contracts_dir, "orders", exact, instance)
    assert result.success, step_failure(result)
    assert check_results(result)["schema_drift"].passed is True

    drifting = land(landing, "drift.csv", "order_id,status,amount,Customer Note,Channel\n")
    result = run_file(contracts_dir, "orders", drifting, instance)
    assert not result.success
    assert "unexpected columns ['Channel'] (schema_drift: strict)" in step_failure(result)
    assert "schema_drift" not in check_results(result)
