"""A file's lease: PostgreSQL itself knows whether a process still works on a file.

A run takes the lease of each file it loads before it opens the file's manifest row, and keeps it
until the file is finished (`success` or `failed`) or the run ends. The lease is a session-level
advisory lock held on a connection of its own: when the process dies (kill -9, out of memory, a
lost node), PostgreSQL ends its session and the lease is free at once, on the same host or any
other. TCP keepalives on both sides bound how long a vanished node can look alive.

So a manifest row left `running` whose lease is free belongs to nobody: the next sensor tick or
`elt ingest` takes the file again at once (elt_assets/orchestration/recovery.py). A run that finds
the lease held waits for the other process to finish the file (bounded), then loads it itself; `elt
ingest` waits for files in progress elsewhere and reports their outcome.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psycopg

from elt_assets.postgres.connection import connect
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.templates import render

# A vanished client is noticed by the server within about idle + interval * count seconds.
KEEPALIVE_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)
POLL_SECONDS = 0.5  # how often `elt ingest` looks whether a file another process holds is done
# A session that answered this recently is taken as alive without asking again: a batch re-checks
# its leases at every step of every file, and a server restart also ends the load's own
# connection, which fails its transaction whatever the lease session says.
ALIVE_SECONDS = 1.0


# The "dataset" of the leases processes hold on themselves (a dataset's name has no colon).
PROCESS_LEASES = "elt:process"


def _key(dataset: str, file: str) -> dict[str, str]:
    return {"dataset": dataset, "file": file}


@dataclass(frozen=True)
class Holder:
    """Who holds a file's lease, for messages."""

    application: str
    address: str
    backend_pid: int
    since: str

    def __str__(self) -> str:
        return (
            f"{self.application or 'a client'} at {self.address or 'a local socket'} "
            f"(backend {self.backend_pid}, connected since {self.since})"
        )


class FileLeases:
    """The leases one process holds, on one dedicated connection opened on first use."""

    def __init__(self, url: str, *, setting: str, application_name: str):
        self._url, self._setting, self._application_name = url, setting, application_name
        self._connection: psycopg.Connection | None = None
        self._held: set[tuple[str, str]] = set()
        self._answered_at = 0.0  # monotonic time of the session's last answer
        self._process_lease: str | None = None  # held for the process's life, see below

    def _open(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._connection = connect(
                self._url,
                setting=self._setting,
                application_name=f"{self._application_name}-lease",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                options=KEEPALIVE_OPTIONS,
            )
            self._held.clear()
            if self._process_lease is not None:  # a new session: the process's lease again
                self._try(self._connection, PROCESS_LEASES, [self._process_lease])
        return self._connection

    def hold_process_lease(self, token: str) -> None:
        """Hold this process's own lease, named `token`, until it closes this session or dies.
        A session lost with the process alive (a dropped connection, a restarted server) gives
        it up; the next session takes it again (`keep_process_lease`, and any file lease)."""
        self._process_lease = token
        connection = self._open()
        if (PROCESS_LEASES, token) not in self._held:
            self._try(connection, PROCESS_LEASES, [token])

    def keep_process_lease(self) -> None:
        """Take this process's own lease again if its session was lost (asked at most once a
        second); nothing if it holds none."""
        if self._process_lease is not None and not self._alive():
            self._open()

    def _try(self, connection: psycopg.Connection, dataset: str, files: list[str]) -> None:
        rows = connection.execute(render("lease_try"), {"dataset": dataset, "files": files})
        self._answered_at = time.monotonic()
        self._held.update((dataset, file) for file, free in rows.fetchall() if free)

    def take(self, dataset: str, file: str, wait_seconds: float) -> float:
        """Hold the file's lease, waiting up to `wait_seconds` for another process to finish it
        (a lock wait PostgreSQL shows in pg_stat_activity). Returns how long it waited; raises
        TerminalDatabaseError naming the holder if the wait runs out."""
        started = time.monotonic()
        if self.take_free(dataset, [file]):
            return 0.0
        connection = self._open()
        try:
            with connection.transaction():
                connection.execute(render("lock_timeout_local"), {"ms": int(wait_seconds * 1000)})
                connection.execute(render("lease_wait"), _key(dataset, file))
        except psycopg.errors.LockNotAvailable:
            holder = lease_holder(connection, dataset, file)
            raise TerminalDatabaseError(
                f"{file}: another process has been loading this file for over "
                f"{wait_seconds:.0f} s ({holder or 'it just finished'}); let it finish, then "
                "load the file again if it did not succeed (ELT_FILE_WAIT_MINUTES)"
            ) from None
        self._held.add((dataset, file))
        return time.monotonic() - started

    def take_free(self, dataset: str, files: list[str]) -> list[str]:
        """Hold the leases of those of `files` that no other session holds, in one round trip;
        returns the files whose leases this session holds now (held already or just taken)."""
        if self._held.intersection((dataset, file) for file in files):
            self._alive()  # a session that is gone forgets what it held
        # Only leases not held yet: a session-level advisory lock taken twice needs two unlocks.
        wanted = [file for file in files if (dataset, file) not in self._held]
        if wanted:
            self._try(self._open(), dataset, wanted)
        return [file for file in files if (dataset, file) in self._held]

    def _alive(self) -> bool:
        """Is the session still there? (A restarted server or a lost connection ended it, and
        with it every lease: `take` then takes them again on a new one.)"""
        if self._connection is None or self._connection.closed:
            self._end_session()
            return False
        if time.monotonic() - self._answered_at < ALIVE_SECONDS:
            return True
        try:
            self._connection.execute(render("lease_ping"))
        except psycopg.Error:
            self._end_session()
            return False
        self._answered_at = time.monotonic()
        return True

    def release(self, dataset: str, files: list[str]) -> None:
        """Give the leases back (the files are finished). A lost connection already gave them
        back."""
        held = [file for file in files if (dataset, file) in self._held]
        if not held:
            return
        self._held.difference_update((dataset, file) for file in held)
        if self._connection is not None and not self._connection.closed:
            with contextlib.suppress(psycopg.Error):
                self._connection.execute(
                    render("lease_release"), {"dataset": dataset, "files": held}
                )

    def close(self) -> None:
        """End the session: every lease it held is free, the process's own too."""
        self._process_lease = None
        self._end_session()

    def _end_session(self) -> None:
        """The session is over (or lost): its leases are free; the process's own is taken again
        with the next one."""
        self._held.clear()
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def leases_held(connection: psycopg.Connection, dataset: str, files: list[str]) -> set[str]:
    """Which of `files` another session holds the lease of (this one takes none of them)."""
    if not files:
        return set()
    with connection.transaction():  # the probes' locks end with the transaction
        rows = connection.execute(
            render("lease_probe"), {"dataset": dataset, "files": files}
        ).fetchall()
    return {file for file, free in rows if not free}


def process_lease_held(connection: psycopg.Connection, token: str) -> bool:
    """Whether the process that took the lease named `token` still holds it (is alive)."""
    return bool(leases_held(connection, PROCESS_LEASES, [token]))


def lease_holder(connection: psycopg.Connection, dataset: str, file: str) -> Holder | None:
    row = connection.execute(render("lease_holder"), _key(dataset, file)).fetchone()
    return Holder(*row) if row else None


def wait_for_lease(
    connection: psycopg.Connection, dataset: str, file: str, deadline: float
) -> bool:
    """Wait until nobody holds the file's lease (True), or until `deadline` (False)."""
    while leases_held(connection, dataset, [file]):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True
