"""A dataset's tables as Dagster shows them: the column schema of the staging slice and target."""

from __future__ import annotations

import dagster as dg

from elt_assets.contracts.model import (
    CURRENT,
    FILE_COLUMN,
    LOAD_COLUMN,
    ROW_COLUMN,
    VALID_FROM,
    VALID_TO,
    Contract,
)


def column_schema(contract: Contract, *, staging: bool = False) -> dg.TableSchema:
    columns = [
        dg.TableColumn(
            name=column.name,
            type=str(column.type),
            description=column.description,
            constraints=dg.TableColumnConstraints(
                nullable=staging or not contract.is_required(column),
                unique=contract.target.primary_key == [column.name]
                and contract.target.mode != "history"
                and not staging,
            ),
        )
        for column in contract.table_columns
    ]
    if contract.target.mode == "history" and not staging:
        validity = (
            contract.column(contract.target.version_column).type
            if (contract.target.version_column)
            else "timestamptz"
        )
        columns += [
            dg.TableColumn(VALID_FROM, str(validity), "when this version of the key starts"),
            dg.TableColumn(VALID_TO, str(validity), "when it ends (NULL: current)"),
            dg.TableColumn(CURRENT, "boolean", "whether this is the key's current version"),
        ]
    if staging:
        columns += [
            dg.TableColumn(FILE_COLUMN, "text", "the file (partition key) the row came from"),
            dg.TableColumn(ROW_COLUMN, "bigint", "1-based data row in the file"),
            dg.TableColumn(
                LOAD_COLUMN, "bigint", "the load: the id of the file's elt.ingestion_manifest row"
            ),
        ]
    return dg.TableSchema(columns=columns)
