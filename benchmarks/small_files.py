"""Many small files from landing to table: the sensor's run requests and the batch job, timed;
then `elt ingest` as a user runs it beside the hand-written loop (benchmarks/small_loop.py).

`files` CSV files of `rows_per_file` orders each (benchmarks/data.py `small_files`) are hard-linked
into an empty landing folder of dataset bench_orders. Then, as the daemon would but without its
pauses between ticks: the real sensor ticks (the first only sees the files, the stable-file rule);
every run a tick requests is executed in this process with its job's `execute_in_process`, its
run config and tags, on a Dagster instance stored in PostgreSQL as in production (the shipped
dagster.yaml); ticks go on until nothing is left. Runs execute one after the other here, while the
daemon runs up to two batches at once (the `warehouse` pool), so this is the one-worker time.

Per-file overhead is what each file costs beyond reading, validating and writing its rows: the
end-to-end time minus the staged and target steps' own measured seconds, per file.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from benchmarks.data import small_files
from benchmarks.user_env import USER_PYTHON

if TYPE_CHECKING:
    from benchmarks.run import Bench

ROOT = Path(__file__).resolve().parent.parent


def _land(bench: Bench, files: int, rows_per_file: int) -> None:
    folder = bench.landing / "bench_orders"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"generating {files:,} files of {rows_per_file:,} rows ...", flush=True)
    for path in small_files(
        bench.state / "data" / f"small_{files}x{rows_per_file}", files, rows_per_file
    ):
        os.link(path, folder / path.name)


def _instance(home: Path) -> dg.DagsterInstance:
    """An instance like production's: the shipped dagster.yaml, storage in PostgreSQL."""
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def _step_seconds(instance: dg.DagsterInstance) -> tuple[float, float]:
    """Seconds the staged and target steps measured themselves, summed over every file."""
    totals: dict[str, float] = {"seconds_stage": 0.0, "seconds_load": 0.0}
    for asset, field in (
        (("staged", "bench_orders"), "seconds_stage"),
        (("bench", "orders"), "seconds_load"),
    ):
        cursor = None
        while True:
            page = instance.fetch_materializations(
                dg.AssetKey(list(asset)), limit=10_000, cursor=cursor
            )
            for record in page.records:
                materialization = record.asset_materialization
                assert materialization is not None
                value = materialization.metadata.get(field)
                if value is not None and isinstance(value.value, int | float):
                    totals[field] += float(value.value)
            if not page.has_more:
                break
            cursor = page.cursor
    return totals["seconds_stage"], totals["seconds_load"]


