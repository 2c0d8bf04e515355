"""File-arrival sensors, one per dataset, on by default.

A sensor only decides (landing/discovery.py): it scans the dataset's glob, adds a partition per new
file and requests a run per new content, with a run key of path and sha256 so the same content is
never run twice by the sensor, while a file whose content changes runs again. Its memory lives in
elt.landing_files, so the cursor stays a few bytes whatever the number of files.

A backlog is batched: when one tick has more than ELT_BATCH_THRESHOLD new files for the dataset,
they go to runs of the batch job `ingest_<dataset>_batch` (orchestration/batch.py), at most
ELT_BATCH_MAX_FILES files each, instead of one run per file; every file still gets its partition.
A batch's run key is a hash of its (partition key, sha256) pairs, so it is never launched twice.

Each tick also recovers files whose run ended without finishing them
(elt_assets/orchestration/recovery.py): their manifest rows become `interrupted` and each gets one
reload run. A file another process is loading right now (it holds the file's lease) is not
requested; the next tick looks again.

A tick is `Tick.evaluate`. `elt ingest` runs the very same ticks in its own process (with
`Discovery.headless`) and executes the requests they return: there is one way a file is found
and sent to a run.
"""

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.landing.discovery import MAX_HASH_SECONDS, Decision, Known, discover
from elt_assets.landing.files import LandedFile
from elt_assets.landing.keys import path_to_key
from elt_assets.landing.zone import Landing
from elt_assets.orchestration.assets import DatasetKeys
from elt_assets.orchestration.batch import batch_run_config, batch_run_key, batch_tags, split
from elt_assets.orchestration.names import (
    DATASET_TAG,
    DEFAULT_NAMING,
    FILE_TAG,
    RELOAD_OF_TAG,
    SHA_TAG,
    Naming,
    batch_job_name,
    files_partitions_name,
    ingest_job_name,
    sensor_name,
)
from elt_assets.orchestration.recovery import (
    fail_dead_ingest_runs,
    files_to_reload,
    recover_stale_files,
    reload_run_key,
)
from elt_assets.orchestration.resources import LandingResource, landing_of, warehouse_of
from elt_assets.postgres.landing_state import load_known, loaded_content, save_decision
from elt_assets.postgres.lease import leases_held
from elt_assets.postgres.recovery import Interrupted
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import Settings, default_int

if TYPE_CHECKING:
    import psycopg
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


@dataclass(frozen=True)
class Discovery:
    """How the sensor takes files, from the settings. `elt ingest` runs the same sensor with
    `headless()`: every file is taken at once (files are complete when it is called)."""

    interval_seconds: int
    max_runs_per_tick: int
    batch_threshold: int
    batch_max_files: int
    assume_stable: bool = False
    running_by_default: bool = True  # the sensor's status until someone turns it on or off
    max_listed_per_tick: int = 10_000  # an object store's keys listed per tick; 0: all
    # Reading files to hash them stops after this long in one tick (the rest wait for the
    # next), so a tick ends well within Dagster's sensor timeout; None: no limit.
    max_hash_seconds: float | None = MAX_HASH_SECONDS
    # A launched run whose file nobody has held this long is lost (orchestration/recovery.py).
    lost_run_seconds: int = default_int("ELT_LOST_RUN_SECONDS")
    # A file not written for this long is complete (landing/discovery.py, the stable-file rule).
    quiet_seconds: int = default_int("ELT_FILE_QUIET_SECONDS")
    # A tick waits up to this long for files whose quiet period ends by then, instead of leaving
    # them to the next tick (about the daemon's 5 s loop: a longer wait would not be sooner).
    quiet_wait_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "Discovery":
        return cls(
            interval_seconds=settings.sensor_interval_seconds,
            max_runs_per_tick=settings.max_runs_per_tick,
            batch_threshold=settings.batch_threshold,
            batch_max_files=settings.batch_max_files,
            max_listed_per_tick=settings.max_listed_per_tick,
            lost_run_seconds=settings.lost_run_seconds,
            quiet_seconds=settings.file_quiet_seconds,
        )

    def headless(self) -> "Discovery":
        return replace(
            self,
            max_runs_per_tick=HEADLESS_MAX_FILES,
            assume_stable=True,
            max_listed_per_tick=0,
            max_hash_seconds=None,
        )


