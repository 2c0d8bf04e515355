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
next call. A run Dagster still reports as in progress is not second-guessed (Dagster's run
monitoring fails a launched run whose process died), with one exception: a run executed in process
by `elt ingest` is tagged with its process (host, pid, start time); nobody monitors it, so when
that process is gone from this host the run is reported failed here and its files recovered.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
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
# Set on runs executed in process (elt ingest): "host:pid:start", so a killed one can be recognised.
PROCESS_TAG = "elt/process"


def _start_ticks(pid: int) -> str | None:
    """When the process started (clock ticks since boot, Linux), None if it is gone or a zombie;
    "" where /proc does not exist. Tells a reused pid from the process that had it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else ""
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]  # state is field 3, starttime 22


def _this_host() -> str:
    """This host, and its process id namespace where there is one: two containers can share a
    hostname, never a pid namespace, and a pid means something only inside its namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:').strip('[]')}"


def process_tag() -> dict[str, str]:
    """The tag naming this process, for runs it executes in process."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{_this_host()}:{pid}:{_start_ticks(pid) or ''}"}


def _process_gone(tag: str) -> bool:
    """The tagged process ran on this host and no longer exists (or its pid now belongs to
    another process). A process on another host (or in another pid namespace) is never judged
    from here."""
    host, pid, started = tag.rsplit(":", 2)
    if host != _this_host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    now = _start_ticks(int(pid))
    return now is None or (bool(started) and bool(now) and now != started)


def _fail_dead_in_process_runs(
    instance: dg.DagsterInstance, runs: dict[str, dg.DagsterRun]
) -> dict[str, dg.DagsterRun]:
    """Report failed the in-process runs whose process is gone (killed, out of memory): Dagster
    would show them as started forever. Returns the runs as they are now."""
    dead = [
        run
        for run in runs.values()
        if not run.is_finished and (tag := run.tags.get(PROCESS_TAG)) and _process_gone(tag)
    ]
    for run in dead:
        pid = run.tags[PROCESS_TAG].rsplit(":", 2)[1]
        instance.report_run_failed(
            run, f"the process that ran it in process (pid {pid}) is gone: killed or crashed"
        )
    if not dead:
        return runs
    found = instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(runs)))
    return {run.run_id: run for run in found}


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
    runs = _fail_dead_in_process_runs(instance, {run.run_id: run for run in found})
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
