"""The upload endpoint as producers use it: `elt upload-server` served for real from a user's
directory, real HTTP requests (streamed, concurrent, hostile), the landing zone and the warehouse
looked at afterwards, and the uploaded file then loaded by `elt ingest`."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from elt_assets.cli.upload import token_hash
from elt_assets.postgres.embedded import free_port
from elt_assets.settings import SettingError, upload_tokens
from elt_assets_tests.conftest import Bucket, Warehouse, write_contract
from elt_assets_tests.helpers import elt_as_user, user_env

pytestmark = [pytest.mark.db, pytest.mark.slow]

ELT = Path(sys.executable).parent / "elt"
ORDERS = """
    name: orders
    source: {glob: "orders/*"}
    target: {schema: shop, table: orders, primary_key: [id]}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: amount, type: "numeric(10,2)", checks: {ge: 0}}
    policy: {max_bad_row_ratio: 0.5}
"""
EVENTS = """
    name: events
    source: {glob: "web/events/**/*.csv"}
    target: {schema: shop, table: events, mode: append}
    columns:
      - {name: id, type: bigint, nullable: false}
"""
SHOP, OPS, STRANGER = "shop-token-1234567890", "ops-token-0987654321", "not-a-token-at-all"
MAX_BYTES = 64 << 20


@dataclass
class Endpoint:
    port: int
    landing: str
    process: subprocess.Popen[str]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterator[bytes] | None = None,
        token: str | None = SHOP,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        encode = not isinstance(body, bytes | None)
        connection.request(method, path, body=body, headers=sent, encode_chunked=encode)
        response = connection.getresponse()
        payload = json.loads(response.read() or b"{}")
        connection.close()
        return response.status, payload, dict(response.getheaders())

    def put(
        self, dataset: str, name: str, data: bytes, **options: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = {"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
        headers.update(options.pop("headers", {}))
        status, payload, _ = self.request(
            "PUT", f"/v1/datasets/{dataset}/files/{quote(name)}", data, headers=headers, **options
        )
        return status, payload

    def status(self, dataset: str, name: str) -> dict[str, Any]:
        code, payload, _ = self.request("GET", f"/v1/datasets/{dataset}/files/{quote(name)}")
        assert code == 200, payload
        return payload

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")


def serve(tmp_path: Path, warehouse: Warehouse, landing: str) -> Iterator[Endpoint]:
    contracts = tmp_path / "contracts"
    contracts.mkdir(exist_ok=True)
    write_contract(contracts, ORDERS)
    write_contract(contracts, EVENTS)
    user = tmp_path / "user"
    user.mkdir(exist_ok=True)
    tokens = f"shop={token_hash(SHOP)}:orders; ops={token_hash(OPS)}:*"
    env = user_env(
        warehouse,
        user,
        {
            "ELT_LANDING_DIR": landing,
            "ELT_CONTRACTS_DIR": str(contracts),
            "ELT_UPLOAD_TOKENS": tokens,
            "ELT_UPLOAD_MAX_BYTES": str(MAX_BYTES),
        },
    )
    port = free_port()
    log = (tmp_path / "upload.log").open("w")
    process = subprocess.Popen(
        [str(ELT), "upload-server", "--port", str(port)],
        cwd=user,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    endpoint = Endpoint(port, landing, process)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (tmp_path / "upload.log").read_text()
        try:
            if endpoint.request("GET", "/healthz", token=None)[0] == 200:
                break
        except OSError:
            assert time.monotonic() < deadline, "the upload endpoint did not answer"
            time.sleep(0.2)
    try:
        yield endpoint
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, (tmp_path / "upload.log").read_text()
        log.close()


@pytest.fixture
def endpoint(tmp_path: Path, warehouse: Warehouse) -> Iterator[Endpoint]:
    (tmp_path / "landing").mkdir()
    yield from serve(tmp_path, warehouse, str(tmp_path / "landing"))


def landed(root: Path) -> dict[str, bytes]:
    """Every file under the landing root, hidden ones included."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_an_upload_lands_whole_loads_and_its_status_says_so(
    endpoint: Endpoint, tmp_path: Path, warehouse: Warehouse
) -> None:
    data = b"id,amount\n1,10.00\n2,-5\n3,7.50\n"
    code, answer = endpoint.put("orders", "day 1.csv", data)
    assert code == 201, answer
    sha = hashlib.sha256(data).hexdigest()
    assert answer["file"] == "orders/day 1.csv" and answer["sha256"] == sha
    assert answer["duplicate"] is False and answer["size_bytes"] == len(data)
    assert landed(tmp_path / "landing") == {"orders/day 1.csv": data}  # nothing else, no temp
    assert endpoint.status("orders", "day 1.csv")["status"] == "waiting"

    ingest = elt_as_user(
        warehouse,
        tmp_path / "user",
        "ingest",
        "--landing",
        str(tmp_path / "landing"),
        "--contracts",
        str(tmp_path / "contracts"),
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    status = endpoint.status("orders", "day 1.csv")
    assert status["status"] == "success" and status["sha256"] == sha
    assert status["counts"]["rows_read"] == 3 and status["counts"]["rows_inserted"] == 2
    assert status["open_quarantine_rows"] == 1

    # The same content under another name: taken, and said to be known already.
    code, again = endpoint.put("orders", "day 1 again.csv", data)
    assert code == 201 and again["duplicate"] is True and again["loaded_as"] == "orders/day 1.csv"
    # POST works as PUT does; an events file lands in its dataset's fixed folder.
    code, _, _ = endpoint.request("POST", "/v1/datasets/events/files/e.csv", b"id\n1\n", token=OPS)
    assert code == 201
    assert (tmp_path / "landing" / "web/events/e.csv").read_bytes() == b"id\n1\n"


def test_every_refusal_is_a_clear_4xx_and_writes_nothing(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    csv = b"id,amount\n1,1.00\n"
    over = b"id,amount\n" + b"1,1.00\n" * (MAX_BYTES // 7 + 1)
    cases: list[tuple[str, int, str, dict[str, Any]]] = [
        ("no token", 401, "send Authorization: Bearer TOKEN", {"token": None}),
        ("unknown token", 401, "unknown token", {"token": STRANGER}),
        (
            "other dataset",
            403,
            "token 'shop' may not write dataset 'events'",
            {"dataset": "events"},
        ),
        ("unknown dataset", 404, "no dataset named 'nope'", {"dataset": "nope", "token": OPS}),
        ("too big, said", 413, "larger than 67108864 bytes (ELT_UPLOAD_MAX_BYTES)", {"data": over}),
        ("too big, streamed", 413, "ELT_UPLOAD_MAX_BYTES", {"data": over, "stream": True}),
        ("unknown format", 415, "upload CSV (.csv)", {"name": "orders.xlsx"}),
        ("traversal", 404, "a file name has no slashes", {"name": "../escape.csv"}),
        ("control character", 400, "one plain name", {"name": "a\nb.csv"}),
        ("hidden", 400, "must not start with .", {"name": ".hidden.csv"}),
        ("in progress", 400, "in progress", {"name": "x.csv.tmp"}),
        ("bad digest", 422, "the body's SHA-256 is", {"headers": {"X-Content-SHA256": "0" * 64}}),
        ("empty", 400, "the body is empty", {"data": b""}),
    ]
    for what, expected, message, options in cases:
        data = options.pop("data", csv)
        body: bytes | Iterator[bytes] = (
            iter([data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
            if options.pop("stream", False)
            else data
        )
        dataset, name = options.pop("dataset", "orders"), options.pop("name", "x.csv")
        headers = {
            "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
            **options.pop("headers", {}),
        }
        code, answer, response_headers = endpoint.request(
            "PUT", f"/v1/datasets/{dataset}/files/{quote(name)}", body, headers=headers, **options
        )
        assert (code, message in answer.get("error", "")) == (expected, True), (what, answer)
        if code == 401:
            assert response_headers.get("www-authenticate") == "Bearer", what
    assert landed(tmp_path / "landing") == {}
    assert not (tmp_path / "escape.csv").exists()


def test_a_big_file_streams_through_in_flat_memory_and_uploads_run_at_once(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    row = b"123456789,12345.67\n"
    chunk = row * (1 << 16)  # 1.2 MiB
    chunks = 48  # 60 MiB, under the limit
    digest = hashlib.sha256(b"id,amount\n")
    for _ in range(chunks):
        digest.update(chunk)
    before = endpoint.peak_rss_mb()

    def body() -> Iterator[bytes]:
        yield b"id,amount\n"
        for _ in range(chunks):
            yield chunk

    code, answer, _ = endpoint.request(
        "PUT",
        "/v1/datasets/orders/files/big.csv",
        body(),
        headers={"X-Content-SHA256": digest.hexdigest()},
    )
    assert code == 201 and answer["sha256"] == digest.hexdigest(), answer
    assert (tmp_path / "landing/orders/big.csv").stat().st_size == 10 + len(chunk) * chunks
    assert endpoint.peak_rss_mb() - before < 30, (before, endpoint.peak_rss_mb())

    results: dict[int, tuple[int, dict[str, Any]]] = {}
    payloads = {n: f"id,amount\n{n},{n}.00\n".encode() * 20_000 for n in range(8)}

    def upload(n: int) -> None:
        results[n] = endpoint.put("orders", f"part_{n}.csv", payloads[n])

    threads = [threading.Thread(target=upload, args=(n,)) for n in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: code for n, (code, _) in results.items()} == dict.fromkeys(payloads, 201)
    files = landed(tmp_path / "landing")
    assert {f"orders/part_{n}.csv": data for n, data in payloads.items()}.items() <= files.items()
    assert not [name for name in files if name.split("/")[-1].startswith(".")]


@pytest.fixture
def bucket_endpoint(tmp_path: Path, warehouse: Warehouse, bucket: Bucket) -> Iterator[Endpoint]:
    yield from serve(tmp_path, warehouse, bucket.url)


def test_into_a_bucket_an_object_appears_only_once_complete_and_matching(
    bucket_endpoint: Endpoint, bucket: Bucket
) -> None:
    client = bucket.s3.client()
    name, prefix = bucket.name, bucket.prefix
    data = b"id,amount\n1,1.00\n" * 1000
    code, answer = bucket_endpoint.put("orders", "a.csv", data)
    assert code == 201, answer
    got = client.get_object(Bucket=name, Key=f"{prefix}/orders/a.csv")["Body"].read()
    assert got == data
    code, answer = bucket_endpoint.put(
        "orders", "b.csv", data, headers={"X-Content-SHA256": "1" * 64}
    )
    assert code == 422, answer
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", [])]
    assert keys == [f"{prefix}/orders/a.csv"]
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []


def test_a_token_is_made_once_and_kept_only_as_its_hash(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env["ELT_STATE_DIR"] = str(tmp_path / "state")
    made = subprocess.run(
        [str(ELT), "upload-token", "shop-export", "--datasets", "orders,events"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.split("it is not shown again): ")[1].splitlines()[0]
    entry = made.stdout.split("separated by ;): ")[1].strip()
    assert entry == f"shop-export={token_hash(token)}:orders,events"
    assert token not in entry and len(token) >= 43
    [parsed] = upload_tokens({"ELT_UPLOAD_TOKENS": entry})
    assert parsed.allows("orders") and not parsed.allows("customers")
    with pytest.raises(SettingError, match="entry 2 is not NAME=SHA256"):
        upload_tokens({"ELT_UPLOAD_TOKENS": f"{entry}; {token}"})

    refused = subprocess.run(
        [str(ELT), "upload-server"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert "ELT_UPLOAD_TOKENS is not set" in refused.stderr
