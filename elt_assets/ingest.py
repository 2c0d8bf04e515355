"""`elt ingest`: the sensor's discovery and the same assets, run headless, in this process.

For each dataset: find new content exactly as the sensor does (minus the stable-file wait: the
files are taken as complete), add their partitions to a Dagster instance (DAGSTER_HOME's if set,
so the runs show in the UI, else an ephemeral one), execute the dataset's ingestion job for each
file in-process (more than ELT_BATCH_THRESHOLD files: the batch job, many files per run, as the
sensor does), and report every file of the dataset from the manifest. Files whose earlier run
ended without finishing them are marked `interrupted` and loaded again (elt_assets/recovery.py).

Exit status: 0 every file loaded (now or before), 1 some file failed, 2 usage or configuration.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import dagster as dg

from elt_assets.contracts.loader import ContractSet, load_contracts
from elt_assets.contracts.model import Contract
from elt_assets.landing.discovery import discover
from elt_assets.landing.files import LandedFile, scan, sha256_of
from elt_assets.landing.keys import path_to_key
from elt_assets.landing.readers import FileRejected
from elt_assets.local import export, initialize_warehouse, resolve_databases
from elt_assets.log import get_logger
from elt_assets.postgres.inspect import latest_manifest
from elt_assets.postgres.landing_state import load_known, loaded_content, save_decision
from elt_assets.postgres.resource import PostgresResource
from elt_assets.recovery import process_tag, recover_stale_files
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


class UsageError(Exception):
    """Wrong arguments or configuration: exit status 2."""


@dataclass
class Outcome:
    files: list[dict[str, Any]]
    broken_contracts: list[str]

    @property
    def exit_code(self) -> int:
        if self.broken_contracts:
            return 2
        ok = {"success", "duplicate", "would_load"}
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
    contracts, broken = select(load_contracts(settings.contracts_dir), dataset)
    if dry_run:
        return Outcome([row for c in contracts for row in _dry_run(settings, c)], broken)
    databases = resolve_databases(settings, need_dagster=False)
    try:
        export(databases)
        os.environ["ELT_LANDING_DIR"] = str(settings.landing_dir)
        initialize_warehouse(databases, contracts)
        files = _ingest(settings, contracts, retry_failed)
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
    settings: Settings, contracts: list[Contract], retry_failed: bool
) -> list[dict[str, Any]]:
    from elt_assets.definitions import build_definitions

    definitions = build_definitions(ContractSet(contracts))
    warehouse = PostgresResource()
    report: list[dict[str, Any]] = []
    try:
        with _instance() as instance, warnings.catch_warnings():
            _run_contracts(
                settings, contracts, definitions, warehouse, instance, report, retry_failed
            )
    finally:
        warehouse.close()
    return report


def _run_contracts(
    settings: Settings,
    contracts: list[Contract],
    definitions: dg.Definitions,
    warehouse: PostgresResource,
    instance: dg.DagsterInstance,
    report: list[dict[str, Any]],
    retry_failed: bool,
) -> None:
    warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks: used on purpose
    stale_after = settings.stale_running_minutes * 60
    for contract in contracts:
        with warehouse.connection() as connection:
            for item in recover_stale_files(connection, instance, contract.name, stale_after):
                log.warning("%s: %s", item.row.file, item.error)

            def already_loaded(hashes: list[str], name: str = contract.name) -> dict[str, str]:
                return loaded_content(connection, name, hashes)

            decision = discover(
                settings.landing_dir,
                contract.source.glob,
                load_known(connection, contract.name),
                already_loaded,
                max_requests=1_000_000,
                assume_stable=True,
            )
            save_decision(connection, contract, decision)
        # Interrupted files are loaded again; with --retry-failed, failed ones too.
        statuses = {"interrupted"} | ({"failed", "running"} if retry_failed else set())
        requested = {landed.relative_path for landed, _ in decision.requests}
        decision.requests.extend(
            (landed, sha)
            for landed, sha in _files_to_retry(warehouse, settings, contract, statuses)
            if landed.relative_path not in requested
        )
        keys = [path_to_key(landed.relative_path) for landed, _ in decision.requests]
        instance.add_dynamic_partitions(f"{contract.name}_files", keys)
        if len(keys) > settings.batch_threshold:
            _run_batches(settings, contract, definitions, instance, keys)
        else:
            job = definitions.resolve_job_def(f"ingest_{contract.name}")
            for (landed, sha), key in zip(decision.requests, keys, strict=True):
                log.info("loading %s (%s bytes)", landed.relative_path, landed.size_bytes)
                job.execute_in_process(
                    partition_key=key,
                    instance=instance,
                    raise_on_error=False,
                    run_config=QUIET,
                    tags={"elt/sha256": sha, "elt/file": landed.relative_path, **process_tag()},
                )
        taken = {landed.relative_path for landed, _ in decision.requests}
        with warehouse.connection() as connection:  # runs of this call that ended unfinished
            for item in recover_stale_files(connection, instance, contract.name, stale_after):
                log.warning("%s: %s", item.row.file, item.error)
        report.extend(_report(warehouse, settings, contract, taken))


def _run_batches(
    settings: Settings,
    contract: Contract,
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: list[str],
) -> None:
    """A backlog, as the sensor sends it: batch runs of many files each (defs/batch.py)."""
    from elt_assets.defs.batch import batch_job_name, batch_run_config, batch_tags, split

    job = definitions.resolve_job_def(batch_job_name(contract.name))
    for chunk in split(keys, settings.batch_max_files):
        log.info("loading %s files of %s in one batch run", len(chunk), contract.name)
        job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={**QUIET, **batch_run_config(contract.name, chunk)},
            tags={"elt/dataset": contract.name, **batch_tags(len(chunk)), **process_tag()},
        )


def _files_to_retry(
    warehouse: PostgresResource, settings: Settings, contract: Contract, statuses: set[str]
) -> list[tuple[LandedFile, str]]:
    """Files whose latest attempt has one of `statuses`, with their content unchanged."""
    with warehouse.connection() as connection:
        latest = latest_manifest(connection, contract.name)
    retry = {r["file"]: r["sha256"] for r in latest if r["status"] in statuses}
    return [
        (landed, retry[landed.relative_path])
        for landed in scan(settings.landing_dir, contract.source.glob)
        if landed.relative_path in retry
        and sha256_of(settings.landing_dir / landed.relative_path) == retry[landed.relative_path]
    ]


def _report(
    warehouse: PostgresResource,
    settings: Settings,
    contract: Contract,
    taken: set[str],
) -> list[dict[str, Any]]:
    """The latest manifest row of every file of the dataset still in the landing directory, and
    of the files this call took (with ELT_ARCHIVE_DIR, a loaded file is no longer there)."""
    present = {f.relative_path for f in scan(settings.landing_dir, contract.source.glob)} | taken
    with warehouse.connection() as connection:
        rows = latest_manifest(connection, contract.name)
    return [{k: row.get(k) for k in REPORT_FIELDS} for row in rows if row["file"] in present]


def _dry_run(settings: Settings, contract: Contract) -> list[dict[str, Any]]:
    """Parse, cast and validate every file; write nothing anywhere."""
    rows = []
    for landed in scan(settings.landing_dir, contract.source.glob):
        path = settings.landing_dir / landed.relative_path
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
