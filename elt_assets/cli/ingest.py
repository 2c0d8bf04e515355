"""`elt ingest`: the sensor's discovery and the same assets, run headless, in this process.

For each dataset: find new content exactly as the sensor does (minus the stable-file wait: the
files are taken as complete), add their partitions to a Dagster instance (DAGSTER_HOME's if set,
so the runs show in the UI, else an ephemeral one), execute the dataset's ingestion job for each
file in-process (more than ELT_BATCH_THRESHOLD files: the batch job, many files per run, as the
sensor does), and report every file of the dataset from the manifest. Files whose earlier run
ended without finishing them are marked `interrupted` and loaded again (defs/recovery.py).
Files another process is loading at the same time are waited for (`_Dataset`).

Exit status: 0 every file loaded (now, before, or still in progress in another process), 1 some
file failed, 2 usage or configuration.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from elt_assets.cli.databases import export, initialize_warehouse, resolve_databases
from elt_assets.contracts.loader import ContractSet, load_contracts
from elt_assets.contracts.model import Contract
from elt_assets.defs.recovery import process_tag, recover_stale_files
from elt_assets.errors import TerminalError
from elt_assets.landing.discovery import discover
from elt_assets.landing.files import LandedFile, scan, sha256_of
from elt_assets.landing.keys import path_to_key
from elt_assets.landing.readers import FileRejected
from elt_assets.log import get_logger
from elt_assets.postgres.inspect import latest_manifest
from elt_assets.postgres.landing_state import load_known, loaded_content, save_decision
from elt_assets.postgres.lease import leases_held, wait_for_lease
from elt_assets.postgres.recovery import Interrupted
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import Settings
from elt_assets.validation.casts import UncastableColumn
from elt_assets.validation.policy import FileCounts, policy_violations
from elt_assets.validation.staged_file import StagedFile

log = get_logger(__name__)
REPORT_FIELDS = (
    "dataset",
    "file",
    "status",
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_quarantined",
    "error",
)
# The per-file summary reports failures; Dagster's own console log would repeat them.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class UsageError(TerminalError):
    """Wrong arguments or configuration: exit status 2."""


@dataclass
class Outcome:
    files: list[dict[str, Any]]
    broken_contracts: list[str]

    @property
    def exit_code(self) -> int:
        if self.broken_contracts:
            return 2
        # `running`: in progress in another process (this call's own runs are over); not a failure.
        ok = {"success", "duplicate", "would_load", "running"}
        return 0 if all(f["status"] in ok for f in self.files) else 1


def select(contract_set: ContractSet, dataset: str | None) -> tuple[list[Contract], list[str]]:
    """The contracts to run and the broken ones that concern this run."""
    broken = [str(e) for e in contract_set.errors if dataset is None or e.dataset == dataset]
    if dataset is None:
        return contract_set.contracts, broken
    chosen = [c for c in contract_set.contracts if c.name == dataset]
    if not chosen and not broken:
        known = ", ".join(sorted(c.name for c in contract_set.contracts)) or "none"
        raise UsageError(f"no dataset named {dataset!r} (known: {known})")
    return chosen, broken


def run_ingest(
    settings: Settings, dataset: str | None, dry_run: bool, retry_failed: bool = False
) -> Outcome:
    landing = settings.require_landing_dir("--landing")
    contract_set = load_contracts(settings.require_contracts_dir("--contracts"))
    contracts, broken = select(contract_set, dataset)
    if dry_run:
        return Outcome([row for c in contracts for row in _dry_run(settings, landing, c)], broken)
    databases = resolve_databases(settings, need_dagster=False)
    try:
        export(databases)
        os.environ["ELT_LANDING_DIR"] = str(landing)
        initialize_warehouse(databases, contracts)
        files = _ingest(settings, landing, contracts, retry_failed)
    finally:
        if databases.started_server and databases.server is not None:
            databases.server.stop()
    return Outcome(files, broken)


def _instance() -> dg.DagsterInstance:
    return (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )


def _ingest(
    settings: Settings, landing: Path, contracts: list[Contract], retry_failed: bool
) -> list[dict[str, Any]]:
    from elt_assets.definitions import build_definitions

    definitions = build_definitions(ContractSet(contracts))
    warehouse = PostgresResource()
    report: list[dict[str, Any]] = []
    try:
        with _instance() as instance, warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks: on purpose
            for contract in contracts:
                dataset = _Dataset(settings, landing, contract, definitions, warehouse, instance)
                report.extend(dataset.ingest(retry_failed))
    finally:
        warehouse.close()
    return report


# Rounds of "wait for the files other processes load, then load what they left unfinished".
MAX_SETTLE_ROUNDS = 10


class _Dataset:
    """One dataset's part of an `elt ingest`.

    Files another process is loading right now (it holds their lease) are not started here: this
    call loads the others, then waits up to ELT_FILE_WAIT_MINUTES for those and reports their
    outcome. A file such a process left unfinished (it died) is loaded here. A file still in
    progress elsewhere when the wait runs out is reported `running`, which is not a failure.
    """

    def __init__(
        self,
        settings: Settings,
        landing: Path,
        contract: Contract,
        definitions: dg.Definitions,
        warehouse: PostgresResource,
        instance: dg.DagsterInstance,
    ):
        self.settings, self.landing, self.contract = settings, landing, contract
        self.definitions, self.warehouse, self.instance = definitions, warehouse, instance
        self.taken: set[str] = set()  # files this call ran
        self.own_runs: set[str] = set()  # run ids of this call

    def ingest(self, retry_failed: bool) -> list[dict[str, Any]]:
        self._recover()  # files other processes left running when they died
        requests = self._discover(retry_failed)
        with self.warehouse.connection() as connection:
            busy = leases_held(
                connection, self.contract.name, [landed.relative_path for landed, _ in requests]
            )
        for file in sorted(busy):
            log.info("%s: another process is loading it; waiting for it at the end", file)
        self._load([(landed, sha) for landed, sha in requests if landed.relative_path not in busy])
        return self._settle()

    def _recover(self) -> list[Interrupted]:
        with self.warehouse.connection() as connection:
            recovered = recover_stale_files(connection, self.instance, self.contract.name)
        for item in recovered:
            log.warning("%s: %s", item.row.file, item.error)
        return recovered

    def _discover(self, retry_failed: bool) -> list[tuple[LandedFile, str]]:
        """New content (as the sensor finds it, files taken as complete), files an earlier
        discovery took that are not loaded yet, then files to load again: interrupted ones and,
        with --retry-failed, failed ones, content unchanged."""
        name = self.contract.name
        with self.warehouse.connection() as connection:
            known = load_known(connection, name)
            decision = discover(
                self.landing,
                self.contract.source.glob,
                known,
                lambda hashes: loaded_content(connection, name, hashes),
                max_requests=1_000_000,
                assume_stable=True,
            )
            save_decision(connection, self.contract, decision)
            latest = {row["file"]: row["status"] for row in latest_manifest(connection, name)}
        seen = {observation.file.relative_path for observation in decision.observations}
        # A sensor tick or another `elt ingest` took these (their hash is remembered), but no
        # load has finished them: this call loads them too (or waits for the one in progress).
        taken_elsewhere = [
            (landed, memory.sha256)
            for landed in scan(self.landing, self.contract.source.glob)
            if landed.relative_path not in seen
            and (memory := known.get(landed.relative_path)) is not None
            and memory.sha256 is not None
            and latest.get(landed.relative_path) not in ("success", "failed", "duplicate")
        ]
        statuses = {"interrupted"} | ({"failed", "running"} if retry_failed else set())
        requests = decision.requests + taken_elsewhere
        requested = {landed.relative_path for landed, _ in requests}
        return requests + [
            (landed, sha)
            for landed, sha in self._unchanged(statuses)
            if landed.relative_path not in requested
        ]

    def _unchanged(
        self, statuses: set[str], files: set[str] | None = None
    ) -> list[tuple[LandedFile, str]]:
        """Files whose latest attempt has one of `statuses`, with their content unchanged."""
        with self.warehouse.connection() as connection:
            latest = latest_manifest(connection, self.contract.name)
        wanted = {
            r["file"]: r["sha256"]
            for r in latest
            if r["status"] in statuses and (files is None or r["file"] in files)
        }
        return [
            (landed, wanted[landed.relative_path])
            for landed in scan(self.landing, self.contract.source.glob)
            if landed.relative_path in wanted
            and sha256_of(self.landing / landed.relative_path) == wanted[landed.relative_path]
        ]

    def _load(self, files: list[tuple[LandedFile, str]]) -> None:
        with self.warehouse.connection() as connection:  # another process may have loaded some
            done = loaded_content(connection, self.contract.name, [sha for _, sha in files])
        files = [(landed, sha) for landed, sha in files if done.get(sha) != landed.relative_path]
        if not files:
            return
        self.taken |= {landed.relative_path for landed, _ in files}
        keys = [path_to_key(landed.relative_path) for landed, _ in files]
        self.instance.add_dynamic_partitions(f"{self.contract.name}_files", keys)
        if len(keys) > self.settings.batch_threshold:
            self._run_batches(keys)
            return
        job = self.definitions.resolve_job_def(f"ingest_{self.contract.name}")
        for (landed, sha), key in zip(files, keys, strict=True):
            log.info("loading %s (%s bytes)", landed.relative_path, landed.size_bytes)
            result = job.execute_in_process(
                partition_key=key,
                instance=self.instance,
                raise_on_error=False,
                run_config=QUIET,
                tags={"elt/sha256": sha, "elt/file": landed.relative_path, **process_tag()},
            )
            self.own_runs.add(result.run_id)

    def _run_batches(self, keys: list[str]) -> None:
        """A backlog, as the sensor sends it: batch runs of many files each (defs/batch.py)."""
        from elt_assets.defs.batch import batch_job_name, batch_run_config, batch_tags, split

        name = self.contract.name
        job = self.definitions.resolve_job_def(batch_job_name(name))
        for chunk in split(keys, self.settings.batch_max_files):
            log.info("loading %s files of %s in one batch run", len(chunk), name)
            result = job.execute_in_process(
                instance=self.instance,
                raise_on_error=False,
                run_config={**QUIET, **batch_run_config(name, chunk)},
                tags={"elt/dataset": name, **batch_tags(len(chunk)), **process_tag()},
            )
            self.own_runs.add(result.run_id)

    def _settle(self) -> list[dict[str, Any]]:
        """The report, once no file is in progress elsewhere (or ELT_FILE_WAIT_MINUTES passed):
        waits for the files other processes are loading, and loads what they left unfinished."""
        deadline = time.monotonic() + self.settings.file_wait_minutes * 60
        for _ in range(MAX_SETTLE_ROUNDS):
            rows = _report(self.warehouse, self.landing, self.contract, self.taken)
            running = [row["file"] for row in rows if row["status"] == "running"]
            if not running or not self._wait_for(running, deadline):
                return rows
            left = {
                item.row.file
                for item in self._recover()
                if item.reload and item.row.run_id not in self.own_runs
            }
            self._load(self._unchanged({"interrupted"}, left))
        return _report(self.warehouse, self.landing, self.contract, self.taken)

    def _wait_for(self, files: list[str], deadline: float) -> bool:
        """Wait until no process holds these files' leases; False when the deadline passed."""
        with self.warehouse.connection() as connection:
            for file in files:
                if not wait_for_lease(connection, self.contract.name, file, deadline):
                    log.warning(
                        "%s: still in progress in another process after %s min "
                        "(ELT_FILE_WAIT_MINUTES); reported as running",
                        file,
                        self.settings.file_wait_minutes,
                    )
                    return False
        return True


