"""Helpers for tests that run the real Dagster job on a real instance and database."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from psycopg import sql

from elt_assets.contracts.loader import load_contracts
from elt_assets.definitions import build_definitions
from elt_assets.landing.keys import path_to_key
from elt_assets.postgres.embedded import free_port

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def definitions(contracts_dir: Path) -> dg.Definitions:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return build_definitions(load_contracts(contracts_dir))


def run_file(
    contracts_dir: Path, dataset: str, file: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """Materialise raw -> staged -> target for one landed file, as the sensor's run would."""
    key = path_to_key(file)
    instance.add_dynamic_partitions(f"{dataset}_files", [key])
    job = definitions(contracts_dir).resolve_job_def(f"ingest_{dataset}")
    return job.execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET
    )


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    """The message of the first failed step, for assertions on what users read."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data is not None:
            error = event.step_failure_data.user_failure_data
            if error is not None and error.description:
                return error.description
            info = event.step_failure_data.error
            messages = []
            while info is not None:  # the whole cause chain: "max retries" hides the real error
                messages.append(info.message.strip())
                info = info.cause
            return " <- ".join(messages)
    return ""


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    key = dg.AssetKey(asset.split("/"))
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        if materialization.asset_key == key:
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """{check name: evaluation} for every asset check evaluated in the run."""
    return {
        event.asset_check_evaluation_data.check_name: event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }


# -- the pause trigger and the loader's backend -----------------------------------------------

PAUSE_SETUP = """
CREATE TABLE IF NOT EXISTS public.fault_release (released_at timestamptz DEFAULT now());
GRANT SELECT ON public.fault_release TO PUBLIC;
CREATE SEQUENCE IF NOT EXISTS public.fault_fired;
GRANT USAGE ON SEQUENCE public.fault_fired TO PUBLIC;
CREATE OR REPLACE FUNCTION public.fault_pause() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => TG_ARGV[1]::float8);
BEGIN
    IF TG_ARGV[0] = 'once' AND nextval('public.fault_fired') > 1 THEN
        RETURN NEW;
    END IF;
    WHILE clock_timestamp() < deadline AND NOT EXISTS (SELECT FROM public.fault_release) LOOP
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN NEW;
END $$;
"""


class Pause:
    """A test-only trigger holding the loader's transaction at one row (superuser DDL)."""

    def __init__(self, superuser_url: str, loader: str = "elt_loader"):
        self.url = superuser_url
        self.loader = loader  # the role the loads run as

    def execute(self, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def install(
        self, table: str, when: str, *, once: bool = True, seconds: float = 60, on: str = "INSERT"
    ) -> None:
        """Before `table` gets a row matching `when` (`on` INSERT, or UPDATE, where OLD is the
        row before), wait until released (or `seconds`)."""
        schema, name = table.split(".")
        self.execute(PAUSE_SETUP)
        self.execute(
            sql.SQL(
                "CREATE TRIGGER fault_pause BEFORE {} ON {} FOR EACH ROW WHEN ({}) "
                "EXECUTE FUNCTION public.fault_pause({}, {})"
            ).format(
                sql.SQL({"INSERT": "INSERT", "UPDATE": "UPDATE"}[on]),
                sql.Identifier(schema, name),
                sql.SQL(when),  # a fixed condition written in this file
                sql.Literal("once" if once else "always"),
                sql.Literal(str(seconds)),
            )
        )

    def release(self) -> None:
        self.execute("INSERT INTO public.fault_release DEFAULT VALUES")

    def loader_backends(self, condition: str = "true") -> list[tuple[int, str]]:
        return [
            (int(pid), query)
            for pid, query in self.execute(
                "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database()"
                f" AND usename = '{self.loader}' AND {condition}"
            )
        ]

    def wait_paused(
        self, process: Any, log: Path | None = None, timeout: float = 120
    ) -> tuple[int, str]:
        """The loader backend once it sleeps in the trigger: (pid, its statement)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            paused = self.loader_backends("wait_event = 'PgSleep'")
            if paused:
                return paused[0]
            if not alive(process):
                output = log.read_text() if log and log.exists() else ""
                raise AssertionError(f"the loader ended before the pause: {process}\n{output}")
            time.sleep(0.05)
        raise AssertionError(f"the loader did not reach the pause within {timeout}s")

    def wait_gone(self, pid: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]):
            assert time.monotonic() < deadline, f"backend {pid} still exists after {timeout}s"
            time.sleep(0.05)


def alive(process: Any) -> bool:
    if isinstance(process, subprocess.Popen):
        return process.poll() is None
    return bool(process.is_alive())


def readme_instance_snippet() -> dict[str, object]:
    """The dagster.yaml snippet the README gives a project's instance."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Use it in your own Dagster project", 1)[1]
    block = section.split("```yaml", 2)[2].split("```", 1)[0]
    loaded = yaml.safe_load(block)
    assert isinstance(loaded, dict)
    return loaded


def user_env(warehouse: Any, cwd: Path, settings: dict[str, str] | None = None) -> dict[str, str]:
    """A user's environment for `elt`: no ELT_* or DAGSTER_* setting but the warehouse's URLs,
    a state directory of their own (and the `settings` given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env.update(
        ELT_DATABASE_URL=warehouse.loader_url,
        ELT_OWNER_DATABASE_URL=warehouse.owner_url,
        ELT_STATE_DIR=str(cwd / "state"),
        ELT_LOG_FORMAT="text",
    )
    env.update(settings or {})
    return env


def elt_as_user(
    warehouse: Any,
    cwd: Path,
    *args: str,
    timeout: float = 300,
    settings: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The installed `elt ARGS` as a user runs it: from `cwd` (their own directory), with only
    the warehouse's URLs among the ELT_* settings (and the `settings` given)."""
    env = user_env(warehouse, cwd, settings)
    elt = Path(sys.executable).parent / "elt"
    return subprocess.run(
        [str(elt), *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# A user's own folders under tmp_path: landing/, contracts/, and user/ to run `elt` from.


def elt(
    tmp_path: Path, warehouse: Any, *args: str, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`elt ARGS` from a directory of the user's, with only the database URLs set."""
    cwd = tmp_path / "user"
    cwd.mkdir(exist_ok=True)
    return elt_as_user(warehouse, cwd, *args, settings=settings)


def ingest_args(tmp_path: Path, *options: str) -> list[str]:
    """`elt ingest --json OPTIONS` over the landing and contracts folders under tmp_path."""
    folders = ["--landing", str(tmp_path / "landing"), "--contracts", str(tmp_path / "contracts")]
    return ["ingest", "--json", *options, *folders]


def ingest(
    tmp_path: Path, warehouse: Any, settings: dict[str, str] | None = None
) -> dict[str, dict[str, object]]:
    result = elt(tmp_path, warehouse, *ingest_args(tmp_path), settings=settings)
    try:
        return {entry["file"]: entry for entry in json.loads(result.stdout)["files"]}
    except ValueError:
        raise AssertionError(result.stdout + result.stderr) from None


def landing_folder(tmp_path: Path, name: str) -> Path:
    """A new folder of the landing zone."""
    folder = tmp_path / "landing" / name
    folder.mkdir(parents=True)
    return folder


def land(tmp_path: Path, relative: str, table: pa.Table, **options: object) -> Path:
    path = tmp_path / "landing" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **options)  # type: ignore[arg-type]
    return path


def contract(tmp_path: Path, text: str) -> None:
    folder = tmp_path / "contracts"
    folder.mkdir(exist_ok=True)
    name = text.split("name:", 1)[1].split(maxsplit=1)[0]
    (folder / f"{name}.yaml").write_text(text)


@dataclass
class Webhooks:
    """A local HTTP server that records the JSON body of every POST by path; paths in
    `failing` answer 503 instead."""

    port: int
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return list(self.received.get(path, []))


@contextlib.contextmanager
def serve_webhooks() -> Iterator[Webhooks]:
    """A `Webhooks` receiver on a free loopback port, for the duration of the block."""
    hooks = Webhooks(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path in hooks.failing:
                self.send_response(503)
            else:
                hooks.received.setdefault(self.path, []).append(body)
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", hooks.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hooks
    finally:
        server.shutdown()
        server.server_close()


class WriterSampler:
    """Loader sessions writing a file, sampled every 20 ms while the block runs, across every
    process and machine: each staging write and each load holds its file's advisory lock for its
    whole transaction. `samples` starts at 0."""

    def __init__(self, url: str):
        self.url, self.samples, self._stop = url, [0], threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            while not self._stop.is_set():
                row = connection.execute(
                    "SELECT count(DISTINCT l.pid) FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
                    " AND a.usename = 'elt_loader' AND a.datname = current_database()"
                ).fetchone()
                self.samples.append(int(row[0]) if row else 0)
                time.sleep(0.02)

    def __enter__(self) -> WriterSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
