"""One sensor tick over a big landing zone: N files already known, 100 new ones arriving.

The sensor learns the N files itself (one tick sees them, the next requests them all, with the
per-tick cap lifted for the setup); then 100 new files land and two ticks are timed: the one that
first sees them (they must be stable for a tick) and the one that requests them. Both walk the
whole landing zone and compare it with the sensor's memory in elt.landing_files.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    # The highest the setting allows; read when the definitions are built.
    os.environ["ELT_MAX_RUNS_PER_TICK"] = "10000"
    # New files wait for the tick after the one that first sees them, however long writing them
    # or a tick takes (a file 2 s old would be taken at first sight): the two ticks timed apart.
    os.environ["ELT_FILE_QUIET_SECONDS"] = "3600"
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


BUCKET_CONTRACT = CONTRACT.replace("bench_ticks", "bench_bucket_ticks").replace(
    "table: ticks", "table: bucket_ticks"
)


def _objects(start: int, count: int) -> dict[str, bytes]:
    return {
        f"bench_bucket_ticks/day_{n // 1000:04d}/file_{n:07d}.csv": f"id,label\n{n},x\n".encode()
        for n in range(start, start + count)
    }


def _seed_memory(url: str, contracts: Any, warehouse: Any, bodies: dict[str, bytes]) -> None:
    """Setup: the sensor's memory of objects it already sent to runs, as its own save function
    writes it after a tick, from a real listing and hashes of the bodies computed here. (Letting
    the sensor learn 100,000 objects itself reads each one: minutes against moto.)"""
    from elt_assets.landing.discovery import Decision, Observation
    from elt_assets.landing.objects import ObjectStore
    from elt_assets.postgres.landing_state import save_decision

    (contract,) = [c for c in contracts.contracts if c.name == "bench_bucket_ticks"]
    listed = ObjectStore(url).scan(contract.source.glob)
    assert len(listed) == len(bodies), (len(listed), len(bodies))
    decision = Decision(
        observations=[
            Observation(f, hashlib.sha256(bodies[f.relative_path]).hexdigest(), requested=True)
            for f in listed
        ]
    )
    with warehouse.connection() as connection:
        save_decision(connection, contract, decision)


def bucket_tick_scenario(bench: Bench, objects: int) -> str:
    """The same over objects in a bucket: a tick lists one share of the keys (10,000) and the
    next goes on from there, so new objects are requested within one pass over the bucket."""
    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions
    from elt_assets.orchestration.resources import landing_resource
    from elt_assets.postgres.resource import PostgresResource
    from elt_assets.settings import Settings

    bucket = bench.bucket
    assert bucket is not None
    os.environ.update({**bench.env, **bucket.env})
    os.environ["ELT_LANDING_DIR"] = bucket.url
    os.environ["ELT_CONTRACTS_DIR"] = str(bench.contracts)
    os.environ["ELT_MAX_RUNS_PER_TICK"] = "10000"  # the highest the setting allows
    (bench.contracts / "bench_bucket_ticks.yaml").write_text(BUCKET_CONTRACT)
    print(f"putting {objects:,} small objects into the bucket ...", flush=True)
    bucket.put_directly(_objects(0, objects))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        definitions = build_definitions(load_contracts(bench.contracts))
    sensor = definitions.resolve_sensor_def("bench_bucket_ticks_files")
    warehouse = PostgresResource.from_env()
    settings = Settings.from_env()
    share = settings.max_listed_per_tick
    ticks_per_pass = objects // share + 1
    cursor: list[str | None] = [None]

    def one_pass(instance: dg.DagsterInstance) -> tuple[list[float], int]:
        """Ticks over the whole bucket, share by share: each tick's seconds, runs requested."""
        seconds, requested = [], 0
        for _ in range(ticks_per_pass):
            resources = {"elt_landing": landing_resource(settings), "elt_warehouse": warehouse}
            started = time.perf_counter()
            with dg.build_sensor_context(
                instance=instance, resources=resources, cursor=cursor[0]
            ) as context:
                result = sensor(context)
            seconds.append(time.perf_counter() - started)
            assert isinstance(result, dg.SensorResult)
            cursor[0] = result.cursor or None
            for request in result.dynamic_partitions_requests or []:
                assert isinstance(request, dg.AddDynamicPartitionsRequest)
                instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            requested += len(result.run_requests or [])
        return seconds, requested

    with dg.DagsterInstance.ephemeral() as instance:
        print("  setup: the sensor's memory of the objects ...", flush=True)
        _seed_memory(bucket.url, load_contracts(bench.contracts), warehouse, _objects(0, objects))
        bucket.put_directly(_objects(objects, NEW_FILES))
        new_pass, new_requested = one_pass(instance)
        idle_pass, idle_requested = one_pass(instance)
    warehouse.close()
    listing = bucket.list_seconds("bench_bucket_ticks/", share)
    print(
        f"  bucket tick over {objects:,} known + {NEW_FILES} new: at most "
        f"{max(new_pass):.2f} s per tick, {sum(new_pass):.2f} s for the pass"
    )

    def row(what: str, seconds: list[float], requested: int) -> str:
        return (
            f"| {what} | {len(seconds)} | {sum(seconds):.2f} | {max(seconds):.2f} | {requested:,} |"
        )

    return "\n".join(
        [
            f"**Sensor ticks over {objects + NEW_FILES:,} objects in a bucket** (moto's S3 on "
            f"loopback; a tick lists {share:,} keys and the next goes on from there; listing "
            f"{share:,} keys through moto's API alone takes {listing:.2f} s; the sensor's "
            f"memory of the first {objects:,} was written before, with its own save function):",
            "",
            "| pass over the bucket | ticks | seconds, all ticks | slowest tick | runs requested |",
            "|---|---:|---:|---:|---:|",
            row(f"{NEW_FILES} new objects (requested as soon as listed)", new_pass, new_requested),
            row("nothing new", idle_pass, idle_requested),
            "",
        ]
    )
