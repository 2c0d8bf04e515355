"""PostgreSQL's own share of a command's time, from pg_stat_statements.

The benchmark's server loads pg_stat_statements (`enable`). Around a command the counters are
reset and then read (`share`): the time PostgreSQL spent executing the command's COPY statements
(which includes waiting for the client's data), its writes (INSERT, MERGE, UPDATE, DELETE, a WITH
that writes: the upsert), and all its statements. What is left of the command's time was spent
outside PostgreSQL: start-up, reading, Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

PRELOAD = "pg_stat_statements"

# Leading comment lines go (our templates begin with some) before a statement is classified.
SHARE_SQL = r"""
WITH run AS (
    SELECT regexp_replace(query, '^(\s*--[^\n]*\n)*\s*', '') AS text, total_exec_time AS ms
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT coalesce(sum(ms) FILTER (WHERE text ~* '^COPY\M'), 0) / 1000,
       coalesce(sum(ms) FILTER (
           WHERE text ~* '^(INSERT|MERGE|UPDATE|DELETE)\M'
              OR (text ~* '^WITH\M' AND text ~* '\m(INSERT|MERGE|UPDATE|DELETE)\M')
       ), 0) / 1000,
       coalesce(sum(ms), 0) / 1000
FROM run
"""


@dataclass(frozen=True)
class Share:
    """Seconds PostgreSQL spent on a command's statements."""

    copy: float
    writes: float
    total: float


def enable(superuser_url: str, restart: Callable[[], None]) -> None:
    """Load pg_stat_statements (a restart, `restart()`) and create it in the database."""
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        connection.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{PRELOAD}'")
    restart()
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        connection.execute(f"CREATE EXTENSION IF NOT EXISTS {PRELOAD}")


def reset(superuser_url: str) -> None:
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_statements_reset()")


def share(superuser_url: str) -> Share:
    """What PostgreSQL spent since the last `reset` (this connection's own query excluded: it
    runs after the numbers are read)."""
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        row = connection.execute(SHARE_SQL).fetchone()
    assert row is not None
    return Share(*(float(value) for value in row))
