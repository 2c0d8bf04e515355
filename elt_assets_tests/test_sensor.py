"""The file sensor (orchestration/sensors.py) evaluated tick by tick on a real instance and
database.

The sensor's memory lives in elt.landing_files, so every tick here starts without a cursor: what
it decides depends on the database alone. The partitions a tick asks for are added to the
instance, as the sensor daemon does.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from elt_assets.landing import discovery
from elt_assets.landing.files import LandedFile
from elt_assets.landing.keys import key_to_path, path_to_key
from elt_assets.orchestration.names import DATASET_TAG, FILE_TAG, SHA_TAG
from elt_assets.orchestration.resources import build_resources
from elt_assets.settings import Settings
from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import definitions, run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

CONTRACT = """
    name: items
    source: {glob: "items/**/*.csv"}
    target: {schema: shop, table: items, primary_key: [id]}
    columns:
      - {name: id, type: bigint}
      - {name: label, type: text}
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def land(landing: Path, relative: str, data: bytes) -> None:
    path = landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Ticker:
    """Evaluates the dataset's sensor like the daemon: fresh context, partitions applied. The
    code is loaded at the first tick, so settings a test sets before it apply (as on a reload)."""

    def __init__(
        self, contracts_dir: Path, instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
    ):
        self.contracts_dir, self.instance, self.capsys = contracts_dir, instance, capsys
        self.sensor: dg.SensorDefinition | None = None
        self.log = ""  # what the last tick logged (Dagster prints a tick's log on stderr)

    def __call__(self) -> dg.SensorResult:
        if self.sensor is None:
            self.sensor = definitions(self.contracts_dir).resolve_sensor_def("items_files")
        resources = build_resources(Settings.from_env())
        self.capsys.readouterr()
        with dg.build_sensor_context(instance=self.instance, resources=resources) as context:
            result = self.sensor(context)
        self.log = self.capsys.readouterr().err
        assert isinstance(result, dg.SensorResult)
        for request in result.dynamic_partitions_requests or []:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return result


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def ticker(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> Ticker:
    write_contract(contracts_dir, CONTRACT)
    return Ticker(contracts_dir, instance, capsys)


def run_keys(result: dg.SensorResult) -> list[str | None]:
    return sorted(r.run_key for r in result.run_requests or [])


def added_keys(result: dg.SensorResult) -> list[str]:
    return [
        key
        for request in result.dynamic_partitions_requests or []
        for key in request.partition_keys  # type: ignore[union-attr]
    ]


def test_files_wait_a_tick_then_each_gets_one_run_and_a_partition(
    ticker: Ticker, landing: Path, warehouse: Warehouse
) -> None:
    files = {"items/a.csv": b"id,label\n1,a\n", "items/b.csv": b"id,label\n2,b\n"}
    for relative, data in files.items():
        land(landing, relative, data)
    first = ticker()
    assert first.run_requests == [] and added_keys(first) == []
    assert (
        "items: new or changed, taken once nothing writes to them any more: "
        "items/a.csv, items/b.csv"
    ) in ticker.log
    assert first.cursor is None  # the memory is elt.landing_files, not a cursor to edit
    assert warehouse.value("SELECT count(*) FROM elt.landing_files WHERE sha256 IS NULL") == 2

    second = ticker()
    requests = sorted(second.run_requests or [], key=lambda r: r.partition_key or "")
    assert [(r.run_key, r.partition_key) for r in requests] == [
        (f"items/a.csv@{sha(files['items/a.csv'])}", "items/a.csv"),
        (f"items/b.csv@{sha(files['items/b.csv'])}", "items/b.csv"),
    ]
    assert requests[0].tags == {
        SHA_TAG: sha(files["items/a.csv"]),
        FILE_TAG: "items/a.csv",
        DATASET_TAG: "items",
    }
    (add,) = second.dynamic_partitions_requests or []
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    assert add.partitions_def_name == "items_files"
    assert sorted(add.partition_keys) == ["items/a.csv", "items/b.csv"]
    assert ticker.instance.get_dynamic_partitions("items_files") == ["items/a.csv", "items/b.csv"]

    third = ticker()
    assert third.run_requests == [] and added_keys(third) == []


def test_a_file_nothing_wrote_to_for_the_quiet_period_is_taken_at_the_first_tick(
    ticker: Ticker, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default quiet period (ELT_FILE_QUIET_SECONDS, 2 s): a file whose mtime is that old
    is complete at first sight; one written just now waits for the next tick."""
    monkeypatch.setenv("ELT_FILE_QUIET_SECONDS", "2")
    land(landing, "items/old.csv", b"id,label\n1,a\n")
    land(landing, "items/new.csv", b"id,label\n2,b\n")
    stamp = time.time_ns() - 3_000_000_000
    os.utime(landing / "items/old.csv", ns=(stamp, stamp))
    future = time.time_ns() + 600_000_000_000  # written "now", on any test's pace
    os.utime(landing / "items/new.csv", ns=(future, future))
    first = ticker()
    assert [r.partition_key for r in first.run_requests or []] == ["items/old.csv"]
    assert "items: new or changed, taken once nothing writes to them any more: items/new.csv" in (
        ticker.log
    )
    assert [r.partition_key for r in ticker().run_requests or []] == ["items/new.csv"]


def test_a_file_landed_just_before_a_tick_is_taken_by_that_tick_once_quiet(
    ticker: Ticker, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tick waits out a fresh file's quiet period (ELT_FILE_QUIET_SECONDS) instead of
    leaving the file to the next tick, a sensor interval later."""
    monkeypatch.setenv("ELT_FILE_QUIET_SECONDS", "1")
    land(landing, "items/fresh.csv", b"id,label\n1,a\n")
    started = time.monotonic()
    first = ticker()
    assert [r.partition_key for r in first.run_requests or []] == ["items/fresh.csv"]
    assert time.monotonic() - started >= 0.5  # it waited for the file to be quiet
    assert "taken once nothing writes to them" not in ticker.log


def test_a_tick_holds_no_warehouse_connection_while_it_waits_for_a_fresh_file(
    ticker: Ticker, landing: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the tick waits out a file's quiet period (3 s here), the warehouse's sessions are
    ended (a restart, a failover, an idle-session timeout): it still decides and records the
    file, on a pooled connection checked after the wait (one idle for over 2 s is checked before
    it is handed out), instead of failing on one it held through the wait."""
    monkeypatch.setenv("ELT_FILE_QUIET_SECONDS", "3")
    land(landing, "items/fresh.csv", b"id,label\n1,a\n")
    wait_until_quiet = discovery._wait_until_quiet
    ended: list[int] = []

    def end_sessions_then_wait(*args: object, **kwargs: object) -> list[LandedFile]:
        ended.extend(
            row[0]
            for row in warehouse.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return wait_until_quiet(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(discovery, "_wait_until_quiet", end_sessions_then_wait)
    first = ticker()
    assert ended and all(ended)  # the sensor's own sessions were there, and were ended
    assert [r.partition_key for r in first.run_requests or []] == ["items/fresh.csv"]
    recorded = warehouse.value(
        "SELECT sha256 FROM elt.landing_files WHERE file = 'items/fresh.csv'"
    )
    assert recorded == sha(b"id,label\n1,a\n")


def test_awkward_file_names_become_reversible_keys_without_commas(
    ticker: Ticker, landing: Path
) -> None:
    names = [
        "items/with space.csv",
        "items/a,b,c.csv",
        "items/ünïcödé 日本.csv",
        "items/2026/11/deep, nested.csv",
        "items/100%.csv",
        "items/x...y.csv",
    ]
    for i, name in enumerate(names):
        land(landing, name, f"id,label\n{i},x\n".encode())
    ticker()
    result = ticker()
    keys = added_keys(result)
    assert len(keys) == len(names)
    assert all("," not in key for key in keys)
    assert sorted(key_to_path(key) for key in keys) == sorted(names)
    for request in result.run_requests or []:
        assert request.partition_key is not None
        assert key_to_path(request.partition_key) == request.tags[FILE_TAG]
        assert request.run_key == f"{request.partition_key}@{request.tags[SHA_TAG]}"
    # Dagster itself accepted every key (the ticker added them to the instance).
    assert sorted(ticker.instance.get_dynamic_partitions("items_files")) == sorted(keys)
    assert path_to_key("items/with space.csv") in keys  # spaces and unicode stay readable
    assert "items/ünïcödé 日本.csv" in keys


def test_changed_file_gets_a_new_run_key_and_no_new_partition(
    ticker: Ticker, landing: Path
) -> None:
    land(landing, "items/a.csv", b"id,label\n1,old\n")
    ticker()
    (before,) = ticker().run_requests or []
    changed = b"id,label\n1,new value\n"
    land(landing, "items/a.csv", changed)
    assert ticker().run_requests == []  # changed: waits for the next look
    after = ticker()
    (request,) = after.run_requests or []
    assert request.run_key == f"items/a.csv@{sha(changed)}"
    assert request.run_key != before.run_key
    assert request.partition_key == before.partition_key == "items/a.csv"
    assert added_keys(after) == []  # the partition exists already


def test_content_already_loaded_under_another_name_is_recorded_as_duplicate(
    ticker: Ticker, landing: Path, contracts_dir: Path, warehouse: Warehouse
) -> None:
    data = b"id,label\n1,a\n"
    land(landing, "items/a.csv", data)
    loaded = run_file(contracts_dir, "items", "items/a.csv", ticker.instance)
    assert loaded.success, step_failure(loaded)
    land(landing, "items/copy of a.csv", data)
    ticker()
    result = ticker()
    assert result.run_requests == []  # a.csv: loaded already; the copy: a duplicate
    assert (
        "items: not loaded, content already loaded from another file: "
        "items/copy of a.csv (same content as items/a.csv)"
    ) in ticker.log
    rows = warehouse.query(
        "SELECT file, status, duplicate_of, sha256, error FROM elt.ingestion_manifest"
        " WHERE status = 'duplicate'"
    )
    assert rows == [
        (
            "items/copy of a.csv",
            "duplicate",
            "items/a.csv",
            sha(data),
            "same content as items/a.csv, which is already loaded",
        )
    ]
    assert ticker().run_requests == []
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == 2


def test_max_runs_per_tick_caps_requests_and_the_rest_follow(
    ticker: Ticker, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELT_MAX_RUNS_PER_TICK", "2")
    for i in range(5):
        land(landing, f"items/f{i}.csv", f"id,label\n{i},x\n".encode())
    assert ticker().run_requests == []
    ticks, logs = [], []
    for _ in range(4):
        ticks.append(ticker())
        logs.append(ticker.log)
    assert [len(t.run_requests or []) for t in ticks] == [2, 2, 1, 0]
    deferred = [
        re.findall(r"items: (\d+) more file\(s\) wait for the next tick \(at most 2 per tick", log)
        for log in logs
    ]
    assert deferred == [["3"], ["1"], [], []]
    assert "items: sent 2 new file(s) to one run each: items/f0.csv, items/f1.csv" in logs[0]
    keys = [r.partition_key for t in ticks for r in t.run_requests or []]
    assert sorted(keys) == [f"items/f{i}.csv" for i in range(5)]  # each file exactly once


def test_hundreds_of_files_are_taken_fifty_a_tick_with_a_log_that_stays_short(
    ticker: Ticker, landing: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELT_MAX_RUNS_PER_TICK", "50")
    for i in range(300):
        land(landing, f"items/{i // 100}/file_{i:04d}_with_a_fairly_long_name.csv", b"%d\n" % i)
    logs = []
    for _ in range(3):
        assert ticker().cursor is None
        logs.append(ticker.log)
    # ELT_MAX_RUNS_PER_TICK=50 a tick, in one batch run (more than ELT_BATCH_THRESHOLD files).
    assert "items: sent 50 new file(s) to 1 run(s): " in logs[1]
    assert " and 40 more" in logs[1]  # ten files named per line, the rest counted
    assert "items: 250 more file(s) wait for the next tick" in logs[1]
    assert "items: 200 more file(s) wait for the next tick" in logs[2]
    assert all(len(line) < 1000 for log in logs for line in log.splitlines())
    assert warehouse.value("SELECT count(*) FROM elt.landing_files") == 300
    assert warehouse.value("SELECT count(*) FROM elt.landing_files WHERE sha256 IS NOT NULL") == 100
