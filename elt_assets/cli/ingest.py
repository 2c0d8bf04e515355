"""`elt ingest`: the sensors' ticks and the same jobs, run headless, in this process.

For each dataset: run the dataset's sensor tick (orchestration/sensors.py `Tick`: recovery of files
whose run died, discovery of new content, reloads), with every file taken as complete, then execute
the run requests it returns in process (one run per file, or batch runs for a backlog, exactly as
the daemon would launch them) on a Dagster instance (DAGSTER_HOME's if set, so the runs show in the
UI, else an ephemeral one), and report every file of the dataset from the manifest. Files another
process is loading at the same time are waited for (`_Dataset`).

Exit status: 0 every file loaded (now, before, or still in progress in another process), 1 some
file failed, 2 usage or configuration.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg

from elt_assets.cli.databases import initialize_warehouse, resolve_databases
from elt_assets.contracts.loader import ContractSet, load_contracts
from elt_assets.contracts.model import Contract
from elt_assets.errors import TerminalError
from elt_assets.landing.files import LandedFile, LandingPathError, glob_matches
from elt_assets.landing.keys import path_to_key
from elt_assets.landing.readers import FileRejected
from elt_assets.landing.zone import Landing
from elt_assets.log import get_logger
from elt_assets.orchestration.instance import keep_storage_connections
from elt_assets.orchestration.names import (
    FILE_EVENTS_TAG,
    LANDING_KEY,
    PROCESS_LEASE_TAG,
    RELOAD_OF_TAG,
    RELOAD_TAG,
    RUN_KEY_TAG,
    WAREHOUSE_KEY,
    batch_job_name,
    files_partitions_name,
    ingest_job_name,
    request_files,
)
from elt_assets.orchestration.partitions import files_partitions
from elt_assets.orchestration.recovery import hold_process_lease, process_tag
from elt_assets.orchestration.resources import LandingResource, build_resources, landing_resource
from elt_assets.orchestration.sensors import Discovery, Tick, file_requests
from elt_assets.postgres.evolution import MAX_GROWTHS, Evolution
from elt_assets.postgres.inspect import latest_manifest
from elt_assets.postgres.landing_state import load_known, loaded_content
from elt_assets.postgres.lease import leases_held, wait_for_lease
from elt_assets.postgres.resource import PostgresResource, shared_pools
from elt_assets.settings import Settings
from elt_assets.validation.casts import UncastableColumn
from elt_assets.validation.growth import SchemaGrowth
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
# Files per batch run of an `elt ingest` without DAGSTER_HOME (at least): its runs follow each
# other in this process, so ELT_BATCH_MAX_FILES's spreading of a backlog over workers buys
# nothing, and each run costs about 80 ms of Dagster's own. Bounded all the same: a batch holds
# each file's lease (a session advisory lock) until the file is loaded, and PostgreSQL's lock
# table holds about 6,400 by default (64 per connection).
HEADLESS_BATCH_FILES = 1_000


class UsageError(TerminalError):
    """Wrong arguments or configuration: exit status 2."""


@dataclass
class Outcome:
    files: list[dict[str, Any]]
    broken_contracts: list[str]
    # Datasets not loaded because their tables do not fit the contract: dataset -> why, and the fix.
    unfit_tables: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.broken_contracts or self.unfit_tables:
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


def chosen_files(
    contracts: list[Contract], zone: Landing, files: list[str]
) -> dict[str, frozenset[str]]:
    """`--file` paths, each found in the landing zone and owned by one dataset: dataset -> its
    files. A path may be relative to the landing zone (as the manifest names it) or, for a
    directory, an absolute path inside it."""
    chosen: dict[str, set[str]] = {c.name: set() for c in contracts}
    for given in files:
        file = zone.relative(given)
        try:
            present = zone.stat(file) is not None
        except LandingPathError as error:
            raise UsageError(f"--file {given}: {error}") from None
        if not present:
            raise UsageError(
                f"--file {given}: not in the landing zone ({zone.describe()}); give its path "
                "relative to the landing zone, as `elt ingest` and the manifest name it"
            )
        owners = [c.name for c in contracts if glob_matches(c.source.glob, file)]
        if len(owners) != 1:
            globs = "; ".join(f"{c.name}: {c.source.glob}" for c in contracts) or "none"
            what = "matches no selected dataset's" if not owners else "matches more than one"
            raise UsageError(f"--file {given}: {what} source.glob ({globs})")
        chosen[owners[0]].add(file)
    return {name: frozenset(found) for name, found in chosen.items() if found}


def run_ingest(
    settings: Settings,
    dataset: str | None,
    dry_run: bool,
    retry_failed: bool = False,
    files: list[str] | None = None,
    *,
    reload: bool = False,
) -> Outcome:
    """Load what is new (or, with `files`, only those files) for the selected datasets; with
    `reload`, first the files loaded before again."""
    settings.require_landing("--landing")
    contract_set = load_contracts(settings.require_contracts_dir("--contracts"))
    contracts, broken = select(contract_set, dataset)
    landing = landing_resource(settings)
    landing.zone().check()  # an unreachable zone is said before any database work
    only = chosen_files(contracts, landing.zone(), files) if files else None
    if only is not None:
        contracts = [c for c in contracts if c.name in only]
    if dry_run:
        rows = [row for c in contracts for row in _dry_run(landing, c, only)]
        return Outcome(rows, broken)
    databases = resolve_databases(settings, need_dagster=False)
    try:
        unfit = initialize_warehouse(databases, contracts).unfit
        contracts = [c for c in contracts if c.name not in unfit]  # the others load all the same
        warehouse = PostgresResource.for_urls(
            databases.env["ELT_DATABASE_URL"], databases.env["ELT_OWNER_DATABASE_URL"], settings
        )
        resources = build_resources(settings, warehouse)
        loaded = _ingest(settings, contracts, resources, retry_failed, only, reload)
    finally:
        if databases.started_server and databases.server is not None:
            databases.server.stop()
    return Outcome(loaded, broken, unfit)


def _keeps_history() -> bool:
    """Whether the runs go to DAGSTER_HOME's instance (seen in the UI), not an ephemeral one."""
    return bool(os.environ.get("DAGSTER_HOME"))


