"""Files landing in object storage (issue 15): the same pipeline on a local directory and on an
S3 bucket (moto's server on loopback, a real S3 API), through one parametrized `zone` fixture.

Each test runs twice, once per kind of landing zone; the expectations are the same.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from elt_assets.landing.keys import path_to_key
from elt_assets.orchestration.names import request_files
from elt_assets.orchestration.resources import build_resources
from elt_assets.settings import Settings
from elt_assets_tests.conftest import S3_SECRET, Bucket, Warehouse, write_contract
from elt_assets_tests.helpers import (
    QUIET,
    definitions,
    elt_as_user,
    materialization_metadata,
    run_file,
    step_failure,
)

pytestmark = [pytest.mark.db, pytest.mark.dagster]

ORDERS = """
    name: orders
    source: {glob: "orders/**/*"}
    target: {schema: sales, table: orders, primary_key: [order_id], version_column: updated_at}
    columns:
      - {name: order_id, type: bigint, nullable: false}
      - {name: status, type: text, checks: {isin: [new, paid, shipped]}}
      - {name: amount, type: "numeric(12,2)", checks: {ge: 0}}
      - {name: updated_at, type: timestamptz}
    policy: {max_bad_row_ratio: 0.5}
"""
HEADER = "order_id,status,amount,updated_at\n"
ROWS = "1,new,10.50,2026-01-01 10:00:00+00\n2,paid,3,2026-01-01 11:00:00+00\n"
# Names a bucket holds as easily as a directory: spaces, commas, unicode, %, #, brackets, quotes.
HOSTILE = [
    "orders/with space.csv",
    "orders/comma,name.csv",
    "orders/ünï çødé.csv",
    "orders/100%#1.csv",
    "orders/[brackets] (x).csv",
    'orders/it\'s "quoted".csv',
    "orders/deep/er/file.csv",
]


@dataclass
class Zone:
    kind: str
    location: str  # ELT_LANDING_DIR
    put: Callable[[str, bytes], None]
    delete: Callable[[str], None]


@pytest.fixture(params=["directory", "bucket"])
def zone(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zone:
    if request.param == "bucket":
        bucket: Bucket = request.getfixturevalue("bucket")
        monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
        return Zone("bucket", bucket.url, bucket.put, bucket.delete)
    root = tmp_path / "landing"
    root.mkdir()
    monkeypatch.setenv("ELT_LANDING_DIR", str(root))

    def put(relative: str, body: bytes) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    return Zone("directory", str(root), put, lambda relative: (root / relative).unlink())


def orders_table(warehouse: Warehouse) -> list[tuple[object, ...]]:
    return warehouse.query(
        "SELECT order_id, status, amount::text, (updated_at AT TIME ZONE 'UTC')::text"
        " FROM sales.orders ORDER BY 1"
    )


def parquet_bytes() -> bytes:
    frame = pl.DataFrame(
        {"order_id": [3], "status": ["shipped"], "amount": ["7.25"], "updated_at": ["2026-01-02"]}
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def test_csv_gzip_and_parquet_objects_load_exactly(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    zone.put("orders/a.csv", (HEADER + ROWS).encode())
    zone.put(
        "orders/b.csv.gz", gzip.compress((HEADER + "4,new,1,2026-01-03 00:00:00+00\n").encode())
    )
    zone.put("orders/c.parquet", parquet_bytes())
    with dg.instance_for_test() as instance:
        results = {
            f: run_file(contracts_dir, "orders", f, instance)
            for f in ("orders/a.csv", "orders/b.csv.gz", "orders/c.parquet")
        }
    for file, result in results.items():
        assert result.success, (file, step_failure(result))
    assert orders_table(warehouse) == [
        (1, "new", "10.50", "2026-01-01 10:00:00"),
        (2, "paid", "3.00", "2026-01-01 11:00:00"),
        (3, "shipped", "7.25", "2026-01-02 00:00:00"),
        (4, "new", "1.00", "2026-01-03 00:00:00"),
    ]
    raw = materialization_metadata(results["orders/a.csv"], "raw/orders_files")
    expected = f"{zone.location}/orders/a.csv"
    assert (
        raw["path"] == expected if zone.kind == "bucket" else raw["path"].endswith("orders/a.csv")
    )
    statuses = warehouse.query("SELECT file, status FROM elt.ingestion_manifest ORDER BY 1")
    assert statuses == [(f, "success") for f in sorted(results)]


def test_a_bad_object_fails_with_its_line_and_bad_rows_are_quarantined(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    zone.put("orders/ragged.csv", (HEADER + '1,new,1,2026-01-01\n2,"new,1,2026-01-01\n').encode())
    zone.put("orders/some_bad.csv", (HEADER + "5,new,1,2026-01-01\n6,lost,1,2026-01-01\n").encode())
    with dg.instance_for_test() as instance:
        ragged = run_file(contracts_dir, "orders", "orders/ragged.csv", instance)
        partly = run_file(contracts_dir, "orders", "orders/some_bad.csv", instance)
    assert not ragged.success
    assert "orders/ragged.csv, line 3" in step_failure(ragged)
    assert partly.success, step_failure(partly)
    assert [row[0] for row in orders_table(warehouse)] == [5]
    reasons = warehouse.query("SELECT file, row_number FROM elt.quarantine ORDER BY 1, 2")
    assert reasons == [("orders/some_bad.csv", 2)]


def elt_ingest(
    zone: Zone, warehouse: Warehouse, contracts: Path, cwd: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """`elt ingest --json` as a user runs it, from their own directory."""
    location = ["--landing", zone.location, "--contracts", str(contracts)]
    return elt_as_user(warehouse, cwd, "ingest", "--json", *location, *options)


def files_of(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    try:
        return {f["file"]: f["status"] for f in json.loads(result.stdout)["files"]}
    except ValueError:
        raise AssertionError(result.stdout + result.stderr) from None


def test_hostile_names_duplicates_and_new_content_through_elt_ingest(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path, tmp_path: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    for number, name in enumerate(HOSTILE, start=10):
        zone.put(name, (HEADER + f"{number},new,1,2026-01-01 00:00:00+00\n").encode())
    elsewhere = tmp_path / "user"
    elsewhere.mkdir()
    first = elt_ingest(zone, warehouse, contracts_dir, elsewhere)
    assert first.returncode == 0, first.stderr
    assert files_of(first) == dict.fromkeys(HOSTILE, "success")
    manifest = {row[0] for row in warehouse.query("SELECT file FROM elt.ingestion_manifest")}
    assert manifest == set(HOSTILE)  # the key relative to the prefix, byte for byte

    # Nothing new: nothing runs. The same content under another name: a duplicate. New content
    # under a known name: loaded again.
    again = elt_ingest(zone, warehouse, contracts_dir, elsewhere)
    assert again.returncode == 0 and files_of(again) == files_of(first), again.stderr
    rows = warehouse.value("SELECT count(*) FROM elt.ingestion_manifest")
    zone.put("orders/copy.csv", (HEADER + "10,new,1,2026-01-01 00:00:00+00\n").encode())
    zone.put(HOSTILE[0], (HEADER + "10,paid,2,2026-01-02 00:00:00+00\n").encode())
    third = files_of(elt_ingest(zone, warehouse, contracts_dir, elsewhere))
    assert third["orders/copy.csv"] == "duplicate" and third[HOSTILE[0]] == "success"
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == rows + 2
    assert warehouse.query("SELECT status, amount::text FROM sales.orders WHERE order_id = 10") == [
        ("paid", "2.00")
    ]
    for result in (first, again):
        assert S3_SECRET not in result.stdout + result.stderr


def test_a_dry_run_reads_every_file_and_writes_nothing(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path, tmp_path: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    zone.put("orders/good.csv", (HEADER + ROWS).encode())
    zone.put("orders/ragged.csv", (HEADER + '1,new,1,2026-01-01\n2,"new,1,2026-01-01\n').encode())
    zone.put("orders/some_bad.csv", (HEADER + "5,new,1,2026-01-01\n6,lost,1,2026-01-01\n").encode())
    result = elt_ingest(zone, warehouse, contracts_dir, tmp_path, "--dry-run")
    assert result.returncode == 1, result.stdout + result.stderr  # one file would fail
    entries = {f["file"]: f for f in json.loads(result.stdout)["files"]}
    assert {file: e["status"] for file, e in entries.items()} == {
        "orders/good.csv": "would_load",
        "orders/ragged.csv": "would_fail",
        "orders/some_bad.csv": "would_load",
    }
    assert "orders/ragged.csv, line 3" in entries["orders/ragged.csv"]["error"]
    assert (
        entries["orders/some_bad.csv"]["rows_read"],
        entries["orders/some_bad.csv"]["rows_quarantined"],
    ) == (2, 1)
    for table in ("elt.ingestion_manifest", "elt.landing_files", "elt.quarantine"):
        assert warehouse.value(f"SELECT count(*) FROM {table}") == 0, table
    assert warehouse.value("SELECT to_regclass('sales.orders')") is None


def test_two_elt_ingest_at_once_load_every_file_once(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path, tmp_path: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    names = [f"orders/part-{n}.csv" for n in range(6)]
    for n, name in enumerate(names):
        zone.put(name, (HEADER + f"{n},new,{n}.25,2026-01-0{n + 1} 00:00:00+00\n").encode())
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda _: elt_ingest(zone, warehouse, contracts_dir, tmp_path), range(2))
        )
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert files_of(result) == dict.fromkeys(names, "success"), result.stdout
    assert orders_table(warehouse) == [
        (n, "new", f"{n}.25", f"2026-01-0{n + 1} 00:00:00") for n in range(6)
    ]
    copies = warehouse.query(
        "SELECT file, status, count(*) FROM elt.ingestion_manifest GROUP BY 1, 2 ORDER BY 1"
    )
    assert copies == [(name, "success", 1) for name in names]


def test_a_missing_bucket_is_one_clear_error_naming_the_url_never_the_secret(
    bucket: Bucket, warehouse: Warehouse, contracts_dir: Path, tmp_path: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    missing = Zone("bucket", "s3://no-such-bucket/landing", bucket.put, bucket.delete)
    result = elt_ingest(missing, warehouse, contracts_dir, tmp_path)
    assert result.returncode != 0
    assert "s3://no-such-bucket/landing" in result.stderr
    assert "does not exist" in result.stderr
    assert S3_SECRET not in result.stdout + result.stderr
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == 0


def test_refused_credentials_and_an_unreachable_endpoint_are_clear_errors_within_seconds(
    bucket: Bucket, warehouse: Warehouse, contracts_dir: Path, tmp_path: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    bucket.put("orders/a.csv", (HEADER + ROWS).encode())
    zone = Zone("bucket", bucket.url, bucket.put, bucket.delete)

    # moto's server checks signatures against the keys it knows (none) once asked to.
    def authenticate_after(requests: bytes) -> None:
        url = f"{bucket.s3.endpoint}/moto-api/reset-auth"
        plain = {"Content-Type": "text/plain"}
        urllib.request.urlopen(urllib.request.Request(url, requests, plain, method="POST"))

    authenticate_after(b"0")
    try:
        started = time.monotonic()
        refused = elt_ingest(zone, warehouse, contracts_dir, tmp_path)
        refused_after = time.monotonic() - started
    finally:
        authenticate_after(b"inf")
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"  # restored by the fixture
    started = time.monotonic()
    unreachable = elt_ingest(zone, warehouse, contracts_dir, tmp_path)
    unreachable_after = time.monotonic() - started

    for result, reason, seconds in (
        (refused, "the access key is not known to this endpoint", refused_after),
        (unreachable, "cannot reach an S3 endpoint at http://127.0.0.1:", unreachable_after),
    ):
        said = result.stdout + result.stderr
        assert result.returncode == 2, said
        assert bucket.url in result.stderr and reason in result.stderr, result.stderr
        assert "Traceback" not in said and S3_SECRET not in said
        assert seconds < 30, (reason, seconds)  # start-up included
    # Said before any database work: not even the dataset's tables were made.
    assert warehouse.value("SELECT count(*) FROM elt.ingestion_manifest") == 0
    assert warehouse.value("SELECT to_regclass('sales.orders')") is None


def test_a_file_replaced_after_the_raw_step_is_refused_never_half_loaded(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    zone.put("orders/a.csv", (HEADER + ROWS).encode())
    key = path_to_key("orders/a.csv")
    raw, staged, target = (
        dg.AssetKey(["raw", "orders_files"]),
        dg.AssetKey(["staged", "orders_staging"]),
        dg.AssetKey(["sales", "orders"]),
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("orders_files", [key])
        job = definitions(contracts_dir).resolve_job_def("ingest_orders")
        described = job.execute_in_process(
            partition_key=key, instance=instance, asset_selection=[raw], run_config=QUIET
        )
        assert described.success, step_failure(described)
        zone.put("orders/a.csv", (HEADER + "9,new,1,2026-01-01 00:00:00+00\n").encode())
        loaded = job.execute_in_process(
            partition_key=key,
            instance=instance,
            asset_selection=[staged, target],
            run_config=QUIET,
            raise_on_error=False,
        )
    assert not loaded.success
    assert "orders/a.csv changed while it was being read" in step_failure(loaded)
    assert orders_table(warehouse) == []


SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s"
)
SLOW_DOWN_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class DroppingProxy:
    """A TCP proxy to the S3 server that cuts one response of one object's GETs midway: a real
    connection dropped while the body streams. With `throttle`, it first answers that many of
    the object's GETs itself with S3's 503 SlowDown, as a busy S3 does."""

    def __init__(
        self, upstream: str, key: str, cut_get: int, after_bytes: int = 4096, throttle: int = 0
    ):
        import socket
        import threading

        parts = upstream.removeprefix("http://").split(":")
        self.upstream = (parts[0], int(parts[1]))
        self.marker = f"GET /{key}".encode()
        self.cut_get, self.after_bytes = cut_get, after_bytes
        self.gets = 0
        self.cut = False
        self.throttle, self.throttled = throttle, 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: Any, server: Any) -> None:
        import socket
        import threading

        cutting = threading.Event()

        def upstream() -> None:
            while data := _recv(client):
                if self.marker in data and self._slow_down(client):
                    break
                if self.marker in data:
                    with self._lock:
                        self.gets += 1
                        if self.gets == self.cut_get and not self.cut:
                            self.cut = True
                            cutting.set()
                server.sendall(data)
            server.close()

        threading.Thread(target=upstream, daemon=True).start()
        sent = 0
        while data := _recv(server):
            if cutting.is_set() and sent + len(data) > self.after_bytes:
                client.sendall(data[: max(0, self.after_bytes - sent)])
                break  # the connection dies mid-body
            client.sendall(data)
            sent += len(data) if cutting.is_set() else 0
        for sock in (client, server):  # shutdown first: a recv in the other thread returns
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()

    def _slow_down(self, client: Any) -> bool:
        """Answer this GET with 503 SlowDown while the throttle lasts."""
        with self._lock:
            if self.throttled >= self.throttle:
                return False
            self.throttled += 1
        client.sendall(SLOW_DOWN % (len(SLOW_DOWN_BODY), SLOW_DOWN_BODY))
        return True


def _recv(sock: Any) -> bytes:
    try:
        return bytes(sock.recv(65536))
    except OSError:
        return b""


def test_a_connection_dropped_mid_read_is_retried_and_the_table_is_exact(
    bucket: Bucket,
    warehouse: Warehouse,
    contracts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_contract(contracts_dir, ORDERS)
    rows = "".join(f"{n},paid,{n % 97}.25,2026-01-01 00:00:00+00\n" for n in range(1, 20001))
    bucket.put("orders/big.csv", (HEADER + rows).encode())
    # GETs of the object: the raw step hashes it (1); the staged step peeks at its first bytes
    # (2: gzip?), reads its header line (3), then streams it through the CSV parser (4): cut
    # that one, in pyarrow's reading thread. If the reads change, the retry assertion says so.
    key = f"{bucket.name}/{bucket.prefix}/orders/big.csv"
    proxy = DroppingProxy(bucket.s3.endpoint, key, cut_get=4)
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    try:
        with dg.instance_for_test() as instance:
            result = run_file(contracts_dir, "orders", "orders/big.csv", instance)
    finally:
        proxy.close()
    assert proxy.cut, "the proxy never cut a response"
    assert result.success, step_failure(result)
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["staged__orders_staging"]
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 20000
    assert warehouse.value("SELECT sum(amount) FROM sales.orders") == sum(
        Decimal(f"{n % 97}.25") for n in range(1, 20001)
    )


def test_a_throttling_store_is_waited_out_and_the_table_is_exact(
    bucket: Bucket,
    warehouse: Warehouse,
    contracts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_contract(contracts_dir, ORDERS)
    bucket.put("orders/a.csv", (HEADER + ROWS).encode())
    key = f"{bucket.name}/{bucket.prefix}/orders/a.csv"
    proxy = DroppingProxy(bucket.s3.endpoint, key, cut_get=0, throttle=3)
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    try:
        with dg.instance_for_test() as instance:
            result = run_file(contracts_dir, "orders", "orders/a.csv", instance)
    finally:
        proxy.close()
    assert proxy.throttled == 3, "the proxy never throttled"
    assert result.success, step_failure(result)
    assert orders_table(warehouse) == [
        (1, "new", "10.50", "2026-01-01 10:00:00"),
        (2, "paid", "3.00", "2026-01-01 11:00:00"),
    ]


def test_a_loaded_object_moves_to_the_archive_prefix_and_a_second_one_keeps_both(
    bucket: Bucket, warehouse: Warehouse, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_contract(contracts_dir, ORDERS)
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    monkeypatch.setenv("ELT_ARCHIVE_DIR", f"s3://{bucket.name}/archive")
    first = (HEADER + ROWS).encode()
    bucket.put("orders/a b.csv", first)
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/a b.csv", instance)
        assert result.success, step_failure(result)
        target = materialization_metadata(result, "sales/orders")
        assert target["archived_to"] == f"s3://{bucket.name}/archive/orders/a b.csv"
        keys = {
            o["Key"] for o in bucket.s3.client().list_objects_v2(Bucket=bucket.name)["Contents"]
        }
        assert keys == {"archive/orders/a b.csv"}
        body = bucket.s3.client().get_object(Bucket=bucket.name, Key="archive/orders/a b.csv")
        assert body["Body"].read() == first

        # The same name again with new content: loaded, and archived beside the first.
        bucket.put("orders/a b.csv", (HEADER + "7,new,1,2026-02-01 00:00:00+00\n").encode())
        again = run_file(contracts_dir, "orders", "orders/a b.csv", instance)
        assert again.success, step_failure(again)
        moved = materialization_metadata(again, "sales/orders")["archived_to"]
    assert moved.startswith(f"s3://{bucket.name}/archive/orders/a b.") and moved.endswith(".csv")
    assert [row[0] for row in orders_table(warehouse)] == [1, 2, 7]


def test_an_archive_inside_the_landing_prefix_is_refused(
    bucket: Bucket, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from elt_assets.settings import SettingError, Settings

    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    monkeypatch.setenv("ELT_ARCHIVE_DIR", f"{bucket.url}/archive")
    with pytest.raises(SettingError, match="inside the landing zone"):
        Settings.from_env().require_landing()
    monkeypatch.setenv("ELT_ARCHIVE_DIR", str(contracts_dir))
    with pytest.raises(SettingError, match="archive into the store too"):
        Settings.from_env().require_landing()


def test_the_sensor_takes_a_new_object_on_its_first_tick_and_nothing_after(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path
) -> None:
    """An object is listed only once its upload completed, so the sensor takes it at once; a
    file in a directory once nothing wrote to it for its quiet period (2 s, the stable-file
    rule), which the first tick waits out. Files in a writer's own folders (Spark's
    _temporary/ before its job commits, a .staging/) are never taken."""
    write_contract(contracts_dir, ORDERS)
    zone.put("orders/a.csv", (HEADER + ROWS).encode())
    for n, unfinished in enumerate(("orders/_temporary/0/task_1/part-0.csv", "orders/.s/b.csv")):
        zone.put(unfinished, f"{HEADER}{n + 3},new,1,2026-01-01 10:00:00+00\n".encode())
    sensor = definitions(contracts_dir).resolve_sensor_def("orders_files")

    def tick() -> list[str]:
        resources = build_resources(Settings.from_env())
        with (
            dg.instance_for_test() as instance,
            dg.build_sensor_context(instance=instance, resources=resources) as context,
        ):
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return [r.tags["elt/file"] for r in result.run_requests or []]

    started = time.monotonic()
    assert tick() == ["orders/a.csv"]
    if zone.kind == "directory":  # written just now: the tick waited for it to be quiet
        assert time.monotonic() - started >= 1
    assert tick() == []  # requested once: the next tick knows it


@pytest.mark.parametrize("with_checksum", [True, False])
def test_an_objects_sha256_checksum_spares_the_sensor_a_read(
    with_checksum: bool,
    bucket: Bucket,
    warehouse: Warehouse,
    contracts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Uploaded with a SHA256 checksum, an object's identity is known without reading it: the
    sensor sends it to a run without one GET (a duplicate would be skipped just as cheaply)."""
    write_contract(contracts_dir, ORDERS)
    body = (HEADER + ROWS).encode()
    bucket.put("orders/a.csv", body, sha256_checksum=with_checksum)
    counter = DroppingProxy(
        bucket.s3.endpoint, f"{bucket.name}/{bucket.prefix}/orders/a.csv", cut_get=0
    )
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", counter.endpoint)
    try:
        sensor = definitions(contracts_dir).resolve_sensor_def("orders_files")
        resources = build_resources(Settings.from_env())
        with (
            dg.instance_for_test() as instance,
            dg.build_sensor_context(instance=instance, resources=resources) as context,
        ):
            result = sensor(context)
    finally:
        counter.close()
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert request.tags["elt/sha256"] == hashlib.sha256(body).hexdigest()
    assert counter.gets == (0 if with_checksum else 1)


