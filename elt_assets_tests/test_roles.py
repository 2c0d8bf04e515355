"""Least privilege, proven on a real server: what the runtime and reader roles may and may not do.

The runtime logs in as elt_loader (as the `warehouse` fixture's ELT_DATABASE_URL does), so every
statement below is refused or allowed by PostgreSQL itself, not by our code. The reader is
checked with SET ROLE elt_reader (a NOLOGIN group role). A superuser runtime connection is
warned about loudly, or refused with ELT_REFUSE_SUPERUSER=true, through the real resource.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from elt_assets.contracts.model import Contract
from elt_assets.postgres import connection as connection_module
from elt_assets.postgres.connection import connect
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.migrate import initialize
from elt_assets.postgres.resource import PostgresResource
from elt_assets_tests.conftest import TEMPLATE, Server, Warehouse, write_contract
from elt_assets_tests.helpers import run_file, step_failure

pytestmark = [pytest.mark.db]

CONTRACT = """
    name: items
    source: {glob: "items/*.csv"}
    target: {schema: shop, table: items, primary_key: [id]}
    columns:
      - {name: id, type: bigint}
      - {name: label, type: text}
"""

# Everything the runtime must never do. Each runs in its own transaction as elt_loader.
LOADER_DENIED = {
    "drop the target": "DROP TABLE shop.items",
    "alter the target": "ALTER TABLE shop.items ADD COLUMN x int",
    "truncate the target": "TRUNCATE shop.items",
    "drop the manifest": "DROP TABLE elt.ingestion_manifest",
    "alter the manifest": "ALTER TABLE elt.ingestion_manifest DROP COLUMN error",
    "truncate the manifest": "TRUNCATE elt.ingestion_manifest",
    "drop the quarantine": "DROP TABLE elt.quarantine",
    "alter the quarantine": "ALTER TABLE elt.quarantine ADD COLUMN x int",
    "drop the staging table": "DROP TABLE elt_staging.items",
    "change applied migrations": "DELETE FROM elt.schema_migrations",
    "erase the manifest's history": "DELETE FROM elt.ingestion_manifest",
    "erase quarantined rows": "DELETE FROM elt.quarantine",
    "create in public": "CREATE TABLE public.x (id int)",
    "create in the target schema": "CREATE TABLE shop.x (id int)",
    "create in elt": "CREATE TABLE elt.x (id int)",
    "create in elt_staging": "CREATE TABLE elt_staging.x (id int)",
    "create a schema": "CREATE SCHEMA mine",
    "read an ungranted schema": "SELECT * FROM hr.salaries",
    "read an ungranted table in public": "SELECT * FROM public.secrets",
    "create a role": "CREATE ROLE intruder",
    "create a database": "CREATE DATABASE intruder",
    "read pg_authid": "SELECT rolpassword FROM pg_authid",
    "become the owner": "SET ROLE elt_owner",
    # Schema evolution's one door (migrations/0007) opens on a dataset's own tables only.
    "evolve a table that is not a dataset's": (
        "SELECT elt.evolve_column('items', 'hr', 'salaries', 'x', 'text')"
    ),
    "evolve a platform table": (
        "SELECT elt.evolve_column('items', 'elt', 'quarantine', 'x', 'text')"
    ),
}

# What the pipeline needs, done by hand as elt_loader (the real run below does it for real).
LOADER_ALLOWED = [
    "INSERT INTO shop.items (id, label) VALUES (1, 'x')",
    "UPDATE shop.items SET label = 'y' WHERE id = 1",
    "DELETE FROM shop.items WHERE id = 1",
    "SELECT count(*) FROM elt_staging.items",
    "DELETE FROM elt_staging.items",
    "SELECT count(*) FROM elt.quarantine",
    "SELECT count(*) FROM elt.landing_files",
    "SELECT max(version) FROM elt.schema_migrations",
]

READER_DENIED = {
    "write the target": "INSERT INTO shop.items (id, label) VALUES (5, 'x')",
    "delete from the target": "DELETE FROM shop.items",
    "read staging": "SELECT * FROM elt_staging.items",
    "read the sensor's memory": "SELECT * FROM elt.landing_files",
    "write the manifest": "DELETE FROM elt.ingestion_manifest",
    "write the quarantine": "DELETE FROM elt.quarantine",
    "read an ungranted schema": "SELECT * FROM hr.salaries",
    "create in the target schema": "CREATE TABLE shop.x (id int)",
}
READER_ALLOWED = [
    "SELECT count(*) FROM shop.items",
    "SELECT count(*) FROM elt.ingestion_manifest",
    "SELECT count(*) FROM elt.quarantine",
]


def items_contract(tmp_path: Path) -> Contract:
    folder = tmp_path / "contracts"
    folder.mkdir(exist_ok=True)
    return write_contract(folder, CONTRACT)


@pytest.fixture(scope="module")
def initialized(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """A database after `elt db init` for the items contract, plus objects nobody granted."""
    name = f"elt_roles_{os.getpid()}"
    with connect(pg_server.superuser_url, setting="test server") as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER elt_owner").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    database = Warehouse(pg_server, name)
    contract = items_contract(tmp_path_factory.mktemp("roles"))
    with connect(database.owner_url, setting="owner") as owner:
        initialize(owner, [contract])
    database.query("CREATE SCHEMA hr")
    database.query("CREATE TABLE hr.salaries (name text, amount int)")
    database.query("CREATE TABLE public.secrets (value text)")
    yield database
    with connect(pg_server.superuser_url, setting="test server") as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def attempt(url: str, statement: str, role: str | None = None) -> psycopg.Error | None:
    """Run `statement` in a transaction that is rolled back; the error, or None if allowed."""
    autocommit = statement.startswith("CREATE DATABASE")  # refused in a transaction block
    with psycopg.connect(url, autocommit=autocommit) as session:
        try:
            if role:
                session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            session.execute(statement)  # type: ignore[arg-type]
        except psycopg.Error as error:
            return error
        finally:
            session.rollback()
    return None


@pytest.mark.parametrize("statement", LOADER_DENIED.values(), ids=LOADER_DENIED.keys())
def test_loader_is_refused(initialized: Warehouse, statement: str) -> None:
    error = attempt(initialized.loader_url, statement)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), (statement, error)
    assert "permission denied" in str(error) or "must be owner" in str(error), str(error)


def test_loader_may_do_what_the_pipeline_does(initialized: Warehouse) -> None:
    problems = {s: attempt(initialized.loader_url, s) for s in LOADER_ALLOWED}
    assert {s: str(e) for s, e in problems.items() if e is not None} == {}


def test_loader_is_not_a_superuser_and_holds_only_the_loader_group(
    initialized: Warehouse,
) -> None:
    with psycopg.connect(initialized.loader_url) as session:
        row = session.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        groups = session.execute(
            "SELECT b.rolname FROM pg_roles b WHERE pg_has_role(current_user, b.oid, 'MEMBER')"
            " AND b.rolname <> current_user AND b.rolname NOT LIKE 'pg\\_%'"
        ).fetchall()
    assert row == (False, False, False, False)
    assert groups == []  # the login is elt_loader itself: no owner or reader membership


def test_loader_holds_exactly_read_and_write_on_the_target(initialized: Warehouse) -> None:
    """Even after trying to grant itself more (PostgreSQL only warns: nothing is granted)."""
    kinds = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
    with psycopg.connect(initialized.loader_url, autocommit=True) as session:
        session.execute("GRANT TRUNCATE, TRIGGER ON shop.items TO elt_loader")
        held = [
            kind
            for kind in kinds
            if session.execute("SELECT has_table_privilege('shop.items', %s)", [kind]).fetchone()
            == (True,)
        ]
    assert held == ["SELECT", "INSERT", "UPDATE", "DELETE"]


def test_elt_db_init_takes_back_a_delete_granted_on_the_history(initialized: Warehouse) -> None:
    """grants.sql revokes what older versions granted: `elt db init` on an old database."""
    initialized.query("GRANT DELETE ON elt.ingestion_manifest, elt.quarantine TO elt_loader")
    assert attempt(initialized.loader_url, "DELETE FROM elt.quarantine") is None
    with connect(initialized.owner_url, setting="owner") as owner:
        initialize(owner, [])
    for table in ("elt.ingestion_manifest", "elt.quarantine"):
        error = attempt(initialized.loader_url, f"DELETE FROM {table}")
        assert isinstance(error, psycopg.errors.InsufficientPrivilege), (table, error)


@pytest.mark.parametrize("statement", READER_DENIED.values(), ids=READER_DENIED.keys())
def test_reader_is_refused(initialized: Warehouse, statement: str) -> None:
    error = attempt(initialized.superuser_url, statement, role="elt_reader")
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), (statement, error)


def test_reader_reads_targets_manifest_and_quarantine(initialized: Warehouse) -> None:
    problems = {s: attempt(initialized.superuser_url, s, "elt_reader") for s in READER_ALLOWED}
    assert {s: str(e) for s, e in problems.items() if e is not None} == {}


AUDIT = """
CREATE TABLE public.audit (tbl text, op text, session_user_name name, application text);
-- SECURITY DEFINER: the loader needs no right on the audit table; session_user stays the login.
CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO public.audit VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
        session_user, current_setting('application_name'));
    RETURN NULL;
