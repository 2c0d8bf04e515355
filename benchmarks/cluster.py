"""The Celery deployment (deploy/celery) on this machine, as it would run on several: each
process (code server, daemon, workers) in a directory of its own with its own HOME, DAGSTER_HOME
and copy of the contracts, sharing only what `env` points at (PostgreSQL, the bucket).
The many-machines tests and the workers benchmark start it the same way."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "celery"
BIN = Path(sys.executable).parent


def instance_config(poll_seconds: int | None = None) -> dict[str, Any]:
    """The shipped deploy/celery/dagster.yaml; `poll_seconds` polls run monitoring faster
    (and frees a dead run's pool slots sooner) than the shipped 30 s."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    if poll_seconds is not None:
        config["run_monitoring"]["poll_interval_seconds"] = poll_seconds
        config["run_monitoring"]["free_slots_after_run_end_seconds"] = poll_seconds
    return config


@dataclass
class Machines:
    """Processes of one deployment under `root`, which holds `contracts/` and `dagster.yaml`."""

    root: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    lost: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @classmethod
    def prepare(
        cls, root: Path, contracts: Path, env: dict[str, str], config: dict[str, Any]
    ) -> Machines:
        (root / "contracts").mkdir(parents=True, exist_ok=True)
        shutil.copytree(contracts, root / "contracts", dirs_exist_ok=True)
        (root / "dagster.yaml").write_text(yaml.safe_dump(config))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
        path = f"{BIN}{os.pathsep}{base.get('PATH', '')}"  # the image's PATH has the venv
        return cls(root, {**base, "PATH": path, **env})

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """`elt exec -- argv` as machine `name`: own cwd, HOME, DAGSTER_HOME and contracts."""
        machine = self.root / name
        for sub in ("home", "dagster_home", "state"):
            (machine / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.root / "contracts", machine / "contracts", dirs_exist_ok=True)
        shutil.copy(self.root / "dagster.yaml", machine / "dagster_home" / "dagster.yaml")
        shutil.copy(DEPLOY / "workspace.yaml", machine / "workspace.yaml")
        env = {
            **self.env,
            "HOME": str(machine / "home"),
            "DAGSTER_HOME": str(machine / "dagster_home"),
            "ELT_CONTRACTS_DIR": str(machine / "contracts"),
            "ELT_STATE_DIR": str(machine / "state"),
        }
        log = (machine / "log.txt").open("wb")
        self._logs.append(log)
        process = subprocess.Popen(
            [str(BIN / "elt"), "exec", "--", *argv],
            cwd=machine,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_deployment(self, workers: list[str], port: int) -> None:
        """`elt db init`, then the code server on `port`, the daemon and one worker per name."""
        self.env.update(DAGSTER_CODE_SERVER_HOST="127.0.0.1", DAGSTER_CODE_SERVER_PORT=str(port))
        init = self.start("init", "elt", "db", "init")
        if init.wait(timeout=300) != 0:
            raise RuntimeError(f"elt db init failed:\n{self.log('init')}")
        del self.processes["init"]
        server = ["dagster", "code-server", "start", "-m", "elt_assets.definitions"]
        self.start(
            "code-server",
            *server,
            "--location-name",
            "elt_assets",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        )
        self.start("daemon", "dagster-daemon", "run", "-w", "workspace.yaml")
        for name in workers:
            self.start(f"worker-{name}", "elt", "worker", "--name", name)

    def lose(self, name: str) -> None:
        """Machine `name` is lost: every process of it killed at once (kill -9)."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.lost.append(process)

    def log(self, name: str) -> str:
        return (self.root / name / "log.txt").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in self.processes)

    def dead(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self._logs:
            log.close()
