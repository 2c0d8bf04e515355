"""Asset checks: what a data engineer sees in the UI about each file and each table.

On staged (per file, blocking: a failing file never reaches the target):
- contract_conformance: the file meets its contract's policy; failure counts per check and a
  table of sample rejected rows with row numbers;
- rows_reconciled: rows read = rows staged + rows quarantined, counted independently;
- schema_drift (WARN, non-blocking): the file's header is exactly the contract's. Under
  `schema_drift: tolerant` a drifting file still loads, and this check warns with what was
  tolerated: extra columns ignored, missing nullable columns filled with NULL, headers matched
  only after trimming and case-folding. Under `strict` drift rejects the file before any check
  runs (the step's error names the columns), so the check only ever passes there.
On the target (per table):
- primary_key_valid: the primary key is enforced, or no key is duplicated or NULL;
- row_count_not_dropped (WARN): the table did not shrink since its previous load.
The table's checks are evaluated when the table changed: right after each load, by the step that
loaded (`record_evaluation`), and whenever someone executes them in the UI. They are not part of
a file's run, so a file that fails, and never touched the table, cannot mark them failed.
Freshness is the target's FreshnessPolicy, evaluated by Dagster's daemon.
"""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg

from elt_assets.contracts.model import Contract
from elt_assets.postgres.inspect import KeyState
from elt_assets.validation.policy import HeaderReport, StageReport

CONFORMANCE = "contract_conformance"
RECONCILED = "rows_reconciled"
PRIMARY_KEY = "primary_key_valid"
ROW_COUNT = "row_count_not_dropped"
SCHEMA_DRIFT = "schema_drift"
STAGED_BLOCKING = frozenset({CONFORMANCE, RECONCILED})  # a file failing one never loads


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
            blocking=CONFORMANCE in STAGED_BLOCKING,
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
            blocking=RECONCILED in STAGED_BLOCKING,
            partitions_def=partitions,
            description=(
                "Nothing is lost: rows read from the file = rows in the staging slice (or, for "
                "a file loaded straight into its table, rows COPYed on their way to it) + rows "
                "in the quarantine, each counted on its own."
            ),
        ),
        dg.AssetCheckSpec(
            SCHEMA_DRIFT,
            asset=key,
            blocking=SCHEMA_DRIFT in STAGED_BLOCKING,
            partitions_def=partitions,
            description=(
                "Warns when the file's header differs from the contract but was tolerated "
                "(schema_drift: tolerant): extra columns ignored, missing nullable columns "
                "filled with NULL, headers matched only after trimming or case-folding. "
                "Under strict, drift fails the file itself."
            ),
        ),
    ]


def target_check_names(contract: Contract) -> list[str]:
    return [PRIMARY_KEY, ROW_COUNT] if contract.target.primary_key else [ROW_COUNT]


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


def _sample_table(report: StageReport) -> dg.TableMetadataValue:
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("row_number", "int"),
            dg.TableColumn("column_name", "string"),
            dg.TableColumn("check_name", "string"),
            dg.TableColumn("reason", "string"),
        ]
    )
    records = [dg.TableRecord(dict(row)) for row in report.sample]  # type: ignore[arg-type]
    return dg.MetadataValue.table(records, schema)


