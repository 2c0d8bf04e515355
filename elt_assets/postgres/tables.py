"""Staging and target tables of a dataset: created from the contract, checked against it.

A missing target is created (typed, primary key, grants). An existing target that does not match
the contract is never altered: the error names each difference and the fix. The staging table is
the platform's own: when the contract changes shape, it is rebuilt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from elt_assets.contracts.model import (
    CURRENT,
    FILE_COLUMN,
    LOAD_COLUMN,
    ROW_COLUMN,
    VALID_FROM,
    VALID_TO,
    Column,
    Contract,
)
from elt_assets.log import get_logger
from elt_assets.postgres.connection import as_owner
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.templates import (
    STAGING_SCHEMA,
    history_type,
    identifiers,
    render,
    render_create_staging,
    render_create_target,
    staging_table,
    target_table,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    not_null: bool
    has_default: bool
    in_primary_key: bool


def inspect_table(connection: psycopg.Connection, schema: str, table: str) -> list[ColumnInfo]:
    """The table's columns, or [] when it does not exist."""
    rows = connection.execute(
        render("table_columns"), {"schema": schema, "table": table}
    ).fetchall()
    return [ColumnInfo(*row) for row in rows]


def target_differences(contract: Contract, columns: list[ColumnInfo]) -> list[str]:
    """How an existing target differs from what the contract needs (empty: compatible)."""
    table = f"{contract.target.schema_}.{contract.target.table}"
    existing = {c.name: c for c in columns}
    problems: list[str] = []
    for column in contract.table_columns:
        found = existing.get(column.name)
        if found is None and column.name == contract.policy.rescue_column:
            continue  # added by the platform (_add_columns)
        if found is None:
            problems.append(f"{table} has no column {column.name!r} ({column.type.ddl})")
        elif found.type != column.type.ddl:
            problems.append(
                f"{table}.{column.name} is {found.type} in the database but {column.type.ddl} "
                "in the contract"
            )
        elif found.not_null and not contract.is_required(column):
            problems.append(
                f"{table}.{column.name} is NOT NULL in the database but nullable in the contract"
            )
    wanted_key = set(contract.target.primary_key)
    actual_key = {c.name for c in columns if c.in_primary_key}
    if contract.target.mode == "upsert" and wanted_key != actual_key:
        problems.append(
            f"{table} has primary key {sorted(actual_key) or 'none'}, the contract "
            f"{sorted(wanted_key)} (upsert needs exactly that key)"
        )
    if contract.target.mode == "append" and FILE_COLUMN not in existing:
        problems.append(f"{table} has no {FILE_COLUMN} column, which append mode needs")
    if contract.target.mode == "history":
        problems += _history_differences(contract, table, existing, actual_key)
    known = {c.name for c in contract.table_columns} | {FILE_COLUMN, VALID_FROM, VALID_TO, CURRENT}
    for info in columns:
        if info.name not in known and info.not_null and not info.has_default:
            problems.append(
                f"{table}.{info.name} is NOT NULL without a default, but the contract does not "
                "fill it"
            )
    return problems


def _history_differences(
    contract: Contract, table: str, existing: dict[str, ColumnInfo], actual_key: set[str]
) -> list[str]:
    """What a history table needs beyond the contract's columns: its validity columns, and
    the key with the version's start in it."""
    problems = []
    validity = history_type(contract)
    for name in (VALID_FROM, VALID_TO):
        if name not in existing or existing[name].type != validity:
            problems.append(
                f"{table} has no {name} column of type {validity}, which a history table needs "
                "(was it created for another mode? load into a new table)"
            )
    wanted = set(contract.target.primary_key) | {VALID_FROM}
    if actual_key != wanted:
        problems.append(
            f"{table} has primary key {sorted(actual_key) or 'none'}; a history table needs "
            f"{sorted(wanted)}"
        )
    return problems


def _create_target(connection: psycopg.Connection, contract: Contract) -> None:
    schema = sql.Identifier(contract.target.schema_)
    table = target_table(contract)
    with connection.transaction(), as_owner(connection):
        connection.execute(render("schema_create", schema=schema))
        if _separate_roles(connection):
            connection.execute(render("target_schema_grants", schema=schema))
        connection.execute(render_create_target(contract))
        if contract.target.mode == "append":
            connection.execute(
                render(
                    "index_create",
                    name=sql.Identifier(f"{contract.target.table}_elt_file"[:63]),
                    table=table,
                    columns=sql.Identifier(FILE_COLUMN),
                )
            )
        if contract.target.mode == "history":  # the current versions, found by key
            connection.execute(
                render(
                    "index_create_partial",
                    name=sql.Identifier(f"{contract.target.table}_elt_current"[:63]),
                    table=table,
                    columns=identifiers(contract.target.primary_key),
                    condition=sql.SQL("{} IS NULL").format(sql.Identifier(VALID_TO)),
                )
            )
        if _separate_roles(connection):
            connection.execute(render("table_grants", table=table))
            connection.execute(render("table_grant_reader", table=table))
        connection.execute(render("table_watch", table=table))
    log.info("created target table %s.%s", contract.target.schema_, contract.target.table)


