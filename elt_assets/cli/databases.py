"""Where the databases are: the configured URLs, or the embedded server when they are unset.

Shared by `elt dev`, `elt ingest` and `elt db`: each asks `resolve_databases`, which returns the
three URLs as environment variables, starting (and provisioning) the embedded PostgreSQL only for
those not set. `initialize_warehouse` then applies migrations, roles and the contracts' tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elt_assets.contracts.model import Contract
from elt_assets.log import get_logger
from elt_assets.postgres.connection import connect
from elt_assets.postgres.embedded import EmbeddedServer, default_bin_dir, provision
from elt_assets.postgres.migrate import InitReport, initialize
from elt_assets.settings import Settings, database_url, require_separate_roles

log = get_logger(__name__)


def embedded_server(settings: Settings) -> EmbeddedServer:
    return EmbeddedServer(
        root=settings.state_dir / "postgres",
        port=settings.embedded_pg_port,
        bin_dir=settings.pg_bin_dir or default_bin_dir(),
    )


@dataclass
class Databases:
    env: dict[str, str]
    server: EmbeddedServer | None = None  # set when the embedded server is in use
    started_server: bool = False  # whether this process started it
    embedded_for: list[str] = field(default_factory=list)


def resolve_databases(
    settings: Settings, *, need_dagster: bool, embedded_only: bool = False
) -> Databases:
    """The warehouse (and Dagster) URLs from the environment, else from the embedded server
    (with `embedded_only`, from the embedded server whatever is configured)."""
    env: dict[str, str] = {}
    warehouse = None if embedded_only else database_url("ELT_DATABASE_URL")
    dagster = database_url("ELT_DAGSTER_DATABASE_URL") if need_dagster else "unused"
    if warehouse:
        env["ELT_DATABASE_URL"] = warehouse
        env["ELT_OWNER_DATABASE_URL"] = database_url("ELT_OWNER_DATABASE_URL") or warehouse
    if dagster and need_dagster:
        env["ELT_DAGSTER_DATABASE_URL"] = dagster
    if warehouse and dagster:
        return Databases(env)
    server = embedded_server(settings)
    started = server.ensure_started()
    embedded = provision(server)
    used = [name for name in embedded if name not in env]
    if not need_dagster:
        used = [name for name in used if name != "ELT_DAGSTER_DATABASE_URL"]
    for name in used:
        env[name] = embedded[name]
    log.info("using the embedded PostgreSQL for %s", ", ".join(used))
    return Databases(env, server, started, used)


def initialize_warehouse(databases: Databases, contracts: list[Contract]) -> InitReport:
    """Migrations, roles, grants and the contracts' tables, as the owner."""
    # ELT_OWNER_DATABASE_URL is always resolved: name the setting the user actually gave (the
    # owner URL defaults to ELT_DATABASE_URL's value).
    owner_url = databases.env["ELT_OWNER_DATABASE_URL"]
    setting = (
        "ELT_DATABASE_URL"
        if owner_url == databases.env.get("ELT_DATABASE_URL")
        else "ELT_OWNER_DATABASE_URL"
    )
    with connect(owner_url, setting=setting) as connection:
        return initialize(connection, contracts, require_separate_roles=require_separate_roles())