HEADLESS_MAX_FILES = 1_000_000


def build_file_sensor(
    contract: Contract,
    job: "UnresolvedAssetJobDefinition",
    batch_job: dg.JobDefinition,
    partitions: dg.DynamicPartitionsDefinition,
    rules: Discovery,
    naming: Naming = DEFAULT_NAMING,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(contract.name),
        jobs=[job, batch_job],
        minimum_interval_seconds=rules.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING
        if rules.running_by_default
        else dg.DefaultSensorStatus.STOPPED,
        required_resource_keys={naming.landing_key, naming.warehouse_key},
        description=(
            f"Watches `{contract.source.glob}` in the landing directory. A file is taken once "
            f"nothing has written to it for {rules.quiet_seconds} s (its modification time is "
            "that old, or it held still from one tick to the next); new content becomes a "
            "partition and a run (a backlog: batch runs of many files); content already loaded "
            "under another name is recorded as a duplicate."
        ),
    )
    def file_sensor(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult:
        # Dagster also passes the required resources by key (`_resources`); read through the
        # context like every step does. The cursor is only where a large bucket's listing
        # goes on next tick (empty: from the top); the sensor's memory is elt.landing_files.
        tick = Tick(contract, rules, partitions, context.instance, context.log, naming)
        landing, warehouse = landing_of(context, naming), warehouse_of(context, naming)
        return tick.evaluate(landing, warehouse, start_after=context.cursor or None)

    return file_sensor


NAMES_PER_LINE = 10  # files named in one line of a tick's log; the rest are counted


def _named(files: list[str]) -> str:
    shown = ", ".join(files[:NAMES_PER_LINE])
    more = len(files) - NAMES_PER_LINE
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass
class TickSummary:
    """What one tick did, file by file (for its log, in words)."""

    files_seen: int = 0
    requested: list[str] = field(default_factory=list)
    runs: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, loaded as)
    waiting: list[str] = field(default_factory=list)
    deferred: int = 0
    busy: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    reloads: list[str] = field(default_factory=list)
    listed_up_to: str | None = None  # a large bucket's listing stopped after this key

    def lines(self, dataset: str, max_per_tick: int) -> list[str]:
        said = []
        if self.listed_up_to is not None:
            then = "this part again" if self.deferred else "on from there"
            said.append(
                f"{dataset}: listed part of the bucket, up to {self.listed_up_to!r} "
                f"(ELT_MAX_LISTED_PER_TICK); the next tick lists {then}"
            )
        if self.requested:
            runs = "one run each" if self.runs == len(self.requested) else f"{self.runs} run(s)"
            said.append(
                f"{dataset}: sent {len(self.requested)} new file(s) to {runs}: "
                f"{_named(self.requested)}"
            )
        if self.reloads:
            said.append(
                f"{dataset}: loading again (their run ended without finishing): "
                f"{_named(self.reloads)}"
            )
        if self.duplicates:
            pairs = [f"{file} (same content as {original})" for file, original in self.duplicates]
            said.append(
                f"{dataset}: not loaded, content already loaded from another file: {_named(pairs)}"
            )
        if self.waiting:
            said.append(
                f"{dataset}: new or changed, taken once nothing writes to them any more: "
                f"{_named(self.waiting)}"
            )
        if self.busy:
            said.append(
                f"{dataset}: another process is loading these now; looked at again next "
                f"tick: {_named(self.busy)}"
            )
        if self.deferred:
            said.append(
                f"{dataset}: {self.deferred} more file(s) wait for the next tick (at most "
                f"{max_per_tick} per tick, ELT_MAX_RUNS_PER_TICK, and {MAX_HASH_SECONDS:.0f} s "
                "of reading per tick)"
            )
        return said


