"""The work of each step of one file, as plain functions.

The partitioned assets (orchestration/assets.py, one run per file) and the batch job
(orchestration/batch.py, many files in one run) call exactly these functions, so a file loads,
fails and is reported the same way whichever run takes it:

- raw:    `describe_raw` (stat and sha256 of the landed file) then `start_raw` (its lease,
          `hold_file`, then its manifest row opens as `running`, `open_files`; a batch asks
          `loaded_already` and opens a group of files at once);
- staged: `prepare_staged` (a lazy `StagedFile`), `stage_file` (the staging IO manager's write,
          postgres/io_manager.py, which records a `StageReport` in the manifest; a batch stages
          small files read together in one transaction, `stage_together`), then from that
          report `staged_check_results` and `violation_failure`;
- target: `staged_slice` (the IO manager's input) then `load_target` (which, with ELT_ARCHIVE_DIR
          set, moves the file into the archive once its load has committed: `archive_loaded`;
          a batch loads a group of staged files in one transaction, `load_together`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import dagster as dg
import psycopg

from elt_assets.contracts.model import Contract
from elt_assets.landing.archive import NotArchived
from elt_assets.landing.files import LandedFile
from elt_assets.landing.keys import key_to_path
from elt_assets.landing.readers import FileRejected
from elt_assets.landing.zone import Landing
from elt_assets.log import get_logger, log_context, mask_secrets
from elt_assets.orchestration import checks
from elt_assets.orchestration.resources import LandingResource
from elt_assets.orchestration.table_schema import column_schema
from elt_assets.postgres import evolution
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.failures import file_failures
from elt_assets.postgres.inspect import (
    KeyState,
    current_attempts,
    primary_key_state,
    table_exists,
    table_row_count,
)
from elt_assets.postgres.io_manager import StagedSlice, stage_file, staged_slice
from elt_assets.postgres.load import (
    FileStart,
    LoadResult,
    ManifestKey,
    NoStagedSlice,
    Recorded,
    load_files,
    manifest_row,
    recorded_contents,
    start_files,
)
from elt_assets.postgres.resource import PostgresResource
from elt_assets.postgres.staging import read_stage_report
from elt_assets.validation.policy import StageReport
from elt_assets.validation.staged_file import StagedFile

__all__ = [
    "RawFile",
    "TargetOutcome",
    "archive_loaded",
    "describe_raw",
    "hold_file",
    "hold_files",
    "load_target",
    "load_together",
    "loaded_already",
    "measure_table",
    "open_files",
    "prepare_staged",
    "previous_row_count",
    "recorded_report",
    "refresh_schema",
    "retried_runs",
    "stage_file",
    "staged_check_results",
    "staged_slice",
    "start_raw",
    "table_check_results",
    "violation_failure",
]

log = get_logger(__name__)


@dataclass(frozen=True)
class RawFile:
    """What the raw step observed of a landed file."""

    file: str
    location: str  # the full path (or URL) of the file
    size_bytes: int
    mtime: float
    sha256: str
    format: str
    etag: str | None = None  # an object's ETag (object storage)

    def metadata(self) -> dict[str, Any]:
        metadata = {
            "path": dg.MetadataValue.path(self.location),
            "file": self.file,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "format": self.format,
            "mtime": dg.MetadataValue.timestamp(self.mtime),
        }
        if self.etag is not None:
            metadata["etag"] = self.etag.strip('"')
        return metadata


def describe_raw(
    contract: Contract, landing: Landing, file: str, landed: LandedFile | None = None
) -> RawFile:
    """Size, mtime and sha256 of the landed file; FileRejected when it is gone. `landed`: the
    caller's stat of it just now, if it made one."""
    landed = landed or landing.stat(file)
    if landed is None:
        raise _gone(landing, file)
    return RawFile(
        file=file,
        location=landing.location(file),
        size_bytes=landed.size_bytes,
        mtime=landed.mtime_ns / 1e9,
        sha256=landing.sha256(file),
        format=contract.file_format(file),
        etag=landed.etag,
    )


