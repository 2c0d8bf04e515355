"""A backlog of files: the sensor's batch runs and the batch job, on a real instance and database.

The sensor is evaluated as in test_sensor.py (fresh context, partitions applied to the instance);
the runs it requests are executed in process with their own run config and tags, as the daemon
would launch them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from elt_assets.cli import ingest as ingest_module
from elt_assets.cli.ingest import run_ingest
from elt_assets.landing.keys import path_to_key
from elt_assets.orchestration import steps
from elt_assets.orchestration.batch import batch_run_config, batch_run_key
from elt_assets.orchestration.names import BATCH_FILES_TAG, BATCH_TAG, DATASET_TAG, FILE_EVENTS_TAG
from elt_assets.orchestration.resources import build_resources
from elt_assets.postgres.errors import describe, is_transient
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import Settings
from elt_assets.validation import staged_file as staged_file_module
from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import QUIET, definitions, run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

CONTRACT = """
    name: items
    source: {glob: "items/*.csv"}
    target: {schema: shop, table: items, primary_key: [id]}
    columns:
      - {name: id, type: bigint}
      - {name: label, type: text}
    policy: {bad_rows: fail}
"""
STAGED = dg.AssetKey(["staged", "items_staging"])
RAW = dg.AssetKey(["raw", "items_files"])
TARGET = dg.AssetKey(["shop", "items"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def item_file(number: int) -> bytes:
    """Two rows per file, ids 10n+1 and 10n+2."""
    return f"id,label\n{10 * number + 1},a{number}\n{10 * number + 2},b{number}\n".encode()


def land_files(landing: Path, count: int) -> dict[str, bytes]:
    """items/f00.csv ... landed oldest first (distinct mtimes, written just now: a sensor takes
    them at its second tick), so the load order is known."""
    files, now = {}, time.time_ns()
    for number in range(count):
        relative = f"items/f{number:02d}.csv"
        path = landing / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item_file(number))
        os.utime(path, ns=(now + number, now + number))
        files[relative] = item_file(number)
    return files


class Ticker:
    """Evaluates the dataset's sensor like the daemon and runs what it requests, in process."""

    def __init__(self, contracts_dir: Path, instance: dg.DagsterInstance):
        self.contracts_dir, self.instance = contracts_dir, instance
        self.reload()

    def reload(self) -> None:
        """Load the code again, as Dagster does after a deployment changes the settings."""
        self.definitions = definitions(self.contracts_dir)
        self.sensor = self.definitions.resolve_sensor_def("items_files")

    def tick(self) -> list[dg.RunRequest]:
        resources = build_resources(Settings.from_env())
        with dg.build_sensor_context(instance=self.instance, resources=resources) as context:
            result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        for request in result.dynamic_partitions_requests or []:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return list(result.run_requests or [])

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        assert request.job_name is not None
        job = self.definitions.resolve_job_def(request.job_name)
        return job.execute_in_process(
            run_config={**QUIET, **request.run_config},
            tags=dict(request.tags),
            partition_key=request.partition_key,
            instance=self.instance,
            raise_on_error=False,
        )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def always_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """ELT_BATCH_THRESHOLD=0: every tick with new files sends them to batch runs."""
    monkeypatch.setenv("ELT_BATCH_THRESHOLD", "0")


@pytest.fixture
def ticker(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, instance: dg.DagsterInstance
) -> Ticker:
    write_contract(contracts_dir, CONTRACT)
    return Ticker(contracts_dir, instance)


def batch_keys(request: dg.RunRequest) -> list[str]:
    keys: list[str] = request.run_config["ops"]["load_items_files"]["config"]["partition_keys"]
    return keys


def expected_rows(numbers: range | list[int]) -> list[tuple[int, str]]:
    rows = [(10 * n + 1, f"a{n}") for n in numbers] + [(10 * n + 2, f"b{n}") for n in numbers]
    return sorted(rows)


def manifest(warehouse: Warehouse) -> list[tuple[object, ...]]:
    return warehouse.query(
        "SELECT file, sha256, status, rows_read, rows_inserted, run_id, finished_at, error"
        " FROM elt.ingestion_manifest ORDER BY file"
    )


