"""The three assets of a dataset, all partitioned by file: raw -> staged -> target.

raw/<dataset>_files
    the landed file itself: observed (size, sha256, mtime), never copied.
staged/<dataset>_staging
    the file parsed in bounded batches, cast to the contract's types, validated; written by the
    staging IO manager with COPY; blocking checks gate the target.
<schema>/<table>
    the file's rows upserted on the primary key (or appended once, or merged into a history of
    versions), with the manifest's `success` in the same transaction.

The UI titles a node by its key's last part, so the three read "<dataset>_files",
"<dataset>_staging" and the table's name. The work of each step lives in orchestration/steps.py,
shared with the batch job (orchestration/batch.py).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.landing.keys import key_to_path
from elt_assets.log import log_context
from elt_assets.orchestration import checks, steps
from elt_assets.orchestration.names import DEFAULT_NAMING, Naming, ingest_job_name
from elt_assets.orchestration.resources import landing_of, warehouse_of
from elt_assets.orchestration.table_schema import column_schema
from elt_assets.postgres.failures import file_failures
from elt_assets.postgres.io_manager import DATASET_METADATA
from elt_assets.postgres.staging import STRAIGHT_INTO_ROWS_BYTES
from elt_assets.postgres.templates import STAGING_SCHEMA

# Transient database trouble is retried with exponential backoff and jitter; terminal errors
# raise Failure(allow_retries=False) and are not retried (see failures.py).
RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass(frozen=True)
class DatasetKeys:
    raw: dg.AssetKey
    staged: dg.AssetKey
    target: dg.AssetKey

    @classmethod
    def of(cls, contract: Contract, naming: Naming = DEFAULT_NAMING) -> "DatasetKeys":
        # The UI titles a node by the key's last part: three distinct, telling titles.
        prefix = list(naming.key_prefix)
        return cls(
            raw=dg.AssetKey([*prefix, "raw", f"{contract.name}_files"]),
            staged=dg.AssetKey([*prefix, "staged", f"{contract.name}_staging"]),
            target=dg.AssetKey([*prefix, contract.target.schema_, contract.target.table]),
        )


def column_lineage(contract: Contract, keys: DatasetKeys) -> dg.TableColumnLineage:
    """Each target column comes from the staged column of the same name (the UI's lineage)."""
    return dg.TableColumnLineage(
        deps_by_column={
            column.name: [dg.TableColumnDep(asset_key=keys.staged, column_name=column.name)]
            for column in contract.table_columns
        }
    )


def _raw_kinds(contract: Contract) -> set[str]:
    if contract.source.format is not None:
        return {contract.source.format}
    pattern = contract.source.glob.lower()
    kinds = {kind for kind in ("csv", "parquet") if kind in pattern}
    return kinds or {"csv", "parquet"}


def build_dataset_assets(
    contract: Contract, partitions: dg.DynamicPartitionsDefinition, naming: Naming = DEFAULT_NAMING
) -> list[dg.AssetsDefinition]:
    keys = DatasetKeys.of(contract, naming)
    return [
        _raw_asset(contract, keys, partitions, naming),
        _staged_asset(contract, keys, partitions, naming),
        _target_asset(contract, keys, partitions, naming),
    ]


def _raw_asset(
    contract: Contract,
    keys: DatasetKeys,
    partitions: dg.DynamicPartitionsDefinition,
    naming: Naming,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=keys.raw,
        partitions_def=partitions,
        group_name=contract.group_name,
        owners=contract.owners,
        tags=contract.tags,
        required_resource_keys={naming.landing_key, naming.warehouse_key},
        kinds=_raw_kinds(contract) | {"file"},
        retry_policy=RETRY_POLICY,
        description=(
            f"Files landing under `{contract.source.glob}` for dataset {contract.name}, one "
            "partition per file. Materialising records the file's size, mtime and sha256 and "
            "opens its manifest row; the file itself is never copied or changed (with "
            "ELT_ARCHIVE_DIR set, it is moved there once loaded)."
        ),
        metadata={"glob": contract.source.glob},
    )
    def raw(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        landing, warehouse = landing_of(context, naming), warehouse_of(context, naming)
        file = key_to_path(context.partition_key)
        run_id = context.run.run_id
        with (
            log_context(dataset=contract.name, file=file, run_id=run_id),
            file_failures(warehouse, None, run_id),
        ):
            raw = steps.describe_raw(contract, landing.zone(), file)
            steps.start_raw(warehouse, contract, raw, context.partition_key, run_id)
        return dg.MaterializeResult(metadata=raw.metadata())

    return raw


def _staged_asset(
    contract: Contract,
    keys: DatasetKeys,
    partitions: dg.DynamicPartitionsDefinition,
    naming: Naming,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=keys.staged,
        deps=[keys.raw],
        partitions_def=partitions,
        group_name=contract.group_name,
        owners=contract.owners,
        tags=contract.tags,
        required_resource_keys={naming.landing_key, naming.warehouse_key},
        kinds={"polars", "postgres"},
        io_manager_key=naming.staging_io_manager_key,
        retry_policy=RETRY_POLICY,
        pool=naming.pool,
        check_specs=checks.staged_check_specs(contract, keys.staged, partitions),
        description=(
            f"The file parsed in bounded batches, cast to the contract's types and validated "
            f"with pandera; good rows are COPYed into the file's slice of "
            f"{STAGING_SCHEMA}.{contract.name}, rejected rows go to elt.quarantine with reasons. "
            "When the run loads the target next, this step loads the table itself, in the "
            "same transaction: a first load into the empty table, and a file of "
            f"{STRAIGHT_INTO_ROWS_BYTES >> 20} MiB or more into an appended table without a "
            "key, by COPY into the table (no slice kept); a file of that size into an upserted "
            "table with rows, staged in parts, each part upserted once it is committed."
        ),
        metadata={
            "dagster/table_name": f"{STAGING_SCHEMA}.{contract.name}",
            "dagster/column_schema": column_schema(contract, staging=True),
            DATASET_METADATA: contract.name,  # for the IO manager's load_input
        },
    )
    def staged(context: dg.AssetExecutionContext) -> Iterator[Any]:
        landing, warehouse = landing_of(context, naming), warehouse_of(context, naming)
        file = key_to_path(context.partition_key)
        run_id = context.run.run_id
        # Never yield inside log_context: when the IO manager fails, Dagster abandons this
        # generator, and the garbage collector finalises it later in another thread's context,
        # where the fields cannot be reset: they would stay on every later log line.
        with log_context(dataset=contract.name, file=file, run_id=run_id):
            staged_file = steps.prepare_staged(
                contract, landing, warehouse, context.partition_key, run_id
            )
            if _target_follows(context, contract, keys):
                staged_file.load_gate = steps.load_gate(contract, file)
        yield dg.Output(staged_file)  # the IO manager streams it into PostgreSQL here
        with log_context(dataset=contract.name, file=file, run_id=run_id):
            # What the IO manager wrote, as it recorded it: the data flows one way.
            report = steps.recorded_report(warehouse, staged_file)
            results = steps.staged_check_results(contract, file, report)
            failure = steps.violation_failure(file, report)
        yield from results
        if failure is not None:
            raise failure

    return staged


def _target_follows(
    context: dg.AssetExecutionContext, contract: Contract, keys: DatasetKeys
) -> bool:
    """Whether this run loads the file's target right after its staged step, and nothing else
    of the run reads the staging slice: the dataset's ingest job, or a selection of its raw,
    staged and target assets that includes the target. A first load may then skip staging."""
    selection = context.run.asset_selection
    if not selection:  # the whole job (an in-process run records an empty selection)
        return context.job_name == ingest_job_name(contract.name)
    return keys.target in selection and selection <= {keys.raw, keys.staged, keys.target}


def _how_loaded(contract: Contract) -> str:
    """How the table takes a file, for its description in the UI."""
    key = ", ".join(contract.target.primary_key)
    version = contract.target.version_column
    if contract.target.mode == "upsert":
        newer = f", never replacing a newer {version}" if version else ""
        return f"upserted on ({key}){newer}"
    if contract.target.mode == "history":
        start = version or "the load time"
        closing = (
            "; a key missing from a file is closed (each file is a full snapshot)"
            if contract.target.history.close_missing
            else ""
        )
        return (
            f"kept as history (SCD2): each change of ({key}) adds a version from its {start} "
            f"(_elt_valid_from) and ends the one before (_elt_valid_to); _elt_current marks the "
            f"current ones{closing}"
        )
    return "appended once per file (loading a file again replaces its earlier rows)"


def _target_asset(
    contract: Contract,
    keys: DatasetKeys,
    partitions: dg.DynamicPartitionsDefinition,
    naming: Naming,
) -> dg.AssetsDefinition:
    how = _how_loaded(contract)

    spec = dg.AssetSpec(
        key=keys.target,
        deps=[keys.staged],
        description=(contract.description + "\n\n" if contract.description else "")
        + f"Table {contract.target.schema_}.{contract.target.table}: each file's rows {how}. "
        "Unchanged rows are not rewritten.",
        metadata={
            "dagster/table_name": f"{contract.target.schema_}.{contract.target.table}",
            "dagster/column_schema": column_schema(contract),
            "mode": contract.target.mode,
        },
        group_name=contract.group_name,
        owners=contract.owners,
        tags=contract.tags,
        kinds={"postgres", *naming.table.kinds},
        partitions_def=partitions,
        # Late data turns the asset's freshness red in the UI (Dagster's daemon evaluates it).
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=contract.freshness_hours)
        )
        if contract.freshness_hours is not None
        else naming.table.freshness_policy,
        automation_condition=naming.table.automation_condition,
        skippable=True,  # the table's checks can run without a load
    )

    # A multi-asset only to let the table's checks be selected apart from the load: a file's run
    # loads without planning them (a file that fails cannot mark them), "Execute" in the UI runs
    # them alone, and a materialisation from the UI runs both.
    @dg.multi_asset(
        name=keys.target.to_python_identifier(),
        specs=[spec],
        check_specs=checks.target_check_specs(contract, keys.target),
        can_subset=True,
        required_resource_keys={naming.landing_key, naming.warehouse_key},
        retry_policy=RETRY_POLICY,
        pool=naming.pool,
    )
    def target(context: dg.AssetExecutionContext) -> Iterator[Any]:
        warehouse = warehouse_of(context, naming)
        if keys.target not in context.selected_asset_keys:  # the table's checks alone
            with log_context(dataset=contract.name, run_id=context.run.run_id):
                previous = steps.previous_row_count(context.instance, keys.target)
                results = steps.measure_table(contract, warehouse, previous)
            yield from results
            return
        file = key_to_path(context.partition_key)
        outcome = steps.load_target(
            contract,
            warehouse,
            landing_of(context, naming).zone(),
            steps.staged_slice(warehouse, contract.name, file),
            context.run.run_id,
            lambda: steps.previous_row_count(context.instance, keys.target),
            retried_runs=steps.retried_runs(context.run, context.instance),
        )
        lineage = {"dagster/column_lineage": column_lineage(contract, keys)}
        yield dg.MaterializeResult(asset_key=keys.target, metadata={**outcome.metadata, **lineage})
        # The table changed: its checks are evaluated now, after the materialisation they see;
        # yielded when the run selected them, else recorded in this run all the same.
        selected = context.selected_asset_check_keys
        for result in outcome.check_results:
            if dg.AssetCheckKey(keys.target, result.check_name or "") in selected:
                yield result
            else:
                checks.record_evaluation(context, keys.target, result)

    return target
