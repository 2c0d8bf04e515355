"""Opening connections: clear errors that name the setting, never the password.

Every connection is tagged with an application_name (visible in pg_stat_activity, which the fault
tests use to find the loader's backend) and checked once for superuser rights: by default a
superuser is warned about loudly; with ELT_REFUSE_SUPERUSER=true it is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg

from elt_assets.log import get_logger, mask_secrets
from elt_assets.postgres.errors import TerminalDatabaseError, TransientDatabaseError, is_transient
from elt_assets.postgres.templates import render

log = get_logger(__name__)
CONNECT_TIMEOUT_SECONDS = 10
_warned_superuser: set[str] = set()


def describe_target(url: str) -> str:
    """user@host:port/db of a URL, without its password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        return f"{parts.username or '?'}@{host}:{parts.port or 5432}{parts.path or '/'}"
    except ValueError:
        return "(unparseable URL)"


def connect(
    url: str,
    *,
    setting: str,
    application_name: str = "elt-assets",
    autocommit: bool = True,
    **parameters: str | int,
) -> psycopg.Connection:
    """A new connection to `url`; failures name the setting that holds it and what to do.

    `parameters` are further libpq connection parameters (keepalives, options).
    """
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            application_name=application_name,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            **parameters,  # type: ignore[arg-type]  # libpq parameters, passed on as keywords
        )
    except psycopg.Error as error:
        text = mask_secrets(str(error).strip().splitlines()[0] if str(error).strip() else "")
        message = (
            f"cannot connect to PostgreSQL at {describe_target(url)} (from {setting}): {text}. "
            f"Check that the server runs and that {setting} is right."
        )
        if is_transient(error):
            raise TransientDatabaseError(message) from None
        raise TerminalDatabaseError(message) from None
    except ValueError as error:  # malformed URL, caught by libpq's parser
        raise TerminalDatabaseError(
            f"{setting} is not a valid PostgreSQL URL ({mask_secrets(str(error))})"
        ) from None


@contextlib.contextmanager
def one_at_a_time(url: str, *, setting: str, name: str) -> Iterator[None]:
    """Hold the advisory lock `name` in `url`'s database meanwhile: set-up that processes
    starting together on several hosts must not race."""
    with connect(url, setting=setting) as connection:
        connection.execute(render("lock_named"), {"name": name})
        yield


def check_not_superuser(connection: psycopg.Connection, *, refuse: bool, setting: str) -> None:
    """Warn (or refuse, in production) when the runtime connects with superuser rights."""
    row = connection.execute(render("role_is_superuser")).fetchone()
    assert row is not None
    is_superuser, user = row
    if not is_superuser:
        return
    if refuse:
        raise TerminalDatabaseError(
            f"{setting} connects as {user!r}, a superuser, and ELT_REFUSE_SUPERUSER=true refuses "
            "that: connect as a login role that is a member of elt_loader (README, Roles)"
        )
    if user not in _warned_superuser:
        _warned_superuser.add(user)
        log.warning(
            "SECURITY: %s connects as %r, a SUPERUSER. The platform needs only the elt_loader "
            "role; set ELT_REFUSE_SUPERUSER=true in production to refuse this.",
            setting,
            user,
        )


def check_role_separation(connection: psycopg.Connection, *, setting: str) -> None:
    """With ELT_REQUIRE_SEPARATE_ROLES=true: refuse a runtime role that may alter the platform's
    tables (single-role mode, or a member of elt_owner)."""
    row = connection.execute(render("runtime_owns_platform")).fetchone()
    if row and row[0]:
        raise TerminalDatabaseError(
            f"{setting} connects as {connection.info.user!r}, which owns the platform's tables "
            "(single-role mode, or a member of elt_owner), and ELT_REQUIRE_SEPARATE_ROLES=true "
            "refuses that: load as a login role that is a member of elt_loader only (README, "
            "Roles)"
        )


@contextlib.contextmanager
def as_owner(connection: psycopg.Connection) -> Iterator[None]:
    """Run DDL as the elt_owner role when the login role may, so objects belong to elt_owner."""
    row = connection.execute(render("role_may_switch_to_owner")).fetchone()
    switch = bool(row and row[0])
    if switch:
        connection.execute(render("role_set_owner"))
    try:
        yield
    finally:
        if (
            switch
            and not connection.closed
            and connection.info.transaction_status.name
            in (
                "IDLE",
                "INTRANS",
            )
        ):
            connection.execute(render("role_reset"))
