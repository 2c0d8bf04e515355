"""`elt db init`: roles, versioned migrations, grants and the contracts' tables, idempotently.

Runs as the owner (ELT_OWNER_DATABASE_URL, else ELT_DATABASE_URL). Concurrent inits (several
containers starting at once) are serialised with an advisory lock. Each migration file runs once,
in its own transaction; its checksum is recorded, and an applied migration that was edited stops
start-up instead of leaving the schema in an unknown state.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from elt_assets.contracts.model import Contract
from elt_assets.log import get_logger
from elt_assets.postgres.connection import as_owner
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.tables import ensure_dataset_tables
from elt_assets.postgres.templates import render, script, sql_dir

log = get_logger(__name__)
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
ROLES = ("elt_owner", "elt_loader", "elt_reader")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sha256: str


@dataclass
class InitReport:
    created_roles: bool = False
    applied: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)


def available_migrations() -> list[Migration]:
    found = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        match = _MIGRATION.match(path.name)
        if match is None:
            raise TerminalDatabaseError(f"sql/migrations/{path.name}: name it NNNN_name.sql")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found.append(Migration(int(match[1]), match[2], path, digest))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise TerminalDatabaseError("two files in sql/migrations share a version number")
    return found


def _missing_roles(connection: psycopg.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(ROLES)]
    ).fetchall()
    present = {r[0] for r in rows}
    return [r for r in ROLES if r not in present]


def ensure_roles(connection: psycopg.Connection) -> bool:
    """Create the group roles if missing; True if this call created any."""
    missing = _missing_roles(connection)
    if not missing:
        return False
    try:
        with connection.transaction():
            connection.execute(script("roles.sql"))
    except psycopg.errors.InsufficientPrivilege:
        raise TerminalDatabaseError(
            f"roles {missing} do not exist and this role may not create them: run sql/roles.sql "
            "once as a superuser (or a CREATEROLE role), grant elt_owner to the migration user "
            "and elt_loader to the runtime user, then run `elt db init` again"
        ) from None
    log.info("created roles %s", missing)
    return True


def _grant_database_privileges(connection: psycopg.Connection) -> None:
    """elt_owner may create schemas; elt_loader may create temporary tables. Best effort."""
    database = connection.info.dbname
    for statement in (
        sql.SQL("GRANT CREATE, CONNECT, TEMPORARY ON DATABASE {} TO elt_owner"),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO elt_loader"),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO elt_reader"),
    ):
        try:
            with connection.transaction():
                connection.execute(statement.format(sql.Identifier(database)))
        except psycopg.errors.InsufficientPrivilege:
            log.info("could not grant database privileges (not the database owner); continuing")
            return


def apply_migrations(connection: psycopg.Connection) -> list[str]:
    """Apply pending migrations in order; returns the names applied."""
    with connection.transaction():
        connection.execute(render("schema_migrations_create"))
    applied_rows = connection.execute(
        "SELECT version, name, sha256 FROM elt.schema_migrations ORDER BY version"
    ).fetchall()
    applied = {version: (name, digest) for version, name, digest in applied_rows}
    done: list[str] = []
    for migration in available_migrations():
        if migration.version in applied:
            _, digest = applied[migration.version]
            if digest != migration.sha256:
                raise TerminalDatabaseError(
                    f"migration {migration.path.name} was changed after it was applied: restore "
                    "it and put the change in a new migration file"
                )
            continue
        with connection.transaction():
            connection.execute(script(f"migrations/{migration.path.name}"))
            connection.execute(
                "INSERT INTO elt.schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                [migration.version, migration.name, migration.sha256],
            )
        done.append(migration.path.name)
        log.info("applied migration %s", migration.path.name)
    return done


def initialize(connection: psycopg.Connection, contracts: list[Contract]) -> InitReport:
    """Everything `elt db init` does, on an autocommit connection as the owner."""
    report = InitReport()
    connection.execute("SELECT pg_advisory_lock(hashtext('elt:init'))")
    try:
        report.created_roles = ensure_roles(connection)
        _grant_database_privileges(connection)
        with as_owner(connection):
            report.applied = apply_migrations(connection)
            with connection.transaction():
                connection.execute(script("grants.sql"))
            for contract in contracts:
                ensure_dataset_tables(connection, contract)
                report.datasets.append(contract.name)
    finally:
        connection.execute("SELECT pg_advisory_unlock(hashtext('elt:init'))")
    return report


def initialize_embedded_roles(connection: psycopg.Connection, passwords: dict[str, str]) -> None:
    """On the embedded server: let elt_owner / elt_loader / dagster log in with their passwords."""
    ensure_roles(connection)
    for role, password in passwords.items():
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        # Utility statements take no bind parameters; sql.Literal quotes the value client-side.
        connection.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                verb, sql.Identifier(role), sql.Literal(password)
            )
        )