def _gone(landing: Landing, file: str) -> FileRejected:
    """The error of a file that is no longer in the landing zone."""
    archived = landing.archived_copy(file)
    if archived is not None:
        return FileRejected(
            file,
            f"the file is no longer in the landing zone ({landing.describe()}): it was "
            f"archived to {archived} after an earlier load; copy it back to load it again",
        )
    return FileRejected(
        file,
        f"the file is no longer in the landing zone ({landing.describe()}); was it moved or "
        "deleted?",
    )


def hold_file(warehouse: PostgresResource, dataset: str, file: str) -> None:
    """Hold the file's lease for this run (postgres/lease.py): taken before its manifest row says
    `running`, checked again at each step (a restarted server ends the session that held it).
    Waits up to ELT_FILE_WAIT_MINUTES for another process that is loading the same file."""
    waited = warehouse.leases().take(dataset, file, warehouse.file_wait_minutes * 60)
    if waited >= 1:
        log.info("%s: waited %.0f s for another process that was loading it", file, waited)


def hold_files(warehouse: PostgresResource, dataset: str, files: list[str]) -> None:
    """hold_file for many files: the free leases taken in one round trip, then the others one by
    one (waiting for the processes that hold them)."""
    held = set(warehouse.leases().take_free(dataset, files))
    for file in files:
        if file not in held:
            hold_file(warehouse, dataset, file)


def start_raw(
    warehouse: PostgresResource, contract: Contract, raw: RawFile, partition_key: str, run_id: str
) -> None:
    """Take the file's lease, then open (or reopen) its manifest row for this content as
    `running`."""
    hold_file(warehouse, contract.name, raw.file)
    open_files(warehouse, contract, [(raw, partition_key)], run_id)


def open_files(
    warehouse: PostgresResource,
    contract: Contract,
    raws: list[tuple[RawFile, str]],
    run_id: str,
) -> None:
    """Open (or reopen) the manifest rows of files whose leases this run holds, as `running`
    (raw file, partition key), in one transaction: a batch opens a group of files at once."""
    starts = [
        FileStart(ManifestKey(contract.name, raw.file, raw.sha256), key, raw.size_bytes, raw.format)
        for raw, key in raws
    ]
    with warehouse.connection() as connection:
        start_files(connection, starts, run_id)


def loaded_already(
    warehouse: PostgresResource, dataset: str, raws: list[RawFile]
) -> dict[str, Recorded]:
    """The files whose present content the manifest records as loaded (`success`): what it
    records of each."""
    with warehouse.connection() as connection:
        recorded = recorded_contents(connection, dataset, {raw.file: raw.sha256 for raw in raws})
    return {file: row for file, row in recorded.items() if row.status == "success"}


def prepare_staged(
    contract: Contract,
    landing: LandingResource,
    warehouse: PostgresResource,
    partition_key: str,
    run_id: str,
) -> StagedFile:
    """The file as a lazy StagedFile, for the content its raw step recorded."""
    return prepare_group(contract, landing, warehouse, [partition_key], run_id)[0]


def prepare_group(
    contract: Contract,
    landing: LandingResource,
    warehouse: PostgresResource,
    partition_keys: list[str],
    run_id: str,
) -> list[StagedFile]:
    """Files as lazy StagedFiles (a batch's group), the database work done once for all: the
    leases held (waiting for another process's), the files' latest attempts in one query, the
    tables' schema as the dataset's files evolved them (postgres/evolution.py). For many files, a
    problem of one raises for all: prepare them one by one then, where each error is its file's."""
    files = [key_to_path(key) for key in partition_keys]
    with file_failures(warehouse, None, run_id):
        hold_files(warehouse, contract.name, files)
        with warehouse.connection() as connection:
            current = current_attempts(connection, contract.name, files)
            contract = evolution.effective_contract(connection, contract)
    return [
        _staged_file(contract, landing, warehouse, key, current.get(file), run_id)
        for key, file in zip(partition_keys, files, strict=True)
    ]


