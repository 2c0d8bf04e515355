"""Many partitions of one dataset: what the sensor, the UI and a backfill cost at 10,000 and
100,000 (ELT_PARTITION_RETENTION_DAYS keeps a dataset below the ceiling this finds).

A Dagster instance stored in PostgreSQL as in production (the shipped dagster.yaml) gets the
dataset's partitions, N at a time; the first MATERIALIZED of them also get a materialisation of
the target asset each (Dagster writes about 60 a second here, so the 100,000 step keeps the
first step's materialisations rather than spend half an hour writing more: its extra partitions
are "missing", as after a backfill that has not run). Then, at each N:

- the dataset's file sensor ticks in this process with one file in its landing folder (a tick
  reads the dataset's partition keys to add new ones);
- `dagster-webserver`, serving the same instance and code, answers the GraphQL query the UI's
  asset page makes for the partitions bar (every key and each one's status), first and again;
- a backfill of every partition of the target is launched through the same API (the launch
  only: no daemon runs it; it is cancelled after).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import yaml
from psycopg import sql

if TYPE_CHECKING:
    from benchmarks.run import Bench

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONTRACT = """\
name: bench_parts
source: {glob: "bench_parts/*.csv"}
target: {schema: bench, table: parts, primary_key: [id]}
columns:
  - {name: id, type: bigint, nullable: false}
  - {name: label, type: text}
"""
PARTITIONS = "bench_parts_files"
LOOPBACK = ("-h", "127.0.0.1", "-p")
TARGET = ["bench", "parts"]
MATERIALIZED = 10_000
STATUS_QUERY = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      partitionKeysByDimension { name partitionKeys }
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions materializingPartitions
        }
      }
    }
  }
}"""
BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
ALL_PARTITIONS = {"assetSelection": [{"path": TARGET}], "allPartitions": True}
CANCEL = """
mutation ($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }"""


class Webserver:
    """`dagster-webserver` on the benchmark's instance and code, asked as the UI asks."""

    def __init__(self, env: dict[str, str], home: Path, log: Path):
        from elt_assets.postgres.embedded import free_port

        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-m", "elt_assets.definitions", *LOOPBACK, port],
            cwd=home,
            env={**env, "DAGSTER_HOME": str(home)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log = log

    def query(self, text: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            document = json.loads(response.read())
        if document.get("errors"):
            raise SystemExit(f"GraphQL errors: {document['errors']}")
        data: dict[str, Any] = document["data"]
        return data

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(self.log.read_text(errors="replace")[-3000:])
            try:
                self.query("{ version }")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        raise SystemExit("dagster-webserver did not answer within 180 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        self._log.close()


def _instance(bench: Bench, superuser_url: str) -> tuple[Path, dict[str, str]]:
    """A fresh Dagster storage database and a home with the shipped dagster.yaml."""
    from elt_assets.postgres.connection import connect

    storage = "bench_partitions"
    with connect(superuser_url, setting="benchmark superuser") as connection:
        for statement in (
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            "CREATE DATABASE {} OWNER dagster",
        ):
            connection.execute(sql.SQL(statement).format(sql.Identifier(storage)))
    home = bench.state / "partitions_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    url = bench.env["ELT_DAGSTER_DATABASE_URL"].rsplit("/", 1)[0] + f"/{storage}"
    env = {
        **os.environ,
        **bench.env,
        "ELT_DAGSTER_DATABASE_URL": url,
        "ELT_LANDING_DIR": str(bench.landing),
        "ELT_CONTRACTS_DIR": str(bench.contracts),
        "ELT_LOG_FORMAT": "json",
    }
    return home, env


def _ticker(bench: Bench) -> Any:
    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions
    from elt_assets.orchestration.resources import landing_resource
    from elt_assets.postgres.resource import PostgresResource
    from elt_assets.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        definitions = build_definitions(load_contracts(bench.contracts))
    sensor = definitions.resolve_sensor_def("bench_parts_files")
    warehouse = PostgresResource.from_env()

    def tick(instance: dg.DagsterInstance) -> float:
        resources = {
            "elt_landing": landing_resource(Settings.from_env()),
            "elt_warehouse": warehouse,
        }
        started = time.perf_counter()
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            sensor(context)
        return time.perf_counter() - started

    return tick


def _median(measure: Any, times: int = 3) -> float:
    return statistics.median(measure() for _ in range(times))


def _timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def partitions_scenario(bench: Bench, counts: list[int], superuser_url: str) -> str:
    (bench.contracts / "bench_parts.yaml").write_text(CONTRACT)
    folder = bench.landing / "bench_parts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "only.csv").write_text("id,label\n1,a\n")
    home, env = _instance(bench, superuser_url)
    os.environ.update({k: v for k, v in env.items() if k.startswith("ELT_")})
    tick = _ticker(bench)
    rows = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        tick(instance)  # the sensor's first sight of its one file, before any measurement
        server = Webserver(env, home, bench.state / "partitions-webserver.log")
        try:
            server.wait_until_up()
            have, materialized = 0, 0
            for count in sorted(counts):
                print(f"partitions: adding up to {count:,} ...", flush=True)
                setup = time.perf_counter()
                keys = [f"bench_parts/file_{n:07d}.csv" for n in range(have, count)]
                for start in range(0, len(keys), 10_000):
                    instance.add_dynamic_partitions(PARTITIONS, keys[start : start + 10_000])
                for key in keys[: max(0, MATERIALIZED - materialized)]:
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(dg.AssetKey(TARGET), partition=key)
                    )
                    materialized += 1
                have, setup_seconds = count, time.perf_counter() - setup
                tick_seconds = _median(lambda: tick(instance))
                first, data = _timed(lambda: server.query(STATUS_QUERY, key={"path": TARGET}))
                node = data["assetNodeOrError"]
                assert len(node["partitionKeysByDimension"][0]["partitionKeys"]) == count
                again = _median(
                    lambda: _timed(lambda: server.query(STATUS_QUERY, key={"path": TARGET}))[0]
                )
                launch, launched = _timed(lambda: server.query(BACKFILL, params=ALL_PARTITIONS))
                outcome = launched["launchPartitionBackfill"]
                if outcome["__typename"] != "LaunchBackfillSuccess":
                    raise SystemExit(f"backfill launch failed: {outcome}")
                server.query(CANCEL, id=outcome["backfillId"])
                rows.append(
                    (count, materialized, setup_seconds, tick_seconds, first, again, launch)
                )
                print(
                    f"  {count:,} partitions: tick {tick_seconds:.2f} s, UI query {first:.2f} s "
                    f"then {again:.2f} s, backfill launch {launch:.2f} s",
                    flush=True,
                )
        finally:
            server.stop()
    lines = [
        "**Partitions of one dataset** (Dagster storage in PostgreSQL; the UI's query through "
        "`dagster-webserver`; medians of 3 where repeated):",
        "",
        "| partitions | of them materialised | setup (s) | sensor tick (s) | UI partitions query, "
        "first (s) | again (s) | backfill of all, launch (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, done, setup_seconds, tick_seconds, first, again, launch in rows:
        lines.append(
            f"| {count:,} | {done:,} | {setup_seconds:.0f} | {tick_seconds:.2f} | {first:.2f} | "
            f"{again:.2f} | {launch:.2f} |"
        )
    return "\n".join([*lines, ""])
