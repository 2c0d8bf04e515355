"""The Celery deployment (deploy/celery) loading a backlog of small files with 1, then 2 workers.

Everything runs as in production, on this machine: the code server, the daemon and the workers as
separate processes (benchmarks/cluster.py) over a bucket (moto's S3 server) and the benchmark's
PostgreSQL, which also serves Dagster's storage and the Celery broker. The files are PUT into a
fresh prefix of the bucket once the deployment is up; each file's latency runs from its PUT to
the commit of its load (the manifest's finished_at), and throughput from the first PUT to the
last commit. Measured with the shipped sensor settings (a tick every 15 s taking up to 1,000
files) and with a tick every 5 s, with one worker and then two: the workers and the database are
the limit once a tick takes the whole backlog.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql

from benchmarks.bucket import BUCKET
from benchmarks.cluster import Machines, instance_config
from benchmarks.data import small_files
from elt_assets.postgres.connection import connect
from elt_assets.postgres.embedded import free_port

if TYPE_CHECKING:
    from benchmarks.bucket import BenchBucket
    from benchmarks.run import Bench

WAIT_SECONDS = 1800
SHIPPED = "shipped sensor (15 s, 1,000 files/tick)"
TAKES_ALL = "sensor every 5 s (1,000 files/tick)"
SENSORS = {
    SHIPPED: {},
    TAKES_ALL: {"ELT_SENSOR_INTERVAL_SECONDS": "5"},
}
# The shipped sensor with one worker; the faster tick with one, then two, shows what a second
# worker adds.
RUNS = [(SHIPPED, 1), (TAKES_ALL, 1), (TAKES_ALL, 2)]


def fresh_storage(superuser_url: str, name: str) -> None:
    """An empty database for Dagster's storage and the broker, owned by the dagster role."""
    with connect(superuser_url, setting="benchmark superuser") as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {} OWNER dagster").format(sql.Identifier(name)))


def committed(owner_url: str) -> dict[str, float]:
    """{file: finished_at in epoch seconds} of every loaded benchmark file."""
    with connect(owner_url, setting="benchmark owner") as connection:
        rows = connection.execute(
            "SELECT file, extract(epoch FROM finished_at)::float8 FROM elt.ingestion_manifest "
            "WHERE dataset = 'bench_orders' AND status = 'success'"
        ).fetchall()
    return {str(file): float(finished) for file, finished in rows}


def _wait_ready(machines: Machines, workers: list[str]) -> None:
    """Until every worker takes tasks (the code server and the daemon start meanwhile)."""
    deadline = time.monotonic() + 120
    while not all(
        f" {name}@" in machines.log(f"worker-{name}")
        and " ready." in machines.log(f"worker-{name}")
        for name in workers
    ):
        if machines.dead() or time.monotonic() > deadline:
            raise SystemExit(f"the deployment did not start:\n{machines.logs()}")
        time.sleep(0.5)


def _one_run(
    bench: Bench,
    bucket: BenchBucket,
    paths: list[Path],
    workers: int,
    sensor: dict[str, str],
    superuser_url: str,
) -> dict[str, float]:
    from benchmarks.run import reset_ours

    reset_ours(bench)
    storage = f"bench_workers_{workers}"
    fresh_storage(superuser_url, storage)
    prefix = f"workers-{workers}-{int(time.time())}"
    dagster_url = bench.env["ELT_DAGSTER_DATABASE_URL"].rsplit("/", 1)[0] + f"/{storage}"
    env = {
        **bench.env,
        **bucket.env,
        **sensor,
        "ELT_DAGSTER_DATABASE_URL": dagster_url,
        "ELT_LANDING_DIR": f"s3://{BUCKET}/{prefix}",
        "ELT_LOG_FORMAT": "json",
    }
    machines = Machines.prepare(
        bench.state / "machines" / prefix, bench.contracts, env, instance_config()
    )
    try:
        names = [f"w{n}" for n in range(workers)]
        machines.start_deployment(names, free_port())
        _wait_ready(machines, names)
        client, landed = bucket.client(), {}
        for path in paths:
            landed[f"bench_orders/{path.name}"] = time.time()
            client.put_object(
                Bucket=BUCKET, Key=f"{prefix}/bench_orders/{path.name}", Body=path.read_bytes()
            )
        deadline = time.monotonic() + WAIT_SECONDS
        while len(done := committed(bench.owner_url)) < len(paths):
            if machines.dead() or time.monotonic() > deadline:
                raise SystemExit(f"the deployment stopped loading:\n{machines.logs()}")
            time.sleep(1)
    finally:
        machines.stop()
    latencies = sorted(done[file] - landed[file] for file in landed)
    span = max(done.values()) - min(landed.values())
    return {
        "files_per_minute": len(paths) / span * 60,
        "seconds": span,
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
    }


def workers_scenario(
    bench: Bench,
    bucket: BenchBucket,
    files: int,
    rows_per_file: int,
    superuser_url: str,
    runs: list[tuple[str, int]] = RUNS,
) -> str:
    paths = small_files(
        bench.state / "data" / f"small_{files}x{rows_per_file}", files, rows_per_file
    )
    lines = [
        f"Celery deployment, {files:,} files x {rows_per_file:,} rows PUT into a bucket, "
        "code server + daemon + N workers as separate processes on this 2-core machine:",
        "",
        "| sensor | workers | landing -> last commit | files/minute | latency p50 | p95 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, workers in runs:
        print(f"workers: {workers}, {label} ...", flush=True)
        result = _one_run(bench, bucket, paths, workers, SENSORS[label], superuser_url)
        print(f"  {result['seconds']:.0f} s", flush=True)
        lines.append(
            f"| {label} | {workers} | {result['seconds']:.0f} s | "
            f"{result['files_per_minute']:,.0f} | {result['p50']:.0f} s | "
            f"{result['p95']:.0f} s |"
        )
    return "\n".join(lines)