def conformance_result(contract: Contract, file: str, report: StageReport) -> dg.AssetCheckResult:
    counts = report.counts
    ratio = counts.rows_quarantined / counts.rows_read if counts.rows_read else 0.0
    metadata: dict[str, Any] = {
        "rows_read": counts.rows_read,
        "rows_quarantined": counts.rows_quarantined,
        "bad_row_ratio": round(ratio, 6),
        "max_bad_row_ratio": contract.policy.max_bad_row_ratio,
        "failures_by_check": dg.MetadataValue.json(report.failure_counts),
        "duplicate_keys": counts.duplicate_keys,
        "file": file,
    }
    if contract.policy.rescues:
        metadata["rows_rescued"] = counts.rows_rescued
    if report.sample:
        metadata["sample_failures"] = _sample_table(report)
    header = report.header
    if header is not None and (header.extra or header.missing):
        kept = "rescued" if contract.policy.extra_columns == "rescue" else "ignored"
        metadata[f"extra_columns_{kept}"] = dg.MetadataValue.json(header.extra)
        metadata["missing_columns_filled_with_null"] = dg.MetadataValue.json(header.missing)
    description = (
        "; ".join(report.violations)
        if report.violations
        else f"{counts.rows_quarantined} of {counts.rows_read} rows quarantined, within policy"
    )
    if contract.policy.rescues and not report.violations and counts.rows_rescued:
        description += f"; {counts.rows_rescued} loaded with values in the rescue column"
    return dg.AssetCheckResult(
        check_name=CONFORMANCE,
        passed=not report.violations,
        metadata=metadata,
        description=description,
    )


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def drift_result(
    contract: Contract, file: str, header: HeaderReport | None, schema_change: str | None = None
) -> dg.AssetCheckResult:
    """How the file's header met the contract (landing/readers.py `map_header` decided it); a
    file that grew the tables (added or widened columns) says so, as a warning."""
    policy = contract.policy.schema_drift
    base = {"file": file, "schema_drift_policy": policy}
    if schema_change is not None:
        return dg.AssetCheckResult(
            check_name=SCHEMA_DRIFT,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={**base, "schema_change": schema_change},
            description=f"schema evolved: {schema_change} (policy.new_columns: add / "
            "type_changes: widen); to make it the contract's own, paste `elt contract show "
            f"{contract.name} --effective` into its YAML",
        )
    if header is None or (contract.file_format(file) == "csv" and not contract.source.csv.header):
        return dg.AssetCheckResult(
            check_name=SCHEMA_DRIFT,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=base,
            description="no header line (source.csv.header: false): columns are read by position"
            if header is not None
            else "the file's header was not read",
        )
    renamed = {
        header.sources[c.name]: c.header
        for c in contract.columns
        if c.name in header.sources and header.sources[c.name] != c.header
    }
    metadata: dict[str, Any] = {
        **base,
        "extra_columns": dg.MetadataValue.json(header.extra),
        "missing_columns": dg.MetadataValue.json(header.missing),
        "renamed_headers": dg.MetadataValue.json(renamed),
    }
    if not (header.extra or header.missing or renamed):
        return dg.AssetCheckResult(
            check_name=SCHEMA_DRIFT,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=f"the header matches the contract exactly ({len(contract.columns)} "
            "columns)",
        )
    found, fixes = [], []
    if header.extra and contract.policy.extra_columns == "rescue":
        rescue = contract.policy.rescue_column
        found.append(
            f"{len(header.extra)} extra column(s) kept in {rescue}: {_quoted(header.extra)}"
        )
        fixes.append("add the extra columns to the contract to load them typed")
    elif header.extra:
        found.append(f"{len(header.extra)} extra column(s) ignored: {_quoted(header.extra)}")
        fixes.append("add the extra columns to the contract if their data matters")
    if header.missing:
        found.append(
            f"{len(header.missing)} contract column(s) missing, filled with NULL: "
            f"{_quoted(header.missing)}"
        )
        fixes.append("ask the sender to restore the missing columns (or drop them)")
    if renamed:
        pairs = ", ".join(f"{k!r} -> {v!r}" for k, v in renamed.items())
        found.append(f"{len(renamed)} header(s) matched only after trimming/case-folding: {pairs}")
        fixes.append("ask the sender for the exact headers or set the columns' source_name")
    return dg.AssetCheckResult(
        check_name=SCHEMA_DRIFT,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=f"{file}: the header drifted from the contract and was loaded anyway "
        f"(schema_drift: {policy}): {'; '.join(found)}. To fix: {'; '.join(fixes)}.",
    )


def reconciliation_result(read: int, staged_rows: int, quarantined: int) -> dg.AssetCheckResult:
    """Counts measured in the database, apart from the reader's own count of rows read."""
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


def record_evaluation(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    result: dg.AssetCheckResult,
    *,
    partition: str | None = None,
    blocking: bool = False,
) -> None:
    """Record a check's result in the run's event log, for a check this step does not declare:
    the table's checks after a load, and every check of the batch job's files."""
    evaluation = dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=result.check_name or "",
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        blocking=blocking,
        partition=partition,
    )
    # log_event is typed for materialisations and observations; Dagster records a check
    # evaluation logged this way just the same (per partition when given), in this run.
    context.log_event(evaluation)  # type: ignore[arg-type]