END $$;
"""


def test_a_real_ingestion_runs_as_elt_loader(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, tmp_path: Path
) -> None:
    """Triggers (created by the superuser) record who writes the target and the manifest."""
    contract = write_contract(contracts_dir, CONTRACT)
    with connect(warehouse.owner_url, setting="owner") as owner:
        initialize(owner, [contract])  # `elt db init`: the run then needs no DDL
    warehouse.query(AUDIT)
    for table in ("shop.items", "elt.ingestion_manifest", "elt_staging.items"):
        warehouse.query(
            f"CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION public.audit()"
        )
    (landing / "items").mkdir()
    (landing / "items" / "a.csv").write_text("id,label\n1,x\n2,y\n")
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "items", "items/a.csv", instance)
    assert result.success, step_failure(result)
    assert warehouse.value("SELECT count(*) FROM shop.items") == 2
    writers = warehouse.query("SELECT DISTINCT tbl, session_user_name, application FROM audit")
    assert {(t, u) for t, u, _ in writers} == {
        ("shop.items", "elt_loader"),
        ("elt.ingestion_manifest", "elt_loader"),
        ("elt_staging.items", "elt_loader"),
    }
    assert {a for _, _, a in writers} == {"elt-assets"}


# -- a superuser as the runtime -----------------------------------------------------------------


@pytest.fixture
def superuser_runtime(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """ELT_DATABASE_URL names a superuser (tests build the resource after their own settings)."""
    monkeypatch.setenv("ELT_DATABASE_URL", warehouse.superuser_url)
    monkeypatch.setattr(connection_module, "_warned_superuser", set())  # warn once per process


@pytest.mark.usefixtures("superuser_runtime")
def test_superuser_runtime_is_warned_about_loudly_by_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ELT_REFUSE_SUPERUSER", raising=False)
    resource = PostgresResource.from_env()
    with caplog.at_level(logging.WARNING, logger="elt_assets"):
        try:
            with resource.connection() as session:
                assert session.execute("SELECT current_user").fetchone() == ("postgres",)
        finally:
            resource.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "SECURITY: ELT_DATABASE_URL connects as 'postgres', a SUPERUSER. The platform needs only "
        "the elt_loader role; set ELT_REFUSE_SUPERUSER=true in production to refuse this."
    ) in warnings


@pytest.mark.usefixtures("superuser_runtime")
def test_superuser_runtime_is_refused_at_once_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ELT_REFUSE_SUPERUSER", "true")
    resource = PostgresResource.from_env()
    with pytest.raises(TerminalDatabaseError) as caught, resource.connection():
        pass
    resource.close()
    assert str(caught.value) == (
        "ELT_DATABASE_URL connects as 'postgres', a superuser, and ELT_REFUSE_SUPERUSER=true "
        "refuses that: connect as a login role that is a member of elt_loader (README, Roles)"
    )


@pytest.mark.dagster
@pytest.mark.usefixtures("superuser_runtime")
def test_superuser_refusal_fails_the_run_without_retrying(
    landing: Path,
    contracts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ELT_REFUSE_SUPERUSER", "true")
    write_contract(contracts_dir, CONTRACT)
    (landing / "items").mkdir()
    (landing / "items" / "a.csv").write_text("id,label\n1,x\n")
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "items", "items/a.csv", instance)
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not result.success
    assert "ELT_REFUSE_SUPERUSER=true refuses that" in step_failure(result)
    assert retries == []
