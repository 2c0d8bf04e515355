"""Asset checks: what a data engineer sees in the UI about each file and each table.

On staged (per file, blocking: a failing file never reaches the target):
- contract_conformance: the file meets its contract's policy; failure counts per check and a
  table of sample rejected rows with row numbers;
- rows_reconciled: rows read = rows staged + rows quarantined, counted independently.
On the target (per table, after each load):
- primary_key_valid: the primary key is enforced, or no key is duplicated or NULL;
- row_count_not_dropped (WARN): the table did not shrink since its previous load.
Freshness comes from Dagster's own last-update checks (see definitions.py).
"""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.postgres.inspect import KeyState
from elt_assets.validation.staged_file import StagedFile

CONFORMANCE = "contract_conformance"
RECONCILED = "rows_reconciled"
PRIMARY_KEY = "primary_key_valid"
ROW_COUNT = "row_count_not_dropped"


def staged_check_specs(
    contract: Contract, key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    # Per-file (partitioned) checks are a Dagster preview feature that we use on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _staged_check_specs(contract, key, partitions)


def _staged_check_specs(
    contract: Contract, key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CONFORMANCE,
            asset=key,
            blocking=True,
            partitions_def=partitions,
            description=(
                "The file meets its contract: rows that fail a type or a check are quarantined "
                f"with reasons; the file fails if more than {contract.policy.max_bad_row_ratio:.2%}"
                " of its rows do"
                + (" or if any does (bad_rows: fail)" if contract.policy.bad_rows == "fail" else "")
                + ". Blocking: a failing file never reaches the target."
            ),
        ),
        dg.AssetCheckSpec(
            RECONCILED,
            asset=key,
            blocking=True,
            partitions_def=partitions,
            description=(
                "Nothing is lost: rows read from the file = rows in the staging slice + rows in "
                "the quarantine, each counted on its own."
            ),
        ),
    ]


def target_check_specs(contract: Contract, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    specs = [
        dg.AssetCheckSpec(
            ROW_COUNT,
            asset=key,
            description="Warns when the table has fewer rows than after its previous load.",
        )
    ]
    if contract.target.primary_key:
        specs.insert(
            0,
            dg.AssetCheckSpec(
                PRIMARY_KEY,
                asset=key,
                description=(
                    f"The primary key ({', '.join(contract.target.primary_key)}) is enforced by a "
                    "constraint; without one, no key may be duplicated or NULL."
                ),
            ),
        )
    return specs


def _sample_table(staged: StagedFile) -> dg.TableMetadataValue:
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("row_number", "int"),
            dg.TableColumn("column_name", "string"),
            dg.TableColumn("check_name", "string"),
            dg.TableColumn("reason", "string"),
        ]
    )
    records = [dg.TableRecord(dict(row)) for row in staged.sample]  # type: ignore[arg-type]
    return dg.MetadataValue.table(records, schema)


def conformance_result(staged: StagedFile) -> dg.AssetCheckResult:
    report = staged.report
    assert report is not None
    counts = report.counts
    ratio = counts.rows_quarantined / counts.rows_read if counts.rows_read else 0.0
    metadata: dict[str, Any] = {
        "rows_read": counts.rows_read,
        "rows_quarantined": counts.rows_quarantined,
        "bad_row_ratio": round(ratio, 6),
        "max_bad_row_ratio": staged.contract.policy.max_bad_row_ratio,
        "failures_by_check": dg.MetadataValue.json(dict(staged.failure_counts)),
        "duplicate_keys": counts.duplicate_keys,
        "file": staged.file,
    }
    if staged.sample:
        metadata["sample_failures"] = _sample_table(staged)
    if staged.header is not None and (staged.header.extra or staged.header.missing):
        metadata["extra_columns_ignored"] = dg.MetadataValue.json(staged.header.extra)
        metadata["missing_columns_filled_with_null"] = dg.MetadataValue.json(staged.header.missing)
    description = (
        "; ".join(report.violations)
        if report.violations
        else f"{counts.rows_quarantined} of {counts.rows_read} rows quarantined, within policy"
    )
    return dg.AssetCheckResult(
        check_name=CONFORMANCE,
        passed=not report.violations,
        metadata=metadata,
        description=description,
    )


def reconciliation_result(
    staged: StagedFile, staged_rows: int, quarantined: int
) -> dg.AssetCheckResult:
    """Counts measured in the database, apart from the reader's own count of rows read."""
    read = staged.rows_read
    passed = read == staged_rows + quarantined
    return dg.AssetCheckResult(
        check_name=RECONCILED,
        passed=passed,
        metadata={"rows_read": read, "rows_staged": staged_rows, "rows_quarantined": quarantined},
        description=(
            f"{read} read = {staged_rows} staged + {quarantined} quarantined"
            if passed
            else f"{read} rows read but {staged_rows} staged + {quarantined} quarantined: "
            "rows are unaccounted for; the target was not touched"
        ),
    )


def primary_key_result(state: KeyState) -> dg.AssetCheckResult:
    if state.constraint is not None:
        return dg.AssetCheckResult(
            check_name=PRIMARY_KEY,
            passed=True,
            metadata={"constraint": state.constraint},
            description=f"enforced by constraint {state.constraint}",
        )
    duplicated, nulls = state.duplicated_keys, state.rows_with_null_key
    return dg.AssetCheckResult(
        check_name=PRIMARY_KEY,
        passed=duplicated == 0 and nulls == 0,
        metadata={"duplicated_keys": duplicated, "rows_with_null_key": nulls},
        description=(
            "no primary key constraint on the table: "
            f"{duplicated} duplicated keys, {nulls} rows with a NULL key"
        ),
    )


def row_count_result(current: int, previous: int | None) -> dg.AssetCheckResult:
    dropped = previous is not None and current < previous
    return dg.AssetCheckResult(
        check_name=ROW_COUNT,
        passed=not dropped,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "row_count": current,
            "previous_row_count": previous if previous is not None else -1,
        },
        description=(
            f"{current} rows, {previous - current} fewer than after the previous load: were rows "
            "deleted outside the platform?"
            if dropped and previous is not None
            else f"{current} rows"
        ),
    )
