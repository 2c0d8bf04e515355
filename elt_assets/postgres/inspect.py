"""Read-only questions the assets, checks and CLI ask the warehouse, one function each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from elt_assets.contracts.model import Contract
from elt_assets.postgres.templates import (
    render,
    render_key_problems,
    staging_table,
    target_table,
)


def _count(connection: psycopg.Connection, query: Any, params: dict[str, Any] | None = None) -> int:
    row = connection.execute(query, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def slice_counts(
    connection: psycopg.Connection, contract: Contract, loads: dict[str, int]
) -> dict[str, tuple[int, int]]:
    """File -> (its rows in the staging table, its open quarantine rows), counted by PostgreSQL,
    independently of the reader's own count. `loads`: each file's load (its manifest row's id),
    which keys its slice."""
    params = {"dataset": contract.name, "files": list(loads), "loads": list(loads.values())}
    rows = connection.execute(
        render("slices_counts", table=staging_table(contract)), params
    ).fetchall()
    return {file: (int(staged), int(quarantined)) for file, staged, quarantined in rows}


def table_exists(connection: psycopg.Connection, contract: Contract) -> bool:
    params = {"schema": contract.target.schema_, "table": contract.target.table}
    row = connection.execute(render("table_exists"), params).fetchone()
    return bool(row and row[0])


def table_row_count(connection: psycopg.Connection, contract: Contract) -> int:
    return _count(connection, render("table_row_count", table=target_table(contract)))


@dataclass(frozen=True)
class KeyState:
    constraint: str | None  # the valid primary key constraint, if any
    duplicated_keys: int = 0  # measured only without a constraint
    rows_with_null_key: int = 0


def primary_key_state(connection: psycopg.Connection, contract: Contract) -> KeyState:
    params = {"schema": contract.target.schema_, "table": contract.target.table}
    row = connection.execute(render("primary_key_constraint"), params).fetchone()
    if row is not None:
        return KeyState(row[0])
    problems = connection.execute(render_key_problems(contract)).fetchone()
    duplicated, nulls = (int(v) for v in problems) if problems else (0, 0)
    return KeyState(None, duplicated, nulls)


def current_attempt(
    connection: psycopg.Connection, dataset: str, file: str
) -> tuple[str, int, str, str | None] | None:
    """(sha256, rows_staged, status, error) of the file's most recent manifest row."""
    row = connection.execute(
        render("manifest_current"), {"dataset": dataset, "file": file}
    ).fetchone()
    if row is None:
        return None
    sha256, rows_staged, status, error = row
    return sha256, int(rows_staged or 0), status, error


def current_attempts(
    connection: psycopg.Connection, dataset: str, files: list[str]
) -> dict[str, tuple[str, int, str, str | None, int]]:
    """current_attempt of many files in one query: file -> its most recent manifest row (files
    without one are left out), its id last."""
    rows = connection.execute(
        render("manifest_current_many"), {"dataset": dataset, "files": files}
    ).fetchall()
    return {
        file: (sha256, int(rows_staged or 0), status, error, int(load))
        for file, sha256, rows_staged, status, error, load in rows
    }


def latest_manifest(connection: psycopg.Connection, dataset: str) -> list[dict[str, Any]]:
    """The latest manifest row of every file of a dataset, as dicts."""
    cursor = connection.execute(render("manifest_latest"), {"dataset": dataset})
    assert cursor.description is not None
    names = [d.name for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def open_quarantine_rows(connection: psycopg.Connection, dataset: str, file: str) -> int:
    """How many of a file's quarantined rows are still open."""
    row = connection.execute(
        render("quarantine_open_for_file"), {"dataset": dataset, "file": file}
    ).fetchone()
    return int(row[0]) if row else 0
