"""A served Dagster instance (`dagster dev` or `dg dev`), asked through its GraphQL API the way
the UI asks: the tests of what users see (test_ui.py) and of a user's own project."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from elt_assets.postgres.embedded import free_port


class Served:
    """`dagster dev` (or `dg dev`) serving an instance, asked through GraphQL as the UI asks."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=cwd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def query(self, text: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables}).encode()
        request = urllib.request.Request(
            self.url, body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            document = json.loads(response.read())
        assert not document.get("errors"), document["errors"]
        return document["data"]

    def wait_until_up(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-4000:]
            try:
                self.query("{ version }")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        raise AssertionError("dagster dev did not answer:\n" + self.log.read_text()[-4000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log_file.close()

    # -- the UI's questions ---------------------------------------------------------------------

    def executions(self, asset: list[str], check: str) -> list[dict[str, Any]]:
        """A check's history, newest first, as the check's history tab lists it."""
        data = self.query(
            """query ($key: AssetKeyInput!, $check: String!) {
                 assetCheckExecutions(assetKey: $key, checkName: $check, limit: 50) {
                   status partition runId evaluation { description }
                 }
               }""",
            key={"path": asset},
            check=check,
        )
        return data["assetCheckExecutions"]

    def partitions(self, asset: list[str]) -> dict[str, list[str]]:
        data = self.query(
            """query ($key: AssetKeyInput!) {
                 assetNodeOrError(assetKey: $key) {
                   ... on AssetNode {
                     assetPartitionStatuses {
                       ... on DefaultPartitionStatuses {
                         materializedPartitions failedPartitions materializingPartitions
                       }
                     }
                   }
                 }
               }""",
            key={"path": asset},
        )
        return data["assetNodeOrError"]["assetPartitionStatuses"]

    def latest_check_statuses(self, asset: list[str]) -> dict[str, str | None]:
        """Each check's status for the asset's latest materialisation: the asset's check badges."""
        data = self.query(
            """query ($key: AssetKeyInput!) {
                 assetNodeOrError(assetKey: $key) {
                   ... on AssetNode {
                     assetChecksOrError {
                       ... on AssetChecks {
                         checks { name executionForLatestMaterialization { status } }
                       }
                     }
                   }
                 }
               }""",
            key={"path": asset},
        )
        checks = data["assetNodeOrError"]["assetChecksOrError"]["checks"]
        return {
            c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks
        }

    def freshness(self, asset: list[str]) -> str | None:
        data = self.query(
            """query ($key: AssetKeyInput!) {
                 assetNodeOrError(assetKey: $key) {
                   ... on AssetNode { freshnessStatusInfo { freshnessStatus } }
                 }
               }""",
            key={"path": asset},
        )
        info = data["assetNodeOrError"]["freshnessStatusInfo"]
        return info["freshnessStatus"] if info else None

    def failure_messages(self, partition: str) -> list[str]:
        """The step failures of the runs of a partition: what its "Run failed" link opens."""
        data = self.query(
            """query ($value: String!) {
                 runsOrError(filter: {tags: [{key: "dagster/partition", value: $value}]}) {
                   ... on Runs {
                     results {
                       status
                       eventConnection { events { __typename ... on ExecutionStepFailureEvent {
                         error { message } failureMetadata { description } } } }
                     }
                   }
                 }
               }""",
            value=partition,
        )
        messages = []
        for run in data["runsOrError"]["results"]:
            for event in run["eventConnection"]["events"]:
                if event["__typename"] == "ExecutionStepFailureEvent":
                    metadata = event.get("failureMetadata") or {}
                    messages.append(
                        (metadata.get("description") or "")
                        + " "
                        + ((event.get("error") or {}).get("message") or "")
                    )
        return messages


def wait_for(what: str, probe: Any, seconds: float = 240) -> Any:
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(2)
    raise AssertionError(f"{what}: still not true after {seconds:.0f} s (last: {last!r})")
