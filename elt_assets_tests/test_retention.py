"""Staging retention: the daily prune_staging job deletes the slices of files loaded long ago,
never the slice of a file being loaded again, and a pruned file can always be staged again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from elt_assets.landing.keys import path_to_key
from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import QUIET, definitions, run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

ITEMS = """
    name: items
    source: {glob: "items/*"}
    target: {schema: shop, table: items, primary_key: [id]}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: label, type: text}
"""


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def land(landing: Path, name: str, ids: range, label: str = "x") -> str:
    path = landing / "items" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,label\n" + "".join(f"{i},{label}{i}\n" for i in ids), encoding="utf-8")
    return f"items/{name}"


def slices(warehouse: Warehouse) -> dict[str, int]:
    rows = warehouse.query("SELECT _elt_file, count(*) FROM elt_staging.items GROUP BY 1")
    return {file: int(count) for file, count in rows}


def first_load(landing: Path, contracts_dir: Path, instance: dg.DagsterInstance) -> None:
    """A first file, loaded straight into the empty table (it keeps no staging slice): the
    files after it are staged, and keep their slices."""
    assert run_file(
        contracts_dir, "items", land(landing, "first.csv", range(900, 910)), instance
    ).success


def age(warehouse: Warehouse, file: str, hours: int) -> None:
    """The file's attempts ended `hours` ago (as if loaded back then)."""
    warehouse.query(
        "UPDATE elt.ingestion_manifest SET started_at = now() - make_interval(hours => %s),"
        " finished_at = now() - make_interval(hours => %s) WHERE file = %s",
        [hours + 1, hours, file],
    )


def prune(contracts_dir: Path, instance: dg.DagsterInstance) -> dict[str, int]:
    job = definitions(contracts_dir).resolve_job_def("prune_staging")
    result = job.execute_in_process(instance=instance, run_config=QUIET)
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata  # type: ignore[union-attr]
    return {name: value.value for name, value in metadata.items()}


def test_prune_deletes_old_slices_only_and_a_pruned_file_loads_again(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    write_contract(contracts_dir, ITEMS)
    first_load(landing, contracts_dir, instance)
    old, recent, again = (
        land(landing, n, range(k * 100, k * 100 + 50))
        for k, n in enumerate(["old.csv", "recent.csv", "again.csv"])
    )
    for file in (old, recent, again):
        assert run_file(contracts_dir, "items", file, instance).success
    age(warehouse, old, 200)
    age(warehouse, again, 200)
    # `again` lands with new content and is staged, not yet loaded: its newer attempt is running.
    land(landing, "again.csv", range(200, 260), label="y")
    job = definitions(contracts_dir).resolve_job_def("ingest_items")
    staged_only = job.execute_in_process(
        partition_key=path_to_key(again),
        instance=instance,
        run_config=QUIET,
        asset_selection=[
            dg.AssetKey(["raw", "items_files"]),
            dg.AssetKey(["staged", "items_staging"]),
        ],
    )
    assert staged_only.success, step_failure(staged_only)
    assert slices(warehouse) == {old: 50, recent: 50, again: 60}

    pruned = {"items.files": 1, "items.rows": 50, "items.partitions_removed": 0}
    assert prune(contracts_dir, instance) == pruned
    assert slices(warehouse) == {recent: 50, again: 60}
    assert warehouse.value("SELECT count(*) FROM shop.items") == 160  # targets untouched

    # The target alone cannot load a pruned slice, and says what to do; the whole partition can.
    target_only = job.execute_in_process(
        partition_key=path_to_key(old),
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
        asset_selection=[dg.AssetKey(["shop", "items"])],
    )
    assert not target_only.success
    assert "materialise staged again" in step_failure(target_only)
    assert run_file(contracts_dir, "items", old, instance).success
    assert slices(warehouse)[old] == 50


def test_old_files_lose_their_partitions_and_keep_everything_else(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> None:
    """ELT_PARTITION_RETENTION_DAYS (90): the partitions of files loaded longer ago go; their
    manifest rows and rows stay; a file of that name with new content gets its partition back."""
    write_contract(contracts_dir, ITEMS)
    old, recent = (
        land(landing, n, range(k * 10, k * 10 + 5)) for k, n in enumerate(["a.csv", "b.csv"])
    )
    for file in (old, recent):
        assert run_file(contracts_dir, "items", file, instance).success
    age(warehouse, old, 91 * 24)
    table = dg.AssetKey(["shop", "items"])
    history = len(instance.fetch_materializations(table, limit=100).records)
    assert prune(contracts_dir, instance)["items.partitions_removed"] == 1
    assert len(instance.fetch_materializations(table, limit=100).records) == history == 2
    assert instance.get_dynamic_partitions("items_files") == [path_to_key(recent)]
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == 2
    assert warehouse.value("SELECT count(*) FROM shop.items") == 10
    assert prune(contracts_dir, instance)["items.partitions_removed"] == 0  # nothing twice

    land(landing, "a.csv", range(100, 103), label="new")
    assert run_file(contracts_dir, "items", old, instance).success  # adds the partition again
    assert sorted(instance.get_dynamic_partitions("items_files")) == sorted(
        [path_to_key(old), path_to_key(recent)]
    )
    assert warehouse.value("SELECT count(*) FROM shop.items") == 13


def test_the_schedule_runs_daily_unless_slices_are_kept_forever(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_contract(contracts_dir, ITEMS)
    [schedule] = list(definitions(contracts_dir).schedules or [])
    assert isinstance(schedule, dg.ScheduleDefinition)
    assert (schedule.name, schedule.cron_schedule) == ("prune_staging_daily", "17 3 * * *")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    monkeypatch.setenv("ELT_STAGING_RETENTION_HOURS", "0")
    assert list(definitions(contracts_dir).schedules or [])  # partitions still expire
    monkeypatch.setenv("ELT_PARTITION_RETENTION_DAYS", "0")
    assert not list(definitions(contracts_dir).schedules or [])
    first_load(landing, contracts_dir, instance)
    file = land(landing, "a.csv", range(10))
    assert run_file(contracts_dir, "items", file, instance).success
    age(warehouse, file, 10_000)
    assert prune(contracts_dir, instance) == {}
    assert slices(warehouse) == {file: 10}
