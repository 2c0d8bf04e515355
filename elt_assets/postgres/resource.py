"""The warehouse as a Dagster resource: pooled connections, no password anywhere in the UI.

Built from the environment (`from_env`), its URL fields hold `dg.EnvVar`s: the UI's resource page
shows the variable's name (ELT_DATABASE_URL, or ELT_DATABASE_URL_FILE for a secret file), and the
value is read when a run or sensor tick starts. `elt ingest` passes the URLs it resolved instead.
"""

import contextlib
import os
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import Field, PrivateAttr

from elt_assets.contracts.model import Contract
from elt_assets.postgres.connection import (
    check_not_superuser,
    check_role_separation,
    connect,
    describe_target,
)
from elt_assets.postgres.errors import TransientDatabaseError
from elt_assets.postgres.lease import FileLeases
from elt_assets.postgres.migrate import initialize, platform_is_current
from elt_assets.postgres.tables import ensure_dataset_tables
from elt_assets.settings import (
    SETTINGS,
    Settings,
    checked_database_url,
    refuse_superuser,
    require_separate_roles,
    required_url,
    secret_from_file,
)

URL_SETTING = "ELT_DATABASE_URL"
RECENT_RETURN_SECONDS = 2.0  # a connection given back this recently is handed out unchecked
OWNER_URL_SETTING = "ELT_OWNER_DATABASE_URL"


