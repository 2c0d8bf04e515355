"""Contract -> pandera schema (polars backend), plus a catalog naming every check.

Pandera validates each typed batch lazily (all failures collected) and vectorised. Uniqueness is
the exception: a column's `unique` check and the dataset's unique column sets span the whole file,
so they run in PostgreSQL over the staged slice (flat memory whatever the file size).

A pandera validation costs about 10 ms whatever the batch's size (a query per column and check,
and its bookkeeping): two thirds of a second per million CSV rows in 15,000-row batches. Most
batches break no rule, so `CleanProof` first asks, in one query, the very questions pandera's
checks ask (the same polars comparisons, with pandera's treatment of nulls and NaN): a batch that
passes them all cannot fail pandera, and only the others are validated by it, which then finds
and names every failure. A contract with a check the proof does not know (a pattern, a length)
is always validated by pandera.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from elt_assets.contracts.model import Column, Contract

if TYPE_CHECKING:  # imported when a batch first needs pandera: a clean file never does
    import pandera.polars as pa


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


@dataclass(frozen=True, eq=False)  # eq=False: a polars expression compares into an expression
class _Check:
    """A contract check: its name, pandera's comparison where pandera's check is one (its value
    per row, null where the value is null: what `CleanProof` asks; None otherwise), and the
    pandera check, built when pandera is first needed."""

    info: CheckInfo
    asks: pl.Expr | None
    method: str  # pa.Check's constructor
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def pandera(self) -> pa.Check:
        import pandera.polars as pa

        return getattr(pa.Check, self.method)(*self.args, **self.kwargs)


def _column_checks(column: Column) -> list[_Check]:
    checks = column.checks
    found: list[_Check] = []
    value = pl.col(column.name)

    def add(
        name: str, expectation: str, asks: pl.Expr | None, method: str, *args: Any, **kw: Any
    ) -> None:
        found.append(_Check(CheckInfo(name, expectation), asks, method, args, {**kw, "name": name}))

    for name, symbol, compare in (
        ("ge", ">=", value.ge),
        ("gt", ">", value.gt),
        ("le", "<=", value.le),
        ("lt", "<", value.lt),
    ):
        bound = getattr(checks, name)
        if bound is not None:
            typed_bound = _bound(bound, column)
            add(name, f"must be {symbol} {bound}", compare(typed_bound), name, typed_bound)
    if checks.isin is not None:
        allowed = [str(v) for v in checks.isin] if column.type.is_textual else checks.isin
        add("isin", f"must be one of {checks.isin}", value.is_in(allowed), "isin", allowed)
    if checks.notin is not None:
        banned = [str(v) for v in checks.notin] if column.type.is_textual else checks.notin
        refused = value.is_in(banned).not_()
        add("notin", f"must not be one of {checks.notin}", refused, "notin", banned)
    if checks.regex is not None:
        pattern = checks.regex
        add("regex", f"must match the pattern {pattern!r}", None, "str_matches", pattern)
    low, high = checks.min_length, checks.max_length
    if low is not None:
        expectation = f"must be at least {low} characters long"
        add("min_length", expectation, None, "str_length", min_value=low)
    if high is not None:
        expectation = f"must be at most {high} characters long"
        add("max_length", expectation, None, "str_length", max_value=high)
    return found


class CleanProof:
    """One query whose answers are all true only for a typed batch that pandera's validation
    would pass: every column in the schema's dtype, no null (nor NaN, in a float column) where
    the column is required, and every check's comparison true or null on every row (pandera
    passes a null outcome, as its checks ignore missing values)."""

    def __init__(self, dtypes: dict[str, pl.DataType], questions: list[pl.Expr]):
        self.dtypes = dtypes
        self.questions = questions

    def holds(self, typed: pl.DataFrame) -> bool:
        if typed.schema != self.dtypes:  # exactly the schema's dtypes
            return False
        if not self.questions:
            return True
        try:
            answers = typed.select(self.questions).row(0)
        except (pl.exceptions.PolarsError, TypeError, ValueError):
            return False  # pandera then says what is wrong with the check
        return all(answers)


def _clean_proof(contract: Contract, checked: dict[str, list[_Check]]) -> CleanProof | None:
    """The contract's CleanProof, or None when a check is not one comparison."""
    questions: list[pl.Expr] = []
    for column in contract.columns:
        value = pl.col(column.name)
        if contract.is_required(column):
            questions.append(value.is_not_null().all())
            if column.type.polars_dtype.is_float():
                questions.append(value.is_not_nan().all())
        for check in checked[column.name]:
            if check.asks is None:
                return None
            questions.append((check.asks | check.asks.is_null()).all())
    dtypes = {c.name: c.type.polars_dtype for c in contract.columns}
    aliased = [q.alias(f"q{n}") for n, q in enumerate(questions)]
    return CleanProof(dtypes, aliased)


@dataclass(eq=False)
class ContractSchema:
    """A contract's checks for its typed batches: what each numbered check of a column means,
    the proof that lets a clean batch skip pandera (None: every batch goes to pandera), and the
    pandera schema, built (pandera imported) when a batch first needs it."""

    contract: Contract
    catalog: dict[str, list[CheckInfo]]
    checked: dict[str, list[_Check]]
    clean: CleanProof | None = None

    def describe(self, column: str, check_number: int | None, pandera_check: str) -> CheckInfo:
        if pandera_check == "not_nullable":
            return CheckInfo("not_null", "is required but empty")
        infos = self.catalog.get(column, [])
        if check_number is not None and 0 <= check_number < len(infos):
            return infos[check_number]
        return CheckInfo(pandera_check, f"fails {pandera_check}")

    @functools.cached_property
    def pandera(self) -> pa.DataFrameSchema:
        import pandera.polars as pa

        columns = {
            column.name: pa.Column(
                column.type.polars_dtype,
                checks=[check.pandera() for check in self.checked[column.name]],
                nullable=not self.contract.is_required(column),
                coerce=False,
                description=column.description,
            )
            for column in self.contract.columns
        }
        return pa.DataFrameSchema(columns, strict=False, name=self.contract.name)


def build_schema(contract: Contract) -> ContractSchema:
    checked = {column.name: _column_checks(column) for column in contract.columns}
    catalog = {name: [check.info for check in found] for name, found in checked.items()}
    return ContractSchema(contract, catalog, checked, _clean_proof(contract, checked))
