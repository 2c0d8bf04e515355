"""One sensor tick over a big landing zone: N files already known, 100 new ones arriving.

The sensor learns the N files itself (one tick sees them, the next requests them all, with the
per-tick cap lifted for the setup); then 100 new files land and two ticks are timed: the one that
first sees them (they must be stable for a tick) and the one that requests them. Both walk the
whole landing zone and compare it with the sensor's memory in elt.landing_files.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from benchmarks.run import Bench

CONTRACT = """\
name: bench_ticks
source: {glob: "bench_ticks/**/*.csv"}
target: {schema: bench, table: ticks, primary_key: [id]}
columns:
  - {name: id, type: bigint, nullable: false}
  - {name: label, type: text}
"""
NEW_FILES = 100


def _write_files(root: Path, start: int, count: int) -> None:
    for number in range(start, start + count):
        folder = root / f"day_{number // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file_{number:07d}.csv").write_text(f"id,label\n{number},x\n")


def tick_scenario(bench: Bench, files: int) -> str:
    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions
    from elt_assets.orchestration.resources import landing_resource
    from elt_assets.postgres.resource import PostgresResource
    from elt_assets.settings import Settings

    os.environ.update(bench.env)
    os.environ["ELT_LANDING_DIR"] = str(bench.landing)
    os.environ["ELT_CONTRACTS_DIR"] = str(bench.contracts)
    (bench.contracts / "bench_ticks.yaml").write_text(CONTRACT)
    print(f"writing {files:,} small files ...", flush=True)
    _write_files(bench.landing / "bench_ticks", 0, files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        definitions = build_definitions(load_contracts(bench.contracts))
    sensor = definitions.resolve_sensor_def("bench_ticks_files")
    warehouse = PostgresResource.from_env()

    def tick(instance: dg.DagsterInstance) -> tuple[float, int]:
        resources = {
            "elt_landing": landing_resource(Settings.from_env()),
            "elt_warehouse": warehouse,
        }
        started = time.perf_counter()
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = sensor(context)
        seconds = time.perf_counter() - started
        assert isinstance(result, dg.SensorResult)
        for request in result.dynamic_partitions_requests or []:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return seconds, len(result.run_requests or [])

    os.environ["ELT_MAX_RUNS_PER_TICK"] = "10000"  # the highest the setting allows
    with dg.DagsterInstance.ephemeral() as instance:
        print("  setup: the sensor learns the files ...", flush=True)
        see_all, _ = tick(instance)
        request_all, requested = 0.0, 0
        for _ in range(files // 10_000 + 5):
            seconds, count = tick(instance)
            if count == 0:
                break
            request_all, requested = request_all + seconds, requested + count
        _write_files(bench.landing / "bench_ticks", files, NEW_FILES)
        sees, _ = tick(instance)
        requests, new_requests = tick(instance)
        idle, idle_requests = tick(instance)
    warehouse.close()
    print(f"  tick over {files:,} known + {NEW_FILES} new: {sees:.2f} s, then {requests:.2f} s")
    return "\n".join(
        [
            f"**Sensor tick over {files + NEW_FILES:,} landed files** ({files:,} known, "
            f"{NEW_FILES} new):",
            "",
            "| tick | seconds | runs requested |",
            "|---|---:|---:|",
            f"| setup: first sight of {files:,} files | {see_all:.2f} | 0 |",
            f"| setup: hash and request all {files:,} (several ticks, 10,000 per tick) | "
            f"{request_all:.2f} | {requested:,} |",
            f"| {NEW_FILES} new files appear (waiting to be stable) | {sees:.2f} | 0 |",
            f"| {NEW_FILES} new files requested | {requests:.2f} | {new_requests} |",
            f"| nothing new | {idle:.2f} | {idle_requests} |",
            "",
        ]
    )
