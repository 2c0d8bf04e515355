"""Contract -> pandera schema (polars backend), plus a catalog naming every check.

Pandera validates each typed batch lazily (all failures collected) and vectorised. Uniqueness is
the exception: a column's `unique` check and the dataset's unique column sets span the whole file,
so they run in PostgreSQL over the staged slice (flat memory whatever the file size).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandera.polars as pa

from elt_assets.contracts.model import Column, Contract


@dataclass(frozen=True)
class CheckInfo:
    """A contract check as the quarantine and the asset checks name it."""

    name: str  # e.g. "ge", "isin", "not_null"
    expectation: str  # e.g. "must be >= 0"


def _bound(value: Any, column: Column) -> Any:
    """A check bound in the type the typed frame holds for `column`."""
    kind = column.type.kind
    if kind in {"date", "timestamp", "timestamptz"}:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if kind == "date":
            return value.date() if isinstance(value, datetime) else value
        if not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if kind == "timestamptz":
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None)
    if isinstance(value, str | date):
        raise ValueError(f"column {column.name}: check bound {value!r} must be a number")
    return value if column.type.is_integer and isinstance(value, int) else float(value)


def _column_checks(column: Column) -> list[tuple[pa.Check, CheckInfo]]:
    checks = column.checks
    found: list[tuple[pa.Check, CheckInfo]] = []

    def add(check: pa.Check, name: str, expectation: str) -> None:
        found.append((check, CheckInfo(name, expectation)))

    for name, symbol, factory in (
        ("ge", ">=", pa.Check.ge),
        ("gt", ">", pa.Check.gt),
        ("le", "<=", pa.Check.le),
        ("lt", "<", pa.Check.lt),
    ):
        bound = getattr(checks, name)
        if bound is not None:
            add(factory(_bound(bound, column), name=name), name, f"must be {symbol} {bound}")
    if checks.isin is not None:
        allowed = [str(v) for v in checks.isin] if column.type.is_textual else checks.isin
        add(pa.Check.isin(allowed, name="isin"), "isin", f"must be one of {checks.isin}")
    if checks.notin is not None:
        banned = [str(v) for v in checks.notin] if column.type.is_textual else checks.notin
        add(pa.Check.notin(banned, name="notin"), "notin", f"must not be one of {checks.notin}")
    if checks.regex is not None:
        add(
            pa.Check.str_matches(checks.regex, name="regex"),
            "regex",
            f"must match the pattern {checks.regex!r}",
        )
    if checks.min_length is not None or checks.max_length is not None:
        low, high = checks.min_length, checks.max_length
        if low is not None:
            add(
                pa.Check.str_length(min_value=low, name="min_length"),
                "min_length",
                f"must be at least {low} characters long",
            )
        if high is not None:
            add(
                pa.Check.str_length(max_value=high, name="max_length"),
                "max_length",
                f"must be at most {high} characters long",
            )
    return found


@dataclass(frozen=True)
class ContractSchema:
    """The pandera schema of a contract and, per column, what each numbered check means."""

    schema: pa.DataFrameSchema
    catalog: dict[str, list[CheckInfo]]

    def describe(self, column: str, check_number: int | None, pandera_check: str) -> CheckInfo:
        if pandera_check == "not_nullable":
            return CheckInfo("not_null", "is required but empty")
        infos = self.catalog.get(column, [])
        if check_number is not None and 0 <= check_number < len(infos):
            return infos[check_number]
        return CheckInfo(pandera_check, f"fails {pandera_check}")


def build_schema(contract: Contract) -> ContractSchema:
    columns: dict[str, pa.Column] = {}
    catalog: dict[str, list[CheckInfo]] = {}
    for column in contract.columns:
        pairs = _column_checks(column)
        columns[column.name] = pa.Column(
            column.type.polars_dtype,
            checks=[check for check, _ in pairs],
            nullable=not contract.is_required(column),
            coerce=False,
            description=column.description,
        )
        catalog[column.name] = [info for _, info in pairs]
    schema = pa.DataFrameSchema(columns, strict=False, name=contract.name)
    return ContractSchema(schema, catalog)
