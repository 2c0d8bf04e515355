"""Files whose run ended without finishing them: recognised, marked `interrupted`, loaded again.

A run takes a file by taking its lease (postgres/lease.py: a session-level advisory lock that
PostgreSQL frees the moment the process dies) and then setting its manifest row `running`; it
finishes it with `success` in the target step's transaction, or with `failed`. A run whose process
is killed, whose node is lost or whose retries run out leaves the row `running`. The sensor (every
tick) and `elt ingest` (every call) take such a row as stale, at once and from any host, when no
process holds the file's lease any more and
  - the run that owns it is unknown to this Dagster instance (an `elt ingest` on an ephemeral
    instance, or another instance's run), or over: the instance reports it finished and no
    automatic retry of it (dagster.yaml `run_retries`) is pending; or
  - it is a run executed in process by `elt ingest` (tag `elt/process`), which nobody else
    monitors: the instance still shows it started, so it is reported failed here first; or
  - it is a launched run that took the file over ELT_LOST_RUN_SECONDS ago (10 min) and nobody
    holds the file now: its process is gone and Dagster's run monitoring has not noticed (a
    Celery worker whose whole host was lost leaves its task STARTED for ever), so it is
    reported failed here, and Dagster's run retries or the reload below take the file again.
A stale row becomes `interrupted` with an error naming the run. The sensor then requests one run
per interruption, with a run key of its own (`<partition>@<sha256>@reload-<run id>`) so Dagster
neither dedupes it against the first run nor launches it twice; `elt ingest` loads the file
itself. Runs whose process died are otherwise left to Dagster's run monitoring, which sees it
first on the Kubernetes launcher, the default launcher and a Celery worker that lost a run process.

A run `elt ingest` executed in process may also die after its load committed, the file no longer
`running`: `fail_dead_ingest_runs` reports such a run failed, and its load as the manifest
recorded it, once its process is gone: on this host its pid is free; from another host, the
lease the process held on itself for its whole life (tag `elt/process_lease`) is.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import dagster as dg

from elt_assets.orchestration.names import (
    DATASET_TAG,
    PARENT_RUN_ID_TAG,
    PROCESS_LEASE_TAG,
    PROCESS_TAG,
    RUN_KEY_TAG,
    WILL_RETRY_TAG,
)
from elt_assets.postgres.lease import leases_held, process_lease_held
from elt_assets.postgres.recovery import (
    Interrupted,
    OpenFile,
    RecordedLoad,
    interrupted_files,
    loads_of_runs,
    mark_interrupted,
    running_files,
)

if TYPE_CHECKING:  # only postgres/ imports psycopg; the connection just passes through here
    import psycopg

    from elt_assets.postgres.resource import PostgresResource

# How long a failed run's automatic retry may take to appear (the daemon may be down).
RETRY_GRACE_SECONDS = 600


def process_tag() -> dict[str, str]:
    """The tag naming this process, for runs it executes in process."""
    return {PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def hold_process_lease(warehouse: PostgresResource) -> dict[str, str]:
    """Take this process's own lease (postgres/lease.py), held until the process ends; the tag
    naming it, for the runs it executes: from another host, where its pid means nothing, a free
    lease says the process is gone (`fail_dead_ingest_runs`)."""
    token = uuid.uuid4().hex
    warehouse.leases().hold_process_lease(token)
    return {PROCESS_LEASE_TAG: token}


def process_gone(tag: str) -> bool:
    """Whether the process a run's PROCESS_TAG names (host:pid) is certainly gone: it ran on
    this host and no process has its pid now, or this one has it (so that one ended: a
    container restarted gives its first process the same pid). Another host's process cannot
    be seen from here, nor one whose pid was taken by a new process since (left alone: safe)."""
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's
        return False
    return False


# A run not over yet: `elt ingest` killed just after creating its run leaves it NOT_STARTED.
_IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def fail_dead_ingest_runs(
    connection: psycopg.Connection,
    instance: dg.DagsterInstance,
    dataset: str,
    target: dg.AssetKey,
    lost_after_seconds: float,
) -> list[str]:
    """The dataset's runs that an `elt ingest` executed in process and whose process is gone,
    while Dagster still shows them in progress (nobody else monitors them), reported failed; a
    load such a run committed but did not live to report (killed between the load's commit and
    its materialisation) is reported now, as the manifest recorded it, so the file's partition
    shows what the table holds. Returns what was done, in words.

    A process of this host is gone when no process has its pid. One of another host is gone when
    it no longer holds its process lease and its run began over `lost_after_seconds` ago
    (ELT_LOST_RUN_SECONDS: a server restart frees a living process's lease until its next run
    takes it again). A run tagged by neither (an older version's) is judged by its files' leases
    once a file of it is left `running` (`recover_stale_files`)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=_IN_PROGRESS, tags={DATASET_TAG: dataset})
    )
    dead = [
        (record.dagster_run, why)
        for record in records
        if (why := _why_dead(connection, record, lost_after_seconds)) is not None
    ]
    said = []
    for run, why in dead:
        instance.report_run_failed(run, why)
        said.append(f"run {run.run_id} reported failed: {why}")
    if not dead:
        return said
    for load in loads_of_runs(connection, dataset, [run.run_id for run, _ in dead]):
        if not _reported(instance, target, load):
            instance.report_runless_asset_event(_recorded_materialization(target, load))
            said.append(
                f"{load.file}: run {load.recorded.run_id} loaded it and died before reporting "
                "it; reported now, as the manifest recorded the load"
            )
    return said