def _instance() -> dg.DagsterInstance:
    if not _keeps_history():
        return dg.DagsterInstance.ephemeral()
    instance = dg.DagsterInstance.get()
    keep_storage_connections(instance)  # the ticks' queries and the runs' events
    return instance


def _ingest(
    settings: Settings,
    contracts: list[Contract],
    resources: dict[str, Any],
    retry_failed: bool,
    only: dict[str, frozenset[str]] | None,
    reload: bool = False,
) -> list[dict[str, Any]]:
    from elt_assets.definitions import build_definitions

    discovery = Discovery.from_settings(settings).headless()
    if not _keeps_history():
        # Nobody will see the runs' events: every file goes to a batch run, whose one step
        # loads it with the assets' code for 0.1-0.3 s less than the three steps and their
        # events of a file's own run; up to HEADLESS_BATCH_FILES files a run.
        discovery = replace(
            discovery,
            batch_threshold=0,
            batch_max_files=max(discovery.batch_max_files, HEADLESS_BATCH_FILES),
        )
    definitions = build_definitions(ContractSet(contracts), settings, resources, discovery)
    report: list[dict[str, Any]] = []
    try:
        with shared_pools(), _instance() as instance, warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks: on purpose
            tags = process_tag()
            if _keeps_history():  # its runs outlive it: another host judges it by its lease
                tags |= hold_process_lease(resources[WAREHOUSE_KEY])
            for contract in contracts:
                files = only.get(contract.name) if only is not None else None
                dataset = _Dataset(
                    settings, contract, definitions, discovery, resources, instance, tags, files
                )
                report.extend(dataset.ingest(retry_failed, reload))
    finally:
        resources[WAREHOUSE_KEY].close()
    return report


# Rounds of "wait for the files other processes load, then load what they left unfinished".
MAX_SETTLE_ROUNDS = 10


