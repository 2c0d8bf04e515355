"""The warehouse as a Dagster resource: pooled connections, no password anywhere in the UI.

Its config holds the *names* of the environment variables (ELT_DATABASE_URL,
ELT_OWNER_DATABASE_URL), never their values, so the Dagster UI's resource page shows nothing
secret. URLs are read when a run or sensor tick starts, from the variable or its `*_FILE` twin.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import PrivateAttr

from elt_assets.postgres.connection import (
    check_not_superuser,
    check_role_separation,
    connect,
    describe_target,
)
from elt_assets.postgres.errors import TransientDatabaseError
from elt_assets.postgres.lease import FileLeases
from elt_assets.settings import (
    database_url,
    refuse_superuser,
    require_database_url,
    require_separate_roles,
)


class PostgresResource(dg.ConfigurableResource):
    """Connections to the warehouse PostgreSQL: the runtime role, and the owner role for DDL."""

    url_env: str = "ELT_DATABASE_URL"
    owner_url_env: str = "ELT_OWNER_DATABASE_URL"
    application_name: str = "elt-assets"
    pool_max_size: int = 4

    _pool: ConnectionPool | None = PrivateAttr(default=None)
    _leases: FileLeases | None = PrivateAttr(default=None)

    def url(self) -> str:
        return require_database_url(self.url_env)

    def owner_url(self) -> str:
        return database_url(self.owner_url_env) or self.url()

    def _configure(self, connection: psycopg.Connection) -> None:
        check_not_superuser(connection, refuse=refuse_superuser(), setting=self.url_env)
        connection.commit()

    def _open_pool(self) -> ConnectionPool:
        url = self.url()
        # Fail fast with a clear message if the database is unreachable or refuses us, or if it
        # is a superuser and ELT_REFUSE_SUPERUSER=true (raised inside the pool's `configure`,
        # the refusal would only be logged and the caller would wait for a connection in vain).
        with connect(url, setting=self.url_env, application_name=self.application_name) as probe:
            check_not_superuser(probe, refuse=refuse_superuser(), setting=self.url_env)
            if require_separate_roles():
                check_role_separation(probe, setting=self.url_env)
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
            check=ConnectionPool.check_connection,
            open=True,
            name=f"warehouse {describe_target(url)}",
        )
        return pool

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._pool = None  # opened on first use, so runs that never touch the database stay cheap

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        """Close the pool and give back every file lease (also for use outside Dagster)."""
        if self._leases is not None:
            self._leases.close()
            self._leases = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def leases(self) -> FileLeases:
        """The leases of the files this process works on (postgres/lease.py), on a session of
        their own that lives as long as this resource: for a run, the whole run."""
        if self._leases is None:
            self._leases = FileLeases(
                self.url(), setting=self.url_env, application_name=self.application_name
            )
        return self._leases

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection as the runtime role; returned to the pool afterwards."""
        if self._pool is None:
            self._pool = self._open_pool()
        try:
            with self._pool.connection(timeout=60) as connection:
                yield connection
        except PoolTimeout:
            raise TransientDatabaseError(
                f"no connection to the warehouse ({self.url_env}) became free within 60 s"
            ) from None

    @contextlib.contextmanager
    def owner_connection(self) -> Iterator[psycopg.Connection]:
        """A separate autocommit connection for CREATE TABLE and migrations."""
        url = self.owner_url()
        setting = self.owner_url_env if database_url(self.owner_url_env) else self.url_env
        with connect(
            url, setting=setting, application_name=f"{self.application_name}-ddl", autocommit=True
        ) as connection:
            yield connection

    def describe(self) -> dict[str, Any]:
        """Where the warehouse is, for metadata: user@host:port/db, never the password."""
        return {"warehouse": describe_target(self.url())}
