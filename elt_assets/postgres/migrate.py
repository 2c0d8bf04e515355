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
from elt_assets.postgres.evolution import effective_contract
from elt_assets.postgres.tables import ensure_dataset_tables
from elt_assets.postgres.templates import render, script, sql_dir

log = get_logger(__name__)
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
ROLES = ("elt_owner", "elt_loader", "elt_reader")
PLATFORM_SCHEMAS = ("elt", "elt_staging")
# The platform's functions (migrations/0007, 0010) and their argument types, as ALTER FUNCTION
# names them.
PLATFORM_FUNCTIONS = {
    "evolve_column": "text, text, text, text, text",
    "type_widens": "text, text",
    "note_outside_write": "",  # migrations/0010
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sha256: str


@dataclass
class InitReport:
    created_roles: bool = False
    # Why the platform runs in single-role mode (one role owns and loads), None with separate roles.
    single_role: str | None = None
    adopted: list[str] = field(default_factory=list)  # objects handed to elt_owner by this init
    applied: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)  # their tables exist and fit
    # Datasets whose tables could not be made to fit (an existing target that differs from the
    # contract, a missing privilege): dataset -> what is wrong and the fix. The others go on.
    unfit: dict[str, str] = field(default_factory=dict)


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
    rows = connection.execute(render("roles_present"), {"roles": list(ROLES)}).fetchall()
    present = {r[0] for r in rows}
    return [r for r in ROLES if r not in present]


def _flag(connection: psycopg.Connection, template_name: str) -> bool:
    row = connection.execute(render(template_name)).fetchone()
    return bool(row and row[0])


def single_role_notice(user: str, why: str) -> str:
    """What single-role mode costs, and the DBA step that ends it (logged, README "Roles")."""
    return (
        f"SECURITY: single-role mode: {why}, so {user!r} owns the platform's tables and also "
        "loads them. The loader can therefore alter or drop tables and delete the manifest's "
        "and the quarantine's history, and there is no read-only role for reporting. To "
        f"separate them, a DBA runs sql/roles.sql and `GRANT elt_owner TO {user}`, then `elt db "
        "init` hands the tables to elt_owner; run the loads as a login that is a member of "
        "elt_loader (ELT_DATABASE_URL) and keep this one as ELT_OWNER_DATABASE_URL. Set "
        "ELT_REQUIRE_SEPARATE_ROLES=true to refuse single-role mode (README, Roles)."
    )


def _separate_roles(connection: psycopg.Connection) -> tuple[bool, str | None]:
    """Make the separate roles usable if this role may: (created any, why not if it may not)."""
    created = False
    missing = _missing_roles(connection)
    if missing:
        try:
            with connection.transaction():
                connection.execute(script("roles.sql"))
        except psycopg.errors.InsufficientPrivilege:
            return False, f"the roles {', '.join(missing)} do not exist and may not be created"
        log.info("created roles %s", missing)
        created = True
    if not _flag(connection, "role_is_owner_member"):
        try:  # a CREATEROLE role may make itself a member of the roles it manages
            with connection.transaction():
                connection.execute(render("role_grant_owner_to_self"))
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidGrantOperation):
            return created, "this role is not a member of elt_owner and may not become one"
    return created, None


def _adopt_platform_objects(connection: psycopg.Connection, contracts: list[Contract]) -> list[str]:
    """Hand what this role owns of the platform to elt_owner (a database that ran in single-role
    mode until its roles were created), with the grants a separate loader and reader need. Runs
    as the login role, before any SET ROLE."""
    rows = connection.execute(
        render("platform_owned_objects"),
        {
            "target_schemas": [c.target.schema_ for c in contracts],
            "target_tables": [c.target.table for c in contracts],
        },
    ).fetchall()
    kinds = {kind: sql.SQL(kind) for kind in ("SCHEMA", "TABLE", "SEQUENCE", "FUNCTION")}
    targets = [(s, n) for kind, s, n in rows if kind == "TABLE" and s not in PLATFORM_SCHEMAS]
    adopted = []
    with connection.transaction():
        for schema in sorted({schema for schema, _ in targets}):
            # A table can only go to an owner that may create in its schema; the loader and the
            # reader need to reach it (the schema stays its owner's).
            connection.execute(render("schema_grant_owner", schema=sql.Identifier(schema)))
            connection.execute(render("target_schema_grants", schema=sql.Identifier(schema)))
        # Schemas first: a new owner must be able to create in the schema of what it gets.
        for kind, schema, name in sorted(rows, key=lambda row: row[0] == "FUNCTION"):
            if kind == "FUNCTION" and name not in PLATFORM_FUNCTIONS:
                continue
            target: sql.Composable = (
                sql.Identifier(schema, name) if name else sql.Identifier(schema)
            )
            if kind == "FUNCTION":
                target = sql.SQL("{}({})").format(target, sql.SQL(PLATFORM_FUNCTIONS[name]))
            connection.execute(render("owner_to_elt_owner", kind=kinds[kind], name=target))
            adopted.append(f"{kind.lower()} {schema}{'.' + name if name else ''}")
        for schema, name in targets:
            connection.execute(render("table_grants", table=sql.Identifier(schema, name)))
            connection.execute(render("table_grant_reader", table=sql.Identifier(schema, name)))
    if adopted:
        log.info("handed to elt_owner: %s", ", ".join(adopted))
    return adopted


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
    database = sql.Identifier(connection.info.dbname)
    for template_name in ("database_grant_owner", "database_grant_loader", "database_grant_reader"):
        try:
            with connection.transaction():
                connection.execute(render(template_name, database=database))
        except psycopg.errors.InsufficientPrivilege:
            log.info("could not grant database privileges (not the database owner); continuing")
            return


