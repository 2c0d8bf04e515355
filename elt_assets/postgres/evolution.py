"""Columns a dataset gained from its files (policy.new_columns: add), and the effective contract.

A file with a column the contract does not name, under `new_columns: add`, adds it to the target
and the staging table before its rows are staged: the type is what `elt contract infer` would
propose from the file's first rows (text when unsure), earlier rows get NULL. Every change is a
version in elt.schema_versions (the columns added so far, the change, the file); the effective
contract is the YAML contract plus those columns, and every step reads it from there, so a run
on any machine sees the same schema. The YAML is never rewritten.

The DDL runs on the owner's connection (ELT_OWNER_DATABASE_URL), under the lock that creates
tables: two files that add the same column at once give one column. Without an owner connection
a file that would add a column fails, saying which setting is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from elt_assets.contracts.model import Column, Contract
from elt_assets.contracts.types import PgType
from elt_assets.errors import TerminalError
from elt_assets.log import get_logger
from elt_assets.postgres.templates import STAGING_SCHEMA, render, staging_table, target_table
from elt_assets.validation.inference import TEXT, column_names, infer_parquet_type, infer_text_type

log = get_logger(__name__)
OpenOwner = Callable[[], AbstractContextManager[psycopg.Connection]]


class EvolutionRefused(TerminalError):
    """A new column cannot be added (no owner connection, or a name the contract cannot take)."""


def added_columns(connection: psycopg.Connection, dataset: str) -> list[Column]:
    """The columns the dataset's files added so far (the latest version's list)."""
    row = connection.execute(render("schema_version_latest"), {"dataset": dataset}).fetchone()
    return [_column(entry) for entry in row[1]] if row else []


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    added: list[dict[str, Any]]  # every column added so far: name, type, source_name
    change: str
    file: str


def schema_versions(connection: psycopg.Connection, dataset: str) -> list[SchemaVersion]:
    """Every schema version of the dataset, oldest first."""
    rows = connection.execute(render("schema_versions"), {"dataset": dataset}).fetchall()
    return [SchemaVersion(*row) for row in rows]


def latest_version(connection: psycopg.Connection, dataset: str) -> int | None:
    """The dataset's schema version (None before any file evolved it)."""
    row = connection.execute(render("schema_version_latest"), {"dataset": dataset}).fetchone()
    return int(row[0]) if row else None


def effective(contract: Contract, added: list[Column]) -> Contract:
    """The contract with the columns its files added, after its own (a column the YAML names
    since is the YAML's)."""
    known = {c.name for c in contract.columns}
    extra = [c for c in added if c.name not in known]
    return contract.with_added(extra) if extra else contract


def effective_contract(connection: psycopg.Connection, contract: Contract) -> Contract:
    if contract.policy.extra_columns != "add":
        return contract
    return effective(contract, added_columns(connection, contract.name))


def new_columns(
    contract: Contract, headers: list[str], sample: list[pl.Series], file: str
) -> list[Column]:
    """Columns for the file's headers the contract lacks, named as `elt contract infer` would
    (never the name of an existing column), typed from the file's first values."""
    existing = [c.name for c in contract.table_columns]
    names = column_names([*existing, *headers])[len(existing) :]
    return [
        Column(name=name, type=guess_type(values, header, file), source_name=header)
        for name, header, values in zip(names, headers, sample, strict=True)
    ]


def guess_type(values: pl.Series, header: str, file: str) -> PgType:
    """The type `elt contract infer` would propose for a new column's first values."""
    if values.dtype in (pl.String, pl.Null):
        present = values.cast(pl.String).drop_nulls()
        return infer_text_type(present).type if present.len() else TEXT
    try:
        return infer_parquet_type(values, file, header).type
    except TerminalError:
        return TEXT


def add_columns(
    open_owner: OpenOwner | None,
    contract: Contract,
    new: list[Column],
    file: str,
) -> tuple[Contract, str | None]:
    """Add `new` to the dataset's tables (those still missing, under the DDL lock) and record the
    version; returns the effective contract after it, and the change this file made (None when
    another file had added them all already)."""
    if open_owner is None:
        names = ", ".join(repr(c.header) for c in new)
        raise EvolutionRefused(
            f"{file} has new column(s) {names} to add (policy.new_columns: add), which needs the "
            "owner's connection: set ELT_OWNER_DATABASE_URL for the runtime, or add them to the "
            "contract"
        )
    try:
        return _add(open_owner, contract, new, file)
    except psycopg.errors.InsufficientPrivilege as error:
        raise EvolutionRefused(
            f"{file}: cannot add its new column(s) as this role ({error.diag.message_primary}): "
            "set ELT_OWNER_DATABASE_URL for the runtime to the owner role, or add the columns "
            "to the contract"
        ) from None


def _add(
    open_owner: OpenOwner, contract: Contract, new: list[Column], file: str
) -> tuple[Contract, str | None]:
    with open_owner() as owner, owner.transaction():
        owner.execute(render("lock_ddl"))
        added = added_columns(owner, contract.name)
        known = {c.name for c in effective(contract, added).columns}
        fresh = [c for c in new if c.name not in known]
        for column in fresh:
            for table in (target_table(contract), staging_table(contract)):
                owner.execute(
                    render(
                        "column_add",
                        table=table,
                        column=sql.Identifier(column.name),
                        type=sql.SQL(column.type.ddl),  # rendered from parsed parts
                    )
                )
        change = None
        if fresh:
            change = ", ".join(f"+{c.name} {c.type}" for c in fresh)
            owner.execute(
                render("schema_version_add"),
                {
                    "dataset": contract.name,
                    "added": Jsonb([_entry(c) for c in [*added, *fresh]]),
                    "change": change,
                    "file": file,
                },
            )
            log.info(
                "%s: the schema evolved (%s), from %s: added to %s and %s.%s",
                contract.name,
                change,
                file,
                f"{contract.target.schema_}.{contract.target.table}",
                STAGING_SCHEMA,
                contract.name,
            )
        return effective(contract, [*added, *fresh]), change


def _entry(column: Column) -> dict[str, Any]:
    return {"name": column.name, "type": str(column.type), "source_name": column.header}


def _column(entry: dict[str, Any] | str) -> Column:
    data = json.loads(entry) if isinstance(entry, str) else entry
    return Column(name=data["name"], type=data["type"], source_name=data.get("source_name"))
