"""The three assets of a dataset, all partitioned by file: raw -> staged -> target.

raw/<dataset>       the landed file itself: observed (size, sha256, mtime), never copied.
staged/<dataset>    the file parsed in bounded batches, cast to the contract's types, validated;
                    written by the staging IO manager with COPY; blocking checks gate the target.
<schema>/<table>    the file's rows upserted on the primary key (or appended once), with the
                    manifest's `success` in the same transaction.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.defs import checks
from elt_assets.defs.resources import LandingZone
from elt_assets.failures import file_failures
from elt_assets.landing.files import sha256_of
from elt_assets.landing.keys import key_to_path
from elt_assets.landing.readers import FileRejected
from elt_assets.log import log_context
from elt_assets.postgres.inspect import (
    current_attempt,
    primary_key_state,
    slice_counts,
    table_row_count,
)
from elt_assets.postgres.io_manager import StagedSlice
from elt_assets.postgres.load import ManifestKey, load_file, start_file
from elt_assets.postgres.resource import PostgresResource
from elt_assets.postgres.tables import ensure_dataset_tables
from elt_assets.postgres.templates import STAGING_SCHEMA
from elt_assets.settings import Settings
from elt_assets.validation.staged_file import StagedFile

# Transient database trouble is retried with exponential backoff and jitter; terminal errors
# raise Failure(allow_retries=False) and are not retried (see failures.py).
RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
WAREHOUSE_POOL = "warehouse"


@dataclass(frozen=True)
class DatasetKeys:
    raw: dg.AssetKey
    staged: dg.AssetKey
    target: dg.AssetKey

    @classmethod
    def of(cls, contract: Contract) -> "DatasetKeys":
        return cls(
            raw=dg.AssetKey(["raw", contract.name]),
            staged=dg.AssetKey(["staged", contract.name]),
            target=dg.AssetKey([contract.target.schema_, contract.target.table]),
        )


def column_schema(contract: Contract, *, staging: bool = False) -> dg.TableSchema:
    columns = [
        dg.TableColumn(
            name=column.name,
            type=str(column.type),
            description=column.description,
            constraints=dg.TableColumnConstraints(
                nullable=staging or not contract.is_required(column),
                unique=contract.target.primary_key == [column.name] and not staging,
            ),
        )
        for column in contract.columns
    ]
    if staging:
        columns += [
            dg.TableColumn("_elt_file", "text", "the file (partition key) the row came from"),
            dg.TableColumn("_elt_row", "bigint", "1-based data row in the file"),
        ]
    return dg.TableSchema(columns=columns)


def _raw_kinds(contract: Contract) -> set[str]:
    if contract.source.format is not None:
        return {contract.source.format}
    pattern = contract.source.glob.lower()
    kinds = {kind for kind in ("csv", "parquet") if kind in pattern}
    return kinds or {"csv", "parquet"}


def build_dataset_assets(
    contract: Contract, partitions: dg.DynamicPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    keys = DatasetKeys.of(contract)
    return [
        _raw_asset(contract, keys, partitions),
        _staged_asset(contract, keys, partitions),
        _target_asset(contract, keys, partitions),
    ]


def _raw_asset(
    contract: Contract, keys: DatasetKeys, partitions: dg.DynamicPartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=keys.raw,
        partitions_def=partitions,
        group_name=contract.name,
        kinds=_raw_kinds(contract) | {"file"},
        retry_policy=RETRY_POLICY,
        description=(
            f"Files landing under `{contract.source.glob}` for dataset {contract.name}, one "
            "partition per file. Materialising records the file's size, mtime and sha256 and "
            "opens its manifest row; the file itself is never copied, changed or deleted."
        ),
        metadata={"glob": contract.source.glob, "landing_directory_setting": "ELT_LANDING_DIR"},
    )
    def raw(
        context: dg.AssetExecutionContext, landing: LandingZone, warehouse: PostgresResource
    ) -> dg.MaterializeResult:
        file = key_to_path(context.partition_key)
        with (
            log_context(dataset=contract.name, file=file, run_id=context.run.run_id),
            file_failures(warehouse, None, context.run.run_id),
        ):
            path = landing.path(file)
            if not path.is_file():
                raise FileRejected(
                    file, "the file is no longer in the landing directory (moved or deleted?)"
                )
            stat = path.stat()
            sha256 = sha256_of(path)
            with warehouse.connection() as connection:
                start_file(
                    connection,
                    ManifestKey(contract.name, file, sha256),
                    partition_key=context.partition_key,
                    size_bytes=stat.st_size,
                    file_format=contract.file_format(file),
                    run_id=context.run.run_id,
                )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "file": file,
                "size_bytes": stat.st_size,
                "sha256": sha256,
                "format": contract.file_format(file),
                "mtime": dg.MetadataValue.timestamp(stat.st_mtime),
            }
        )

    return raw


def _staged_asset(
    contract: Contract, keys: DatasetKeys, partitions: dg.DynamicPartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=keys.staged,
        deps=[keys.raw],
        partitions_def=partitions,
        group_name=contract.name,
        kinds={"polars", "postgres"},
        io_manager_key="staging_io_manager",
        retry_policy=RETRY_POLICY,
        pool=WAREHOUSE_POOL,
        check_specs=checks.staged_check_specs(contract, keys.staged, partitions),
        description=(
            f"The file parsed in bounded batches, cast to the contract's types and validated "
            f"with pandera; good rows are COPYed into the file's slice of "
            f"{STAGING_SCHEMA}.{contract.name}, rejected rows go to elt.quarantine with reasons."
        ),
        metadata={
            "dagster/table_name": f"{STAGING_SCHEMA}.{contract.name}",
            "dagster/column_schema": column_schema(contract, staging=True),
        },
    )
    def staged(
        context: dg.AssetExecutionContext, landing: LandingZone, warehouse: PostgresResource
    ) -> Iterator[Any]:
        file = key_to_path(context.partition_key)
        with log_context(dataset=contract.name, file=file, run_id=context.run.run_id):
            with file_failures(warehouse, None, context.run.run_id):
                with warehouse.connection() as connection:
                    current = current_attempt(connection, contract.name, file)
                if current is None:
                    raise FileRejected(file, f"materialise raw/{contract.name} for this file first")
                path = landing.path(file)
            staged_file = StagedFile(
                contract=contract,
                path=path,
                file=file,
                partition_key=context.partition_key,
                sha256=current[0],
                size_bytes=path.stat().st_size,
                run_id=context.run.run_id,
                batch_rows=Settings.from_env(check_dirs=False).batch_rows,
            )
            yield dg.Output(staged_file)  # the IO manager streams it into PostgreSQL here
            yield checks.conformance_result(staged_file)
            with warehouse.connection() as connection:
                staged_rows, quarantined = slice_counts(connection, contract, file)
            yield checks.reconciliation_result(staged_file, staged_rows, quarantined)
            if staged_file.report is not None and staged_file.report.violations:
                # The blocking check already stops the target; this puts the reason in the
                # step's failure message too, where people look first.
                raise dg.Failure(
                    description=f"{file}: " + "; ".join(staged_file.report.violations),
                    allow_retries=False,
                )

    return staged


def _target_asset(
    contract: Contract, keys: DatasetKeys, partitions: dg.DynamicPartitionsDefinition
) -> dg.AssetsDefinition:
    mode = contract.target.mode
    how = (
        f"upserted on ({', '.join(contract.target.primary_key)})"
        + (
            f", never replacing a newer {contract.target.version_column}"
            if contract.target.version_column
            else ""
        )
        if mode == "upsert"
        else "appended once per file (loading a file again replaces its earlier rows)"
    )

    @dg.asset(
        key=keys.target,
        ins={"staged": dg.AssetIn(keys.staged)},
        partitions_def=partitions,
        group_name=contract.name,
        kinds={"postgres"},
        retry_policy=RETRY_POLICY,
        pool=WAREHOUSE_POOL,
        check_specs=checks.target_check_specs(contract, keys.target),
        description=(contract.description + "\n\n" if contract.description else "")
        + f"Table {contract.target.schema_}.{contract.target.table}: each file's rows {how}. "
        "Unchanged rows are not rewritten.",
        metadata={
            "dagster/table_name": f"{contract.target.schema_}.{contract.target.table}",
            "dagster/column_schema": column_schema(contract),
            "mode": mode,
        },
    )
    def target(
        context: dg.AssetExecutionContext, staged: StagedSlice, warehouse: PostgresResource
    ) -> dg.MaterializeResult:
        key = ManifestKey(contract.name, staged.file, staged.sha256)
        with log_context(dataset=contract.name, file=staged.file, run_id=context.run.run_id):
            if staged.status == "failed":
                raise dg.Failure(
                    description=f"{staged.file} failed its contract, so the target is not "
                    f"touched: {staged.error}",
                    allow_retries=False,
                )
            with (
                file_failures(warehouse, key, context.run.run_id),
                warehouse.connection() as connection,
            ):
                ensure_dataset_tables(connection, contract, warehouse.owner_connection)
                result = load_file(connection, contract, key, context.run.run_id)
                row_count = table_row_count(connection, contract)
                key_check = (
                    checks.primary_key_result(primary_key_state(connection, contract))
                    if contract.target.primary_key
                    else None
                )
        previous = _previous_row_count(context, keys.target)
        results = [key_check] if key_check is not None else []
        results.append(checks.row_count_result(row_count, previous))
        return dg.MaterializeResult(
            check_results=results,
            metadata={
                "dagster/row_count": row_count,
                "rows_staged": result.rows_staged,
                "rows_inserted": result.rows_inserted,
                "rows_updated": result.rows_updated,
                "rows_unchanged": result.rows_unchanged,
                "rows_deduplicated": result.rows_deduplicated,
                "rows_replaced": result.rows_replaced,
                "seconds_load": round(result.seconds, 3),
                "rows_per_second": round(result.rows_staged / result.seconds, 1)
                if result.seconds > 0
                else 0.0,
                "file": staged.file,
                "sha256": staged.sha256,
            },
        )

    return target


def _previous_row_count(context: dg.AssetExecutionContext, key: dg.AssetKey) -> int | None:
    """The table's row count recorded by its previous materialisation, if any."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("dagster/row_count")
    return int(value.value) if value is not None and isinstance(value.value, int) else None