def apply_migrations(connection: psycopg.Connection) -> list[str]:
    """Apply pending migrations in order; returns the names applied."""
    with connection.transaction():
        connection.execute(render("schema_migrations_create"))
    applied_rows = connection.execute(render("schema_migrations_applied")).fetchall()
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
                render("schema_migrations_record"),
                {"version": migration.version, "name": migration.name, "sha256": migration.sha256},
            )
        done.append(migration.path.name)
        log.info("applied migration %s", migration.path.name)
    return done


def platform_is_current(connection: psycopg.Connection) -> bool:
    """Whether every migration is applied (a cheap read any role may do)."""
    exists = connection.execute(render("schema_migrations_exists")).fetchone()
    if not exists or not exists[0]:
        return False
    applied = {row[0] for row in connection.execute(render("schema_migrations_applied"))}
    return all(migration.version in applied for migration in available_migrations())


_announced: set[tuple[str, str]] = set()


def initialize(
    connection: psycopg.Connection,
    contracts: list[Contract],
    *,
    require_separate_roles: bool = False,
) -> InitReport:
    """Everything `elt db init` does, on an autocommit connection as the owner.

    With separate roles when this role may have them (it may create the group roles, or they
    exist and it is a member of elt_owner); else in single-role mode, said once per process, or
    refused with `require_separate_roles` (ELT_REQUIRE_SEPARATE_ROLES).
    """
    report = InitReport()
    connection.execute(render("lock_init"))
    try:
        report.created_roles, report.single_role = _separate_roles(connection)
        if report.single_role is None:
            _grant_database_privileges(connection)
            report.adopted = _adopt_platform_objects(connection, contracts)
            with as_owner(connection):
                _migrate(connection, contracts, report, grants=True)
        else:
            user = connection.info.user
            if require_separate_roles:
                raise TerminalDatabaseError(
                    f"{report.single_role}, and ELT_REQUIRE_SEPARATE_ROLES=true refuses "
                    f"single-role mode: a DBA runs sql/roles.sql and `GRANT elt_owner TO {user}` "
                    "(README, Roles), then run `elt db init` again"
                )
            if (user, connection.info.dbname) not in _announced:
                _announced.add((user, connection.info.dbname))
                log.warning(single_role_notice(user, report.single_role))
            _migrate(connection, contracts, report, grants=False)
    finally:
        connection.execute(render("unlock_init"))
    return report


def _migrate(
    connection: psycopg.Connection, contracts: list[Contract], report: InitReport, *, grants: bool
) -> None:
    report.applied = apply_migrations(connection)
    if grants:
        with connection.transaction():
            connection.execute(script("grants.sql"))
    for contract in contracts:
        try:
            ensure_dataset_tables(connection, effective_contract(connection, contract))
        except TerminalDatabaseError as error:  # this dataset's, not the platform's
            report.unfit[contract.name] = str(error)
        else:
            report.datasets.append(contract.name)


def initialize_embedded_roles(connection: psycopg.Connection, passwords: dict[str, str]) -> None:
    """On the embedded server: let elt_owner / elt_loader / dagster log in with their passwords."""
    ensure_roles(connection)
    for role, password in passwords.items():
        exists = connection.execute(render("roles_present"), {"roles": [role]}).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        connection.execute(
            render(
                "role_login_password",
                verb=verb,
                role=sql.Identifier(role),
                password=sql.Literal(password),
            )
        )