def run_backlog(bench: Bench, instance: dg.DagsterInstance) -> dict[str, Any]:
    """Tick the real sensor and execute what it requests until the backlog is gone."""
    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions
    from elt_assets.orchestration.resources import landing_resource
    from elt_assets.postgres.resource import PostgresResource
    from elt_assets.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        definitions = build_definitions(load_contracts(bench.contracts))
    sensor = definitions.resolve_sensor_def("bench_orders_files")
    warehouse = PostgresResource.from_env()
    stats: dict[str, Any] = {"ticks": 0, "tick_seconds": 0.0, "runs": Counter(), "failed": 0}
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    started = time.perf_counter()
    idle = 0
    while idle < 2:  # the first tick only sees the files; stop after two with nothing to do
        tick_started = time.perf_counter()
        resources = {
            "elt_landing": landing_resource(Settings.from_env()),
            "elt_warehouse": warehouse,
        }
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        for add in result.dynamic_partitions_requests or []:
            assert isinstance(add, dg.AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
        stats["ticks"] += 1
        stats["tick_seconds"] += time.perf_counter() - tick_started
        requests = list(result.run_requests or [])
        idle = 0 if requests else idle + 1
        for request in requests:
            assert request.job_name is not None
            job = definitions.resolve_job_def(request.job_name)
            run = job.execute_in_process(
                run_config={**quiet, **request.run_config},
                tags=dict(request.tags),
                partition_key=request.partition_key,
                instance=instance,
                raise_on_error=False,
            )
            stats["runs"][request.job_name] += 1
            stats["failed"] += 0 if run.success else 1
            print(f"  run {request.job_name} {dict(request.tags)}: {run.success}", flush=True)
    stats["seconds"] = time.perf_counter() - started
    warehouse.close()
    return stats


def as_users_run_it(bench: Bench, files: int, rows_per_file: int) -> list[str]:
    """`elt ingest` over the same landing folder as a user runs it (its own process, start-up
    included, no DAGSTER_HOME), beside the hand-written loop (benchmarks/small_loop.py) and, when
    the `bench` group installed it, dlt (one run over all files, and one run per file), each
    timed from process start to exit; every table compared row for row with the loop's."""
    from benchmarks.run import (
        DLT_TABLE,
        dlt_argv,
        dlt_available,
        ingest_argv,
        reset_dlt,
        reset_ours,
        same_table,
        timed,
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env.update(bench.env)
    folder = bench.landing / "bench_orders"
    loop = [str(USER_PYTHON), "-m", "benchmarks.small_loop", bench.owner_url, "limit_small"]
    paths = sorted(folder.iterdir())
    runs: dict[str, list[float]] = {}
    rows = 0
    for round_number in range(bench.rounds):  # taking turns; each reported time is the median
        reset_ours(bench)
        runs.setdefault("hand-written loop", []).append(
            timed([*loop, str(folder)], env, "the loop")[0]
        )
        runs.setdefault("elt ingest", []).append(timed(ingest_argv(bench), env, "elt ingest")[0])
        rows = same_table(bench.owner_url, "bench.orders", "limit_small")
        if not dlt_available():
            continue
        shapes = [("dlt, one run", False)]
        if round_number == 0:  # a run per file takes minutes: once shows its order of magnitude
            shapes.append(("dlt, a run per file", True))
        for name, per_file in shapes:
            argv = dlt_argv(bench, reset_dlt(bench), paths, per_file)
            runs.setdefault(name, []).append(timed(argv, env, name)[0])
            same_table(bench.owner_url, DLT_TABLE, "limit_small")
    seconds = {name: statistics.median(values) for name, values in runs.items()}
    for name, value in seconds.items():
        print(f"  {name}: {files:,} files in {value:.1f} s", flush=True)

    def cell(name: str) -> str:
        value = seconds.get(name)
        return f"{value:.2f} s ({files / value:,.0f} files/s)" if value else "-"

    ours, loop_seconds = seconds["elt ingest"], seconds["hand-written loop"]
    return [
        "",
        f"As a user runs it (a fresh process each, start-up included, {_runs(bench.rounds)}, "
        f"tables identical: {rows:,} rows):",
        "",
        "| files x rows | hand-written loop | dlt, one run | dlt, a run per file | "
        "`elt ingest` | ratio to the loop |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {files:,} x {rows_per_file:,} | {cell('hand-written loop')} | {cell('dlt, one run')} "
        f"| {cell('dlt, a run per file')} | {cell('elt ingest')} | {ours / loop_seconds:.1f}x |",
    ]


def _runs(rounds: int) -> str:
    if rounds == 1:
        return "one run"
    return f"each time the median of {rounds} rounds taking turns (dlt's run per file: once)"


def small_files_scenario(bench: Bench, files: int, rows_per_file: int) -> str:
    from benchmarks.run import reset_ours
    from elt_assets.postgres.connection import connect

    os.environ.update(bench.env)
    os.environ["ELT_LANDING_DIR"] = str(bench.landing)
    os.environ["ELT_CONTRACTS_DIR"] = str(bench.contracts)
    reset_ours(bench)
    _land(bench, files, rows_per_file)
    with tempfile.TemporaryDirectory() as home, _instance(Path(home)) as instance:
        print(f"loading {files:,} files through the sensor and batch runs ...", flush=True)
        stats = run_backlog(bench, instance)
        stage, load = _step_seconds(instance)
    with connect(bench.owner_url, setting="benchmark owner") as connection:
        loaded = connection.execute("SELECT count(*) FROM bench.orders").fetchone()
        statuses: dict[str, int] = dict(
            connection.execute(
                "SELECT status, count(*) FROM elt.ingestion_manifest "
                "WHERE dataset = 'bench_orders' GROUP BY status"
            ).fetchall()
        )
    seconds = stats["seconds"]
    rows = files * rows_per_file
    overhead = (seconds - stage - load) / files
    runs = ", ".join(f"{n} x {job}" for job, n in sorted(stats["runs"].items()))
    print(f"  {files:,} files in {seconds:.1f} s ({runs}); manifest {statuses}", flush=True)
    check = (
        "all loaded"
        if loaded and loaded[0] == rows and statuses == {"success": files}
        else (f"NOT all loaded: {loaded and loaded[0]} rows, manifest {statuses}")
    )
    return "\n".join(
        [
            f"**{files:,} small files** ({rows_per_file:,} rows each) from landing to table: real "
            f"sensor ticks, then each requested run executed in process, one after the other, on "
            f"a PostgreSQL-backed Dagster instance; default settings ({runs}; {check}).",
            "",
            "| files | rows | seconds | files / minute | per file | staged + target steps "
            "per file | per-file overhead | sensor ticks (seconds) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {files:,} | {rows:,} | {seconds:.1f} | {files / seconds * 60:,.0f} | "
            f"{seconds / files * 1000:.0f} ms | {(stage + load) / files * 1000:.0f} ms | "
            f"{overhead * 1000:.0f} ms | {stats['ticks']} ({stats['tick_seconds']:.1f}) |",
            *as_users_run_it(bench, files, rows_per_file),
            "",
        ]
    )
