"""`elt dev` as a user runs it, loading files landed in its directory.

The whole platform as `elt dev` starts it (the Dagster webserver and daemon, the file sensors on,
each run launched in a process of its own) over the benchmark's PostgreSQL and a landing
directory of its own. Measured: the latency of a file landed on its own (from the moment it is
written to the commit of its load, the manifest's finished_at), a few times at random moments
of the sensor's cycle; then the throughput of a backlog of small files landed at once (files per
minute from the first landing to the last commit, and each file's latency).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.data import small_files
from benchmarks.user_env import USER_BIN
from benchmarks.workers import committed, fresh_storage
from elt_assets.postgres.embedded import free_port

if TYPE_CHECKING:
    from benchmarks.run import Bench

ELT = USER_BIN / "elt"
WAIT_SECONDS = 900


class Dev:
    """An `elt dev` process and the landing directory it watches."""

    def __init__(self, bench: Bench, superuser_url: str):
        self.bench, self.root = bench, bench.state / "dev"
        shutil.rmtree(self.root, ignore_errors=True)
        self.landing = self.root / "landing" / "bench_orders"
        self.landing.mkdir(parents=True)
        fresh_storage(superuser_url, "bench_dev")
        dagster_url = bench.env["ELT_DAGSTER_DATABASE_URL"].rsplit("/", 1)[0] + "/bench_dev"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
        env = {
            **base,
            **bench.env,
            "ELT_DAGSTER_DATABASE_URL": dagster_url,
            "ELT_LANDING_DIR": str(self.root / "landing"),
            "ELT_CONTRACTS_DIR": str(bench.contracts),
            "ELT_STATE_DIR": str(self.root / "state"),
            "ELT_METRICS_PORT": "0",
            "ELT_LOG_FORMAT": "json",
        }
        self.log = (self.root / "dev.log").open("wb")
        self.process = subprocess.Popen(
            [str(ELT), "dev", "--port", str(free_port())],
            cwd=self.root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def land(self, source: Path) -> tuple[str, float]:
        """Copy a file in, as a user would; (its manifest name, when its writing ended)."""
        shutil.copyfile(source, self.landing / source.name)
        return f"bench_orders/{source.name}", time.time()

    def wait_committed(self, files: set[str]) -> dict[str, float]:
        """{file: commit time} once every one of `files` is loaded."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not files <= (done := committed(self.bench.owner_url)).keys():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "dev.log").read_text(errors="replace")[-4000:]
                raise SystemExit(f"elt dev stopped loading:\n{log}")
            time.sleep(0.2)
        return done

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def dev_scenario(
    bench: Bench, files: int, rows_per_file: int, superuser_url: str, alone: int = 5
) -> str:
    from benchmarks.run import reset_ours

    reset_ours(bench)
    paths = small_files(
        bench.state / "data" / f"small_{files + alone + 1}x{rows_per_file}",
        files + alone + 1,
        rows_per_file,
    )
    dev = Dev(bench, superuser_url)
    rng = random.Random(11)
    try:
        started = time.monotonic()
        first, _ = dev.land(paths[0])  # taken once the platform is up: start-up, not latency
        dev.wait_committed({first})
        ready = time.monotonic() - started
        latencies = []
        for path in paths[1 : alone + 1]:
            time.sleep(rng.uniform(0, 5))  # anywhere in the sensor's cycle
            file, landed = dev.land(path)
            latencies.append(dev.wait_committed({file})[file] - landed)
            print(f"  dev: {file} committed {latencies[-1]:.1f} s after landing", flush=True)
        landed_at = dict(dev.land(path) for path in paths[alone + 1 :])
        done = dev.wait_committed(set(landed_at))
    finally:
        dev.stop()
    backlog = sorted(done[file] - at for file, at in landed_at.items())
    span = max(done[file] for file in landed_at) - min(landed_at.values())
    return "\n".join(
        [
            f"`elt dev` (webserver, daemon, sensors ticking every pass of the daemon, a process "
            f"per run) over a landing directory; files of {rows_per_file:,} rows; "
            f"up and its first file loaded {ready:.0f} s after the start:",
            "",
            "| landed | files | landing -> last commit | files/minute | latency p50 | p95 | max |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| one at a time | {alone} | - | - | {statistics.median(latencies):.1f} s | - | "
            f"{max(latencies):.1f} s |",
            f"| all at once | {files:,} | {span:.0f} s | {files / span * 60:,.0f} | "
            f"{statistics.median(backlog):.0f} s | "
            f"{backlog[int(0.95 * (len(backlog) - 1))]:.0f} s | {backlog[-1]:.0f} s |",
        ]
    )
