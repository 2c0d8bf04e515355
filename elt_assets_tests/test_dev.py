"""`elt dev` as a user runs it: start, open the UI, see the samples load, Ctrl-C, crash, restart.

Each test starts the real command in its own session with a temporary ELT_STATE_DIR, an embedded
PostgreSQL on a free port and no database URL in the environment. Whatever happens, `cleanup`
kills every process that carries the state directory (in its command line or environment) and
the `elt dev` process group, so a failing test never leaves servers behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from elt_assets.cli.upload import token_hash
from elt_assets.postgres.embedded import free_port
from elt_assets_tests.conftest import copy_examples
from elt_assets_tests.helpers import serve_webhooks

pytestmark = [pytest.mark.slow]

ELT = Path(sys.executable).parent / "elt"
READY_TIMEOUT_SECONDS = 240
EXIT_TIMEOUT_SECONDS = 60
UPLOAD_TOKEN = "dev-upload-token-0123456789"
UPLOAD_URL = "http://127.0.0.1:{port}/v1/datasets/orders/files/orders_2026-11-22.csv"
UPLOAD_HEADERS = {"Authorization": f"Bearer {UPLOAD_TOKEN}"}
UPLOADED = (
    "order_id,customer_id,status,amount,currency,ordered_at,note,updated_at\n"
    "9001,1,new,1.00,EUR,2026-11-22 08:00:00,,2026-11-22T09:00:00+01:00\n"
)
SAMPLE_FILES = {
    "orders/orders_2026-11-20.csv",
    "orders/orders_2026-11-21.csv.gz",
    "customers/customers_2026-11.parquet",
    "events/2026/11/21/events 09h.csv",
    "events/2026/11/21/events 10h.csv",
}


class Dev:
    """One platform set-up in a temporary directory, and the `elt dev` processes started on it."""

    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"
        self.landing, self.contracts = root / "landing", root / "contracts"
        self.landing.mkdir()
        self.contracts.mkdir()
        copy_examples(self.landing, self.contracts)
        self.ui_port, self.pg_port, self.metrics_port = free_port(), free_port(), free_port()
        self.processes: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        self.settings: dict[str, str] = {}  # more ELT_* settings for the next start

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
        if os.environ.get("ELT_PG_BIN_DIR"):
            base["ELT_PG_BIN_DIR"] = os.environ["ELT_PG_BIN_DIR"]
        return {
            **base,
            "ELT_STATE_DIR": str(self.state),
            "ELT_EMBEDDED_PG_PORT": str(self.pg_port),
            "ELT_METRICS_PORT": str(self.metrics_port),
            "ELT_SENSOR_INTERVAL_SECONDS": "2",
            "ELT_LANDING_DIR": str(self.landing),
            "ELT_CONTRACTS_DIR": str(self.contracts),
            "ELT_LOG_FORMAT": "text",
            **self.settings,
        }

    def start(self, port: int | None = None) -> subprocess.Popen[str]:
        """`elt dev` in a new session; its output goes to a log file (read on failure)."""
        log = self.root / f"dev-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("w") as output:
            process = subprocess.Popen(
                [str(ELT), "dev", "--port", str(port or self.ui_port)],
                env=self.env(),
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ELT), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for log in self.logs)

    def ui_answers(self) -> bool:
        for path in ("/server_info", "/"):
            url = f"http://127.0.0.1:{self.ui_port}{path}"
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=5) as response,
            ):
                if response.status == 200:
                    return True
        return False

    def wait_for_ui(self, process: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, f"elt dev exited {process.returncode}\n{self.output()}"
            if self.ui_answers():
                return
            time.sleep(1)
        raise AssertionError(
            f"the UI did not answer within {READY_TIMEOUT_SECONDS}s\n{self.output()}"
        )

    def wait_for_session(self, process: subprocess.Popen[str]) -> None:
        """Until <state>/run/dev.json records `process`: it has started its own Dagster."""
        record = self.state / "run/dev.json"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, f"elt dev exited {process.returncode}\n{self.output()}"
            with contextlib.suppress(OSError, ValueError):
                if json.loads(record.read_text())["pid"] == process.pid:
                    return
            time.sleep(0.5)
        raise AssertionError(f"{record} never named pid {process.pid}\n{self.output()}")

    def manifest(self) -> dict[str, str]:
        """file -> latest status in the embedded warehouse, as the owner role sees it."""
        password = (self.state / "postgres/secrets/elt_owner").read_text().strip()
        with psycopg.connect(
            host="127.0.0.1",
            port=self.pg_port,
            user="elt_owner",
            password=password,
            dbname="warehouse",
            connect_timeout=5,
        ) as connection:
            rows = connection.execute(
                "SELECT DISTINCT ON (file) file, status FROM elt.ingestion_manifest"
                " ORDER BY file, started_at DESC, id DESC"
            ).fetchall()
        return dict(rows)

    def wait_for_samples(self, process: subprocess.Popen[str]) -> dict[str, str]:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert process.poll() is None, f"elt dev exited {process.returncode}\n{self.output()}"
            with contextlib.suppress(OSError, psycopg.Error):
                seen = self.manifest()
                if set(seen) >= SAMPLE_FILES and all(s != "running" for s in seen.values()):
                    return seen
            time.sleep(2)
        raise AssertionError(f"manifest after {READY_TIMEOUT_SECONDS}s: {seen}\n{self.output()}")

    def leftovers(self) -> list[str]:
        """Processes (other than this one) that belong to this set-up: the state directory in
        their command line or environment, or a dagster command line with the UI port."""
        found = []
        marker = str(self.state).encode()
        port = str(self.ui_port).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            dagster_on_port = b"dagster" in cmdline and port in cmdline.split(b"\0")
            if marker in cmdline or marker in environ or dagster_on_port:
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command}")
        return found

    def wait_until_no_leftovers(self, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def cleanup(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            group = int(json.loads((self.state / "run/dev.json").read_text())["dagster_pgid"])
            if group:
                os.killpg(group, signal.SIGKILL)
        for line in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    setup = Dev(tmp_path)
    try:
        yield setup
    finally:
        setup.cleanup()


def interrupt_and_check_cleanup(dev: Dev, process: subprocess.Popen[str]) -> None:
    """Ctrl-C: `elt dev` exits in time and nothing it started is left running."""
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=EXIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"elt dev still runs {EXIT_TIMEOUT_SECONDS}s after SIGINT") from None
    assert code == 0, dev.output()
    assert dev.wait_until_no_leftovers() == [], dev.output()
    assert not (dev.state / "run/dev.json").exists()
    assert not (dev.state / "postgres/data/postmaster.pid").exists()


def test_dev_loads_the_samples_refuses_a_second_session_and_stops_on_ctrl_c(dev: Dev) -> None:
    with serve_webhooks() as hooks:
        # Alerts through Dagster's daemon: the sample orders quarantine a few rows each.
        upload_port = free_port()
        dev.settings = {
            "ELT_ALERT_WEBHOOK_URL": hooks.url("/alerts"),
            "ELT_ALERT_QUARANTINE_ROWS": "1",
            # The upload endpoint: a producer's token for orders.
            "ELT_UPLOAD_TOKENS": f"shop={token_hash(UPLOAD_TOKEN)}:orders",
            "ELT_UPLOAD_PORT": str(upload_port),
        }
        process = dev.start()
        dev.wait_for_ui(process)
        upload(upload_port)  # loads beside the samples
        manifest = dev.wait_for_samples(process)
        assert {file: manifest[file] for file in SAMPLE_FILES} == dict.fromkeys(
            SAMPLE_FILES, "success"
        )
        orders = {file for file in SAMPLE_FILES if file.startswith("orders/")}
        deadline = time.monotonic() + 60
        while {b["file"] for b in hooks.bodies("/alerts")} != orders:
            assert time.monotonic() < deadline, (hooks.bodies("/alerts"), dev.output())
            time.sleep(0.5)
        alerts = hooks.bodies("/alerts")
        assert [body["kind"] for body in alerts] == ["quarantine", "quarantine"], alerts
        ui = f"http://127.0.0.1:{dev.ui_port}/runs/"  # elt dev links alerts to its own UI
        assert all(body["run_url"].startswith(ui) for body in alerts), alerts
        see_the_upload_loaded(dev, process, upload_port)
        check_rest_of_the_session(dev, process)
    assert len(hooks.bodies("/alerts")) == 2  # each once, however many ticks saw them


def upload(port: int) -> None:
    """A producer PUTs a file to the endpoint `elt dev` serves."""
    request = urllib.request.Request(
        UPLOAD_URL.format(port=port), UPLOADED.encode(), UPLOAD_HEADERS, method="PUT"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        assert json.loads(response.read())["file"] == "orders/orders_2026-11-22.csv"


def see_the_upload_loaded(dev: Dev, process: subprocess.Popen[str], port: int) -> None:
    """The sensor loaded the uploaded file, and the endpoint says so."""
    url, headers = UPLOAD_URL.format(port=port), UPLOAD_HEADERS
    deadline = time.monotonic() + 60
    while dev.manifest().get("orders/orders_2026-11-22.csv") != "success":
        assert process.poll() is None and time.monotonic() < deadline, dev.output()
        time.sleep(0.5)
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as got:
        status = json.loads(got.read())
    assert status["status"] == "success" and status["counts"]["rows_inserted"] == 1, status


def check_rest_of_the_session(dev: Dev, process: subprocess.Popen[str]) -> None:
    # The metrics endpoint beside the UI counts what the manifest holds.
    url = f"http://127.0.0.1:{dev.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        scraped = response.read().decode()
    assert "elt_up 1.0" in scraped
    for dataset, files in {"orders": 3, "customers": 1, "events": 2}.items():
        line = f'elt_files{{dataset="{dataset}",status="success"}} {float(files)}'
        assert line in scraped, scraped

    second = dev.run("dev", "--port", str(free_port()))
    assert second.returncode == 2, second.stderr
    assert f"`elt dev` already runs (pid {process.pid})" in second.stderr
    assert process.poll() is None  # the running session is untouched

    interrupt_and_check_cleanup(dev, process)


def test_dev_recovers_after_being_killed_with_sigkill(dev: Dev) -> None:
    crashed = dev.start()
    dev.wait_for_ui(crashed)
    os.kill(crashed.pid, signal.SIGKILL)  # only `elt dev`: Dagster and PostgreSQL keep running
    crashed.wait(timeout=10)
    assert dev.leftovers(), "expected Dagster and PostgreSQL to outlive the killed elt dev"
    assert (dev.state / "run/dev.json").exists()

    restarted = dev.start()
    # The old webserver answers until the new session has stopped it: wait for its own record.
    dev.wait_for_session(restarted)
    dev.wait_for_ui(restarted)
    interrupt_and_check_cleanup(dev, restarted)


def test_dev_on_a_port_in_use_exits_2_naming_the_port(dev: Dev) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = dev.run("dev", "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"elt dev --port {port + 1}" in result.stderr
    assert not (dev.state / "postgres").exists()  # refused before starting anything


def test_ctrl_c_under_make_stops_everything_and_make_exits_0(dev: Dev, tmp_path: Path) -> None:
    """`make dev` in a terminal, then Ctrl-C: the terminal interrupts its foreground process
    group, which would include make (it then reports "Interrupt" and fails). elt dev holds the
    foreground alone, so only it gets the Ctrl-C; make sees a clean exit."""
    import pty
    import select

    makefile = tmp_path / "Makefile"
    makefile.write_text(f"dev:\n\t{ELT} dev --port {dev.ui_port}\n")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: make in the pty, as a user's shell would start it
        os.execvpe("make", ["make", "-f", str(makefile), "dev"], dev.env())
    output = b""

    def read(seconds: float) -> None:
        nonlocal output
        ready, _, _ = select.select([terminal], [], [], seconds)
        if ready:
            with contextlib.suppress(OSError):
                output += os.read(terminal, 65536)

    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not dev.ui_answers():
            assert time.monotonic() < deadline, output.decode(errors="replace")
            read(1)
        os.write(terminal, b"\x03")  # Ctrl-C, typed
        deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
        status = None
        while status is None and time.monotonic() < deadline:
            read(0.5)
            finished, code = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(code) if finished else None
        text = output.decode(errors="replace")
        assert status == 0, text
        assert "make: ***" not in text and "Aborted!" not in text and "Traceback" not in text, text
        assert "Warning" not in text, text  # no Python warning the user did not cause
        assert "embedded PostgreSQL stopped" in text, text
        assert dev.wait_until_no_leftovers() == [], text
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
