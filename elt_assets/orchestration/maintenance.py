"""Housekeeping: job `prune_staging` and its daily schedule (on by default).

Deletes the staging slices of files whose latest load ended more than
ELT_STAGING_RETENTION_HOURS ago (postgres/retention.py), so staging does not keep a second copy
of every file ever loaded. Run it from the UI at any time; ELT_STAGING_RETENTION_HOURS=0 keeps
slices forever (no schedule then).
"""

# No `from __future__ import annotations`: Dagster reads the op's resource annotations at runtime.
from collections.abc import Sequence

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.orchestration.assets import RETRY_POLICY
from elt_assets.orchestration.names import DEFAULT_NAMING, Naming
from elt_assets.orchestration.resources import warehouse_of
from elt_assets.postgres.retention import prune_staging

PRUNE_CRON = "17 3 * * *"  # daily, at a quiet hour, off the full hour most jobs start on


def build_prune_job(
    contracts: Sequence[Contract], retention_hours: int, naming: Naming = DEFAULT_NAMING
) -> dg.JobDefinition:
    @dg.op(
        name=naming.prune_op,
        retry_policy=RETRY_POLICY,
        pool=naming.pool,
        required_resource_keys={naming.warehouse_key},
        description="Delete the staging slices of files loaded (or failed) longer ago than "
        "ELT_STAGING_RETENTION_HOURS, for every dataset; the landed files stay the source.",
    )
    def prune(context: dg.OpExecutionContext) -> dg.Output[None]:
        hours, warehouse = retention_hours, warehouse_of(context, naming)
        if hours == 0:
            context.log.info("ELT_STAGING_RETENTION_HOURS=0: staging slices are kept forever")
            return dg.Output(None)
        metadata: dict[str, int] = {}
        with warehouse.connection() as connection:
            for contract in contracts:
                pruned = prune_staging(connection, contract, hours)
                context.log.info(
                    f"{pruned.dataset}: deleted the staging slices of {pruned.files} files "
                    f"({pruned.rows} rows) whose load ended over {hours} h ago"
                )
                metadata[f"{pruned.dataset}.files"] = pruned.files
                metadata[f"{pruned.dataset}.rows"] = pruned.rows
        return dg.Output(None, metadata=metadata)  # shown on the step in the run view

    @dg.job(
        name=naming.prune_job,
        description="Delete staging slices past ELT_STAGING_RETENTION_HOURS (daily).",
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
        description="Prunes staging slices once a day (ELT_STAGING_RETENTION_HOURS).",
    )
