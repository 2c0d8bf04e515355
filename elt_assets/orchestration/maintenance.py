"""Housekeeping: job `prune_staging` and its daily schedule (on by default).

Deletes the staging slices of files whose latest load ended more than
ELT_STAGING_RETENTION_HOURS ago (postgres/retention.py), so staging does not keep a second copy
of every file ever loaded; and removes the Dagster partitions of files whose load ended more than
ELT_PARTITION_RETENTION_DAYS ago, so a dataset that receives a file a minute stays well below the
100,000 partitions beyond which Dagster's UI slows. A removed partition's file keeps its manifest
row, quarantine and rows; new content of it (or a run for it) adds the partition again. Run it from
the UI at any time; both settings at 0 keep everything (no schedule then).
"""

# No `from __future__ import annotations`: Dagster reads the op's resource annotations at runtime.
from collections.abc import Sequence

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.orchestration.assets import RETRY_POLICY
from elt_assets.orchestration.names import DEFAULT_NAMING, Naming, files_partitions_name
from elt_assets.orchestration.resources import warehouse_of
from elt_assets.postgres.retention import expired_partitions, prune_staging

PRUNE_CRON = "17 3 * * *"  # daily, at a quiet hour, off the full hour most jobs start on


def _remove_partitions(context: dg.OpExecutionContext, contract: Contract, keys: list[str]) -> int:
    """Remove those of `keys` that are partitions of the dataset now; how many were."""
    name = files_partitions_name(contract.name)
    present = set(context.instance.get_dynamic_partitions(name))
    removed = [key for key in keys if key in present]
    for key in removed:
        context.instance.delete_dynamic_partition(name, key)
    return len(removed)


def build_prune_job(
    contracts: Sequence[Contract],
    retention_hours: int,
    naming: Naming = DEFAULT_NAMING,
    partition_retention_days: int = 0,
) -> dg.JobDefinition:
    @dg.op(
        name=naming.prune_op,
        retry_policy=RETRY_POLICY,
        pool=naming.pool,
        required_resource_keys={naming.warehouse_key},
        description="Delete the staging slices of files loaded (or failed) longer ago than "
        "ELT_STAGING_RETENTION_HOURS, and remove the partitions of files loaded longer ago than "
        "ELT_PARTITION_RETENTION_DAYS, for every dataset; the landed files stay the source.",
    )
    def prune(context: dg.OpExecutionContext) -> dg.Output[None]:
        hours, days = retention_hours, partition_retention_days
        warehouse = warehouse_of(context, naming)
        metadata: dict[str, int] = {}
        with warehouse.connection() as connection:
            for contract in contracts:
                if hours:
                    pruned = prune_staging(connection, contract, hours)
                    context.log.info(
                        f"{pruned.dataset}: deleted the staging slices of {pruned.files} files "
                        f"({pruned.rows} rows) whose load ended over {hours} h ago"
                    )
                    metadata[f"{pruned.dataset}.files"] = pruned.files
                    metadata[f"{pruned.dataset}.rows"] = pruned.rows
                if days:
                    keys = expired_partitions(connection, contract, days)
                    removed = _remove_partitions(context, contract, keys)
                    context.log.info(
                        f"{contract.name}: removed {removed} partitions of files whose load "
                        f"ended over {days} days ago (manifest, quarantine and rows stay)"
                    )
                    metadata[f"{contract.name}.partitions_removed"] = removed
        if not hours:
            context.log.info("ELT_STAGING_RETENTION_HOURS=0: staging slices are kept forever")
        if not days:
            context.log.info("ELT_PARTITION_RETENTION_DAYS=0: partitions are kept forever")
        return dg.Output(None, metadata=metadata)  # shown on the step in the run view

    @dg.job(
        name=naming.prune_job,
        description="Delete staging slices past ELT_STAGING_RETENTION_HOURS and remove "
        "partitions past ELT_PARTITION_RETENTION_DAYS (daily).",
        tags={"elt/maintenance": "true"},
    )
    def prune_job() -> None:
        prune()

    return prune_job


def build_prune_schedule(job: dg.JobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"{job.name}_daily",
        job=job,
        cron_schedule=PRUNE_CRON,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Prunes staging slices and old files' partitions once a day "
        "(ELT_STAGING_RETENTION_HOURS, ELT_PARTITION_RETENTION_DAYS).",
    )
