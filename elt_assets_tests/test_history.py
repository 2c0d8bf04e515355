"""History tables (`target.mode: history`, SCD2) through the real Dagster job on a real
PostgreSQL: versions added and ended, unchanged rows changing nothing, late files placed between
versions, ties, snapshots that close missing keys, the load time as the version, and files
loaded in any order or at once giving the same table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from elt_assets.contracts.loader import load_contracts
from elt_assets.orchestration import steps
from elt_assets.orchestration.resources import landing_resource
from elt_assets.orchestration.table_schema import column_schema
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import Settings
from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import (
    check_results,
    elt_as_user,
    materialization_metadata,
    run_file,
    step_failure,
    user_env,
)

pytestmark = [pytest.mark.db, pytest.mark.dagster]

ELT = Path(sys.executable).parent / "elt"

PRICES = """
    name: prices
    source: {glob: "prices/*.csv"}
    target:
      schema: shop
      table: prices
      mode: history
      primary_key: [sku]
      version_column: version
    columns:
      - {name: sku, type: text, nullable: false}
      - {name: price, type: "numeric(10,2)"}
      - {name: version, type: bigint, nullable: false}
"""
Row = tuple[str, str | None, int, int, int | None, bool]


def land(landing: Path, name: str, rows: list[tuple[str, str, int]], folder: str = "prices") -> str:
    path = landing / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sku,price,version\n" + "".join(f"{s},{p},{v}\n" for s, p, v in rows))
    return f"{folder}/{name}"


def history(warehouse: Warehouse, table: str = "shop.prices") -> list[Row]:
    """(sku, price, version, valid_from, valid_to, current) by sku and start."""
    return [
        (str(sku), None if price is None else str(price), int(v), int(start), end, bool(current))
        for sku, price, v, start, end, current in warehouse.query(
            f"SELECT sku, price::text, version, _elt_valid_from, _elt_valid_to, _elt_current "
            f"FROM {table} ORDER BY 1, 4"
        )
    ]


def canonical(*files: list[tuple[str, str, int]]) -> list[Row]:
    """The history the files describe, whatever their order: per key the versions by number,
    a version equal to the one before folded into it, each ending where the next starts."""
    versions: dict[str, dict[int, str]] = {}
    for rows in files:
        for sku, price, version in rows:
            versions.setdefault(sku, {})[version] = price
    result: list[Row] = []
    for sku in sorted(versions):
        kept: list[tuple[int, str]] = []
        for version, price in sorted(versions[sku].items()):
            if not kept or kept[-1][1] != f"{float(price):.2f}":
                kept.append((version, f"{float(price):.2f}"))
        for n, (version, price) in enumerate(kept):
            end = kept[n + 1][0] if n + 1 < len(kept) else None
            result.append((sku, price, version, version, end, end is None))
    return result


def load(
    contracts_dir: Path, file: str, instance: dg.DagsterInstance, dataset: str = "prices"
) -> Any:
    result = run_file(contracts_dir, dataset, file, instance)
    assert result.success, step_failure(result)
    return result


@pytest.fixture
def instance() -> Any:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_a_change_adds_a_version_an_unchanged_row_adds_nothing_and_a_rerun_changes_nothing(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, PRICES)
    first = [("a", "1.00", 1), ("b", "2.00", 1)]
    second = [("a", "1.00", 2), ("b", "2.50", 2), ("c", "3.00", 2)]
    load(contracts_dir, land(landing, "d1.csv", first), instance)
    result = load(contracts_dir, land(landing, "d2.csv", second), instance)
    assert history(warehouse) == [
        ("a", "1.00", 1, 1, None, True),
        ("b", "2.00", 1, 1, 2, False),
        ("b", "2.50", 2, 2, None, True),
        ("c", "3.00", 2, 2, None, True),
    ]
    metadata = materialization_metadata(result, "shop/prices")
    assert (metadata["rows_inserted"], metadata["rows_updated"], metadata["rows_unchanged"]) == (
        2,
        0,
        1,
    )
    assert all(check.passed for check in check_results(result).values()), check_results(result)
    before = history(warehouse)
    again = load(contracts_dir, "prices/d2.csv", instance)  # the same file again
    assert history(warehouse) == before
    assert materialization_metadata(again, "shop/prices")["rows_inserted"] == 0
    current = warehouse.query("SELECT sku, price::text FROM shop.prices WHERE _elt_current")
    assert sorted(current) == [("a", "1.00"), ("b", "2.50"), ("c", "3.00")]


def test_a_late_file_goes_between_the_versions_around_it_and_a_tie_corrects_in_place(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, PRICES)
    load(contracts_dir, land(landing, "v1.csv", [("a", "1.00", 1)]), instance)
    load(contracts_dir, land(landing, "v3.csv", [("a", "3.00", 3)]), instance)
    load(contracts_dir, land(landing, "v2.csv", [("a", "2.00", 2)]), instance)  # late
    assert history(warehouse) == [
        ("a", "1.00", 1, 1, 2, False),
        ("a", "2.00", 2, 2, 3, False),
        ("a", "3.00", 3, 3, None, True),
    ]
    # A late version equal to the one it falls into changes nothing.
    load(contracts_dir, land(landing, "v2b.csv", [("a", "2.00", 2)]), instance)
    load(contracts_dir, land(landing, "v1b.csv", [("a", "1.00", 1)]), instance)
    assert len(history(warehouse)) == 3
    # The same version with other values corrects that version (the later load wins, as in an
    # upsert); corrected to the value after it, the two fold into one.
    tie = load(contracts_dir, land(landing, "v2c.csv", [("a", "3.00", 2)]), instance)
    assert materialization_metadata(tie, "shop/prices")["rows_updated"] == 1
    assert history(warehouse) == [("a", "1.00", 1, 1, 2, False), ("a", "3.00", 2, 2, None, True)]


def reported_again(contracts_dir: Path, file: str, run_id: str) -> dict[str, Any]:
    """The file's committed load as the target step of a retry of `run_id` reports it: as
    recorded, not loaded again (orchestration/steps.py `load_target`)."""
    (contract,) = load_contracts(contracts_dir).contracts
    settings = Settings.from_env()
    warehouse, landing = PostgresResource.from_env(), landing_resource(settings)
    try:
        staged = steps.staged_slice(warehouse, contract.name, file)
        outcome = steps.load_target(
            contract, warehouse, landing.zone(), staged, "a-retry", lambda: None, None, {run_id}
        )
    finally:
        warehouse.close()
    return outcome.metadata


SNAPSHOTS = PRICES.replace(
    "version_column: version", "version_column: version\n      history: {close_missing: true}"
)


def test_a_snapshot_closes_the_keys_it_lacks_and_a_key_that_returns_opens_again(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, SNAPSHOTS)
    load(contracts_dir, land(landing, "s1.csv", [("a", "1.00", 1), ("b", "2.00", 1)]), instance)
    closing_file = land(landing, "s2.csv", [("a", "1.00", 2)])
    closing = load(contracts_dir, closing_file, instance)
    reported = materialization_metadata(closing, "shop/prices")
    assert reported["rows_closed"] == 1
    assert history(warehouse) == [("a", "1.00", 1, 1, None, True), ("b", "2.00", 1, 1, 2, False)]
    # A retry of that run (had it died before reporting the load) reports the load as the
    # manifest recorded it, the closed version too, and changes nothing.
    again = reported_again(contracts_dir, closing_file, closing.run_id)
    counts = [name for name in reported if name.startswith("rows_") and name != "rows_per_second"]
    assert {n: again[n] for n in counts} == {n: reported[n] for n in counts}
    assert history(warehouse) == [("a", "1.00", 1, 1, None, True), ("b", "2.00", 1, 1, 2, False)]
    load(contracts_dir, land(landing, "s3.csv", [("a", "1.00", 3), ("b", "2.00", 3)]), instance)
    assert history(warehouse) == [
        ("a", "1.00", 1, 1, None, True),
        ("b", "2.00", 1, 1, 2, False),
        ("b", "2.00", 3, 3, None, True),  # gone at 2, back at 3: a new version
    ]


def test_without_a_version_column_each_load_starts_the_versions_it_brings(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, PRICES.replace("      version_column: version\n", ""))
    load(contracts_dir, land(landing, "a.csv", [("a", "1.00", 1), ("b", "1.00", 1)]), instance)
    load(contracts_dir, land(landing, "b.csv", [("a", "2.00", 1), ("b", "1.00", 1)]), instance)
    rows = warehouse.query(
        "SELECT sku, price::text, _elt_valid_from, _elt_valid_to, _elt_current FROM shop.prices "
        "ORDER BY 1, 3"
    )
    [(_, one, start, end, old), (_, two, later, none, now), (b, same, _, open_, current)] = rows
    assert (one, two, old, now) == ("1.00", "2.00", False, True)
    assert start < later and end == later and none is None
    assert (b, same, open_, current) == ("b", "1.00", None, True)
    assert rows[0][2].tzinfo is not None  # the load time, a timestamptz


FILES = {
    "f1.csv": [("a", "1.00", 1), ("b", "5.00", 1), ("c", "7.00", 4)],
    "f2.csv": [("a", "2.00", 3), ("b", "5.00", 2)],
    "f3.csv": [("a", "2.00", 2), ("b", "6.00", 3), ("c", "7.00", 1)],
}


def test_files_in_any_order_or_all_at_once_give_the_same_history(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, tmp_path: Path
) -> None:
    """Four orders of three files (each into a table of its own), and the three loaded by three
    `elt ingest` at once: the history is the one the versions describe."""
    expected = canonical(*FILES.values())
    names = list(FILES)
    # Each file first, second and last once, and the reverse order.
    orders = [names[n:] + names[:n] for n in range(len(names))] + [names[::-1]]
    for n, order in enumerate(orders):
        dataset = f"prices_{n}"
        text = (
            PRICES.replace("name: prices", f"name: {dataset}")
            .replace("table: prices", f"table: {dataset}")
            .replace('glob: "prices/*.csv"', f'glob: "{dataset}/*.csv"')
        )
        write_contract(contracts_dir, text)
        with dg.instance_for_test() as instance:
            for name in order:
                load(contracts_dir, land(landing, name, FILES[name], dataset), instance, dataset)
        assert history(warehouse, f"shop.{dataset}") == expected, order

    # Three `elt ingest --file` at once, one file each, as separate processes.
    write_contract(contracts_dir, PRICES)
    user = tmp_path / "user"
    user.mkdir()
    folders = ["--landing", str(landing), "--contracts", str(contracts_dir), "--dataset", "prices"]
    running = [
        subprocess.Popen(
            [str(ELT), "ingest", *folders, "--file", land(landing, name, rows)],
            cwd=user,
            env=user_env(warehouse, user),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, rows in FILES.items()
    ]
    for process in running:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output
    assert history(warehouse) == expected


def test_a_batch_run_and_a_new_column_keep_the_history_exact(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, tmp_path: Path
) -> None:
    """The batch job (ELT_BATCH_THRESHOLD=0: every file through it) merges each file as a run of
    its own would; a column a later file adds (policy.new_columns: add) is one more value that
    versions differ by, NULL in the versions before it."""
    write_contract(contracts_dir, PRICES + "    policy: {new_columns: add}\n")
    for name, rows in FILES.items():
        land(landing, name, rows)
    user = tmp_path / "user"
    user.mkdir()
    folders = ["--landing", str(landing), "--contracts", str(contracts_dir)]
    settings = {"ELT_BATCH_THRESHOLD": "0"}
    batch = elt_as_user(warehouse, user, "ingest", *folders, settings=settings)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    assert history(warehouse) == canonical(*FILES.values())

    (landing / "prices" / "f4.csv").write_text("sku,price,version,colour\na,2.00,5,red\n")
    again = elt_as_user(warehouse, user, "ingest", *folders, settings=settings)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = warehouse.query(
        "SELECT sku, colour, _elt_valid_from, _elt_valid_to FROM shop.prices WHERE sku = 'a' "
        "ORDER BY 3"
    )
    assert rows == [("a", None, 1, 2), ("a", None, 2, 5), ("a", "red", 5, None)]
    # The row count the batch carried from file to file (versions added minus versions folded).
    assert warehouse.value(
        "SELECT row_count FROM elt.target_rows WHERE relid = 'shop.prices'::regclass"
    ) == warehouse.value("SELECT count(*) FROM shop.prices")


def test_the_ui_shows_the_validity_columns_of_a_history_table(contracts_dir: Path) -> None:
    schema = column_schema(write_contract(contracts_dir, PRICES))
    shown = {column.name: column.type for column in schema.columns}
    assert list(shown)[-3:] == ["_elt_valid_from", "_elt_valid_to", "_elt_current"]
    assert (shown["_elt_valid_from"], shown["_elt_current"]) == ("bigint", "boolean")
    assert not any(c.constraints.unique for c in schema.columns)  # a key has many versions


def test_a_history_contract_needs_a_key_and_a_version_that_is_never_null(
    contracts_dir: Path,
) -> None:
    for text, message in (
        (PRICES.replace("      primary_key: [sku]\n", ""), "target.primary_key is required"),
        (
            PRICES.replace("type: bigint, nullable: false", "type: bigint"),
            "version_column of a history table must be `nullable: false`",
        ),
        (
            PRICES.replace("mode: history", "mode: upsert").replace(
                "version_column: version",
                "version_column: version\n      history: {close_missing: true}",
            ),
            "target.history applies to target.mode: history only",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            write_contract(contracts_dir, text, name="prices")
