"""The one place database errors are classified: transient (retry) or terminal (fail now).

Transient: the connection was lost or refused, the server is shutting down or restarting, a
serialization failure or deadlock, too many connections, a lock that could not be had in time.
These are retried with backoff by the assets' Dagster RetryPolicy. Everything else (bad data,
constraint violations, missing privileges, broken contracts) is terminal: retrying cannot help,
so it fails at once with a message saying what to do.
"""

from __future__ import annotations

import psycopg

from elt_assets.errors import TerminalError, TransientError
from elt_assets.log import mask_secrets

TRANSIENT_SQLSTATES = {
    "40001": "a serialization failure",
    "40P01": "a deadlock",
    "53300": "too many connections",
    "55P03": "a lock that could not be taken in time",
    "57P01": "the server shutting down (admin shutdown)",
    "57P02": "the server crashing (crash shutdown)",
    "57P03": "the server not accepting connections yet",
    "57P05": "an idle session timeout",
}

ADVICE = {
    "42501": "grant the missing privilege, or run `elt db init` as the owner (README, Roles)",
    "42P01": "the table is missing: run `elt db init`, or check the contract's target",
    "3F000": "the schema is missing: run `elt db init`",
    "23505": "two rows share a key the table declares unique",
    "23502": "a NULL reached a NOT NULL column",
    "53100": "the database server is out of disk space",
    "53200": "the server's lock table is full: load fewer files per batch run "
    "(ELT_BATCH_MAX_FILES) or run fewer at once, or raise max_locks_per_transaction",
    "28P01": "the password is wrong: check the URL setting or its *_FILE secret",
    "28000": "the role may not log in: check pg_hba.conf and the role's LOGIN attribute",
    "3D000": "the database does not exist: create it, or fix the URL setting",
}


class TransientDatabaseError(TransientError):
    """Worth retrying; raised so Dagster's RetryPolicy takes over."""


class TerminalDatabaseError(TerminalError):
    """Retrying cannot help; the message says why and what to do."""


def is_database_error(error: BaseException) -> bool:
    return isinstance(error, psycopg.Error)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientError):
        return True
    if not isinstance(error, psycopg.Error):
        return False
    state = error.sqlstate
    if state is None:
        # No SQLSTATE: the client lost the connection or could not open it.
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    return state in TRANSIENT_SQLSTATES or state.startswith("08")


def describe(error: BaseException) -> str:
    """A one-paragraph, secret-free description of a database error with advice."""
    if not isinstance(error, psycopg.Error):
        return mask_secrets(str(error))
    state = error.sqlstate
    diag = error.diag
    text = (diag.message_primary or str(error)).strip()
    where = []
    if diag.schema_name and diag.table_name:
        where.append(f"table {diag.schema_name}.{diag.table_name}")
    if diag.column_name:
        where.append(f"column {diag.column_name}")
    if diag.context:
        where.append(diag.context.strip().splitlines()[0])
    detail = f" ({'; '.join(where)})" if where else ""
    if state is None:
        cause = "the connection to PostgreSQL was lost or could not be opened"
        return mask_secrets(f"{cause}: {text}. It will be retried.")
    advice = ADVICE.get(state)
    if state in TRANSIENT_SQLSTATES or state.startswith("08"):
        advice = f"{TRANSIENT_SQLSTATES.get(state, 'a connection problem')}; it will be retried"
    suffix = f". {advice[0].upper()}{advice[1:]}." if advice else ""
    return mask_secrets(f"PostgreSQL error {state}: {text}{detail}{suffix}")