class Tick:
    """One evaluation of a dataset's file sensor. The sensor runs it with its context's instance
    and log (the tick's log in the UI); `elt ingest` runs the very same with its own log. After
    `evaluate`, `summary` says what it did."""

    def __init__(
        self,
        contract: Contract,
        rules: Discovery,
        partitions: dg.DynamicPartitionsDefinition,
        instance: dg.DagsterInstance,
        log: logging.Logger,
        naming: Naming = DEFAULT_NAMING,
    ):
        self.contract, self.rules, self.partitions = contract, rules, partitions
        self.instance, self.log = instance, log
        self.target = DatasetKeys.of(contract, naming).target
        self.summary = TickSummary()

    def evaluate(
        self,
        landing: LandingResource,
        warehouse: PostgresResource,
        start_after: str | None = None,
        only: Collection[str] | None = None,
    ) -> dg.SensorResult:
        """This tick: its run requests and new partitions, and (for a large bucket listed in
        shares) the cursor the next tick lists on from. `only`: look at these files alone
        (`elt ingest --file`), not at the whole zone."""
        contract, rules = self.contract, self.rules
        zone = landing.zone()
        if only is None:
            listed, up_to = zone.scan_from(
                contract.source.glob, start_after, rules.max_listed_per_tick
            )
        else:
            found = (zone.stat(file) for file in sorted(only))
            listed, up_to = [landed for landed in found if landed is not None], None
        known, decision = self._decide(zone, listed, warehouse)
        with warehouse.connection() as connection:
            save_decision(connection, contract, decision)
            recovered, reloads = self._interrupted_runs(connection, known, decision)
        job_name = ingest_job_name(contract.name)
        requests = file_requests(
            contract, decision.requests, job_name, batch_job_name(contract.name), rules
        ) + [r.with_replaced_attrs(job_name=job_name) for r in reloads]
        new_keys = [path_to_key(landed.relative_path) for landed, _ in decision.requests]
        new_keys += [r.partition_key for r in reloads if r.partition_key]
        partitions_name = files_partitions_name(contract.name)
        # Every partition key of the dataset is read only when there is one to add: an idle
        # tick costs the same with 100,000 partitions as with ten.
        existing = set(self.instance.get_dynamic_partitions(partitions_name)) if new_keys else set()
        to_add = sorted({k for k in new_keys if k not in existing})
        self.summary = TickSummary(
            files_seen=decision.files_seen,
            requested=[landed.relative_path for landed, _ in decision.requests],
            runs=len(requests) - len(reloads),
            duplicates=[
                (landed.relative_path, original) for landed, _, original in decision.duplicates
            ],
            waiting=decision.waiting,
            deferred=decision.deferred,
            busy=decision.busy,
            interrupted=[item.row.file for item in recovered],
            reloads=[r.tags[FILE_TAG] for r in reloads],
            listed_up_to=up_to,
        )
        for line in self.summary.lines(contract.name, rules.max_runs_per_tick):
            self.log.info(line)
        # The sensor's memory is elt.landing_files; the cursor only says where a bucket's
        # listing goes on (empty: from the top, and always for a directory). A share whose
        # files did not all fit in this tick is listed again, so they are not left for a pass.
        in_shares = up_to is not None or start_after is not None
        if decision.deferred and in_shares:
            cursor: str | None = start_after or ""
        else:
            cursor = up_to or ("" if start_after else None)
        return dg.SensorResult(
            cursor=cursor,
            run_requests=requests,
            dynamic_partitions_requests=[self.partitions.build_add_request(to_add)]
            if to_add
            else [],
        )

    def _decide(
        self, zone: Landing, listed: list[LandedFile], warehouse: PostgresResource
    ) -> tuple[dict[str, Known], Decision]:
        """What the sensor remembers of the dataset's files, and this tick's decision on the
        listed ones. Each question to the warehouse takes a pooled connection of its own: none
        is held while the tick hashes files or waits out a fresh one's quiet period."""
        dataset, rules = self.contract.name, self.rules
        with warehouse.connection() as connection:
            known = load_known(connection, dataset)

        def loaded(hashes: list[str]) -> dict[str, str]:
            with warehouse.connection() as connection:
                return loaded_content(connection, dataset, hashes)

        def busy(files: list[str]) -> set[str]:
            with warehouse.connection() as connection:
                return leases_held(connection, dataset, files)

        decision = discover(
            zone,
            self.contract.source.glob,
            known,
            loaded,
            max_requests=rules.max_runs_per_tick,
            max_hash_seconds=rules.max_hash_seconds,
            assume_stable=rules.assume_stable or zone.complete_when_listed,
            quiet_seconds=rules.quiet_seconds,
            wait_seconds=rules.quiet_wait_seconds,
            busy=busy,
            listed=listed,
        )
        return known, decision

    def _interrupted_runs(
        self, connection: "psycopg.Connection", known: Mapping[str, Known], decision: Decision
    ) -> tuple[list[Interrupted], list[dg.RunRequest]]:
        """Stale `running` rows marked interrupted, and one reload run per interruption.

        See orchestration/recovery.py. Each recovered file is named in the tick's log, with the
        reason.
        """
        contract = self.contract
        dead = fail_dead_ingest_runs(
            connection, self.instance, contract.name, self.target, self.rules.lost_run_seconds
        )
        for line in dead:
            self.log.warning(f"{contract.name}: {line}")
        recovered = recover_stale_files(
            connection, self.instance, contract.name, self.rules.lost_run_seconds
        )
        for item in recovered:
            self.log.warning(f"{contract.name}: {item.row.file}: {item.error}")
        # The content each file holds now: what this tick observed, else what was known before.
        observed = {o.file.relative_path: o.sha256 for o in decision.observations}
        requested = {landed.relative_path for landed, _ in decision.requests}

        def current(file: str) -> str | None:
            if file in requested:
                return None  # new content of the file already has its run this tick
            if file in observed:
                return observed[file]
            memory = known.get(file)
            return memory.sha256 if memory else None

        reloads = []
        for row in files_to_reload(connection, self.instance, contract.name, current):
            self.log.info(f"{contract.name}: {row.file}: requesting a reload ({row.run_id} ended)")
            reloads.append(
                dg.RunRequest(
                    run_key=reload_run_key(row),
                    partition_key=row.partition_key,
                    tags={
                        SHA_TAG: row.sha256,
                        FILE_TAG: row.file,
                        DATASET_TAG: contract.name,
                        RELOAD_OF_TAG: row.run_id,
                    },
                )
            )
        return recovered, reloads


