"""File-arrival sensors, one per dataset, on by default.

A sensor only decides (landing/discovery.py): it scans the dataset's glob, adds a partition per new
file and requests a run per new content, with a run key of path and sha256 so the same content is
never run twice by the sensor, while a file whose content changes runs again. Its memory lives in
elt.landing_files, so the cursor stays a few bytes whatever the number of files.
"""

import json
import time
from typing import TYPE_CHECKING

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.defs.resources import LandingZone
from elt_assets.landing.discovery import discover
from elt_assets.landing.keys import path_to_key
from elt_assets.postgres.landing_state import load_known, loaded_content, save_decision
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import Settings

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

SHA_TAG = "elt/sha256"
FILE_TAG = "elt/file"
DATASET_TAG = "elt/dataset"


def build_file_sensor(
    contract: Contract,
    job: "UnresolvedAssetJobDefinition",
    partitions: dg.DynamicPartitionsDefinition,
) -> dg.SensorDefinition:
    settings = Settings.from_env(check_dirs=False)
    partitions_name = partitions.name
    assert partitions_name is not None

    @dg.sensor(
        name=f"{contract.name}_files",
        job=job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Watches `{contract.source.glob}` in the landing directory. A file is taken once its "
            "size and mtime stay the same across two ticks; new content becomes a partition and a "
            "run; content already loaded under another name is recorded as a duplicate."
        ),
    )
    def file_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone, warehouse: PostgresResource
    ) -> dg.SensorResult:
        started = time.monotonic()
        limits = Settings.from_env(check_dirs=False)
        root = landing.root()
        with warehouse.connection() as connection:
            decision = discover(
                root,
                contract.source.glob,
                load_known(connection, contract.name),
                lambda hashes: loaded_content(connection, contract.name, hashes),
                max_requests=limits.max_runs_per_tick,
            )
            save_decision(connection, contract, decision)
        requests = [
            dg.RunRequest(
                run_key=f"{path_to_key(landed.relative_path)}@{sha}",
                partition_key=path_to_key(landed.relative_path),
                tags={SHA_TAG: sha, FILE_TAG: landed.relative_path, DATASET_TAG: contract.name},
            )
            for landed, sha in decision.requests
        ]
        new_keys = [r.partition_key for r in requests if r.partition_key]
        existing = set(context.instance.get_dynamic_partitions(partitions_name))
        to_add = sorted({k for k in new_keys if k not in existing})
        summary = {
            "files_seen": decision.files_seen,
            "requested": len(requests),
            "duplicates": len(decision.duplicates),
            "waiting_for_stable": decision.waiting_for_stable,
            "deferred_to_next_tick": decision.deferred,
            "tick_seconds": round(time.monotonic() - started, 3),
        }
        if requests or decision.duplicates or decision.deferred:
            context.log.info(f"{contract.name}: {summary}")
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[partitions.build_add_request(to_add)] if to_add else [],
            cursor=json.dumps(summary, sort_keys=True),
        )

    return file_sensor