def _why_dead(
    connection: psycopg.Connection, record: dg.RunRecord, lost_after_seconds: float
) -> str | None:
    """Why the process that executes a run in process is gone, or None (alive, or unknown)."""
    tag = record.dagster_run.tags.get(PROCESS_TAG)
    if tag is None:
        return None  # launched by Dagster's daemon: its run monitoring watches it
    if process_gone(tag):
        return (
            f"the process that ran it ({tag}) is gone: no process of this host has its pid now "
            "(killed, out of memory, or the host restarted)"
        )
    token = record.dagster_run.tags.get(PROCESS_LEASE_TAG)
    if token is None or tag.rpartition(":")[0] == socket.gethostname():
        return None  # its pid is taken by a living process: alive, or unknown
    created = record.create_timestamp
    if created.tzinfo is None:  # the run storage's UTC, without its zone
        created = created.replace(tzinfo=datetime.UTC)
    age = time.time() - created.timestamp()
    if age < lost_after_seconds or process_lease_held(connection, token):
        return None
    since = f"{age / 60:.0f} min" if age >= 120 else f"{age:.0f} s"
    return (
        f"the process that ran it ({tag}) is gone: it no longer holds its process lease, and "
        f"the run began {since} ago (killed, out of memory, or its host lost; "
        "ELT_LOST_RUN_SECONDS)"
    )


def _reported(instance: dg.DagsterInstance, target: dg.AssetKey, load: RecordedLoad) -> bool:
    """Whether the file's target partition was last materialised by the run that loaded it."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=target, asset_partitions=[load.partition_key]), limit=1
    ).records
    return bool(records) and records[0].run_id == load.recorded.run_id


def _recorded_materialization(target: dg.AssetKey, load: RecordedLoad) -> dg.AssetMaterialization:
    """The target's materialisation of the load, with the counts a retry's report gives."""
    result, run_id = load.recorded.as_result(), load.recorded.run_id
    counts = ("staged", "inserted", "updated", "unchanged", "deduplicated", "replaced", "closed")
    return dg.AssetMaterialization(
        asset_key=target,
        partition=load.partition_key,
        description=f"Loaded by run {run_id}, whose process died before reporting it; "
        "reported from the manifest's record of the load.",
        metadata={
            **{f"rows_{name}": getattr(result, f"rows_{name}") for name in counts},
            "straight_to_target": result.straight_to_target,
            "loaded_by_run": run_id,
        },
    )


def _why_lost(run: dg.DagsterRun, row: OpenFile, lost_after_seconds: float) -> str | None:
    """Why a run Dagster still shows in progress is lost, or None. Its file's row is `running`
    and no process holds the file's lease: the process that took it is gone."""
    if run.is_finished:
        return None
    if PROCESS_TAG in run.tags:  # an `elt ingest` that was killed: nobody else monitors it
        return (
            f"the process that ran it ({run.tags[PROCESS_TAG]}) is gone: it no longer holds the "
            f"lease of {row.file} (killed, out of memory, or its host lost)"
        )
    if row.age_seconds < lost_after_seconds:  # Dagster's run monitoring should notice first
        return None
    age = row.age_seconds
    since = f"{age / 60:.0f} min" if age >= 120 else f"{age:.0f} s"
    return (
        f"its process is gone: no process holds the lease of {row.file}, which it started "
        f"{since} ago, yet Dagster still shows the run in progress (its worker's host was lost, "
        "which the run launcher cannot see; ELT_LOST_RUN_SECONDS)"
    )


