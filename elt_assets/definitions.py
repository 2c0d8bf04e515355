"""The one entry point: `defs`, built from the contracts directory when Dagster loads the code.

Start reading here. For each valid contract: a dynamic partitions definition (one partition per
file), the raw -> staged -> target assets with their checks, an ingestion job that runs the three
in one process, a batch job that loads a backlog of files in one run (orchestration/batch.py), a
file sensor (on by default) and, if the contract sets freshness_hours, a freshness policy on the
target (evaluated by Dagster's daemon); once, the `prune_staging` job and its daily schedule
(orchestration/maintenance.py), and, when an alert channel is configured, the alert sensors
(orchestration/alerts.py). A broken contract becomes one visible "broken" asset whose
description and failure say what to fix; the other datasets load normally.

Importing this module reads nothing; the `@dg.definitions` function runs when Dagster loads it.
"""

import re
from typing import TYPE_CHECKING

import dagster as dg

from elt_assets.contracts.loader import ContractError, ContractSet, load_contracts
from elt_assets.contracts.model import Contract
from elt_assets.log import configure_logging
from elt_assets.orchestration.alerts import build_alert_sensors
from elt_assets.orchestration.assets import DatasetKeys, build_dataset_assets
from elt_assets.orchestration.batch import build_batch_job
from elt_assets.orchestration.checks import staged_check_specs
from elt_assets.orchestration.maintenance import build_prune_job, build_prune_schedule
from elt_assets.orchestration.names import DEFAULT_NAMING, Naming, ingest_job_name
from elt_assets.orchestration.partitions import files_partitions
from elt_assets.orchestration.resources import build_resources
from elt_assets.orchestration.sensors import Discovery, build_file_sensor
from elt_assets.settings import AlertSettings, Settings

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def ingest_job(
    contract: Contract, partitions: dg.PartitionsDefinition, naming: Naming = DEFAULT_NAMING
) -> "UnresolvedAssetJobDefinition":
    keys = DatasetKeys.of(contract, naming)
    return dg.define_asset_job(
        name=ingest_job_name(contract.name),
        # The assets and the file's own checks; the table's checks are recorded by the target
        # step after a load, never planned in a file's run (a failed file would mark them).
        selection=dg.AssetSelection.assets(keys.raw, keys.staged, keys.target).without_checks()
        | dg.AssetSelection.checks(
            *(spec.key for spec in staged_check_specs(contract, keys.staged, partitions))
        ),
        # The three steps of a file run in one process, one after the other: no process start per
        # step. Files run in parallel as separate runs (limited by the run queue and the pool).
        executor_def=dg.in_process_executor,
        description=f"Load one file of dataset {contract.name}: raw -> staged -> target.",
        tags={"elt/dataset": contract.name},
    )


def broken_contract_asset(
    error: ContractError, naming: Naming = DEFAULT_NAMING
) -> dg.AssetsDefinition:
    """A placeholder that shows a broken contract in the UI and fails with its error."""
    # Named after the file: two broken files may claim the same dataset name.
    name = re.sub(r"[^a-z0-9_]", "_", error.path.name.lower())

    @dg.asset(
        key=dg.AssetKey([*naming.key_prefix, "broken_contracts", name]),
        group_name="broken_contracts",
        description=f"BROKEN CONTRACT {error.path.name}: {error.message}. Fix the file; the "
        "dataset loads again when the code location is reloaded.",
        metadata={"contract_file": str(error.path), "error": error.message},
        kinds={"yaml"},
    )
    def broken() -> None:
        raise dg.Failure(
            description=f"contract {error.path.name} is broken: {error.message}",
            allow_retries=False,
        )

    return broken


def build_definitions(
    contract_set: ContractSet,
    settings: Settings | None = None,
    resources: dict[str, object] | None = None,
    discovery: Discovery | None = None,
    naming: Naming = DEFAULT_NAMING,
    alerts: AlertSettings | None = None,
) -> dg.Definitions:
    """The definitions of these contracts. Configuration enters here once: `settings` (default:
    the environment's) and the resources built from them (orchestration/resources.py), under
    `naming`'s keys; `elt ingest` passes its own resources and a headless discovery, the component
    its own resources, discovery and naming. With `alerts`, the alert sensors watch every
    dataset that has a channel (orchestration/alerts.py)."""
    settings = settings or Settings.from_env()
    resources = resources or build_resources(settings, naming=naming)
    discovery = discovery or Discovery.from_settings(settings)
    assets: list[dg.AssetsDefinition] = []
    jobs: list[UnresolvedAssetJobDefinition | dg.JobDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    for contract in contract_set.contracts:
        partitions = files_partitions(contract.name)
        assets.extend(build_dataset_assets(contract, partitions, naming))
        job = ingest_job(contract, partitions, naming)
        batch_job = build_batch_job(contract, partitions, resources, naming)
        jobs += [job, batch_job]
        sensors.append(build_file_sensor(contract, job, batch_job, partitions, discovery, naming))
    assets.extend(broken_contract_asset(error, naming) for error in contract_set.errors)
    if alerts is not None:
        interval = settings.sensor_interval_seconds
        sensors += build_alert_sensors(contract_set.contracts, jobs, alerts, interval, naming)
    schedules: list[dg.ScheduleDefinition] = []
    if contract_set.contracts:
        hours, days = settings.staging_retention_hours, settings.partition_retention_days
        prune_job = build_prune_job(contract_set.contracts, hours, naming, days)
        jobs.append(prune_job)
        if hours or days:
            schedules.append(build_prune_schedule(prune_job))
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        resources=resources,
    )


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    contract_set = load_contracts(settings.require_contracts_dir())
    return build_definitions(contract_set, settings, alerts=AlertSettings.from_env())