def _separate_roles(connection: psycopg.Connection) -> bool:
    """Grants to elt_loader / elt_reader only where the platform runs with separate roles: in
    single-role mode roles of those names may still exist (another installation on the same
    server), and must not be given this database's tables."""
    row = connection.execute(render("platform_separate_roles")).fetchone()
    return bool(row and row[0])


def _staging_matches(contract: Contract, columns: list[ColumnInfo]) -> bool:
    """Every column the contract stages is there with its type. More columns are fine: a run
    whose contract predates a column another file added (postgres/evolution.py) must never
    rebuild the table under the other runs' slices; COPY names its columns."""
    wanted = {(c.name, c.type.ddl) for c in contract.table_columns}
    wanted |= {(FILE_COLUMN, "text"), (ROW_COLUMN, "bigint"), (LOAD_COLUMN, "bigint")}
    return wanted <= {(c.name, c.type) for c in columns}


def _staging_lacks(contract: Contract, columns: list[ColumnInfo]) -> list[Column] | None:
    """The contract's columns the staging table lacks, when every other one is there as the
    contract says (a policy that starts rescuing): added, never a rebuild under the slices of
    files staged but not yet loaded."""
    present = {c.name: c.type for c in columns}
    wanted = contract.table_columns
    if (
        present.get(FILE_COLUMN) != "text"
        or present.get(ROW_COLUMN) != "bigint"
        or present.get(LOAD_COLUMN) != "bigint"
        or any(c.name in present and present[c.name] != c.type.ddl for c in wanted)
    ):
        return None
    return [c for c in wanted if c.name not in present] or None


def _add_columns(
    connection: psycopg.Connection, table: sql.Identifier, name: str, columns: list[Column]
) -> None:
    """Nullable columns a table lacks (the rescue column of a policy that starts rescuing): no
    row and no reader of the table depends on them, and earlier rows read NULL. The one change
    the platform makes itself to a table it did not just create."""
    with connection.transaction(), as_owner(connection):
        for column in columns:
            connection.execute(
                render(
                    "column_add",
                    table=table,
                    column=sql.Identifier(column.name),
                    type=sql.SQL(column.type.ddl),  # rendered from parsed parts
                )
            )
    log.info("added %s to %s", ", ".join(f"{c.name} {c.type}" for c in columns), name)


def _create_staging(connection: psycopg.Connection, contract: Contract, replace: bool) -> None:
    table = staging_table(contract)
    with connection.transaction(), as_owner(connection):
        connection.execute(render("schema_create", schema=sql.Identifier(STAGING_SCHEMA)))
        if replace:
            connection.execute(render("table_drop", table=table))
        connection.execute(render_create_staging(contract))
        if _separate_roles(connection):
            connection.execute(render("table_grants", table=table))
    log.info(
        "%s staging table %s.%s", "rebuilt" if replace else "created", STAGING_SCHEMA, contract.name
    )


def _create_missing(connection: psycopg.Connection, contract: Contract) -> None:
    """Create what is still missing, looked at again under a lock: parallel runs of a new dataset
    all find no table, and all but the first would fail on CREATE TABLE (42P07)."""
    with connection.transaction():
        connection.execute(render("lock_ddl"))
        target = inspect_table(connection, contract.target.schema_, contract.target.table)
        staging = inspect_table(connection, STAGING_SCHEMA, contract.name)
        if not target:
            _create_target(connection, contract)
            _say_earlier_loads(connection, contract)
        elif _lacks_rescue_column(contract, target):
            rescue = [c for c in contract.table_columns if c.name == contract.policy.rescue_column]
            name = f"{contract.target.schema_}.{contract.target.table}"
            _add_columns(connection, target_table(contract), name, rescue)
        missing = _staging_lacks(contract, staging) if staging else None
        if missing:
            name = f"{STAGING_SCHEMA}.{contract.name}"
            _add_columns(connection, staging_table(contract), name, missing)
        elif not staging or not _staging_matches(contract, staging):
            _create_staging(connection, contract, replace=bool(staging))


def _say_earlier_loads(connection: psycopg.Connection, contract: Contract) -> None:
    """A target created for a dataset that loaded files before (its table was dropped, or its
    contract names another one) has none of their rows: say so, and how to load them again."""
    row = connection.execute(render("manifest_loaded_files"), {"dataset": contract.name}).fetchone()
    if row and row[0]:
        log.warning(
            "%s.%s is new, and dataset %s loaded %d file(s) before it existed: their rows are "
            "not in it. `elt ingest --dataset %s --reload` loads the files still in the landing "
            "zone again (or materialise their partitions in the UI)",
            contract.target.schema_,
            contract.target.table,
            contract.name,
            row[0],
            contract.name,
        )


def _lacks_rescue_column(contract: Contract, target: list[ColumnInfo]) -> bool:
    rescue = contract.policy.rescue_column
    return contract.policy.rescues and rescue not in {c.name for c in target}


