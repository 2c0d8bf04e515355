"""Manifest rows left `running` by a run that ended without finishing its file: the SQL side.

Which rows are stale is decided with the files' leases and Dagster's knowledge of the runs
(elt_assets/orchestration/recovery.py); here are the questions and the one update. Marking a row is
safe even when the judgement was wrong: it changes only while the row is still `running` for the
same run and nobody holds the file's lease or lock, and a run that was in fact alive still writes
`success` when it finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from elt_assets.postgres.load import Recorded
from elt_assets.postgres.templates import render

# A content whose runs end unfinished this many times is marked `failed` instead of `interrupted`
# and no longer loaded again by itself (a file that kills every run it is in, e.g. out of memory).
MAX_INTERRUPTIONS = 3


@dataclass(frozen=True)
class OpenFile:
    """A manifest row in `running` or `interrupted`."""

    id: int
    dataset: str
    file: str
    partition_key: str
    sha256: str
    run_id: str
    interruptions: int
    age_seconds: float


@dataclass(frozen=True)
class Interrupted:
    """A stale row after recovery: `interrupted` (to load again) or `failed` (too many times)."""

    row: OpenFile
    status: str
    error: str

    @property
    def reload(self) -> bool:
        return self.status == "interrupted"


def _rows(connection: psycopg.Connection, template: str, dataset: str) -> list[OpenFile]:
    rows = connection.execute(render(template), {"dataset": dataset}).fetchall()
    return [
        OpenFile(int(i), dataset, file, key, sha, run_id, int(n), float(age))
        for i, file, key, sha, run_id, n, age in rows
    ]


def running_files(connection: psycopg.Connection, dataset: str) -> list[OpenFile]:
    """The dataset's rows still `running`, oldest first."""
    return _rows(connection, "manifest_running", dataset)


def interrupted_files(connection: psycopg.Connection, dataset: str) -> list[OpenFile]:
    """The dataset's rows marked `interrupted`: files waiting to be loaded again."""
    return _rows(connection, "manifest_interrupted", dataset)


def mark_interrupted(
    connection: psycopg.Connection, stale: list[tuple[OpenFile, str]]
) -> list[Interrupted]:
    """Mark rows whose run is over (`why` says how we know) as interrupted, in one transaction.

    A row whose lease or file lock is held (a live process works on it; both are taken here until
    the transaction ends, so none can start meanwhile) or that a new run has taken since it was
    read is left alone.
    """
    done: list[Interrupted] = []
    with connection.transaction():
        for row, why in stale:
            locked = connection.execute(
                render("lock_file_try"), {"dataset": row.dataset, "file": row.file}
            ).fetchone()
            leased = connection.execute(
                render("lease_probe"), {"dataset": row.dataset, "files": [row.file]}
            ).fetchone()
            if not (locked and locked[0] and leased and leased[1]):
                continue
            count = row.interruptions + 1
            if count < MAX_INTERRUPTIONS:
                status = "interrupted"
                error = f"{why}; the file will be loaded again"
            else:
                status = "failed"
                error = (
                    f"{why}; runs have now ended {count} times without finishing this content, so "
                    "it is not loaded again by itself (does the file exhaust the run's memory? see "
                    "the runs' logs): fix the cause, then re-materialise the partition or run "
                    "`elt ingest --retry-failed`"
                )
            cursor = connection.execute(
                render("manifest_interrupt"),
                {
                    "id": row.id,
                    "run_id": row.run_id,
                    "interruptions": row.interruptions,
                    "status": status,
                    "error": error,
                },
            )
            if cursor.rowcount == 1:
                done.append(Interrupted(row, status, error))
    return done


def note_retry(
    connection: psycopg.Connection, dataset: str, file: str, sha256: str, error: str
) -> None:
    """A transient error the step retries: the row stays `running`, with the error as a note.

    Recording it as `failed` would stop the target step after a successful retry of the staged
    step (the target refuses a file whose row says `failed`).
    """
    with connection.transaction():
        connection.execute(
            render("manifest_retrying"),
            {"dataset": dataset, "file": file, "sha256": sha256, "error": error},
        )


@dataclass(frozen=True)
class RecordedLoad:
    """A file's committed load, by partition, as its manifest row records it."""

    file: str
    partition_key: str
    recorded: Recorded


def loads_of_runs(
    connection: psycopg.Connection, dataset: str, run_ids: list[str]
) -> list[RecordedLoad]:
    """The loads these runs committed that are still their files' present manifest rows."""
    rows = connection.execute(
        render("manifest_loaded_by_runs"), {"dataset": dataset, "run_ids": run_ids}
    ).fetchall()
    return [RecordedLoad(file, key, Recorded(*rest)) for file, key, *rest in rows]