def test_a_large_bucket_is_listed_in_shares_and_every_object_is_taken_once(
    bucket: Bucket, warehouse: Warehouse, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_contract(contracts_dir, ORDERS)
    names = [f"orders/{n:03d}.csv" for n in range(25)]
    for number, name in enumerate(names):
        bucket.put(name, (HEADER + f"{number},new,1,2026-01-01 00:00:00+00\n").encode())
    bucket.put("other/ignored.csv", b"x\n")  # listed, never a file of this dataset
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    monkeypatch.setenv("ELT_MAX_LISTED_PER_TICK", "10")
    sensor = definitions(contracts_dir).resolve_sensor_def("orders_files")
    resources = build_resources(Settings.from_env())
    taken: list[str] = []
    cursors: list[str | None] = []
    cursor = None
    with dg.instance_for_test() as instance:
        for _ in range(4):
            with dg.build_sensor_context(
                instance=instance, resources=resources, cursor=cursor
            ) as context:
                result = sensor(context)
            assert isinstance(result, dg.SensorResult)
            taken += [f for r in result.run_requests or [] for f in request_files(r, "orders")]
            cursor = result.cursor
            cursors.append(cursor)
    # 26 keys, 10 per tick: three shares, then the top again (nothing new there).
    assert cursors == ["orders/009.csv", "orders/019.csv", "", "orders/009.csv"]
    assert taken == names


def test_an_object_rewritten_in_the_same_second_with_the_same_size_is_taken_again(
    bucket: Bucket, warehouse: Warehouse, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 lists LastModified to the second: only the ETag tells such a rewrite apart."""
    write_contract(contracts_dir, ORDERS)
    bucket.put("orders/a.csv", (HEADER + "1,new,1.00,2026-01-01 00:00:00+00\n").encode())
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    sensor = definitions(contracts_dir).resolve_sensor_def("orders_files")
    resources = build_resources(Settings.from_env())

    def tick(instance: dg.DagsterInstance) -> list[str]:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return [f for r in result.run_requests or [] for f in request_files(r, "orders")]

    with dg.instance_for_test() as instance:
        assert tick(instance) == ["orders/a.csv"]
        bucket.put("orders/a.csv", (HEADER + "1,new,2.00,2026-01-01 00:00:00+00\n").encode())
        # Same size; and the memory's LastModified is made the listing's (S3 has seconds).
        (listed,) = build_resources(Settings.from_env())["elt_landing"].zone().scan("orders/*")
        assert listed.size_bytes == warehouse.value("SELECT size_bytes FROM elt.landing_files")
        warehouse.query(
            "UPDATE elt.landing_files SET mtime_ns = %s, hashed_mtime_ns = %s",
            (listed.mtime_ns, listed.mtime_ns),
        )
        assert tick(instance) == ["orders/a.csv"]  # new ETag: hashed, new content, requested
        assert tick(instance) == []


def test_a_share_with_more_new_objects_than_a_tick_takes_is_listed_again_until_done(
    bucket: Bucket, warehouse: Warehouse, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk upload is worked through share by share, not one tick's worth per pass over the
    whole bucket (which, for a bucket of 100,000 keys, would take hours)."""
    write_contract(contracts_dir, ORDERS)
    names = [f"orders/{n:03d}.csv" for n in range(25)]
    for number, name in enumerate(names):
        bucket.put(name, (HEADER + f"{number},new,1,2026-01-01 00:00:00+00\n").encode())
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    monkeypatch.setenv("ELT_MAX_LISTED_PER_TICK", "10")
    monkeypatch.setenv("ELT_MAX_RUNS_PER_TICK", "4")
    monkeypatch.setenv("ELT_BATCH_THRESHOLD", "100")  # one run per file, easy to count
    sensor = definitions(contracts_dir).resolve_sensor_def("orders_files")
    resources = build_resources(Settings.from_env())
    taken: list[list[str]] = []
    cursors: list[str | None] = []
    cursor = None
    with dg.instance_for_test() as instance:
        while sum(map(len, taken)) < len(names) and len(taken) < 20:
            with dg.build_sensor_context(
                instance=instance, resources=resources, cursor=cursor
            ) as context:
                result = sensor(context)
            assert isinstance(result, dg.SensorResult)
            taken.append([f for r in result.run_requests or [] for f in request_files(r, "orders")])
            cursor = result.cursor
            cursors.append(cursor)
    # 10 keys per share, 4 files per tick: each share is listed again until its files are taken.
    assert [len(t) for t in taken] == [4, 4, 2, 4, 4, 2, 4, 1]
    first, second = "orders/009.csv", "orders/019.csv"
    assert cursors == ["", "", first, first, first, second, second, ""]
    assert [f for t in taken for f in t] == names


EVENTS = """
    name: events
    source: {glob: "events/*.csv"}
    target: {schema: web, table: events, mode: append}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: label, type: text}
"""


def test_append_mode_replaces_a_files_rows_when_it_is_loaded_again(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, EVENTS)
    zone.put("events/day.csv", b"id,label\n1,a\n2,b\n")
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "events", "events/day.csv", instance).success
        zone.put("events/day.csv", b"id,label\n1,a\n2,b\n3,c\n")  # the sender re-sent it, longer
        again = run_file(contracts_dir, "events", "events/day.csv", instance)
    assert again.success, step_failure(again)
    assert warehouse.query("SELECT id, label FROM web.events ORDER BY 1") == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]


