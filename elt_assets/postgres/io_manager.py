"""The staging IO manager: a staged asset's output becomes its file's slice of a staging table.

handle_output streams a `StagedFile` into `elt_staging.<dataset>` with COPY through psycopg 3
(never row by row), replacing exactly that file's slice in one transaction, with the quarantine
rows and manifest counts in the same transaction. load_input hands a downstream asset (a
project's own) a `StagedSlice`: a reference to those rows in PostgreSQL, so the rows never travel
back through Python. The target reads the same reference with `staged_slice` (its step must also
run without a file: the table's checks alone).
"""

from dataclasses import dataclass

import dagster as dg

from elt_assets.landing.keys import key_to_path
from elt_assets.log import log_context
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.evolution import MAX_GROWTHS, grow
from elt_assets.postgres.load import ManifestKey
from elt_assets.postgres.resource import PostgresResource
from elt_assets.postgres.staging import write_staged, write_staged_together
from elt_assets.postgres.templates import STAGING_SCHEMA, render
from elt_assets.validation.growth import SchemaGrowth
from elt_assets.validation.policy import StageReport
from elt_assets.validation.staged_file import StagedFile

DATASET_METADATA = "elt/dataset"  # on the staged asset: whose staging slice it is


@dataclass(frozen=True)
class StagedSlice:
    """One file's rows in the staging table, as recorded by the manifest."""

    dataset: str
    file: str
    sha256: str
    rows_staged: int
    status: str
    error: str | None

    @property
    def table(self) -> str:
        return f"{STAGING_SCHEMA}.{self.dataset}"


class StagingIOManager(dg.ConfigurableIOManager):
    """COPYs each file's validated rows into its staging slice; loads slices as references."""

    warehouse: dg.ResourceDependency[PostgresResource]

    def handle_output(self, context: dg.OutputContext, obj: StagedFile) -> None:
        context.add_output_metadata(stage_metadata(obj, stage_file(self.warehouse, obj)))

    def load_input(self, context: dg.InputContext) -> StagedSlice:
        upstream = context.upstream_output
        assert upstream is not None, "a staging slice is loaded as an asset's input"
        dataset = str(upstream.definition_metadata[DATASET_METADATA])
        return staged_slice(self.warehouse, dataset, key_to_path(context.asset_partition_key))


def stage_file(warehouse: PostgresResource, obj: StagedFile) -> StageReport:
    """Write the file's staging slice; what was written, also recorded in the manifest row.

    What handle_output does, as a function: the batch job (orchestration/batch.py) calls it too.
    """
    from elt_assets.postgres.failures import file_failures  # the IO manager reports like the assets

    key = ManifestKey(obj.dataset, obj.file, obj.sha256)
    with (
        log_context(dataset=obj.dataset, file=obj.file, run_id=obj.run_id),
        file_failures(warehouse, key, obj.run_id),
        warehouse.connection() as connection,
    ):
        warehouse.ensure_tables(connection, obj.contract)
        for _ in range(MAX_GROWTHS):
            try:
                return write_staged(connection, obj, warehouse.connection)
            except SchemaGrowth as growth:  # nothing of the file was written: grow, read again
                obj.contract, change = grow(connection, obj.contract, growth, obj.file)
                if change:
                    obj.schema_change = ", ".join(filter(None, [obj.schema_change, change]))
                obj.restart()
        raise TerminalDatabaseError(
            f"{obj.file} still needed the tables of dataset {obj.dataset!r} to grow after "
            f"{MAX_GROWTHS} changes; add its columns and types to the contract"
        )


def stage_together(warehouse: PostgresResource, files: list[StagedFile]) -> list[StageReport]:
    """Small files of one dataset, read already, staged in one transaction (what stage_file does
    for each; postgres/staging.py `write_staged_together`). Any error leaves nothing written."""
    with warehouse.connection() as connection:
        warehouse.ensure_tables(connection, files[0].contract)
        return write_staged_together(connection, files)


def staged_slice(warehouse: PostgresResource, dataset: str, file: str) -> StagedSlice:
    """The file's current staging slice as the manifest records it (what load_input returns)."""
    with warehouse.connection() as connection:
        row = connection.execute(
            render("manifest_current"), {"dataset": dataset, "file": file}
        ).fetchone()
    if row is None:
        raise TerminalDatabaseError(
            f"{file} has no staged slice yet: materialise raw/{dataset}_files and "
            f"staged/{dataset}_staging "
            "for this partition first"
        )
    sha256, rows_staged, status, error = row
    return StagedSlice(dataset, file, sha256, int(rows_staged or 0), status, error)


def written_slice(staged: StagedFile, report: StageReport) -> StagedSlice:
    """The slice `stage_file` just wrote, as the manifest now records it (the batch job's
    target step takes it from there instead of reading the manifest back)."""
    return StagedSlice(
        staged.dataset, staged.file, staged.sha256, report.counts.rows_staged, "running", None
    )


def stage_metadata(staged: StagedFile, report: StageReport) -> dict[str, dg.MetadataValue]:
    """The staged asset's materialisation metadata."""
    counts = report.counts
    seconds = report.seconds.get("stage_total", 0.0)
    return {
        "dagster/row_count": dg.MetadataValue.int(counts.rows_staged),
        "rows_read": dg.MetadataValue.int(counts.rows_read),
        "rows_staged": dg.MetadataValue.int(counts.rows_staged),
        "rows_quarantined": dg.MetadataValue.int(counts.rows_quarantined),
        "rows_refused_by_postgres": dg.MetadataValue.int(report.refused_by_postgres),
        "rows_rescued": dg.MetadataValue.int(counts.rows_rescued),
        "duplicate_keys": dg.MetadataValue.int(counts.duplicate_keys),
        "seconds_stage": dg.MetadataValue.float(round(seconds, 3)),
        "seconds_copy": dg.MetadataValue.float(round(report.seconds.get("copy", 0.0), 3)),
        "copy_format": dg.MetadataValue.text(report.copy_format),
        "rows_per_second": dg.MetadataValue.float(
            round(counts.rows_read / seconds, 1) if seconds > 0 else 0.0
        ),
        "staging_table": dg.MetadataValue.text(f"{STAGING_SCHEMA}.{staged.dataset}"),
        # This step loaded the table itself (a first load, a big file), not its target step.
        "straight_to_target": dg.MetadataValue.bool(report.straight_to_target),
        "file": dg.MetadataValue.text(staged.file),
        "sha256": dg.MetadataValue.text(staged.sha256),
    }