def _staged_file(
    contract: Contract,
    landing: LandingResource,
    warehouse: PostgresResource,
    partition_key: str,
    current: tuple[str, int, str, str | None, int] | None,
    run_id: str,
) -> StagedFile:
    """The StagedFile of the content the file's latest attempt recorded; a file gone since then
    fails that attempt (in the manifest too), by name."""
    file = key_to_path(partition_key)
    if current is None:
        with file_failures(warehouse, None, run_id):
            raise FileRejected(file, f"materialise raw/{contract.name}_files for this file first")
    with file_failures(warehouse, ManifestKey(contract.name, file, current[0]), run_id):
        zone = landing.zone()
        try:
            source = zone.source(file)
            size = source.size
        except FileNotFoundError:
            raise _gone(zone, file) from None
    return StagedFile(
        contract=contract,
        source=source,
        file=file,
        partition_key=partition_key,
        sha256=current[0],
        size_bytes=size,
        run_id=run_id,
        batch_rows=landing.batch_rows,
        record_limit=landing.max_record_bytes,
        load=current[4],
    )


def refresh_schema(
    warehouse: PostgresResource, contract: Contract, staged_file: StagedFile
) -> None:
    """Give a file of a dataset whose files grow its tables (`contract`, as written) the schema
    the tables have now: a file before it in the same batch may have grown them since the batch
    prepared it, and a value is judged by the column it will go into."""
    with warehouse.connection() as connection:
        staged_file.contract = evolution.effective_contract(connection, contract)


def recorded_report(warehouse: PostgresResource, staged_file: StagedFile) -> StageReport:
    """What the staging IO manager recorded for this file's content (it wrote it just now)."""
    key = ManifestKey(staged_file.dataset, staged_file.file, staged_file.sha256)
    with warehouse.connection() as connection:
        report = read_stage_report(connection, key)
    if report is None:
        raise TerminalDatabaseError(
            f"{staged_file.file}: the staged step recorded no report for this content (was the "
            "row replaced by another run?); materialise staged again"
        )
    return report


def staged_check_results(
    contract: Contract, file: str, report: StageReport
) -> list[dg.AssetCheckResult]:
    """The staged checks of a file, from what its staging write recorded."""
    results = [checks.conformance_result(contract, file, report)]
    # The slice and its open quarantine rows as PostgreSQL counted them when the staging
    # transaction committed, beside the reader's own count of rows read.
    counts = report.counts
    results.append(
        checks.reconciliation_result(counts.rows_read, counts.rows_staged, counts.rows_quarantined)
    )
    results.append(checks.drift_result(contract, file, report.header, report.schema_change))
    return results


def load_gate(contract: Contract, file: str) -> Callable[[StageReport], bool]:
    """For a file this run loads right after staging it: whether its staged report lets it
    load (no policy violated, every blocking check passes), asked before a file that went
    straight into its table commits (postgres/staging.py `write_staged`)."""

    def may_load(report: StageReport) -> bool:
        if report.violations:
            return False
        results = staged_check_results(contract, file, report)
        return all(r.passed for r in results if r.check_name in checks.STAGED_BLOCKING)

    return may_load


def violation_failure(file: str, report: StageReport) -> dg.Failure | None:
    """The failure of a file that broke its contract's policy, None when it did not."""
    if report.violations:
        # The blocking check already stops the target; this puts the reason in the step's
        # failure message too, where people look first.
        return dg.Failure(
            description=f"{file}: " + "; ".join(report.violations),
            allow_retries=False,
        )
    return None


@dataclass(frozen=True)
class TargetOutcome:
    metadata: dict[str, Any]
    check_results: list[dg.AssetCheckResult]
    row_count: int
    key_state: KeyState | None  # None: the contract has no primary key


