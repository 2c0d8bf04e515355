"""The names the platform gives Dagster objects and run tags: one home, so the sensor, the jobs
and `elt ingest` cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from elt_assets.landing.keys import key_to_path

# Resource keys: prefixed, so a user's own `warehouse` or `landing` resource never collides.
WAREHOUSE_KEY = "elt_warehouse"
LANDING_KEY = "elt_landing"
STAGING_IO_MANAGER_KEY = "elt_staging_io_manager"

WAREHOUSE_POOL = "warehouse"
PRUNE_JOB = "prune_staging"


@dataclass(frozen=True)
class TableAttributes:
    """What a component instance adds to each target table's asset, for Dagster's own features:
    more kinds (beside postgres), an automation condition, and a freshness policy for the
    datasets whose contract sets no `freshness_hours` (a contract's own comes first)."""

    kinds: tuple[str, ...] = ()
    automation_condition: dg.AutomationCondition | None = None
    freshness_policy: dg.FreshnessPolicy | None = None


@dataclass(frozen=True)
class Naming:
    """What one set of definitions calls the objects its datasets share: the resource keys,
    the concurrency pool, the maintenance job, a prefix for every asset key, and what it adds
    to each table's asset.

    The platform (`elt dev`, `elt ingest`, the Docker image) uses the defaults. Each instance of
    the component passes a `suffix` of its own, so two instances and a project's own
    definitions never collide.
    """

    suffix: str = ""
    pool: str = WAREHOUSE_POOL
    key_prefix: tuple[str, ...] = ()
    table: TableAttributes = TableAttributes()

    def _named(self, base: str) -> str:
        return f"{base}_{self.suffix}" if self.suffix else base

    @property
    def warehouse_key(self) -> str:
        return self._named(WAREHOUSE_KEY)

    @property
    def landing_key(self) -> str:
        return self._named(LANDING_KEY)

    @property
    def staging_io_manager_key(self) -> str:
        return self._named(STAGING_IO_MANAGER_KEY)

    @property
    def prune_job(self) -> str:
        return self._named(PRUNE_JOB)

    @property
    def prune_op(self) -> str:
        return self._named("prune_staging_slices")

    def alert_sensor(self, role: str) -> str:
        return self._named(f"elt_alerts_{role}")


DEFAULT_NAMING = Naming()  # the platform's own


# Tags on the runs of a file or a batch.
SHA_TAG = "elt/sha256"
FILE_TAG = "elt/file"
DATASET_TAG = "elt/dataset"
RELOAD_OF_TAG = "elt/reload_of"  # the run that ended without finishing the file
# "true" on the runs of `elt ingest --reload`: a file loaded before by another run loads again.
RELOAD_TAG = "elt/reload"
BATCH_TAG = "elt/batch"  # "true" on batch runs
BATCH_FILES_TAG = "elt/batch_files"  # how many files the run loads
# "false" on the runs of `elt ingest` without DAGSTER_HOME: their instance ends with the process,
# so a batch run writes no per-file events no one could see (orchestration/batch.py).
FILE_EVENTS_TAG = "elt/file_events"
# Set on runs `elt ingest` executes in process: "host:pid", for people reading the run.
PROCESS_TAG = "elt/process"
# Set beside it when that process holds a lease of its own for its whole life (postgres/lease.py
# `hold_process_lease`): from another host, a free lease says the process is gone.
PROCESS_LEASE_TAG = "elt/process_lease"
# Tags Dagster itself sets on runs (dagster._core.storage.tags).
WILL_RETRY_TAG = "dagster/will_retry"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
RUN_KEY_TAG = "dagster/run_key"


def ingest_job_name(dataset: str) -> str:
    return f"ingest_{dataset}"


def batch_job_name(dataset: str) -> str:
    return f"ingest_{dataset}_batch"


def batch_op_name(dataset: str) -> str:
    return f"load_{dataset}_files"


def sensor_name(dataset: str) -> str:
    return f"{dataset}_files"


def files_partitions_name(dataset: str) -> str:
    return f"{dataset}_files"


def request_files(request: dg.RunRequest, dataset: str) -> list[str]:
    """The landed files a run request loads: its file tag, or its batch's partition keys."""
    if FILE_TAG in request.tags:
        return [request.tags[FILE_TAG]]
    if request.partition_key is not None:
        return [key_to_path(request.partition_key)]
    config = request.run_config.get("ops", {}).get(batch_op_name(dataset), {}).get("config", {})
    return [key_to_path(key) for key in config.get("partition_keys", [])]
