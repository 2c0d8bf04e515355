"""Shared fixtures: a real PostgreSQL, a fresh database per test, landing and contract folders.

The server is the embedded PostgreSQL 18 (a temporary cluster for the session) unless
ELT_TEST_DATABASE_URL names an external one (a superuser URL of a test server). Point the embedded
server at other binaries with ELT_PG_BIN_DIR, e.g. /usr/lib/postgresql/15/bin (`make test` runs a
tier of the suite on PostgreSQL 15 that way, from the locked pgserver wheel's binaries).

Each database test gets its own database, cloned in milliseconds from a template that already has
the roles and migrations; the runtime connects as elt_loader, the owner as elt_owner, exactly as
in production.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from elt_assets.contracts.loader import parse_contract
from elt_assets.contracts.model import Contract
from elt_assets.log import register_secret
from elt_assets.postgres.connection import connect
from elt_assets.postgres.embedded import EmbeddedServer, default_bin_dir, free_port
from elt_assets.postgres.migrate import apply_migrations, ensure_roles
from elt_assets.postgres.templates import script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# A known password: the secret-hygiene tests scan every log line and metadata value for it.
TEST_PASSWORD = "Sekr3t-Test-Passw0rd"
TEMPLATE = "elt_test_template"
_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    """The test process stops on Ctrl-C and SIGTERM, whoever started it: a shell's background
    job (`make test &`) begins with SIGINT ignored, and every process a test starts would
    inherit that, so `dg dev` or a worker sent Ctrl-C by a test would run on until killed.
    A handler of our own (not SIG_IGN) is reset to the default in each child."""
    del config
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def with_credentials(url: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user)}:{quote(password, safe='')}@{host}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


@dataclass
class Server:
    superuser_url: str  # to the maintenance database

    def url(self, role: str, database: str) -> str:
        if role == "postgres":
            parts = urlsplit(self.superuser_url)
            return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
        return with_credentials(self.superuser_url, role, TEST_PASSWORD, database)


def _prepare_template(server: Server) -> None:
    register_secret(TEST_PASSWORD)
    with connect(server.superuser_url, setting="ELT_TEST_DATABASE_URL") as admin:
        ensure_roles(admin)
        for role in ("elt_owner", "elt_loader"):
            admin.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(TEST_PASSWORD)
                )
            )
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER elt_owner TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(TEMPLATE)
            )
        )
        for statement in (
            "GRANT CONNECT, TEMPORARY ON DATABASE {} TO elt_loader",
            "GRANT CONNECT ON DATABASE {} TO elt_reader",
        ):
            admin.execute(sql.SQL(statement).format(sql.Identifier(TEMPLATE)))  # type: ignore[arg-type]
    with connect(server.url("elt_owner", TEMPLATE), setting="test owner") as owner:
        apply_migrations(owner)
        with owner.transaction():
            owner.execute(script("grants.sql"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    external = os.environ.get("ELT_TEST_DATABASE_URL")
    if external:
        server = Server(external)
        _prepare_template(server)
        yield server
        return
    with embedded_server("elt-test-pg-") as embedded:
        server = Server(embedded.url("postgres", "postgres"))
        _expect_major_version(server)
        _prepare_template(server)
        yield server


def _expect_major_version(server: Server) -> None:
    """ELT_TEST_SERVER_MAJOR (set by `make test`'s PostgreSQL 15 tier): the server must be that
    version, so a tier that silently ran on the default server cannot pass for it."""
    expected = os.environ.get("ELT_TEST_SERVER_MAJOR")
    if not expected:
        return
    with connect(server.superuser_url, setting="test server") as connection:
        row = connection.execute("SHOW server_version_num").fetchone()
    major = int(row[0]) // 10000 if row else None
    assert major == int(expected), f"the test server is PostgreSQL {major}, not {expected}"


@contextlib.contextmanager
def embedded_server(prefix: str) -> Iterator[EmbeddedServer]:
    """A throw-away embedded PostgreSQL (ELT_PG_BIN_DIR's binaries when set), removed after."""
    # Not under pytest's basetemp: pytest prunes old basetemps, and another pytest session
    # running at the same time would delete this cluster's data directory under it.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    bin_dir = (
        Path(os.environ["ELT_PG_BIN_DIR"])
        if os.environ.get("ELT_PG_BIN_DIR")
        else default_bin_dir()
    )
    embedded = EmbeddedServer(root=root, port=free_port(), bin_dir=bin_dir)
    try:
        embedded.ensure_started()
        yield embedded
    finally:
        embedded.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Warehouse:
    """A fresh database for one test, with URLs for each role and a query helper."""

    server: Server
    name: str

    @property
    def loader_url(self) -> str:
        return self.server.url("elt_loader", self.name)

    @property
    def owner_url(self) -> str:
        return self.server.url("elt_owner", self.name)

    @property
    def superuser_url(self) -> str:
        return self.server.url("postgres", self.name)

    def query(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run a statement as the superuser (inspection only) and return its rows."""
        with psycopg.connect(self.superuser_url, autocommit=True) as connection:
            cursor = connection.execute(statement, params)  # type: ignore[call-overload]
            return cursor.fetchall() if cursor.description else []

    def value(self, statement: str, params: Any = None) -> Any:
        rows = self.query(statement, params)
        return rows[0][0] if rows else None


@pytest.fixture
def warehouse(pg_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    name = f"elt_test_{os.getpid()}_{next(_counter)}"
    with connect(pg_server.superuser_url, setting="test server") as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER elt_owner").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    database = Warehouse(pg_server, name)
    monkeypatch.setenv("ELT_DATABASE_URL", database.loader_url)
    monkeypatch.setenv("ELT_OWNER_DATABASE_URL", database.owner_url)
    monkeypatch.delenv("ELT_DATABASE_URL_FILE", raising=False)
    monkeypatch.delenv("ELT_OWNER_DATABASE_URL_FILE", raising=False)
    yield database
    with connect(pg_server.superuser_url, setting="test server") as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def landing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "landing"
    root.mkdir()
    monkeypatch.setenv("ELT_LANDING_DIR", str(root))
    # Sensors of this process take a file once it held still from one tick to the next, however
    # slowly a test goes between landing it and ticking (a file older than the 2 s default would
    # be taken at first sight); the tests of that quiet period set their own.
    monkeypatch.setenv("ELT_FILE_QUIET_SECONDS", "3600")
    return root


@pytest.fixture
def contracts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "contracts"
    root.mkdir()
    monkeypatch.setenv("ELT_CONTRACTS_DIR", str(root))
    return root


def write_contract(directory: Path, text: str, name: str | None = None) -> Contract:
    """Write a contract file (dedented YAML) and return it parsed."""
    body = textwrap.dedent(text).strip() + "\n"
    path = directory / f"{name or 'contract'}.yaml"
    path.write_text(body, encoding="utf-8")
    contract = parse_contract(path)
    if name is None:
        path.rename(directory / f"{contract.name}.yaml")
    return contract


def copy_examples(landing: Path, contracts_dir: Path) -> None:
    shutil.copytree(EXAMPLES / "landing", landing, dirs_exist_ok=True)
    for path in (EXAMPLES / "contracts").glob("*.yaml"):
        shutil.copy(path, contracts_dir / path.name)


# -- object storage: a real S3 API on loopback ----------------------------------------------------

S3_SECRET = "S3cret-Access-Key-0f-Test"  # scanned for in every output by the object-store tests


@dataclass
class S3:
    """moto's S3 server on 127.0.0.1, and the AWS variables that reach it."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test-access-key",
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        import boto3

        env = self.env
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3(f"http://{host}:{port}")
    finally:
        server.stop()


@dataclass
class Bucket:
    """A fresh bucket for one test; `url` is the landing URL under a prefix."""

    s3: S3
    name: str
    prefix: str = "landing"

    @property
    def url(self) -> str:
        return f"s3://{self.name}/{self.prefix}"

    def put(self, relative: str, body: bytes, *, sha256_checksum: bool = False) -> None:
        """Upload an object; with `sha256_checksum`, S3 keeps (and verifies) its SHA256."""
        extra = {"ChecksumAlgorithm": "SHA256"} if sha256_checksum else {}
        self.s3.client().put_object(
            Bucket=self.name, Key=f"{self.prefix}/{relative}", Body=body, **extra
        )

    def delete(self, relative: str) -> None:
        self.s3.client().delete_object(Bucket=self.name, Key=f"{self.prefix}/{relative}")

    def upload_tree(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.put(path.relative_to(root).as_posix(), path.read_bytes())


@pytest.fixture
def bucket(s3_server: S3, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new bucket; the AWS variables of this process point at it (as a deployment's would)."""
    name = f"landing-{os.getpid()}-{next(_counter)}"
    s3_server.client().create_bucket(Bucket=name)
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return Bucket(s3_server, name)
