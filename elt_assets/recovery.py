"""Files whose run ended without finishing them: recognised, marked `interrupted`, loaded again.

A run takes a file by setting its manifest row `running` (raw step) and finishes it with `success`
in the target step's transaction, or with `failed`. A run whose process is killed, whose node is
lost or whose retries run out leaves the row `running`. The sensor (every tick) and `elt ingest`
(every call) take such a row as stale when
  - the run that owns it is over: the Dagster instance reports it finished and no automatic retry
    of it (dagster.yaml `run_retries`) is pending; or, for a run the instance does not know (an
    `elt ingest` on its own ephemeral instance), the row is older than ELT_STALE_RUNNING_MINUTES;
  - and no session holds the file's advisory lock (every write of the file holds it, so a live
    transaction would), checked while marking (postgres/recovery.py).
A stale row becomes `interrupted` with an error naming the run. The sensor then requests one run
per interruption, with a run key of its own (`<partition>@<sha256>@reload-<run id>`) so Dagster
neither dedupes it against the first run nor launches it twice; `elt ingest` loads the file on its
next call. A run Dagster still reports as in progress is never second-guessed: Dagster's code
server marks a run whose process died as failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import dagster as dg

from elt_assets.postgres.recovery import (
    Interrupted,
    OpenFile,
    interrupted_files,
    mark_interrupted,
    running_files,
)

if TYPE_CHECKING:  # only postgres/ imports psycopg; the connection just passes through here
    import psycopg

# Tags Dagster itself sets on runs (dagster._core.storage.tags).
WILL_RETRY_TAG = "dagster/will_retry"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
RUN_KEY_TAG = "dagster/run_key"


def _retry_pending(
    instance: dg.DagsterInstance, run: dg.DagsterRun, row: OpenFile, wait: float
) -> bool:
    """Dagster's run retries will run the file again themselves."""
    if run.tags.get(WILL_RETRY_TAG) != "true":
        return False
    retries = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run.run_id}))
    if not retries:
        return row.age_seconds < wait  # not created yet; the daemon may be down, so not forever
    return any(not retry.is_finished for retry in retries)


def _why_over(
    instance: dg.DagsterInstance,
    row: OpenFile,
    runs: dict[str, dg.DagsterRun],
    stale_after_seconds: float,
) -> str | None:
    """Why the row's run is over, or None while it may still finish the file."""
    run = runs.get(row.run_id)
    if run is None:
        if row.age_seconds < stale_after_seconds:
            return None
        return (
            f"run {row.run_id} ended without finishing (it is unknown to this Dagster instance and "
            f"left the file running for {row.age_seconds / 60:.0f} min without an open "
            "transaction)"
        )
    if not run.is_finished or _retry_pending(instance, run, row, stale_after_seconds):
        return None
    return f"run {row.run_id} ended without finishing (run status {run.status.value})"


def recover_stale_files(
    connection: psycopg.Connection,
    instance: dg.DagsterInstance,
    dataset: str,
    stale_after_seconds: float,
) -> list[Interrupted]:
    """Mark the dataset's stale `running` rows `interrupted` (or `failed`, too many times)."""
    rows = running_files(connection, dataset)
    if not rows:
        return []
    found = instance.get_runs(filters=dg.RunsFilter(run_ids=sorted({r.run_id for r in rows})))
    runs = {run.run_id: run for run in found}
    stale = [
        (row, why)
        for row in rows
        if (why := _why_over(instance, row, runs, stale_after_seconds)) is not None
    ]
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