def file_requests(
    contract: Contract,
    files: list[tuple[LandedFile, str]],
    job_name: str,
    batch_job_name: str,
    rules: Discovery,
) -> list[dg.RunRequest]:
    """One run per file; more than ELT_BATCH_THRESHOLD files: batch runs of many files.

    The batch job processes its files one after the other in one process: past a few files, the
    seconds each run spends starting dominate, while a few single runs still run in parallel.
    """
    if len(files) <= rules.batch_threshold:
        return [
            dg.RunRequest(
                run_key=f"{path_to_key(landed.relative_path)}@{sha}",
                partition_key=path_to_key(landed.relative_path),
                tags={SHA_TAG: sha, FILE_TAG: landed.relative_path, DATASET_TAG: contract.name},
                job_name=job_name,
            )
            for landed, sha in files
        ]
    requests = []
    for chunk in split(files, rules.batch_max_files):
        keyed = [(path_to_key(landed.relative_path), sha) for landed, sha in chunk]
        requests.append(
            dg.RunRequest(
                run_key=batch_run_key(keyed),
                run_config=batch_run_config(contract.name, [key for key, _ in keyed]),
                tags={DATASET_TAG: contract.name, **batch_tags(len(chunk))},
                job_name=batch_job_name,
            )
        )
    return requests
