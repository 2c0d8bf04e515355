"""Loading a backlog: many files of a dataset in one run, job `ingest_<dataset>_batch`.

A run per file pays for a process start (seconds of imports and setup) before any work; for a
backlog of hundreds of small files that cost dominates. The batch job loads a list of files (run
config: their partition keys) in one op, with exactly the functions the partitioned assets run
(orchestration/steps.py), and reports each file as those assets would: materialisations of the raw,
the staged and the target asset for the file's partition, and evaluations of the staged checks
(per partition). The target's checks concern the whole table and Dagster keeps one evaluation of
them per run: they are measured after each file and reported once per batch, the first failure
if a file caused one, else the last. The row count after each file is exact without counting the
table each time: the batch's first load counts it, each later load carries that count forward by
what it changed, under the table's lock (elt.target_rows); the primary key is read once per
batch (no load changes it). In the UI every file stays its own partition.

1. Every file is hashed. Content the manifest already records as loaded is skipped (one query
   for all), so a retry of the op, or the same batch run again, redoes only the unfinished
   files. The others' leases are taken and their manifest rows opened (`running`, this run; a
   hundred in one transaction): a batch that dies leaves each file it took visible, and the
   interrupted-run recovery (elt_assets/orchestration/recovery.py) loads them again.
2. Each file is staged, checked and loaded into the target, in the order given (oldest first).
   Each group of a hundred is prepared together (its manifest rows read back in one query).
   Small files are read and validated together first (casting and pandera cost far more per
   call than per row), staged together in one transaction (one COPY; each file
   still its own slice, counts, checks and manifest report), then loaded together in one
   transaction, in order. If either fails, nothing of it is written and each file is staged or
   loaded on its own, where the error is that file's alone. Other files are staged and loaded on
   their own, after the files before them (the order decides which version of a key wins).

A file that fails (a bad file, a policy violation) is recorded in the manifest exactly as in a
single run, and the op goes on with the next file; at the end the op fails with a message listing
every failed file and its error, not retried. A transient database error stops the op at once and
the RetryPolicy (the assets' own) retries it. The op takes one slot of the `warehouse` pool.

The sensor (orchestration/sensors.py) and `elt ingest` use it when more than ELT_BATCH_THRESHOLD
files are new in one tick, in runs of at most ELT_BATCH_MAX_FILES files.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at runtime.
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from elt_assets.contracts.model import Contract
from elt_assets.landing.keys import key_to_path
from elt_assets.log import log_context, mask_secrets
from elt_assets.orchestration import checks, steps
from elt_assets.orchestration.assets import RETRY_POLICY, DatasetKeys, column_lineage
from elt_assets.orchestration.names import (
    BATCH_FILES_TAG,
    BATCH_TAG,
    DEFAULT_NAMING,
    FILE_EVENTS_TAG,
    RELOAD_TAG,
    Naming,
    batch_job_name,
    batch_op_name,
)
from elt_assets.orchestration.resources import LandingResource, landing_of, warehouse_of
from elt_assets.postgres.errors import is_transient
from elt_assets.postgres.failures import file_failures
from elt_assets.postgres.inspect import current_attempt
from elt_assets.postgres.io_manager import stage_metadata, stage_together, written_slice
from elt_assets.postgres.resource import PostgresResource
from elt_assets.validation.policy import StageReport
from elt_assets.validation.staged_file import StagedFile, read_together

T = TypeVar("T")
GROUP_FILES = 100  # files prepared, then read and validated together when small, at a time


class BatchConfig(dg.Config):
    partition_keys: list[str] = Field(
        description="Partition keys (landing/keys.py) of the files to load, in order."
    )


def batch_run_config(dataset: str, partition_keys: Sequence[str]) -> dict[str, Any]:
    return {"ops": {batch_op_name(dataset): {"config": {"partition_keys": list(partition_keys)}}}}


def batch_tags(count: int) -> dict[str, str]:
    return {BATCH_TAG: "true", BATCH_FILES_TAG: str(count)}


def batch_run_key(files: Iterable[tuple[str, str]]) -> str:
    """The same (partition key, sha256) set always gives the same run key, in any order."""
    digest = hashlib.sha256("\n".join(sorted(f"{k}@{s}" for k, s in files)).encode()).hexdigest()
    return f"batch@{digest}"


def split(items: Sequence[T], max_files: int) -> list[list[T]]:
    """Consecutive runs of at most `max_files` items, as even as possible (150/100 -> 75 + 75)."""
    if not items:
        return []
    runs = math.ceil(len(items) / max_files)
    size, extra = divmod(len(items), runs)
    chunks, start = [], 0
    for number in range(runs):
        end = start + size + (1 if number < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return chunks


def build_batch_job(
    contract: Contract,
    partitions: dg.DynamicPartitionsDefinition,
    resources: dict[str, object],
    naming: Naming = DEFAULT_NAMING,
) -> dg.JobDefinition:
    keys = DatasetKeys.of(contract, naming)
    specs = [
        *checks.staged_check_specs(contract, keys.staged, partitions),
        *checks.target_check_specs(contract, keys.target),
    ]
    blocking = {spec.name: spec.blocking for spec in specs}
    partitions_name = partitions.name
    assert partitions_name is not None

    @dg.op(
        name=batch_op_name(contract.name),
        retry_policy=RETRY_POLICY,
        pool=naming.pool,
        required_resource_keys={naming.landing_key, naming.warehouse_key},
        description=(
            f"Load the listed files of dataset {contract.name} one after the other, each exactly "
            "as its partition's run would (raw -> staged -> target, with the checks)."
        ),
    )
    def load_files(context: dg.OpExecutionContext, config: BatchConfig) -> None:
        landing, warehouse = landing_of(context, naming), warehouse_of(context, naming)
        batch = _Batch(context, contract, keys, blocking, landing, warehouse)
        known = set(context.instance.get_dynamic_partitions(partitions_name))
        wanted = list(dict.fromkeys(config.partition_keys))
        missing = [key for key in wanted if key not in known]
        if missing:  # e.g. a batch launched by hand: every file is still its own partition
            context.instance.add_dynamic_partitions(partitions_name, missing)
        batch.run(wanted)

    @dg.job(
        name=batch_job_name(contract.name),
        executor_def=dg.in_process_executor,
        # Bound here, not left to Definitions: Dagster would rebuild the sensor that targets this
        # job to bind them, and its rebuild passes the sensor's (empty) owners on, a beta
        # parameter that warns on every load.
        resource_defs={key: resources[key] for key in (naming.landing_key, naming.warehouse_key)},
        description=(
            f"Load many files of dataset {contract.name} in one run (a backlog): each file is "
            "still reported as its own partition of the three assets."
        ),
        tags={"elt/dataset": contract.name},
    )
    def batch_job() -> None:
        load_files()

    return batch_job


class _Batch:
    """One attempt of a batch op: the files it loads, skips and fails."""

    def __init__(
        self,
        context: dg.OpExecutionContext,
        contract: Contract,
        keys: DatasetKeys,
        blocking: dict[str, bool],
        landing: LandingResource,
        warehouse: PostgresResource,
    ):
        self.context = context
        self.contract = contract
        self.keys = keys
        self.blocking = blocking
        self.landing = landing
        self.warehouse = warehouse
        self.run_id = context.run.run_id
        self.loaded: list[str] = []
        self.skipped: list[str] = []
        self.failed: dict[str, str] = {}
        # The target's checks are the table's, not a file's: Dagster keeps one evaluation per run,
        # so the batch reports each once, the first failure among its files, else the last.
        self.target_checks: dict[str, dg.AssetCheckResult] = {}
        self.last_load: steps.TargetOutcome | None = None  # of this batch's last loaded file
        # `elt ingest` without DAGSTER_HOME tags its runs: its instance keeps nothing past the
        # process, so each file's materialisations and check evaluations would be written for no
        # one to see, at half of a small file's cost. The manifest records every file either way.
        self.reports_files = context.run.tags.get(FILE_EVENTS_TAG) != "false"
        # The runs this one retries (a batch retried from its failure): a file one of them
        # loaded may have been left unreported when it died.
        self.retried = steps.retried_runs(context.run, context.instance)
        self.reloads = context.run.tags.get(RELOAD_TAG) == "true"  # `elt ingest --reload`

    def run(self, partition_keys: list[str]) -> None:
        started = time.perf_counter()
        taken = self._take(partition_keys)
        try:
            for start in range(0, len(taken), GROUP_FILES):
                self._load_group(taken[start : start + GROUP_FILES])
        finally:  # also when a transient error ends this attempt
            for result in self.target_checks.values():
                self._log_evaluation(self.keys.target, result, None)
        seconds = time.perf_counter() - started
        summary = {
            "files": len(partition_keys),
            "files_loaded": len(self.loaded),
            "files_already_loaded": len(self.skipped),
            "files_failed": len(self.failed),
            "seconds": round(seconds, 3),
        }
        self.context.log.info(f"{self.contract.name}: batch {summary}")
        self.context.add_output_metadata(summary)
        if self.failed:
            lines = [
                error if error.startswith(file) else f"{file}: {error}"
                for file, error in self.failed.items()
            ]
            raise dg.Failure(
                description=f"{len(self.failed)} of {len(partition_keys)} files failed "
                f"(the others loaded):\n" + "\n".join(lines),
                metadata={**summary, "failed_files": dg.MetadataValue.json(self.failed)},
                allow_retries=False,
            )

    def _guard(self, key: str, work: Callable[[str, str], bool]) -> bool:
        """Run one file's step; a failure is this file's alone, unless retrying can fix it."""
        file = key_to_path(key)
        try:
            with log_context(dataset=self.contract.name, file=file, run_id=self.run_id):
                return work(key, file)
        except dg.Failure as failure:
            message = failure.description or str(failure)
        except Exception as error:
            if is_transient(error):
                raise  # the whole op is retried; finished files are skipped then
            message = mask_secrets(f"{type(error).__name__}: {error}")
        self.failed[file] = message
        self.context.log.error(f"{file} failed: {message}")
        return False

    def _take(self, partition_keys: list[str]) -> list[str]:
        """The raw step of every file, its database work done for many files at once: each file
        described (stat, sha256), the contents loaded already found in one query and skipped,
        the others' leases taken, then their manifest rows opened together. Returns the keys of
        the files this attempt loads."""
        described: dict[str, steps.RawFile] = {}

        def describe(key: str, file: str) -> bool:
            with file_failures(self.warehouse, None, self.run_id):
                zone = self.landing.zone()
                landed = zone.stat(file)
                if landed is None and self._archived_after_load(file):
                    return self._skip(file, "it was loaded, then archived (ELT_ARCHIVE_DIR)")
                described[key] = steps.describe_raw(self.contract, zone, file, landed)
            return True

        def hold(key: str, file: str) -> bool:
            with file_failures(self.warehouse, None, self.run_id):
                steps.hold_file(self.warehouse, self.contract.name, file)
            return True

        for key in partition_keys:
            self._guard(key, describe)
        loaded = steps.loaded_already(self.warehouse, self.contract.name, list(described.values()))
        unreported = []  # loaded by this run or one it retries, maybe not reported before it died
        for key, raw in list(described.items()):
            known = loaded.get(raw.file)
            if known is None:
                continue
            ours = known.loaded_by({self.run_id, *self.retried})
            if ours and not self._reported(key, known.run_id):
                unreported.append(key)
            elif ours or not self.reloads:
                self._skip(raw.file, "this content is already loaded")
            else:
                continue  # `elt ingest --reload`: loaded before by another run, loaded again
            del described[key]
        for key in unreported:
            self._guard(key, self._report_recorded_load)
        with file_failures(self.warehouse, None, self.run_id):  # the free leases, at once
            free = set(
                self.warehouse.leases().take_free(
                    self.contract.name, [raw.file for raw in described.values()]
                )
            )
        taken = [  # the other files' leases are waited for one by one
            key for key, raw in described.items() if raw.file in free or self._guard(key, hold)
        ]
        for start in range(0, len(taken), GROUP_FILES):
            keys = taken[start : start + GROUP_FILES]
            with file_failures(self.warehouse, None, self.run_id):  # the platform's, no file's
                opened = [(described[key], key) for key in keys]
                steps.open_files(self.warehouse, self.contract, opened, self.run_id)
            for key in keys:
                raw = described[key]
                self._report(
                    dg.AssetMaterialization(self.keys.raw, partition=key, metadata=raw.metadata())
                )
        return taken

    def _reported(self, key: str, run_id: str | None) -> bool:
        """Whether the file's target partition was materialised by that run (the run that
        loaded it), before it died."""
        records = self.context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=self.keys.target, asset_partitions=[key]), limit=1
        ).records
        return bool(records) and records[0].run_id == run_id

    def _report_recorded_load(self, key: str, file: str) -> bool:
        """A file that a run this one retries (or an earlier attempt of this op) loaded, maybe
        dying between the load's commit and its report: that load reported now, as recorded
        (nothing is loaded again), as the retry of a file's own run does."""
        outcome = steps.load_target(
            self.contract,
            self.warehouse,
            self.landing.zone(),
            steps.staged_slice(self.warehouse, self.contract.name, file),
            self.run_id,
            self._previous_rows,
            self.last_load,
            retried_runs=self.retried,
        )
        return self._loaded(outcome, key, file)

    def _archived_after_load(self, file: str) -> bool:
        """A file gone from the landing directory whose latest load succeeded: with
        ELT_ARCHIVE_DIR set, a loaded file moves out, and a retry must not fail on it."""
        with self.warehouse.connection() as connection:
            latest = current_attempt(connection, self.contract.name, file)
        return latest is not None and latest[2] == "success"

    def _skip(self, file: str, why: str) -> bool:
        self.skipped.append(file)
        self.context.log.info(f"{file}: skipped, {why}")
        return False

    def _load_group(self, keys: list[str]) -> None:
        """Stage and load files in order. The small ones are read and validated together first
        (validation/staged_file.py `read_together`), staged together, then loaded together;
        any other file is staged and loaded on its own, after the files before it."""
        prepared = self._prepare(keys)
        read_together(list(prepared.values()))
        reports = self._stage_together([f for f in prepared.values() if f.read_already])
        pending: list[tuple[str, StagedFile, StageReport]] = []  # staged, checked, to load
        for key, staged_file in prepared.items():
            report = reports.get(staged_file.file)
            if report is None:  # on its own, after the files before it: load order counts
                self._load_pending(pending)
                self._guard(key, functools.partial(self._stage_and_load, staged_file))
            else:
                others = {"staged_with_files": len(reports) - 1}  # one transaction, one COPY
                check = functools.partial(self._check_staged, staged_file, report, others)
                if self._guard(key, check):
                    pending.append((key, staged_file, report))
        self._load_pending(pending)

    def _prepare(self, keys: list[str]) -> dict[str, StagedFile]:
        """The group's files as StagedFiles (key -> file), prepared together; if that fails for
        anything but a transient error, one by one, where each error is its file's."""
        try:
            with log_context(dataset=self.contract.name, run_id=self.run_id):
                group = steps.prepare_group(
                    self.contract, self.landing, self.warehouse, keys, self.run_id
                )
            return dict(zip(keys, group, strict=True))
        except Exception as error:
            if is_transient(error):
                raise  # the whole op is retried, as for any one file
            message = error.description if isinstance(error, dg.Failure) else str(error)
            self.context.log.info(
                f"{len(keys)} files prepared one by one: {mask_secrets(message or '')[:300]}"
            )
        prepared: dict[str, StagedFile] = {}

        def prepare(key: str, file: str) -> bool:
            prepared[key] = steps.prepare_staged(
                self.contract, self.landing, self.warehouse, key, self.run_id
            )
            return True

        for key in keys:
            self._guard(key, prepare)
        return prepared

    def _stage_together(self, files: list[StagedFile]) -> dict[str, StageReport]:
        """Stage the files read together in one transaction (file -> its report). If that fails,
        for whatever reason, nothing was written and each file is staged on its own, where its
        error (the rows PostgreSQL refused, a lock it waited for too long) is its own: the files
        before it load, and a transient error retries the op from that file on."""
        if len(files) < 2:
            return {}
        try:
            with log_context(dataset=self.contract.name, run_id=self.run_id):
                reports = stage_together(self.warehouse, files)
        except Exception as error:
            self.context.log.info(
                f"{len(files)} files staged one by one: {mask_secrets(str(error))[:300]}"
            )
            for staged_file in files:
                staged_file.restart()
            return {}
        return {f.file: report for f, report in zip(files, reports, strict=True)}

    def _stage_and_load(self, staged_file: StagedFile, key: str, file: str) -> bool:
        staged_file.load_gate = steps.load_gate(self.contract, file)  # loaded right after
        if self.contract.policy.evolves:  # a file before it in this batch may have grown them
            steps.refresh_schema(self.warehouse, self.contract, staged_file)
        report = steps.stage_file(self.warehouse, staged_file)
        return self._check_staged(staged_file, report, {}, key, file) and self._load_one(
            staged_file, report, key, file
        )

    def _check_staged(
        self,
        staged_file: StagedFile,
        report: StageReport,
        extra: dict[str, int],
        key: str,
        file: str,
    ) -> bool:
        """Report the file's staged materialisation and checks; raise if it may not load."""
        metadata = stage_metadata(staged_file, report)
        metadata.update({name: dg.MetadataValue.int(value) for name, value in extra.items()})
        self._report(dg.AssetMaterialization(self.keys.staged, partition=key, metadata=metadata))
        results = steps.staged_check_results(self.contract, file, report)
        for result in results:
            self._log_evaluation(self.keys.staged, result, key)
        failure = steps.violation_failure(file, report)
        if failure is not None:
            raise failure
        blocked = [r for r in results if not r.passed and self.blocking.get(r.check_name or "")]
        if blocked:  # what Dagster's blocking checks do for the partitioned assets
            raise dg.Failure(
                description=f"{file}: "
                + "; ".join(f"{r.check_name}: {r.description}" for r in blocked),
                allow_retries=False,
            )
        return True

    def _load_pending(self, pending: list[tuple[str, StagedFile, StageReport]]) -> None:
        """Load the files staged together so far, in one transaction; if that fails, nothing of
        it is loaded and each file is loaded on its own, where its error is its own."""
        group, pending[:] = list(pending), []
        outcomes = self._load_together(group) if len(group) > 1 else None
        for index, (key, staged_file, report) in enumerate(group):
            if outcomes is None:
                self._guard(key, functools.partial(self._load_one, staged_file, report))
            else:
                outcome = outcomes[index]
                outcome.metadata["loaded_with_files"] = len(group) - 1  # in one transaction
                self._guard(key, functools.partial(self._loaded, outcome))

    def _load_together(
        self, group: list[tuple[str, StagedFile, StageReport]]
    ) -> list[steps.TargetOutcome] | None:
        slices = [written_slice(staged_file, report) for _, staged_file, report in group]
        try:
            return steps.load_together(
                self.contract,
                self.warehouse,
                self.landing.zone(),
                slices,
                self.run_id,
                self._previous_rows,
                self.last_load,
            )
        except Exception as error:  # as in _stage_together: each file on its own then
            self.context.log.info(
                f"{len(group)} files loaded one by one: {mask_secrets(str(error))[:300]}"
            )
            return None

    def _load_one(self, staged_file: StagedFile, report: StageReport, key: str, file: str) -> bool:
        outcome = steps.load_target(
            self.contract,
            self.warehouse,
            self.landing.zone(),
            written_slice(staged_file, report),
            self.run_id,
            self._previous_rows,
            self.last_load,
        )
        return self._loaded(outcome, key, file)

    def _loaded(self, outcome: steps.TargetOutcome, key: str, file: str) -> bool:
        """Report a file's load: its target materialisation; the table's checks kept for the
        end of the batch."""
        self.last_load = outcome
        lineage = {"dagster/column_lineage": column_lineage(self.contract, self.keys)}
        self._report(
            dg.AssetMaterialization(
                self.keys.target, partition=key, metadata={**outcome.metadata, **lineage}
            )
        )
        for result in outcome.check_results:
            name = result.check_name or ""
            kept = self.target_checks.get(name)
            if kept is None or kept.passed:
                self.target_checks[name] = result
        self.loaded.append(file)
        return True

    def _previous_rows(self) -> int | None:
        """The instance's latest row count for the first file, then this batch's own."""
        if self.last_load is not None:
            return self.last_load.row_count
        return steps.previous_row_count(self.context.instance, self.keys.target)

    def _report(self, materialization: dg.AssetMaterialization) -> None:
        if self.reports_files:
            self.context.log_event(materialization)

    def _log_evaluation(
        self, asset_key: dg.AssetKey, result: dg.AssetCheckResult, partition: str | None
    ) -> None:
        if not self.reports_files:
            return
        blocking = self.blocking.get(result.check_name or "", False)
        checks.record_evaluation(
            self.context, asset_key, result, partition=partition, blocking=blocking
        )