def load_target(
    contract: Contract,
    warehouse: PostgresResource,
    landing: Landing,
    staged: StagedSlice,
    run_id: str,
    previous_rows: Callable[[], int | None],
    measured: TargetOutcome | None = None,
    retried_runs: Collection[str] = (),
) -> TargetOutcome:
    """Load the file's staged slice into the target; its metadata and the target's checks.

    `previous_rows()` is the table's row count after its previous load (for the row-count check).
    `measured`: the outcome of this run's previous load of the table (a batch), whose count this
    load carries forward and whose primary key state it keeps (loads never change the table's
    constraints); None (a run's first load) reads the key's state.
    `retried_runs`: the runs this run retries (retried from its failure), which may have
    loaded the file and died before reporting it (in its staged step, straight into the
    table; or in its target step, between the load's commit and its report): such a load is
    reported as recorded, not loaded again.
    """
    key = ManifestKey(contract.name, staged.file, staged.sha256)
    with log_context(dataset=contract.name, file=staged.file, run_id=run_id):
        if staged.status == "failed":
            raise dg.Failure(
                description=f"{staged.file} failed its contract, so the target is not "
                f"touched: {staged.error}",
                allow_retries=False,
            )
        with file_failures(warehouse, key, run_id):
            hold_file(warehouse, contract.name, staged.file)
        with file_failures(warehouse, key, run_id):
            try:
                (outcome,) = _load(
                    contract,
                    warehouse,
                    landing,
                    [staged],
                    run_id,
                    previous_rows,
                    measured,
                    retried_runs,
                )
            except NoStagedSlice as gone:  # loaded already: not a failure of the file
                raise dg.Failure(description=str(gone), allow_retries=False) from None
    return outcome


def load_together(
    contract: Contract,
    warehouse: PostgresResource,
    landing: Landing,
    slices: list[StagedSlice],
    run_id: str,
    previous_rows: Callable[[], int | None],
    measured: TargetOutcome | None = None,
) -> list[TargetOutcome]:
    """Files this run just staged, loaded in order in one transaction (a batch's group of small
    files): what load_target does for each, the transaction's own statements once for all. Any
    error leaves none of them loaded (then load them one by one, where each error is its file's)."""
    hold_files(warehouse, contract.name, [staged.file for staged in slices])
    with log_context(dataset=contract.name, run_id=run_id):
        return _load(contract, warehouse, landing, slices, run_id, previous_rows, measured)


def _load(
    contract: Contract,
    warehouse: PostgresResource,
    landing: Landing,
    slices: list[StagedSlice],
    run_id: str,
    previous_rows: Callable[[], int | None],
    measured: TargetOutcome | None,
    retried_runs: Collection[str] = (),
) -> list[TargetOutcome]:
    keys = [ManifestKey(contract.name, staged.file, staged.sha256) for staged in slices]
    with warehouse.connection() as connection:
        contract = evolution.effective_contract(connection, contract)
        warehouse.ensure_tables(connection, contract)
        results = load_files(  # committed on return
            connection,
            contract,
            keys,
            run_id,
            rows_before=None if measured is None else measured.row_count,
            retried_runs=retried_runs,
        )
        warehouse.leases().release(contract.name, [s.file for s in slices])  # files finished
        loaded = [manifest_row(connection, key) if landing.archives else None for key in keys]
        key_state = _key_state(connection, contract) if measured is None else measured.key_state
        version = (
            evolution.evolution(connection, contract.name).version if contract.evolved else None
        )
    outcomes, previous = [], previous_rows()
    for staged, result, row in zip(slices, results, loaded, strict=True):
        checks = table_check_results(contract, key_state, result.row_count, previous)
        metadata = _target_metadata(contract, staged, result, version)
        if row is not None:
            quarantined = int(row.get("rows_quarantined") or 0)  # type: ignore[call-overload]
            with log_context(dataset=contract.name, file=staged.file, run_id=run_id):
                metadata.update(archive_loaded(landing, staged, result.rows_staged, quarantined))
        outcomes.append(TargetOutcome(metadata, checks, result.row_count, key_state))
        previous = result.row_count
    return outcomes


def _target_metadata(
    contract: Contract, staged: StagedSlice, result: LoadResult, version: int | None
) -> dict[str, Any]:
    """The target asset's materialisation metadata for one file's load."""
    metadata: dict[str, Any] = {
        "dagster/row_count": result.row_count,
        "rows_staged": result.rows_staged,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "rows_unchanged": result.rows_unchanged,
        "rows_deduplicated": result.rows_deduplicated,
        "rows_replaced": result.rows_replaced,
        **({"rows_closed": result.rows_closed} if contract.target.mode == "history" else {}),
        "seconds_load": round(result.seconds, 3),
        # The staged step loaded the file's rows straight into the table: the time is its
        # seconds_stage, and this load's seconds_load is 0.
        "straight_to_target": result.straight_to_target,
        "rows_per_second": round(result.rows_staged / result.seconds, 1)
        if result.seconds > 0
        else 0.0,
        "file": staged.file,
        "sha256": staged.sha256,
    }
    if contract.evolved:  # the schema its files grew (postgres/evolution.py), in the UI
        metadata["dagster/column_schema"] = column_schema(contract)
        metadata["columns_added_by_files"] = sorted(contract.added_columns)
        metadata["columns_widened_by_files"] = contract.widened_columns
        metadata["schema_version"] = version
    return metadata