class _Dataset:
    """One dataset's part of an `elt ingest`: ticks of the dataset's own sensor, run here.

    Each tick (the sensor's code, orchestration/sensors.py) recovers files whose run died, finds new
    content and asks for reloads; this class runs the requests it returns in this process. It
    adds what only a command that loads everything now needs: files an earlier tick took that
    no load has finished, and with --retry-failed the failed ones. Files another process is
    loading right now are left to it: this call waits up to ELT_FILE_WAIT_MINUTES for them,
    ticks again (a file such a process left unfinished is loaded here) and reports their
    outcome; one still in progress when the wait runs out is reported `running`, not a failure.
    """

    def __init__(
        self,
        settings: Settings,
        contract: Contract,
        definitions: dg.Definitions,
        discovery: Discovery,
        resources: dict[str, Any],
        instance: dg.DagsterInstance,
        process_tags: dict[str, str],
        only: frozenset[str] | None = None,
    ):
        self.settings, self.contract, self.instance = settings, contract, instance
        self.process_tags = process_tags  # on every run: which process executes it
        self.definitions, self.resources = definitions, resources
        self.discovery = discovery  # the headless rules the definitions were built with
        self.warehouse: PostgresResource = resources[WAREHOUSE_KEY]
        self.landing: Landing = resources[LANDING_KEY].zone()
        self.taken: set[str] = set()  # files this call ran
        self.only = only  # `elt ingest --file`: these files alone
        self.own_runs: set[str] = set()  # run ids of this call

    def ingest(self, retry_failed: bool, reload: bool = False) -> list[dict[str, Any]]:
        requests = self._tick()
        if reload:  # the files loaded before first, in their order: a newer file's rows win
            self._run(self._reloads(requests) + requests + self._leftovers(requests, retry_failed))
        else:
            self._run(requests + self._leftovers(requests, retry_failed))
        return self._settle()

    def _tick(self) -> list[dg.RunRequest]:
        """One tick of the dataset's sensor (its code, with this command's log); its new
        partitions added, its requests returned (minus reloads of files this call's own runs
        left unfinished)."""
        partitions = files_partitions(self.contract.name)
        tick = Tick(self.contract, self.discovery, partitions, self.instance, log)
        result = tick.evaluate(self.resources[LANDING_KEY], self.warehouse, only=self.only)
        for added in result.dynamic_partitions_requests or []:
            if isinstance(added, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(
                    added.partitions_def_name, list(added.partition_keys)
                )
        return [
            request
            for request in result.run_requests or []
            if request.tags.get(RELOAD_OF_TAG) not in self.own_runs
        ]

    def _leftovers(self, requests: list[dg.RunRequest], retry_failed: bool) -> list[dg.RunRequest]:
        """Files the sensor does not ask for that this call loads too: content an earlier tick
        (or another `elt ingest`) took that no load has finished, interrupted files whose
        reload was asked before, and with --retry-failed failed (or stuck) ones, unchanged."""
        name = self.contract.name
        requested = self._requested(requests)
        with self.warehouse.connection() as connection:
            known = load_known(connection, name)
            latest = {row["file"]: row for row in latest_manifest(connection, name)}
        retry = {"interrupted"} | ({"failed", "running"} if retry_failed else set())
        candidates: list[tuple[LandedFile, str]] = []  # with the content they should still hold
        for landed in self._files():
            file = landed.relative_path
            row, memory = latest.get(file), known.get(file)
            if file in requested:
                continue
            if row is None or row["status"] not in ("success", "failed", "duplicate", *retry):
                sha = memory.sha256 if memory is not None else None  # taken, not finished
            else:
                sha = row["sha256"] if row["status"] in retry else None
            if sha is not None:
                candidates.append((landed, sha))
        if not candidates:
            return []
        with self.warehouse.connection() as connection:
            busy = leases_held(connection, name, [landed.relative_path for landed, _ in candidates])
            done = loaded_content(connection, name, [sha for _, sha in candidates])
        # Hashed last: a file another process is loading (maybe a large one) is not read here.
        files = [
            (landed, sha)
            for landed, sha in candidates
            if landed.relative_path not in busy
            and done.get(sha) != landed.relative_path
            and self.landing.sha256(landed.relative_path) == sha
        ]
        return self._requests_for(files)

    def _reloads(self, requests: list[dg.RunRequest]) -> list[dg.RunRequest]:
        """`--reload`: runs that load again the files whose latest load succeeded and whose
        content is still the same, in the order they were loaded. A file recorded as a duplicate
        of another was never loaded itself, and is not either now."""
        name = self.contract.name
        requested = self._requested(requests)
        landed_files = self._files()  # listed before a connection is taken: a bucket can be slow
        with self.warehouse.connection() as connection:
            latest = {row["file"]: row for row in latest_manifest(connection, name)}
            loaded = sorted(
                (
                    (latest[landed.relative_path], landed)
                    for landed in landed_files
                    if landed.relative_path not in requested
                    and latest.get(landed.relative_path, {}).get("status") == "success"
                ),
                key=lambda pair: (pair[0]["started_at"], pair[1].relative_path),
            )
            busy = leases_held(connection, name, [landed.relative_path for _, landed in loaded])
        files = [  # hashed last, as in _leftovers; one another process is loading is left to it
            (landed, row["sha256"])
            for row, landed in loaded
            if landed.relative_path not in busy
            and self.landing.sha256(landed.relative_path) == row["sha256"]
        ]
        if not files:
            return []
        log.info("%s: loading %d file(s) again (--reload)", name, len(files))
        stamp = f"@reload-{time.time_ns()}"  # a run key of its own: not the file's first run's
        return [
            request.with_replaced_attrs(
                run_key=(request.run_key or "") + stamp, tags={**request.tags, RELOAD_TAG: "true"}
            )
            for request in self._requests_for(files)
        ]

    def _requested(self, requests: list[dg.RunRequest]) -> set[str]:
        """The files these requests load."""
        return {file for request in requests for file in request_files(request, self.contract.name)}

    def _requests_for(self, files: list[tuple[LandedFile, str]]) -> list[dg.RunRequest]:
        """Runs for these files (each with the content it should hold), their partitions added."""
        name = self.contract.name
        keys = [path_to_key(landed.relative_path) for landed, _ in files]
        self.instance.add_dynamic_partitions(files_partitions_name(name), keys)
        return file_requests(
            self.contract, files, ingest_job_name(name), batch_job_name(name), self.discovery
        )

    def _files(self) -> list[LandedFile]:
        """The dataset's files in the landing zone (with `--file`, those of them)."""
        if self.only is None:
            return self.landing.scan(self.contract.source.glob)
        found = (self.landing.stat(file) for file in sorted(self.only))
        return [landed for landed in found if landed is not None]

    def _run(self, requests: list[dg.RunRequest]) -> None:
        """Run each request as the daemon would launch it, in this process."""
        for request in requests:
            files = request_files(request, self.contract.name)
            self.taken.update(files)
            log.info("loading %s", files[0] if len(files) == 1 else f"{len(files)} files")
            job = self.definitions.resolve_job_def(
                request.job_name or ingest_job_name(self.contract.name)
            )
            if PROCESS_LEASE_TAG in self.process_tags:  # a restarted server may have let it go
                self.warehouse.leases().keep_process_lease()
            tags = {**request.tags, **self.process_tags}
            if not _keeps_history():  # nothing outlives this process: no per-file events
                tags[FILE_EVENTS_TAG] = "false"
            if request.run_key:
                tags[RUN_KEY_TAG] = request.run_key  # as a sensor's launched run carries it
            result = job.execute_in_process(
                partition_key=request.partition_key,
                instance=self.instance,
                raise_on_error=False,
                run_config={**QUIET, **request.run_config},
                tags=tags,
            )
            self.own_runs.add(result.run_id)

    def _settle(self) -> list[dict[str, Any]]:
        """The report, once no file is in progress elsewhere (or ELT_FILE_WAIT_MINUTES passed):
        waits for the files other processes are loading, then ticks again."""
        deadline = time.monotonic() + self.settings.file_wait_minutes * 60
        for _ in range(MAX_SETTLE_ROUNDS):
            rows = _report(self.warehouse, self._files(), self.contract, self.taken)
            running = [row["file"] for row in rows if row["status"] == "running"]
            if not running or not self._wait_for(running, deadline):
                return rows
            requests = self._tick()
            self._run(requests + self._leftovers(requests, retry_failed=False))
        return _report(self.warehouse, self._files(), self.contract, self.taken)

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
    landed: list[LandedFile],
    contract: Contract,
    taken: set[str],
) -> list[dict[str, Any]]:
    """The latest manifest row of every file of the dataset still in the landing zone (`landed`),
    and of the files this call took (with ELT_ARCHIVE_DIR, a loaded file is no longer there)."""
    present = {f.relative_path for f in landed} | taken
    with warehouse.connection() as connection:
        rows = latest_manifest(connection, contract.name)
    return [{k: row.get(k) for k in REPORT_FIELDS} for row in rows if row["file"] in present]


