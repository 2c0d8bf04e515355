"""How a dataset's files grew its tables (policy.new_columns: add, policy.type_changes: widen),
and the effective contract.

A file that needs a new column or a wider one says so while it is read (validation/growth.py
raises SchemaGrowth before any of its rows is written); `grow` then changes both tables and
records a version in elt.schema_versions (the whole schema, the columns added and widened so
far, the change, the file). The effective contract is the YAML contract plus those changes, and
every step reads it from there, so a run on any machine sees the same schema. The YAML is never
rewritten.

The runtime role has no DDL: the change goes through elt.evolve_column, a SECURITY DEFINER
function of the tables' owner that only adds nullable columns and widens along an allow-list
(sql/migrations/0007_schema_evolution_door.sql). It runs under the lock that creates tables, so
two files that add the same column at once give one column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from elt_assets.contracts.model import MAX_TABLE_COLUMNS, Column, Contract
from elt_assets.contracts.types import PgType
from elt_assets.errors import TerminalError
from elt_assets.log import get_logger
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.templates import render
from elt_assets.validation.growth import SchemaGrowth

log = get_logger(__name__)
MAX_GROWTHS = 20  # changes one file may make before it is read for the last time


@dataclass
class Evolution:
    """What the dataset's files changed so far: columns added (latest types), YAML columns
    widened (name -> type)."""

    version: int | None = None
    added: list[Column] = field(default_factory=list)
    widened: dict[str, PgType] = field(default_factory=dict)

    def widen(self, name: str, wide: PgType) -> None:
        """Column `name` is now `wide`: an added column's own type, or a YAML column widened."""
        if any(c.name == name for c in self.added):
            self.added = [
                c.model_copy(update={"type": wide}) if c.name == name else c for c in self.added
            ]
        else:
            self.widened[name] = wide


def evolution(connection: psycopg.Connection, dataset: str) -> Evolution:
    """The dataset's latest schema version."""
    row = connection.execute(render("schema_version_latest"), {"dataset": dataset}).fetchone()
    if row is None:
        return Evolution()
    version, added, widened = row
    return Evolution(
        int(version),
        [_column(entry) for entry in added],
        {name: PgType.parse(kind) for name, kind in (widened or {}).items()},
    )


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    added: list[dict[str, Any]]  # every column added so far: name, type, source_name
    widened: dict[str, str]  # every column of the YAML widened so far: name -> type
    change: str
    file: str


def schema_versions(connection: psycopg.Connection, dataset: str) -> list[SchemaVersion]:
    """Every schema version of the dataset, oldest first."""
    rows = connection.execute(render("schema_versions"), {"dataset": dataset}).fetchall()
    return [SchemaVersion(*row) for row in rows]


def effective_contract(connection: psycopg.Connection, contract: Contract) -> Contract:
    """The contract as the dataset's tables now are."""
    if not contract.policy.evolves:
        return contract
    state = evolution(connection, contract.name)
    return contract.evolved_by(state.added, state.widened)


def grow(
    connection: psycopg.Connection, contract: Contract, growth: SchemaGrowth, file: str
) -> tuple[Contract, str | None]:
    """Make the tables take what `file` needs (what another file already did is not done
    again); the effective contract after it, and the change this file made (None: none)."""
    try:
        with connection.transaction():
            connection.execute(render("lock_ddl"))
            state = evolution(connection, contract.name)
            current = contract.evolved_by(state.added, state.widened)
            changes = _apply(connection, current, growth, state)
            if changes:
                _record(connection, contract, state, ", ".join(changes), file)

    except psycopg.errors.InsufficientPrivilege as error:
        raise TerminalDatabaseError(
            f"{file} needs the tables of dataset {contract.name!r} to grow ({growth}), which this "
            f"role may not do ({error.diag.message_primary}): run `elt db init` as the owner "
            "(ELT_OWNER_DATABASE_URL), which grants the runtime the platform's evolution function"
        ) from None
    change = ", ".join(changes) if changes else None
    if change:
        log.info("%s: the schema evolved (%s), from %s", contract.name, change, file)
    return contract.evolved_by(state.added, state.widened), change


def _apply(
    connection: psycopg.Connection, current: Contract, growth: SchemaGrowth, state: Evolution
) -> list[str]:
    """The DDL of `growth` that the tables still need, through the owner's function; `state`
    updated to match. The changes, as the schema_drift check says them."""
    changes: list[str] = []
    known = {c.name for c in current.columns}
    new = [c.name for c in growth.added if c.name not in known]
    if len(current.table_columns) + len(new) > MAX_TABLE_COLUMNS:
        raise TerminalError(
            f"the file brings {len(new)} new column(s) ({', '.join(new[:5])}"
            f"{', ...' if len(new) > 5 else ''}), and dataset {current.name!r} has "
            f"{len(current.table_columns):,}: a table of it holds at most {MAX_TABLE_COLUMNS:,} "
            "(PostgreSQL's limit, less the platform's own columns); nothing of the file is "
            "loaded: set policy.new_columns to ignore or rescue, or take columns out of the "
            "contract"
        )
    for column in growth.added:
        if column.name not in known:
            _evolve(connection, current, column.name, column.type)
            state.added.append(column)
            changes.append(f"+{column.name} {column.type}")
    for name, wide in growth.widened.items():
        have = current.column(name).type
        if not have.widens_to(wide):
            continue  # as wide already: another file widened it
        _evolve(connection, current, name, wide)
        state.widen(name, wide)
        changes.append(f"{name} widened {have} -> {wide}")
    return changes


def _evolve(connection: psycopg.Connection, contract: Contract, column: str, kind: PgType) -> None:
    connection.execute(
        render("column_evolve"),
        {
            "dataset": contract.name,
            "schema": contract.target.schema_,
            "table": contract.target.table,
            "column": column,
            "type": kind.ddl,
        },
    )


def _record(
    connection: psycopg.Connection, contract: Contract, state: Evolution, change: str, file: str
) -> None:
    """The new version: what the files added and widened so far, and the whole schema."""
    grown = contract.evolved_by(state.added, state.widened)
    connection.execute(
        render("schema_version_add"),
        {
            "dataset": contract.name,
            "added": Jsonb([_entry(c) for c in state.added]),
            "widened": Jsonb({name: str(kind) for name, kind in state.widened.items()}),
            "columns": Jsonb([{"name": c.name, "type": str(c.type)} for c in grown.table_columns]),
            "change": change,
            "file": file,
        },
    )


def _entry(column: Column) -> dict[str, Any]:
    return {"name": column.name, "type": str(column.type), "source_name": column.header}


def _column(entry: dict[str, Any] | str) -> Column:
    data = json.loads(entry) if isinstance(entry, str) else entry
    source = data.get("source_name")
    return Column(
        name=data["name"], type=data["type"], source_name=None if source == data["name"] else source
    )