def _env_var(name: str, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(value field, file field) for a secret setting: the one that is set, as a dg.EnvVar."""
    if env.get(f"{name}_FILE"):
        return None, dg.EnvVar(f"{name}_FILE")
    if env.get(name):
        return dg.EnvVar(name), None
    return None, None


def _resolved(value: str | None) -> str | None:
    """A field's value; an EnvVar not resolved by Dagster (use outside a run) is read here."""
    if isinstance(value, dg.EnvVar):
        return value.get_value()
    return value


class _SharedPools:
    """`elt ingest` executes its runs one after another in its own process: within
    `shared_pools()` every run's resource takes the process's pool for its URL (the database
    checked once, the connections kept) instead of opening and closing one of its own (about
    20 ms a run)."""

    pools: dict[tuple[str, str, int], ConnectionPool] | None = None


@contextlib.contextmanager
def shared_pools() -> Iterator[None]:
    """Runs executed one after another in this process share each warehouse's pool; closed on
    the way out. The file leases stay each run's own."""
    _SharedPools.pools = {}
    try:
        yield
    finally:
        pools, _SharedPools.pools = _SharedPools.pools, None
        for pool in pools.values():
            pool.close()


class PostgresResource(dg.ConfigurableResource):
    """Connections to the warehouse PostgreSQL: the runtime role, and the owner role for DDL."""

    url: str | None = Field(default=None, description="Warehouse URL as the runtime role.")
    url_file: str | None = Field(default=None, description="A file holding `url` instead.")
    owner_url: str | None = Field(default=None, description="Warehouse URL as the owner role.")
    owner_url_file: str | None = Field(default=None, description="A file holding `owner_url`.")
    refuse_superuser: bool = Field(
        default=False, description="Refuse a superuser runtime role (ELT_REFUSE_SUPERUSER)."
    )
    require_separate_roles: bool = Field(
        default=False, description="Refuse single-role mode (ELT_REQUIRE_SEPARATE_ROLES)."
    )
    file_wait_minutes: int = Field(
        default=int(SETTINGS["ELT_FILE_WAIT_MINUTES"][0]),
        description="How long a run waits for another process loading the same file "
        "(ELT_FILE_WAIT_MINUTES).",
    )
    set_up_platform: bool = Field(
        default=False,
        description="Create and migrate the platform's own tables (schema elt) on first use, "
        "as the owner, as `elt db init` does. The component turns it on, so a project that "
        "never runs `elt` works; the platform's own commands run `elt db init` instead.",
    )
    application_name: str = "elt-assets"
    pool_max_size: int = 4

    _pool: ConnectionPool | None = PrivateAttr(default=None)
    _leases: FileLeases | None = PrivateAttr(default=None)
    # Contracts whose tables this run found fitting (ensure_tables); when each connection was
    # last given back to the pool (_check).
    _fitted: set[str] = PrivateAttr(default_factory=set)
    _last_fitted: Contract | None = PrivateAttr(default=None)
    _returned: "weakref.WeakKeyDictionary[psycopg.Connection, float]" = PrivateAttr(
        default_factory=weakref.WeakKeyDictionary
    )

    @classmethod
    def from_env(
        cls, settings: Settings | None = None, env: Mapping[str, str] | None = None
    ) -> "PostgresResource":
        """The warehouse the environment names (URLs as dg.EnvVar, never their values)."""
        environ = os.environ if env is None else env
        settings = settings or Settings.from_env(env)
        url, url_file = _env_var(URL_SETTING, environ)
        owner_url, owner_url_file = _env_var(OWNER_URL_SETTING, environ)
        return cls(
            url=url,
            url_file=url_file,
            owner_url=owner_url,
            owner_url_file=owner_url_file,
            refuse_superuser=refuse_superuser(env),
            require_separate_roles=require_separate_roles(env),
            file_wait_minutes=settings.file_wait_minutes,
        )

    @classmethod
    def for_urls(cls, url: str, owner_url: str, settings: Settings) -> "PostgresResource":
        """The warehouse at known URLs (the CLI's, resolved or embedded)."""
        return cls(
            url=url,
            owner_url=owner_url,
            refuse_superuser=refuse_superuser(),
            require_separate_roles=require_separate_roles(),
            file_wait_minutes=settings.file_wait_minutes,
        )

    def _secret(self, setting: str, value: str | None, file: str | None) -> str | None:
        path = _resolved(file)
        if path:
            return checked_database_url(setting, secret_from_file(setting, path))
        resolved = _resolved(value)
        return checked_database_url(setting, resolved) if resolved else None

    def url_value(self) -> str:
        """The runtime role's URL (registered for masking in logs)."""
        return required_url(URL_SETTING, self._secret(URL_SETTING, self.url, self.url_file))

    def owner_url_value(self) -> str:
        owner = self._secret(OWNER_URL_SETTING, self.owner_url, self.owner_url_file)
        return owner or self.url_value()

    def _owner_setting(self) -> str:
        return OWNER_URL_SETTING if (self.owner_url or self.owner_url_file) else URL_SETTING

    def _configure(self, connection: psycopg.Connection) -> None:
        check_not_superuser(connection, refuse=self.refuse_superuser, setting=URL_SETTING)
        connection.commit()

    def _pool_for_run(self) -> ConnectionPool:
        """This run's pool: its own, or within `shared_pools()` the process's for this URL."""
        shared = _SharedPools.pools
        if shared is None:
            return self._open_pool()
        key = (self.url_value(), self.application_name, self.pool_max_size)
        if key not in shared:
            shared[key] = self._open_pool()
        return shared[key]

    def _open_pool(self) -> ConnectionPool:
        url = self.url_value()
        # Fail fast with a clear message if the database is unreachable or refuses us, or if it
        # is a superuser and ELT_REFUSE_SUPERUSER=true (raised inside the pool's `configure`,
        # the refusal would only be logged and the caller would wait for a connection in vain).
        with connect(url, setting=URL_SETTING, application_name=self.application_name) as probe:
            check_not_superuser(probe, refuse=self.refuse_superuser, setting=URL_SETTING)
            if self.require_separate_roles:
                check_role_separation(probe, setting=URL_SETTING)
            if self.set_up_platform and not platform_is_current(probe):
                with self.owner_connection() as owner:
                    initialize(owner, [], require_separate_roles=self.require_separate_roles)
        pool = ConnectionPool(
            url,
            min_size=0,
            max_size=self.pool_max_size,
            kwargs={
                "application_name": self.application_name,
                "connect_timeout": 10,
                # Explicit transactions only: an implicit one would turn `transaction()` into a
                # savepoint that the pool rolls back when the connection returns.
                "autocommit": True,
            },
            configure=self._configure,
            check=self._check,
            reset=self._note_return,
            open=True,
            name=f"warehouse {describe_target(url)}",
        )
        return pool

    def _check(self, connection: psycopg.Connection) -> None:
        """Make sure a pooled connection still works before it is handed out: one round trip,
        skipped for a connection given back moments ago (a file's steps take several in a row;
        a server that went away meanwhile fails the next statement, a transient error)."""
        returned = self._returned.get(connection)
        if returned is None or time.monotonic() - returned > RECENT_RETURN_SECONDS:
            ConnectionPool.check_connection(connection)

    def _note_return(self, connection: psycopg.Connection) -> None:
        self._returned[connection] = time.monotonic()

    def ensure_tables(self, connection: psycopg.Connection, contract: Contract) -> None:
        """ensure_dataset_tables, once per contract (as the files evolved it) per run: the
        catalog queries are not repeated for every file of a batch."""
        if contract is self._last_fitted:  # the same object again: every file of a batch
            return
        fingerprint = contract.model_dump_json()
        if fingerprint not in self._fitted:
            ensure_dataset_tables(connection, contract, self.owner_connection)
            self._fitted.add(fingerprint)
        self._last_fitted = contract

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._pool = None  # opened on first use, so runs that never touch the database stay cheap
        self._fitted = set()
        self._last_fitted = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        """Close the pool and give back every file lease (also for use outside Dagster)."""
        if self._leases is not None:
            self._leases.close()
            self._leases = None
        if self._pool is not None:
            shared = _SharedPools.pools
            if shared is None or self._pool not in shared.values():
                self._pool.close()
            self._pool = None

    def leases(self) -> FileLeases:
        """The leases of the files this process works on (postgres/lease.py), on a session of
        their own that lives as long as this resource: for a run, the whole run."""
        if self._leases is None:
            if self._pool is None:  # checks the database (and sets the platform up) first
                self._pool = self._pool_for_run()
            self._leases = FileLeases(
                self.url_value(), setting=URL_SETTING, application_name=self.application_name
            )
        return self._leases

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection as the runtime role; returned to the pool afterwards."""
        if self._pool is None:
            self._pool = self._pool_for_run()
        try:
            with self._pool.connection(timeout=60) as connection:
                yield connection
        except PoolTimeout:
            raise TransientDatabaseError(
                f"no connection to the warehouse ({URL_SETTING}) became free within 60 s"
            ) from None

    @contextlib.contextmanager
    def owner_connection(self) -> Iterator[psycopg.Connection]:
        """A separate autocommit connection for CREATE TABLE and migrations."""
        with connect(
            self.owner_url_value(),
            setting=self._owner_setting(),
            application_name=f"{self.application_name}-ddl",
            autocommit=True,
        ) as connection:
            yield connection

    def describe(self) -> dict[str, Any]:
        """Where the warehouse is, for metadata: user@host:port/db, never the password."""
        return {"warehouse": describe_target(self.url_value())}