def test_a_few_files_get_single_runs_and_a_backlog_gets_batch_runs(
    ticker: Ticker, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to the threshold (10 by default) each file has its own run; above it, batches."""
    ten = land_files(landing, 10)
    ticker.tick()  # the stable-file rule: new files wait one tick
    singles = ticker.tick()
    assert sorted((r.job_name, r.partition_key) for r in singles) == [
        ("ingest_items", path_to_key(f)) for f in sorted(ten)
    ]

    monkeypatch.setenv("ELT_BATCH_MAX_FILES", "5")
    ticker.reload()
    files = land_files(landing, 22)  # 12 new ones (f10 .. f21)
    new = {f: data for f, data in files.items() if f not in ten}
    ticker.tick()
    batches = ticker.tick()
    # 12 files, at most 5 per run: three runs as even as possible, oldest files first.
    assert [r.job_name for r in batches] == ["ingest_items_batch"] * 3
    assert [batch_keys(r) for r in batches] == [
        [path_to_key(f"items/f{n:02d}.csv") for n in numbers]
        for numbers in (range(10, 14), range(14, 18), range(18, 22))
    ]
    assert [r.tags for r in batches] == [
        {DATASET_TAG: "items", BATCH_TAG: "true", BATCH_FILES_TAG: "4"}
    ] * 3
    assert all(r.partition_key is None for r in batches)
    # Every file is still its own partition.
    assert ticker.instance.get_dynamic_partitions("items_files") == [
        path_to_key(f) for f in sorted(files)
    ]
    # The run key is a hash of the batch's (file, content) pairs, whatever their order.
    first = [
        (path_to_key(f"items/f{n:02d}.csv"), sha(new[f"items/f{n:02d}.csv"])) for n in range(10, 14)
    ]
    lines = "\n".join(sorted(f"{key}@{digest}" for key, digest in first))
    assert batches[0].run_key == f"batch@{hashlib.sha256(lines.encode()).hexdigest()}"
    assert batch_run_key(list(reversed(first))) == batches[0].run_key
    assert len({r.run_key for r in batches}) == 3
    assert ticker.tick() == []  # nothing is requested twice


def test_batch_runs_load_every_file_and_report_each_partition(
    ticker: Ticker, landing: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELT_BATCH_MAX_FILES", "6")
    ticker.reload()
    files = land_files(landing, 12)
    ticker.tick()
    requests = ticker.tick()
    assert [len(batch_keys(r)) for r in requests] == [6, 6]
    results = [ticker.execute(r) for r in requests]
    assert all(r.success for r in results), [step_failure(r) for r in results]

    assert warehouse.query("SELECT id, label FROM shop.items ORDER BY id") == expected_rows(
        range(12)
    )
    assert [
        (f, s, status, read, inserted) for f, s, status, read, inserted, *_ in manifest(warehouse)
    ] == [(f, sha(data), "success", 2, 2) for f, data in sorted(files.items())]
    keys = {path_to_key(f) for f in files}
    for asset in (RAW, STAGED, TARGET):
        assert ticker.instance.get_materialized_partitions(asset) == keys, asset
    # Each staged check has one evaluation per file, on that file's partition.
    for check in ("contract_conformance", "rows_reconciled"):
        history = ticker.instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(STAGED, check), limit=100
        )
        assert sorted(str(record.partition) for record in history) == sorted(keys), check
        assert {record.status.value for record in history} == {"SUCCEEDED"}
    # The target's checks are the table's: one evaluation per run, without a partition, after
    # the batch's last file.
    for check in ("primary_key_valid", "row_count_not_dropped"):
        history = ticker.instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(TARGET, check), limit=100
        )
        assert sorted(r.run_id for r in history) == sorted(r.run_id for r in results), check
        assert {(r.partition, r.status.value) for r in history} == {(None, "SUCCEEDED")}
    latest = ticker.instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(TARGET, "row_count_not_dropped")
    )
    assert latest is not None and latest.event is not None
    data = latest.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
    assert data.metadata["row_count"].value == 24
    assert data.metadata["previous_row_count"].value == 22  # after the file before the last
    # The metadata each partition shows is the one a single run gives (rows of that file).
    event = ticker.instance.get_latest_materialization_event(TARGET)
    assert event is not None and event.asset_materialization is not None
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["file"] == "items/f11.csv" and metadata["rows_inserted"] == 2
    assert metadata["dagster/row_count"] == 24
    assert event.asset_materialization.partition == path_to_key("items/f11.csv")


@pytest.mark.usefixtures("always_batch")
def test_a_bad_file_fails_alone_and_the_batch_fails_naming_it(
    ticker: Ticker, landing: Path, warehouse: Warehouse
) -> None:
    files = land_files(landing, 6)
    (landing / "items/f02.csv").write_bytes(b"id,label\n21,ok\nnot-a-number,bad\n")
    (landing / "items/f04.csv").write_bytes(b"id,wrong\n41,x\n")
    ticker.tick()
    (request,) = ticker.tick()
    result = ticker.execute(request)

    assert not result.success
    message = step_failure(result)
    assert message.startswith("2 of 6 files failed (the others loaded):")
    rows = {str(f): (status, str(error)) for f, _, status, _, _, _, _, error in manifest(warehouse)}
    assert rows["items/f02.csv"] == (
        "failed",
        "1 of 2 rows failed validation and the contract says bad_rows: fail (see elt.quarantine "
        "for each row and reason)",
    )
    assert rows["items/f04.csv"][0] == "failed"
    assert "items/f04.csv" in rows["items/f04.csv"][1] and "label" in rows["items/f04.csv"][1]
    assert f"items/f02.csv: {rows['items/f02.csv'][1]}" in message
    assert rows["items/f04.csv"][1] in message
    assert {f: s for f, (s, _) in rows.items() if f not in ("items/f02.csv", "items/f04.csv")} == {
        f: "success" for f in files if f not in ("items/f02.csv", "items/f04.csv")
    }
    assert warehouse.query("SELECT id, label FROM shop.items ORDER BY id") == expected_rows(
        [0, 1, 3, 5]
    )
    assert warehouse.query(
        "SELECT file, row_number, column_name FROM elt.quarantine WHERE resolved_at IS NULL"
    ) == [("items/f02.csv", 2, "id")]  # the second data row (row numbers count data rows)
    # The bad file's conformance check failed on its own partition; the good ones passed.
    history = ticker.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(STAGED, "contract_conformance"), limit=100
    )
    assert {r.partition: r.status.value for r in history} == {
        **{
            path_to_key(f): "SUCCEEDED"
            for f in files
            if f not in ("items/f02.csv", "items/f04.csv")
        },
        path_to_key("items/f02.csv"): "FAILED",
    }
    # A file that cannot be read is not materialised as staged; the policy failure is (its good
    # rows are in staging), and neither reaches the target.
    staged = ticker.instance.get_materialized_partitions(STAGED)
    assert path_to_key("items/f04.csv") not in staged and path_to_key("items/f02.csv") in staged
    assert ticker.instance.get_materialized_partitions(TARGET) == {
        path_to_key(f) for f in files if f not in ("items/f02.csv", "items/f04.csv")
    }


@pytest.mark.usefixtures("always_batch")
def test_a_file_gone_after_the_raw_step_fails_alone_and_the_group_is_prepared_one_by_one(
    ticker: Ticker, landing: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged step prepares a group's files together (one manifest query); a file deleted
    between the raw step and that moment makes the group's preparation fail, and then each file
    is prepared on its own: that file fails with its own error, the others load."""
    files = land_files(landing, 5)
    open_files = steps.open_files

    def open_then_delete(*args: Any, **kwargs: Any) -> None:
        open_files(*args, **kwargs)
        (landing / "items/f03.csv").unlink()  # the user deletes it as the run goes on

    monkeypatch.setattr(steps, "open_files", open_then_delete)
    ticker.tick()
    (request,) = ticker.tick()
    result = ticker.execute(request)

    assert not result.success
    assert step_failure(result).startswith("1 of 5 files failed (the others loaded):")
    assert any("5 files prepared one by one" in line for line in run_log(ticker.instance, result))
    rows = {str(f): (status, error) for f, _, status, *_, error in manifest(warehouse)}
    assert {f: status for f, (status, _) in rows.items()} == {
        f: "failed" if f == "items/f03.csv" else "success" for f in files
    }
    error = str(rows["items/f03.csv"][1])
    assert error.startswith("items/f03.csv: the file is no longer in the landing zone")
    assert error.endswith("was it moved or deleted?") and error in step_failure(result)
    assert warehouse.query("SELECT id, label FROM shop.items ORDER BY id") == expected_rows(
        [0, 1, 2, 4]
    )


@pytest.mark.usefixtures("always_batch")
def test_running_the_same_batch_again_changes_nothing(
    ticker: Ticker, landing: Path, warehouse: Warehouse
) -> None:
    land_files(landing, 5)
    ticker.tick()
    (request,) = ticker.tick()
    assert ticker.execute(request).success
    table, rows = warehouse.query("SELECT * FROM shop.items ORDER BY id"), manifest(warehouse)

    again = ticker.execute(request)
    assert again.success, step_failure(again)
    assert warehouse.query("SELECT * FROM shop.items ORDER BY id") == table
    assert manifest(warehouse) == rows  # same run ids and finish times: nothing was redone
    assert again.get_asset_materialization_events() == []
    metadata = output_metadata(again)
    assert metadata["files_already_loaded"] == 5 and metadata["files_loaded"] == 0


def row_counts_by_file(instance: dg.DagsterInstance) -> dict[str, int]:
    """The table's row count each file's target materialisation reported (newest per file)."""
    records = instance.fetch_materializations(TARGET, limit=1000).records
    counts: dict[str, int] = {}
    for record in reversed(records):  # oldest first: a file loaded again keeps its newest
        materialization = record.asset_materialization
        assert materialization is not None
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        counts[str(metadata["file"])] = int(metadata["dagster/row_count"])  # type: ignore[call-overload]
    return counts


def recorded_rows(warehouse: Warehouse) -> tuple[int, int]:
    """(elt.target_rows' count of shop.items, count(*) of it)."""
    return (
        warehouse.value(
            "SELECT row_count FROM elt.target_rows WHERE relid = 'shop.items'::regclass"
        ),
        warehouse.value("SELECT count(*) FROM shop.items"),
    )


@pytest.mark.parametrize("mode", ["upsert", "append"])
@pytest.mark.usefixtures("always_batch")
def test_each_files_row_count_is_exact_and_a_change_made_between_runs_is_counted(
    ticker: Ticker,
    landing: Path,
    contracts_dir: Path,
    warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """A batch carries the table's count forward file by file (elt.target_rows); rows deleted
    by hand in between runs are noted by the table's trigger, and the next run counts again."""
    target = "mode: append" if mode == "append" else "primary_key: [id]"
    write_contract(contracts_dir, CONTRACT.replace("primary_key: [id]", target))
    monkeypatch.setenv("ELT_BATCH_MAX_FILES", "3")
    ticker.reload()
    land_files(landing, 6)
    ticker.tick()
    requests = ticker.tick()
    assert [len(batch_keys(r)) for r in requests] == [3, 3]
    assert all(ticker.execute(r).success for r in requests)
    assert row_counts_by_file(ticker.instance) == {
        f"items/f{n:02d}.csv": 2 * n + 2 for n in range(6)
    }
    assert recorded_rows(warehouse) == (12, 12)

    warehouse.query("DELETE FROM shop.items WHERE id IN (1, 2, 11)")  # outside the platform
    # f03 changed (append replaces its 2 rows; upsert updates 31, 32 and adds 33), then 2 new.
    changed = {"items/f03.csv": b"id,label\n31,x\n32,y\n33,z\n"}
    changed |= {f"items/f{n:02d}.csv": item_file(n) for n in (6, 7)}
    now = time.time_ns()
    for order, (relative, data) in enumerate(changed.items()):
        (landing / relative).write_bytes(data)
        os.utime(landing / relative, ns=(now + order,) * 2)
    ticker.tick()
    (request,) = ticker.tick()
    result = ticker.execute(request)
    assert result.success, step_failure(result)
    counts = row_counts_by_file(ticker.instance)  # counted at f03: 12 - 3 deleted + 1 net
    assert [counts[f"items/f{n:02d}.csv"] for n in (3, 6, 7)] == [10, 12, 14]
    assert recorded_rows(warehouse) == (14, 14)
    evaluation = ticker.instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(TARGET, "row_count_not_dropped")
    )
    assert evaluation is not None and evaluation.event is not None
    data = evaluation.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
    assert not data.passed and data.metadata["previous_row_count"].value == 12
    assert "fewer than after the previous load" in (data.description or "")

    # A table dropped and created again is counted afresh (a new relid), not carried forward.
    warehouse.query("DROP TABLE shop.items")
    (landing / "items/f08.csv").write_bytes(item_file(8))
    ticker.tick()
    (request,) = ticker.tick()
    assert ticker.execute(request).success
    assert row_counts_by_file(ticker.instance)["items/f08.csv"] == 2
    assert recorded_rows(warehouse) == (2, 2)
    # The dropped table's count is gone: its oid may be given to another table one day.
    assert warehouse.value("SELECT count(*) FROM elt.target_rows") == 1


DOCS = CONTRACT.replace(
    "      - {name: label, type: text}\n",
    "      - {name: label, type: text}\n      - {name: doc, type: jsonb}\n",
).replace("policy: {bad_rows: fail}", "policy: {max_bad_row_ratio: 0.5}")


def doc_file(number: int, doc: str | None = None) -> bytes:
    """Two rows, ids 10n+1 and 10n+2; `doc` replaces the second row's JSON."""
    second = doc if doc is not None else f'"{{""n"": {number}}}"'
    return (
        f'id,label,doc\n{10 * number + 1},a{number},"{{""n"": {number}}}"\n'
        f"{10 * number + 2},b{number},{second}\n"
    ).encode()


def land_docs(landing: Path, files: dict[int, bytes]) -> None:
    """Written just now, in this order (distinct mtimes)."""
    start = time.time_ns()
    for order, (number, data) in enumerate(files.items()):
        path = landing / f"items/f{number:02d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(start + order, start + order))


def run_log(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    """Every message the run logged (its context.log lines too)."""
    return [entry.user_message for entry in instance.all_logs(result.run_id)]


def latest_metadata(instance: dg.DagsterInstance, asset: dg.AssetKey) -> dict[str, dict[str, Any]]:
    """File -> the metadata of its newest materialisation of `asset`."""
    found: dict[str, dict[str, Any]] = {}
    for record in reversed(instance.fetch_materializations(asset, limit=1000).records):
        materialization = record.asset_materialization
        assert materialization is not None
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        found[str(metadata["file"])] = metadata
    return found


@pytest.mark.usefixtures("always_batch")
def test_small_files_are_staged_and_loaded_together_or_one_by_one_when_one_needs_it(
    ticker: Ticker, landing: Path, contracts_dir: Path, warehouse: Warehouse
) -> None:
    """Small files read together are staged in one transaction and loaded in one; when
    PostgreSQL refuses a value, or a load breaks a constraint, nothing of the group is written
    and each file goes on its own, so the error is that file's alone."""
    write_contract(contracts_dir, DOCS)
    ticker.reload()
    land_docs(landing, {n: doc_file(n) for n in range(4)})
    ticker.tick()
    (request,) = ticker.tick()
    first = ticker.execute(request)
    assert first.success, step_failure(first)
    staged = latest_metadata(ticker.instance, STAGED)
    target = latest_metadata(ticker.instance, TARGET)
    assert {f: m["staged_with_files"] for f, m in staged.items()} == {
        f"items/f{n:02d}.csv": 3 for n in range(4)
    }
    assert {f: (m["loaded_with_files"], m["dagster/row_count"]) for f, m in target.items()} == {
        f"items/f{n:02d}.csv": (3, 2 * n + 2) for n in range(4)
    }

    # f05's JSON is refused by PostgreSQL (not by our validation): the group is staged file by
    # file, f05's row isolated with PostgreSQL's reason; f06 breaks the policy and fails alone.
    land_docs(
        landing,
        {
            4: doc_file(4),
            5: doc_file(5, '"{""n"":"'),
            6: b"id,label,doc\nx,a,\ny,b,\n",
            7: doc_file(7),
        },
    )
    ticker.tick()
    (request,) = ticker.tick()
    second = ticker.execute(request)
    assert not second.success
    assert step_failure(second).startswith("1 of 4 files failed (the others loaded):")
    assert "items/f06.csv" in step_failure(second)
    logs = run_log(ticker.instance, second)
    assert any(m.startswith("4 files staged one by one: ") for m in logs), logs
    staged = latest_metadata(ticker.instance, STAGED)
    assert staged["items/f05.csv"]["rows_refused_by_postgres"] == 1
    assert not any("staged_with_files" in staged[f"items/f{n:02d}.csv"] for n in (4, 5, 6, 7))
    assert warehouse.query(
        "SELECT file, row_number, check_name FROM elt.quarantine WHERE resolved_at IS NULL "
        "AND file = 'items/f05.csv'"
    ) == [("items/f05.csv", 2, "postgres")]

    # A constraint added by hand (a unique label) breaks f09's load: the group's load is undone
    # and each file loads on its own; f09 fails with PostgreSQL's message, f08 and f10 load.
    warehouse.query("CREATE UNIQUE INDEX items_label ON shop.items (label)")
    clash = b'id,label,doc\n91,a0,"{""n"": 9}"\n'
    land_docs(landing, {8: doc_file(8), 9: clash, 10: doc_file(10)})
    ticker.tick()
    (request,) = ticker.tick()
    third = ticker.execute(request)
    assert not third.success
    assert any(m.startswith("3 files loaded one by one: ") for m in run_log(ticker.instance, third))
    staged, target = (
        latest_metadata(ticker.instance, STAGED),
        latest_metadata(ticker.instance, TARGET),
    )
    assert staged["items/f09.csv"]["staged_with_files"] == 2  # staged together, loaded apart
    assert "loaded_with_files" not in target["items/f08.csv"]
    rows = {str(f): (status, str(error)) for f, _, status, _, _, _, _, error in manifest(warehouse)}
    assert rows["items/f08.csv"][0] == rows["items/f10.csv"][0] == "success"
    assert rows["items/f09.csv"][0] == "failed" and "items_label" in rows["items/f09.csv"][1]
    assert warehouse.value("SELECT count(*) FROM shop.items WHERE id IN (81, 82, 101, 102)") == 4
    assert warehouse.value("SELECT count(*) FROM shop.items WHERE id = 91") == 0
    assert warehouse.value(
        "SELECT row_count FROM elt.target_rows WHERE relid = 'shop.items'::regclass"
    ) == warehouse.value("SELECT count(*) FROM shop.items")


@pytest.mark.usefixtures("always_batch")
@pytest.mark.parametrize("mode", ["upsert", "append"])
def test_a_batchs_first_file_read_on_its_own_goes_straight_into_the_empty_table(
    ticker: Ticker,
    landing: Path,
    contracts_dir: Path,
    warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """Files too big to be read together are staged and loaded one by one: the first, into the
    empty table, goes straight into it; the next ones are staged and loaded as always. Every
    file's row count is exact either way."""
    if mode == "append":
        write_contract(contracts_dir, CONTRACT.replace("primary_key: [id]", "mode: append"))
        ticker.reload()
    monkeypatch.setattr(staged_file_module, "SMALL_FILE_BYTES", 0)  # every file on its own
    land_files(landing, 3)
    ticker.tick()
    (request,) = ticker.tick()
    result = ticker.execute(request)
    assert result.success, step_failure(result)
    staged, target = (
        latest_metadata(ticker.instance, STAGED),
        latest_metadata(ticker.instance, TARGET),
    )
    files = [f"items/f{n:02d}.csv" for n in range(3)]
    assert [staged[f]["straight_to_target"] for f in files] == [True, False, False]
    assert [target[f]["straight_to_target"] for f in files] == [True, False, False]
    assert [target[f]["dagster/row_count"] for f in files] == [2, 4, 6]
    slices = warehouse.query("SELECT DISTINCT _elt_file FROM elt_staging.items ORDER BY 1")
    assert slices == [(files[1],), (files[2],)]
    assert warehouse.query("SELECT id, label FROM shop.items ORDER BY 1") == expected_rows(range(3))
    assert recorded_rows(warehouse) == (6, 6)
    assert [row[2:5] for row in manifest(warehouse)] == [("success", 2, 2)] * 3


def output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert output.step_output_data is not None
    metadata = output.step_output_data.metadata
    return {name: value.value for name, value in metadata.items()}


@pytest.mark.usefixtures("always_batch")
def test_with_archiving_the_batch_moves_loaded_files_and_a_rerun_skips_them(
    ticker: Ticker, landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    monkeypatch.setenv("ELT_ARCHIVE_DIR", str(archive))
    ticker.reload()
    files = land_files(landing, 3)
    ticker.tick()
    (request,) = ticker.tick()
    assert ticker.execute(request).success
    assert {f"items/{p.name}": p.read_bytes() for p in (archive / "items").iterdir()} == files
    assert list((landing / "items").iterdir()) == []

    again = ticker.execute(request)  # e.g. a retry: the files are gone, their loads succeeded
    assert again.success, step_failure(again)
    assert output_metadata(again)["files_already_loaded"] == 3


@pytest.mark.usefixtures("always_batch")
def test_a_transient_error_retries_the_op_and_redoes_only_unfinished_files(
    ticker: Ticker, landing: Path, warehouse: Warehouse
) -> None:
    """A lock that cannot be had in time (55P03) on the third file: the op is retried by its
    RetryPolicy; the two files already loaded are skipped, the rest load."""
    warehouse.query(f"ALTER DATABASE {warehouse.name} SET lock_timeout = '300ms'")
    land_files(landing, 5)
    ticker.tick()
    (request,) = ticker.tick()
    ready = threading.Event()

    def hold_the_third_files_lock() -> None:
        """The lock every write of items/f02.csv takes (sql/templates/lock_files.sql), held by
        another session until the batch's first attempt has failed on it (and noted it)."""
        lock = "hashtext('elt:file'), hashtext('items' || '/' || 'items/f02.csv')"
        with psycopg.connect(warehouse.superuser_url, autocommit=True) as connection:
            connection.execute(f"SELECT pg_advisory_lock({lock})")
            ready.set()
            for _ in range(600):  # at most 60 s
                # A transient error keeps the file `running` and records the retried error.
                noted = connection.execute(
                    "SELECT error IS NOT NULL FROM elt.ingestion_manifest "
                    "WHERE file = 'items/f02.csv'"
                ).fetchone()
                if noted == (True,):
                    break
                threading.Event().wait(0.1)
            connection.execute(f"SELECT pg_advisory_unlock({lock})")

    holder = threading.Thread(target=hold_the_third_files_lock)
    holder.start()
    assert ready.wait(10)
    result = ticker.execute(request)
    holder.join(70)

    assert result.success, step_failure(result)
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1
    assert warehouse.query("SELECT DISTINCT status FROM elt.ingestion_manifest") == [("success",)]
    # f00 and f01 were loaded by the first attempt and skipped by the retry; the others were
    # taken (raw) by both attempts and loaded by the second.
    raw_events: dict[str | None, int] = {}
    target_events: dict[str | None, int] = {}
    for entry in ticker.instance.all_logs(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ):
        materialization = entry.asset_materialization
        assert materialization is not None
        counter = raw_events if materialization.asset_key == RAW else target_events
        if materialization.asset_key in (RAW, TARGET):
            key = materialization.partition
            counter[key] = counter.get(key, 0) + 1
    names = [path_to_key(f"items/f{n:02d}.csv") for n in range(5)]
    assert raw_events == dict(zip(names, [1, 1, 2, 2, 2], strict=True))
    assert target_events == dict.fromkeys(names, 1)
    assert warehouse.query("SELECT id, label FROM shop.items ORDER BY id") == expected_rows(
        range(5)
    )


@pytest.mark.usefixtures("always_batch")
def test_a_single_partition_run_works_after_a_batch(
    ticker: Ticker, landing: Path, contracts_dir: Path, warehouse: Warehouse
) -> None:
    land_files(landing, 5)
    ticker.tick()
    (request,) = ticker.tick()
    assert ticker.execute(request).success
    (landing / "items/f01.csv").write_bytes(b"id,label\n11,changed\n12,b1\n99,new\n")

    result = run_file(contracts_dir, "items", "items/f01.csv", ticker.instance)
    assert result.success, step_failure(result)
    assert warehouse.value("SELECT label FROM shop.items WHERE id = 11") == "changed"
    assert warehouse.value("SELECT count(*) FROM shop.items") == 11
    evaluation = ticker.instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(TARGET, "row_count_not_dropped")
    )
    assert evaluation is not None and evaluation.event is not None
    data = evaluation.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
    # The single run compares with the row count the batch recorded (10 rows).
    assert data.metadata["previous_row_count"].value == 10 and data.passed


def test_elt_ingest_without_dagster_home_loads_a_backlog_in_as_few_batch_runs_as_it_may(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without DAGSTER_HOME its runs follow each other in the one process: ELT_BATCH_MAX_FILES
    (spreading a backlog over workers) is not their bound, HEADLESS_BATCH_FILES is (each file's
    lease is a lock held until it is loaded)."""
    write_contract(contracts_dir, CONTRACT)
    land_files(landing, 7)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("ELT_BATCH_MAX_FILES", "2")
    runs = "SELECT count(DISTINCT run_id) FROM elt.ingestion_manifest WHERE status = 'success'"
    outcome = run_ingest(Settings.from_env(), "items", dry_run=False)
    assert outcome.exit_code == 0 and len(outcome.files) == 7
    assert warehouse.value(runs) == 1  # not four runs of two

    monkeypatch.setattr(ingest_module, "HEADLESS_BATCH_FILES", 4)
    for n in range(7, 14):
        (landing / f"items/f{n:02d}.csv").write_bytes(item_file(n))
    outcome = run_ingest(Settings.from_env(), "items", dry_run=False)
    assert outcome.exit_code == 0
    assert warehouse.value(runs) == 1 + 2  # seven more files, at most four a run


def test_elt_ingest_loads_a_backlog_in_batch_runs(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_contract(contracts_dir, CONTRACT)
    land_files(landing, 7)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("ELT_BATCH_THRESHOLD", "6")
    monkeypatch.setenv("ELT_BATCH_MAX_FILES", "4")
    opened: list[ConnectionPool] = []
    open_pool = PostgresResource._open_pool

    def counted(resource: PostgresResource) -> ConnectionPool:
        opened.append(open_pool(resource))
        return opened[-1]

    monkeypatch.setattr(PostgresResource, "_open_pool", counted)
    outcome = run_ingest(Settings.from_env(), "items", dry_run=False)
    assert outcome.exit_code == 0
    # Both runs (and the command's own queries) took the one pool the command opened, and it
    # is closed now that the command is over.
    assert len(opened) == 1 and opened[0].closed
    assert sorted((f["file"], f["status"]) for f in outcome.files) == [
        (f"items/f{n:02d}.csv", "success") for n in range(7)
    ]
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert sorted((r.job_name, r.tags.get(BATCH_FILES_TAG)) for r in runs) == [
            ("ingest_items_batch", "3"),
            ("ingest_items_batch", "4"),
        ]
        configs: list[Any] = [r.run_config for r in runs]
        assert {c["ops"]["load_items_files"]["config"]["partition_keys"][0] for c in configs} == {
            path_to_key("items/f00.csv"),
            path_to_key("items/f04.csv"),
        }
        assert len(instance.get_materialized_partitions(TARGET)) == 7
    assert batch_run_config("items", ["k"]) == {
        "ops": {"load_items_files": {"config": {"partition_keys": ["k"]}}}
    }


@pytest.mark.usefixtures("always_batch")
def test_a_batch_tagged_by_elt_ingest_without_history_writes_the_manifest_but_no_file_events(
    ticker: Ticker, landing: Path, warehouse: Warehouse
) -> None:
    """`elt ingest` without DAGSTER_HOME tags its runs elt/file_events=false: the instance ends
    with the process, so the per-file materialisations and check evaluations, which no one could
    ever see, are not written; the manifest records every file as always."""
    files = land_files(landing, 4)
    ticker.tick()
    [request] = ticker.tick()
    tagged = request.with_replaced_attrs(tags={**request.tags, FILE_EVENTS_TAG: "false"})
    result = ticker.execute(tagged)
    assert result.success, step_failure(result)
    for asset in (RAW, STAGED, TARGET):
        assert ticker.instance.get_materialized_partitions(asset) == set(), asset
    assert warehouse.query("SELECT id, label FROM shop.items ORDER BY id") == expected_rows(
        range(4)
    )
    assert [status for _, _, status, *_ in manifest(warehouse)] == ["success"] * len(files)


def test_a_full_lock_table_is_reported_with_what_to_change_and_is_not_retried(
    warehouse: Warehouse,
) -> None:
    """Each file of a running batch holds a lease (an advisory lock) until it is loaded, so the
    server's lock table bounds ELT_BATCH_MAX_FILES (settings.py caps it at 2,000). Should the
    table still fill up, the error says which settings to change, and is not retried: retrying
    the same batch would fill it again."""
    with psycopg.connect(warehouse.loader_url, autocommit=True) as connection:
        with pytest.raises(psycopg.Error) as caught:
            # Transaction-level locks: all released when the statement fails.
            connection.execute(
                "SELECT count(pg_advisory_xact_lock(n)) FROM generate_series(1, 10000000) AS n"
            )
        assert connection.execute("SELECT 1").fetchone() == (1,)  # the session is fine after
    assert caught.value.sqlstate == "53200"
    assert not is_transient(caught.value)
    message = describe(caught.value)
    assert "lock table is full" in message
    assert "ELT_BATCH_MAX_FILES" in message and "max_locks_per_transaction" in message