def _report(
    warehouse: PostgresResource,
    landing: Path,
    contract: Contract,
    taken: set[str],
) -> list[dict[str, Any]]:
    """The latest manifest row of every file of the dataset still in the landing directory, and
    of the files this call took (with ELT_ARCHIVE_DIR, a loaded file is no longer there)."""
    present = {f.relative_path for f in scan(landing, contract.source.glob)} | taken
    with warehouse.connection() as connection:
        rows = latest_manifest(connection, contract.name)
    return [{k: row.get(k) for k in REPORT_FIELDS} for row in rows if row["file"] in present]


def _dry_run(settings: Settings, landing: Path, contract: Contract) -> list[dict[str, Any]]:
    """Parse, cast and validate every file; write nothing anywhere."""
    rows = []
    for landed in scan(landing, contract.source.glob):
        path = landing / landed.relative_path
        staged = StagedFile(
            contract,
            path,
            landed.relative_path,
            path_to_key(landed.relative_path),
            sha256_of(path),
            landed.size_bytes,
            "dry-run",
            settings.batch_rows,
        )
        entry: dict[str, Any] = dict.fromkeys(REPORT_FIELDS)
        entry.update(dataset=contract.name, file=landed.relative_path)
        try:
            good = sum(batch.good.height for batch in staged.batches())
        except (FileRejected, UncastableColumn) as error:
            entry.update(status="would_fail", error=str(error))
            rows.append(entry)
            continue
        counts = FileCounts(staged.rows_read, good, staged.rows_rejected)
        problems = policy_violations(contract, counts)
        entry.update(
            status="would_fail" if problems else "would_load",
            rows_read=staged.rows_read,
            rows_quarantined=staged.rows_rejected,
            error="; ".join(problems) or None,
        )
        rows.append(entry)
    return rows


def print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        document = {"files": outcome.files}
        if outcome.broken_contracts:
            document["broken_contracts"] = outcome.broken_contracts  # type: ignore[assignment]
        json.dump(document, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    for problem in outcome.broken_contracts:
        print(f"BROKEN CONTRACT {problem}")
    if not outcome.files:
        print("no files found for the selected datasets")
    for f in outcome.files:
        counts = (
            f"read {f['rows_read']}, inserted {f['rows_inserted']}, updated {f['rows_updated']}, "
            f"unchanged {f['rows_unchanged']}, quarantined {f['rows_quarantined']}"
        )
        line = f"{f['status']:<11} {f['dataset']:<12} {f['file']}: {counts}"
        print(line + (f"\n            error: {f['error']}" if f["error"] else ""))