def _dry_run(
    landing: LandingResource, contract: Contract, only: dict[str, frozenset[str]] | None
) -> list[dict[str, Any]]:
    """Parse, cast and validate every file (with `only`, those); write nothing anywhere."""
    zone = landing.zone()
    rows = []
    for landed in zone.scan(contract.source.glob):
        if only is not None and landed.relative_path not in only[contract.name]:
            continue
        file = landed.relative_path
        staged = StagedFile(
            contract,
            zone.source(file),
            file,
            path_to_key(file),
            zone.sha256(file),
            landed.size_bytes,
            "dry-run",
            landing.batch_rows,
            landing.max_record_bytes,
        )
        entry: dict[str, Any] = dict.fromkeys(REPORT_FIELDS)
        entry.update(dataset=contract.name, file=file)
        try:
            good, growth, examples = _dry_read(staged)
        except (FileRejected, UncastableColumn) as error:
            entry.update(status="would_fail", error=str(error))
            rows.append(entry)
            continue
        if growth:
            entry["schema_change"] = growth  # what the load would add or widen
        if examples:
            entry["quarantine_examples"] = examples  # nothing is written: the first ones here
        counts = FileCounts(staged.rows_read, good, staged.rows_rejected)
        problems = policy_violations(contract, counts, quarantine_written=False)
        entry.update(
            status="would_fail" if problems else "would_load",
            rows_read=staged.rows_read,
            rows_quarantined=staged.rows_rejected,
            error="; ".join(problems) or None,
        )
        rows.append(entry)
    return rows