def _fail_lost_runs(
    instance: dg.DagsterInstance,
    runs: dict[str, dg.DagsterRun],
    orphans: list[OpenFile],
    lost_after_seconds: float,
) -> dict[str, dg.DagsterRun]:
    """Report failed the runs whose files nobody holds any more while Dagster would show them
    in progress for ever. Returns the runs as they are now."""
    rows = {row.run_id: row for row in orphans}
    lost = [
        (run, why)
        for run in runs.values()
        if run.run_id in rows and (why := _why_lost(run, rows[run.run_id], lost_after_seconds))
    ]
    for run, why in lost:
        instance.report_run_failed(run, why)
    if not lost:
        return runs
    found = instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(runs)))
    return {run.run_id: run for run in found}


def _retry_pending(instance: dg.DagsterInstance, run: dg.DagsterRun, row: OpenFile) -> bool:
    """Dagster's run retries will run the file again themselves."""
    if run.tags.get(WILL_RETRY_TAG) != "true":
        return False
    retries = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run.run_id}))
    if not retries:  # not created yet; the daemon may be down, so not forever
        return row.age_seconds < RETRY_GRACE_SECONDS
    return any(not retry.is_finished for retry in retries)


def _why_over(
    instance: dg.DagsterInstance, row: OpenFile, runs: dict[str, dg.DagsterRun]
) -> str | None:
    """Why the row's run is over, or None while it may still finish the file."""
    run = runs.get(row.run_id)
    if run is None:
        return (
            f"run {row.run_id} ended without finishing (it is unknown to this Dagster instance "
            "and no process holds the file any more)"
        )
    if not run.is_finished or _retry_pending(instance, run, row):
        return None
    return f"run {row.run_id} ended without finishing (run status {run.status.value})"


def recover_stale_files(
    connection: psycopg.Connection,
    instance: dg.DagsterInstance,
    dataset: str,
    lost_after_seconds: float,
) -> list[Interrupted]:
    """Mark the dataset's stale `running` rows `interrupted` (or `failed`, too many times)."""
    rows = running_files(connection, dataset)
    held = leases_held(connection, dataset, [row.file for row in rows])
    orphans = [row for row in rows if row.file not in held]
    if not orphans:
        return []
    found = instance.get_runs(filters=dg.RunsFilter(run_ids=sorted({r.run_id for r in orphans})))
    runs = _fail_lost_runs(
        instance, {run.run_id: run for run in found}, orphans, lost_after_seconds
    )
    stale = [(row, why) for row in orphans if (why := _why_over(instance, row, runs)) is not None]
    return mark_interrupted(connection, stale) if stale else []


def reload_run_key(row: OpenFile) -> str:
    return f"{row.partition_key}@{row.sha256}@reload-{row.run_id}"


def files_to_reload(
    connection: psycopg.Connection,
    instance: dg.DagsterInstance,
    dataset: str,
    current_sha256: Callable[[str], str | None],
) -> list[OpenFile]:
    """Interrupted files still holding the same content whose reload was not requested yet."""
    return [
        row
        for row in interrupted_files(connection, dataset)
        if current_sha256(row.file) == row.sha256
        and not instance.get_run_ids(
            filters=dg.RunsFilter(tags={RUN_KEY_TAG: reload_run_key(row)}), limit=1
        )
    ]
