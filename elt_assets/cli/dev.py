"""`elt dev`: the whole platform on one machine, started and stopped as one thing.

Starts (or reuses) the embedded PostgreSQL, prepares the warehouse and Dagster's storage, then
runs `dg dev` (webserver + daemon; the file sensors are on by default, so the sample files
load without a click). Ctrl-C stops everything this command started. A session killed with -9
leaves a record in <state>/run/dev.json: the next `elt dev` stops its leftovers first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from elt_assets.cli.databases import initialize_warehouse, resolve_databases
from elt_assets.contracts.loader import load_contracts
from elt_assets.errors import TerminalError
from elt_assets.log import get_logger
from elt_assets.postgres.embedded import port_is_free
from elt_assets.settings import Settings, checkout_root

log = get_logger(__name__)
SHUTDOWN_GRACE_SECONDS = 30
# A signal within this time of the first is the same Ctrl-C relayed again (by uv), not a second.
REPEATED_SIGNAL_SECONDS = 2.0
DEV_SENSOR_SECONDS = 1


class DevError(TerminalError):
    """`elt dev` cannot start; the message says why and what to do."""


def project_file(name: str) -> Path:
    """workspace.yaml / dagster.yaml: the checkout's when run from one, else the copy the wheel
    ships inside the package. Never the working directory's."""
    root = checkout_root()
    if root is not None and (root / name).exists():
        return root / name
    return Path(__file__).resolve().parents[1] / "_project" / name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Session:
    """The record of a running `elt dev`, so a crashed one can be cleaned up by the next."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "run" / "dev.json"

    def recover(self) -> bool:
        """Stop what a dead session left running; True if the embedded server was its own."""
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        if _alive(int(record.get("pid", 0))):
            raise DevError(
                f"`elt dev` already runs (pid {record['pid']}); stop it with Ctrl-C in its "
                f"terminal or `kill {record['pid']}`"
            )
        group = int(record.get("dagster_pgid", 0))
        if group and _group_alive(group):  # the leader may be dead while its children live
            log.warning("stopping Dagster processes left by a previous `elt dev` (group %s)", group)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            # SIGKILL is asynchronous: wait until the group is gone, or its webserver still holds
            # the UI port and the port check below would blame "another program".
            deadline = time.monotonic() + 10
            while _group_alive(group) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.path.unlink(missing_ok=True)
        return bool(record.get("owns_postgres"))

    def write(self, dagster_pgid: int, owns_postgres: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            json.dumps(
                {"pid": os.getpid(), "dagster_pgid": dagster_pgid, "owns_postgres": owns_postgres}
            )
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _dagster_home(settings: Settings) -> Path:
    home = settings.state_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project_file("dagster.yaml"), home / "dagster.yaml")
    return home


def run_dev(settings: Settings, host: str, port: int) -> int:
    session = Session(settings.state_dir)
    owned_before = session.recover()
    if not port_is_free(port):
        raise DevError(
            f"port {port} on {host} is already in use (another Dagster, or a program of yours): "
            f"stop it, or run `elt dev --port {port + 1}`"
        )
    landing = settings.require_landing()
    contract_set = load_contracts(settings.require_contracts_dir())
    log.info("landing zone %s, contracts in %s", landing, settings.contracts_dir)
    for error in contract_set.errors:
        log.error(
            "contract %s is broken and will show as broken in the UI: %s",
            error.path.name,
            error.message,
        )
    databases = resolve_databases(settings, need_dagster=True)
    owns_postgres = databases.started_server or owned_before
    try:
        report = initialize_warehouse(databases, contract_set.contracts)
        if report.applied:
            log.info("applied migrations: %s", ", ".join(report.applied))
        for name, problem in report.unfit.items():  # the other datasets run all the same
            log.error("dataset %s: its files fail to load until this is fixed: %s", name, problem)
        embedded = {name: databases.env[name] for name in databases.embedded_for}
        url = databases.env["ELT_DATABASE_URL"]
        with _metrics(settings, url, host), _uploads(settings, url, host):
            return _run_dagster(settings, embedded, host, port, session, owns_postgres)
    finally:
        if databases.server is not None and owns_postgres:
            databases.server.stop()
            log.info("embedded PostgreSQL stopped")
        session.clear()


def _browsable(host: str) -> str:
    """An address a browser can open for a bind address (0.0.0.0 and :: are not)."""
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 (recognised here, never bound)
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _uploads(settings: Settings, url: str, host: str) -> Iterator[None]:
    """The upload endpoint beside the UI, when ELT_UPLOAD_TOKENS gives producers a token
    (ELT_UPLOAD_PORT; 0: none). A port in use only costs the endpoint."""
    from elt_assets.settings import upload_settings, upload_tokens

    port, _ = upload_settings()
    if port == 0 or not upload_tokens():
        yield
        return
    from elt_assets.cli.upload import serve_in_background, upload_service

    try:
        server, thread = serve_in_background(upload_service(settings, url), host, port)
    except OSError as error:
        log.warning(
            "no upload endpoint: %s:%d is not free (%s); set ELT_UPLOAD_PORT to another port or 0",
            host,
            port,
            error.strerror,
        )
        yield
        return
    print(
        f"  Uploads: http://{host}:{port}/v1/datasets/{{dataset}}/files/{{name}}", file=sys.stderr
    )
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def _metrics(settings: Settings, url: str, host: str) -> Iterator[None]:
    """The metrics endpoint beside the UI (ELT_METRICS_PORT; 0: none). A port in use only
    costs the endpoint, never the platform."""
    if settings.metrics_port == 0:
        yield
        return
    from elt_assets.cli.metrics import metrics_server, serve_in_background

    try:
        server = metrics_server(url, "ELT_DATABASE_URL", host, settings.metrics_port)
    except OSError as error:
        log.warning(
            "no metrics endpoint: %s:%d is not free (%s); set ELT_METRICS_PORT to another port "
            "or 0",
            host,
            settings.metrics_port,
            error.strerror,
        )
        yield
        return
    serve_in_background(server)
    print(f"  Metrics: http://{host}:{settings.metrics_port}/metrics", file=sys.stderr)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _run_dagster(
    settings: Settings,
    urls: dict[str, str],
    host: str,
    port: int,
    session: Session,
    owns_pg: bool,
) -> int:
    """Dagster's processes get the configuration in their environment, where they read it:
    the user's, plus the URLs of the embedded server where none is configured."""
    home = _dagster_home(settings)
    env = {
        **os.environ,
        **urls,
        "DAGSTER_HOME": str(home),
        "ELT_LANDING_DIR": settings.landing_url or str(settings.landing_dir),
        "ELT_CONTRACTS_DIR": str(settings.contracts_dir),
        "ELT_STATE_DIR": str(settings.state_dir),
    }
    if settings.archive_dir is not None:
        env["ELT_ARCHIVE_DIR"] = str(settings.archive_dir)  # absolute: Dagster runs elsewhere
    # On a laptop a landed file should show up at once: unless the user set otherwise, the
    # sensors tick on every pass of the daemon's sensor loop (Dagster's, every 5 s; an interval
    # of 5 would miss every other pass by a hair). Production's default is 15 s.
    env.setdefault("ELT_SENSOR_INTERVAL_SECONDS", str(DEV_SENSOR_SECONDS))
    # Alerts link to their run in this UI, unless the UI is reached at another address.
    env.setdefault("ELT_UI_URL", f"http://{_browsable(host)}:{port}")
    # `dg dev` (Dagster's current command; `dagster dev` is superseded by it) with our workspace.
    dg = Path(sys.executable).parent / "dg"
    command = [
        str(dg),
        "dev",
        "-w",
        str(project_file("workspace.yaml")),
        "-h",
        host,
        "-p",
        str(port),
    ]
    # Run from the Dagster home: a dagster.yaml in the user's folder (the checkout has one) would
    # make Dagster warn that it is not used.
    process = subprocess.Popen(command, env=env, cwd=home, start_new_session=True)
    session.write(process.pid, owns_pg)
    print(f"\n  Dagster UI: http://{host}:{port}   (Ctrl-C stops everything)\n", file=sys.stderr)
    first_signal: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        """The first Ctrl-C asks `dg dev` alone to stop (it stops its webserver and daemon
        in order); the same signal relayed again (uv forwards it too) is ignored; a second
        Ctrl-C from an impatient user stops the whole group at once."""
        now = time.monotonic()
        if not first_signal:
            first_signal.append(now)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
        elif now - first_signal[0] > REPEATED_SIGNAL_SECONDS:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _foreground():
            code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_group(process)
    return 0 if code in (0, -signal.SIGINT, 130) else code


@contextlib.contextmanager
def _foreground() -> Iterator[None]:
    """Hold the terminal's foreground alone while Dagster runs, when there is a terminal.

    Ctrl-C interrupts the terminal's whole foreground process group. Under `make dev` that
    includes make and uv, and make reports "Interrupt" (and fails) although everything stopped
    cleanly. In a process group of its own in the foreground, only this process gets Ctrl-C: it
    stops Dagster and PostgreSQL and exits 0, and make with it. The terminal is handed back.
    """
    try:
        terminal = os.open("/dev/tty", os.O_RDWR)
    except OSError:  # no controlling terminal (a service, a test): nothing to do
        yield
        return
    try:
        owner = os.tcgetpgrp(terminal)
        if owner != os.getpgrp():  # started in the background: leave the terminal alone
            yield
            return
        ignored = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may set it
        try:
            os.setpgid(0, 0)
            os.tcsetpgrp(terminal, os.getpgrp())
            yield
        finally:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(terminal, owner)
            signal.signal(signal.SIGTTOU, ignored)
    finally:
        os.close(terminal)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Give Dagster time to shut down, then make sure nothing of its group is left."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