def ensure_dataset_tables(
    connection: psycopg.Connection,
    contract: Contract,
    open_owner: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None,
) -> None:
    """Make sure staging and target exist and fit the contract, and that the target notes
    writes made outside the platform (`_watch`).

    `connection` is the runtime's; `open_owner`, when given, opens the owner's connection for
    CREATE / DROP (only when something must be created). Without it `connection` itself tries, and
    a missing privilege becomes an error that says to run `elt db init`.
    """
    target = inspect_table(connection, contract.target.schema_, contract.target.table)
    if target:
        problems = target_differences(contract, target)
        if problems:
            raise TerminalDatabaseError(
                "the existing target table does not match the contract, and it is never altered "
                "automatically: " + "; ".join(problems) + ". Migrate the table (or drop it: the "
                "platform creates it again, and `elt ingest --dataset "
                f"{contract.name} --reload` loads its files into it again), or change the "
                "contract (if its files evolved the "
                f"table, `elt contract show {contract.name} --effective` prints the contract "
                "as the table now is)."
            )
        # At set-up (no open_owner: this is the owner's connection) the role that will load is
        # elt_loader where roles are separate; in a run, the connected role itself.
        _check_loader_privileges(connection, contract, in_run=open_owner is not None)
    staging = inspect_table(connection, STAGING_SCHEMA, contract.name)
    needs_staging = not staging or not _staging_matches(contract, staging)
    if not target or needs_staging or _lacks_rescue_column(contract, target):
        try:
            with open_owner() if open_owner else contextlib.nullcontext(connection) as ddl:
                _create_missing(ddl, contract)
        except psycopg.errors.InsufficientPrivilege as error:
            raise TerminalDatabaseError(
                f"cannot create the tables of dataset {contract.name!r} as this role "
                f"({error.diag.message_primary}): run `elt db init` with ELT_OWNER_DATABASE_URL "
                "set to the owner role, or set ELT_OWNER_DATABASE_URL for the runtime"
            ) from None
    if not table_watched(connection, contract):
        _watch(connection, contract, open_owner)


def _check_loader_privileges(
    connection: psycopg.Connection, contract: Contract, *, in_run: bool
) -> None:
    """Refuse, naming the GRANTs, an existing target the role that loads may not read and write:
    a table the platform did not create has only what its owner granted, and the load would
    fail on it later, file by file."""
    schema, table = contract.target.schema_, contract.target.table
    group = None if in_run or not _separate_roles(connection) else "elt_loader"
    row = connection.execute(
        render("table_loader_privileges"), {"schema": schema, "table": table, "role": group}
    ).fetchone()
    if row is None:  # dropped since it was inspected: nothing left to check
        return
    uses_schema, *may = row
    missing = [
        p for p, ok in zip(("SELECT", "INSERT", "UPDATE", "DELETE"), may, strict=True) if not ok
    ]
    if uses_schema and not missing:
        return
    loader = group or str(connection.info.user)
    role = sql.Identifier(loader).as_string(connection)
    grants = (
        []
        if uses_schema
        else [f"GRANT USAGE ON SCHEMA {sql.Identifier(schema).as_string(connection)} TO {role}"]
    )
    target = target_table(contract).as_string(connection)
    grants.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {target} TO {role}")
    lacks = ([] if uses_schema else [f"USAGE on schema {schema}"]) + missing
    raise TerminalDatabaseError(
        f"the role that loads ({loader}) lacks {', '.join(lacks)} on the target {schema}.{table} "
        "(the platform grants on the tables it creates; this one has only the grants its owner "
        f"gave): its owner or a superuser runs {'; '.join(grants)}"
    )


def table_watched(connection: psycopg.Connection, contract: Contract) -> bool:
    """Whether the target has the trigger that notes writes made outside the platform
    (migrations/0010), enabled or not (a disabled one is left alone, and the table counted)."""
    target = target_table(contract).as_string(connection)
    row = connection.execute(render("table_watched"), {"target": target}).fetchone()
    return bool(row and row[0])


def _watch(
    connection: psycopg.Connection,
    contract: Contract,
    open_owner: Callable[[], AbstractContextManager[psycopg.Connection]] | None,
) -> None:
    """Give a target made before migrations/0010, or by hand, the trigger that notes outside
    writes, as its owner. A role that may not (no owner connection, a table someone else owns)
    leaves it as it is: then each run counts the table at its first load, as before."""
    name = f"{contract.target.schema_}.{contract.target.table}"
    try:
        opened = open_owner() if open_owner else contextlib.nullcontext(connection)
        with opened as ddl, ddl.transaction(), as_owner(ddl):
            ddl.execute(render("lock_ddl"))
            if not table_watched(ddl, contract):
                ddl.execute(render("table_watch", table=target_table(contract)))
                log.info("target table %s now notes writes made outside the platform", name)
    except psycopg.errors.InsufficientPrivilege as error:
        log.info(
            "target table %s cannot note writes made outside the platform (%s): each run counts "
            "its rows with count(*)",
            name,
            error.diag.message_primary,
        )