def test_a_file_deleted_before_its_run_fails_naming_the_zone(
    zone: Zone, warehouse: Warehouse, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, ORDERS)
    zone.put("orders/gone.csv", (HEADER + ROWS).encode())
    zone.delete("orders/gone.csv")
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/gone.csv", instance)
    assert not result.success
    message = step_failure(result)
    assert "orders/gone.csv" in message and "no longer in the landing zone" in message, message
    assert zone.location in message
    assert (
        warehouse.value("SELECT count(*) FROM elt.ingestion_manifest WHERE status = 'success'") == 0
    )


def test_a_multipart_upload_streams_and_loads_exactly(
    bucket: Bucket, warehouse: Warehouse, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large object uploaded in parts (its ETag and checksum are of the parts, not of the
    content): hashed while it streams, read by ranges, loaded exactly."""
    from boto3.s3.transfer import TransferConfig

    write_contract(contracts_dir, ORDERS)
    rows = "".join(f"{n},shipped,{n % 1000}.50,2026-01-01 00:00:00+00\n" for n in range(200_000))
    body = (HEADER + rows).encode()
    config = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    bucket.s3.client().upload_fileobj(
        io.BytesIO(body),
        bucket.name,
        f"{bucket.prefix}/orders/big.csv",
        Config=config,
        ExtraArgs={"ChecksumAlgorithm": "SHA256"},
    )
    monkeypatch.setenv("ELT_LANDING_DIR", bucket.url)
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "orders", "orders/big.csv", instance)
    assert result.success, step_failure(result)
    raw = materialization_metadata(result, "raw/orders_files")
    assert raw["sha256"] == hashlib.sha256(body).hexdigest()
    assert "-" in raw["etag"]  # a multipart ETag: "<md5 of the parts' md5s>-<parts>"
    assert warehouse.value("SELECT count(*) FROM sales.orders") == 200_000