def archive_loaded(
    landing: Landing, staged: StagedSlice, rows_staged: int, rows_quarantined: int
) -> dict[str, Any]:
    """Move a file whose load has committed into ELT_ARCHIVE_DIR; metadata saying what happened.

    Never raises: the file is loaded whatever happens here. A file whose every row went to the
    quarantine stays where it is, for a corrected copy or a retry.
    """
    if rows_staged == 0 and rows_quarantined > 0:
        reason = (
            f"every row of it ({rows_quarantined}) is in elt.quarantine, so it stays in the "
            "landing directory for a corrected copy or a retry"
        )
        log.info("%s not archived: %s", staged.file, reason)
        return {"not_archived": reason}
    try:
        moved = landing.archive(staged.file, staged.sha256)
    except NotArchived as problem:
        reason = str(problem)
    except Exception as error:  # the load is committed: report, never fail the step
        reason = mask_secrets(f"{type(error).__name__}: {error}")
    else:
        log.info("archived %s to %s", staged.file, moved)
        return {"archived_to": dg.MetadataValue.path(moved)}
    log.warning("%s is loaded but was not archived: %s", staged.file, reason)
    return {"not_archived": reason}


def _key_state(connection: psycopg.Connection, contract: Contract) -> KeyState | None:
    return primary_key_state(connection, contract) if contract.target.primary_key else None


def table_check_results(
    contract: Contract, key_state: KeyState | None, row_count: int, previous: int | None
) -> list[dg.AssetCheckResult]:
    """The table's checks as the table is now: its primary key (if it has one), its row count."""
    results = [checks.primary_key_result(key_state)] if key_state is not None else []
    results.append(checks.row_count_result(row_count, previous))
    return results


def measure_table(
    contract: Contract, warehouse: PostgresResource, previous: int | None
) -> list[dg.AssetCheckResult]:
    """The table's checks run on their own (from the UI): the table as it is now, or a failure
    saying it does not exist yet."""
    with warehouse.connection() as connection:
        if not table_exists(connection, contract):
            return [
                dg.AssetCheckResult(
                    check_name=name,
                    passed=False,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=f"table {contract.target.schema_}.{contract.target.table} does "
                    "not exist yet: no file of this dataset has been loaded",
                )
                for name in checks.target_check_names(contract)
            ]
        row_count = table_row_count(connection, contract)
        key_state = _key_state(connection, contract)
    return table_check_results(contract, key_state, row_count, previous)


def previous_row_count(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    """The table's row count recorded by its previous materialisation, if any."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("dagster/row_count")
    return int(value.value) if value is not None and isinstance(value.value, int) else None


# How far back a re-execution's parents are followed (a retry of a retry of ... of a run).
RETRIED_RUNS_FOLLOWED = 10


def retried_runs(run: dg.DagsterRun, instance: dg.DagsterInstance) -> list[str]:
    """The runs this run retries, nearest first: its parent, the parent's parent, up to the
    root (a run retried from its failure by the run-retries daemon, or from the UI), up to the
    first that succeeded. A re-execution of a run that succeeded is a new load, not a retry:
    its files are loaded again, as the user asked."""
    runs: list[str] = []
    parent = run.parent_run_id
    while parent is not None and len(runs) < RETRIED_RUNS_FOLLOWED:
        earlier = instance.get_run_by_id(parent)
        if earlier is not None and earlier.status == dg.DagsterRunStatus.SUCCESS:
            return runs
        runs.append(parent)
        parent = earlier.parent_run_id if earlier is not None else None
    if run.root_run_id is not None and run.root_run_id not in runs:
        root = instance.get_run_by_id(run.root_run_id)
        if root is not None and root.status != dg.DagsterRunStatus.SUCCESS:
            runs.append(root.run_id)
    return runs
