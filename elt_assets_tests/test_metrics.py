"""`elt metrics` as an operator runs it: its own process, from a directory of its own, as the
runtime role, scraped over HTTP while `elt ingest` loads files, and checked against the
manifest and the quarantine read directly."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from elt_assets.postgres.embedded import free_port
from elt_assets_tests.conftest import TEST_PASSWORD, Warehouse
from elt_assets_tests.helpers import contract, ingest, landing_folder, user_env

pytestmark = [pytest.mark.db, pytest.mark.slow]

ITEMS = """
name: items
source: {glob: "items/*.csv"}
target: {schema: shop, table: items, primary_key: [id]}
columns:
  - {name: id, type: bigint, nullable: false}
  - {name: qty, type: integer, checks: {ge: 0}}
policy: {max_bad_row_ratio: 0.5}
"""


class Endpoint:
    """A running `elt metrics`, scraped as Prometheus scrapes it."""

    def __init__(self, process: subprocess.Popen[str], port: int):
        self.process, self.port = process, port

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        assert TEST_PASSWORD not in text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def start_metrics(tmp_path: Path, warehouse: Warehouse, **settings: str) -> Iterator[Endpoint]:
    cwd = tmp_path / "operator"
    cwd.mkdir()
    port = free_port()
    command = [str(Path(sys.executable).parent / "elt"), "metrics", "--port", str(port)]
    env = user_env(warehouse, cwd, settings)
    process = subprocess.Popen(command, cwd=cwd, env=env, text=True, stderr=subprocess.PIPE)
    endpoint = Endpoint(process, port)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            endpoint.scrape()
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, "elt metrics did not answer"
            time.sleep(0.3)
    try:
        yield endpoint
    finally:
        process.terminate()  # SIGTERM, as a container runtime stops it: a clean exit 0
        try:
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
        assert code == 0


@pytest.fixture
def endpoint(tmp_path: Path, warehouse: Warehouse) -> Iterator[Endpoint]:
    yield from start_metrics(tmp_path, warehouse)


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def series(scraped: dict, name: str, **labels: str) -> float:
    return scraped[(name, tuple(sorted(labels.items())))]


def test_the_metrics_count_what_the_manifest_and_the_quarantine_hold(
    tmp_path: Path, warehouse: Warehouse, endpoint: Endpoint
) -> None:
    contract(tmp_path, ITEMS)
    folder = landing_folder(tmp_path, "items")
    (folder / "a.csv").write_text("id,qty\n1,5\n2,6\n3,7\n")
    (folder / "b.csv").write_text("id,qty\n3,8\n4,-1\n")  # one update, one bad row
    (folder / "c.csv").write_text("id,qty\n5,-1\n6,-2\n7,3\n")  # 2 of 3 bad: over the policy
    before = endpoint.scrape()
    assert series(before, "elt_up") == 1.0
    assert not [key for key in before if key[0] == "elt_files"]  # nothing seen yet

    outcomes = ingest(tmp_path, warehouse)
    assert {file: entry["status"] for file, entry in outcomes.items()} == {
        "items/a.csv": "success",
        "items/b.csv": "success",
        "items/c.csv": "failed",
    }
    scraped = endpoint.scrape()
    statuses = dict(
        warehouse.query("SELECT status, count(*) FROM elt.ingestion_manifest GROUP BY 1")
    )
    for status in ("success", "failed", "running", "duplicate", "interrupted"):
        expected = float(statuses.get(status, 0))
        assert series(scraped, "elt_files", dataset="items", status=status) == expected
    inserted, updated, size = warehouse.query(
        "SELECT sum(rows_inserted), sum(rows_updated), sum(size_bytes)"
        " FROM elt.ingestion_manifest WHERE status = 'success'"
    )[0]
    assert (inserted, updated) == (3, 1)  # b.csv's id 4 is quarantined
    assert series(scraped, "elt_rows_total", dataset="items", outcome="inserted") == 3
    assert series(scraped, "elt_rows_total", dataset="items", outcome="updated") == 1
    quarantined = warehouse.value(
        "SELECT sum(rows_quarantined) FROM elt.ingestion_manifest WHERE status <> 'running'"
    )
    assert series(scraped, "elt_rows_total", dataset="items", outcome="quarantined") == (
        quarantined
    )
    assert series(scraped, "elt_loaded_bytes_total", dataset="items") == size
    open_rows = warehouse.value("SELECT count(*) FROM elt.quarantine WHERE resolved_at IS NULL")
    assert open_rows >= 1
    assert series(scraped, "elt_quarantine_open_rows", dataset="items") == open_rows
    # The histogram holds each successful load once, in cumulative buckets.
    assert series(scraped, "elt_load_duration_seconds_count", dataset="items") == 2
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in scraped.items()
        if name == "elt_load_duration_seconds_bucket"
    )
    counts = [value for _, value in buckets]
    assert counts == sorted(counts) and counts[-1] == 2
    assert 0 < series(scraped, "elt_load_duration_seconds_sum", dataset="items") < 60
    age = series(scraped, "elt_newest_success_age_seconds", dataset="items")
    assert 0 <= age < 300
    assert series(scraped, "elt_files_waiting", dataset="items") == 0

    # A file the sensor has seen but nobody loaded yet is waiting.
    warehouse.query(
        "INSERT INTO elt.landing_files (dataset, file, size_bytes, mtime_ns)"
        " VALUES ('items', 'items/d.csv', 10, 1)"
    )
    assert series(endpoint.scrape(), "elt_files_waiting", dataset="items") == 1


def test_an_unreachable_warehouse_is_elt_up_0_and_the_endpoint_stays(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    closed = free_port()
    url = f"postgresql://elt_loader:{TEST_PASSWORD}@127.0.0.1:{closed}/nowhere"
    for endpoint in start_metrics(tmp_path, warehouse, ELT_DATABASE_URL=url):
        scraped = endpoint.scrape()  # no password in it (checked by scrape)
        assert scraped == {("elt_up", ()): 0.0}
        assert endpoint.process.poll() is None


def test_a_stop_during_a_scrape_waiting_for_a_hanging_warehouse_exits_0_at_once(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """SIGTERM (a container runtime's stop) while a scrape waits for a warehouse that takes the
    connection and never answers: `elt metrics` exits 0 within seconds, not after the connect
    timeout, and does not go on serving (it did: the stop was caught as the scrape's error)."""
    with socket_bound() as hanging:  # listens, never accepts: the connect waits for an answer
        cwd = tmp_path / "operator"
        cwd.mkdir()
        port = free_port()
        url = f"postgresql://elt_loader:{TEST_PASSWORD}@127.0.0.1:{hanging}/warehouse"
        env = user_env(warehouse, cwd, {"ELT_DATABASE_URL": url})
        command = [str(Path(sys.executable).parent / "elt"), "metrics", "--port", str(port)]
        process = subprocess.Popen(command, cwd=cwd, env=env, text=True, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while True:  # the endpoint listens (a scrape would hang: the warehouse does)
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                assert time.monotonic() < deadline, "elt metrics did not listen"
                time.sleep(0.2)
            scrape = threading.Thread(target=_scrape_ignoring_errors, args=(port,), daemon=True)
            scrape.start()
            time.sleep(1.0)  # the scrape is waiting for the warehouse (10 s connect timeout)
            stopped_at = time.monotonic()
            process.terminate()
            code = process.wait(timeout=30)
            assert code == 0
            assert time.monotonic() - stopped_at < 6, "the stop waited for the scrape"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            stderr = process.stderr.read() if process.stderr else ""
            if process.stderr is not None:
                process.stderr.close()
        assert "metrics: stopped" in stderr and "Traceback" not in stderr, stderr


def _scrape_ignoring_errors(port: int) -> None:
    with contextlib.suppress(OSError):  # the process stops under it: the connection closes
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path, warehouse: Warehouse) -> None:
    cwd = tmp_path / "operator"
    cwd.mkdir()
    with socket_bound() as port:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "elt"), "metrics", "--port", str(port)],
            cwd=cwd,
            env=user_env(warehouse, cwd),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert f"elt metrics cannot listen on 127.0.0.1:{port}" in done.stderr