# Quarantined rows a dry run shows of each file (it writes none to elt.quarantine).
DRY_RUN_EXAMPLES = 5


def _dry_read(staged: StagedFile) -> tuple[int, str | None, list[str]]:
    """Read the file as its load would: good rows, how the tables would grow (in memory only,
    from the YAML contract: a dry run writes nothing), and the first quarantined rows' reasons."""
    grown = Evolution()
    changes: list[str] = []
    for _ in range(MAX_GROWTHS):
        good = 0
        examples: list[str] = []
        try:
            for batch in staged.batches():
                good += batch.good.height
                wanted = DRY_RUN_EXAMPLES - len(examples)
                examples += [  # each reason names its column
                    f"row {row['row_number']}: {row['reason']}"
                    for row in batch.quarantined.head(max(wanted, 0)).iter_rows(named=True)
                ]
            return good, ", ".join(changes) or None, examples
        except SchemaGrowth as growth:
            grown.added += growth.added
            for name, wide in growth.widened.items():
                grown.widen(name, wide)
            changes.append(str(growth))
            staged.contract = staged.contract.evolved_by(grown.added, grown.widened)
            staged.restart()
    raise FileRejected(staged.file, f"still growing the schema after {MAX_GROWTHS} changes")


def print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        document: dict[str, list[Any]] = {"files": outcome.files}
        if outcome.broken_contracts:
            document["broken_contracts"] = outcome.broken_contracts
        if outcome.unfit_tables:
            document["unfit_tables"] = [
                {"dataset": name, "error": error} for name, error in outcome.unfit_tables.items()
            ]
        json.dump(document, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    for problem in outcome.broken_contracts:
        print(f"BROKEN CONTRACT {problem}")
    for name, error in outcome.unfit_tables.items():
        print(f"NOT LOADED {name}: {error}")
    if not outcome.files and not outcome.unfit_tables:
        print("no files found for the selected datasets")
    for f in outcome.files:
        counts = ", ".join(  # what a load recorded (a dry run or a failed file: fewer)
            f"{name} {f[f'rows_{name}']}"
            for name in ("read", "inserted", "updated", "unchanged", "quarantined")
            if f[f"rows_{name}"] is not None
        )
        lines = [f"{f['status']:<11} {f['dataset']:<12} {f['file']}: {counts or 'not read'}"]
        lines += [f"            error: {f['error']}"] if f["error"] else []
        examples = f.get("quarantine_examples", [])
        lines += [f"            quarantined {example}" for example in examples]
        print("\n".join(lines))
