"""Split one batch of a file into rows to stage and rows to quarantine, with reasons.

For every batch: cast each column (casts.py), run the contract's pandera schema on the typed
values, and gather every failure as (row, column, check, reason). Rows with no failure are
returned as text ready for COPY; each failing row becomes one quarantine record carrying all its
failures and its original field values. Everything is vectorised; nothing loops over rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from elt_assets.contracts.model import (
    EXTRA_PREFIX,
    RAW_RECORD_COLUMN,
    REJECTED_COLUMN,
    ROW_COLUMN,
    Contract,
)
from elt_assets.contracts.types import PgType
from elt_assets.landing.readers import HeaderMapping, value_as_text
from elt_assets.validation.casts import ColumnCast, UncastableColumn
from elt_assets.validation.growth import SchemaGrowth, column_cast, type_for_source, wider_type
from elt_assets.validation.schema import build_schema

READER_CHECK = "fields"  # a record with the wrong number of fields
NOT_IN_CONTRACT = "a column the contract does not name"


def _rescue_entry(key: str, value: pl.Expr, reason: pl.Expr) -> pl.Expr:
    """One member of a rescue column's JSON object: "key": {"value": ..., "reason": ...}."""
    detail = pl.struct(value.alias("value"), reason.alias("reason")).struct.json_encode()
    return (pl.lit(json.dumps(key, ensure_ascii=False) + ":") + detail).alias("entry")


_FILE_STRIDE = 2**40  # row numbers of one file stay below it (validate_many)


def _by_file(frame: pl.DataFrame, column: str, files: int) -> list[pl.DataFrame]:
    """`frame` (rows of several files, numbered by validate_many) split per file, each with its
    own row numbers again."""
    place = (pl.col(column) // _FILE_STRIDE).alias("__place")
    parts = frame.with_columns(place, pl.col(column) % _FILE_STRIDE).partition_by(
        "__place", as_dict=True, include_key=False, maintain_order=True
    )
    empty = frame.clear()
    return [parts.get((number,), empty) for number in range(files)]


def _failure_counts(failures: pl.DataFrame) -> dict[str, int]:
    """ "column.check" -> failing rows."""
    if failures.height == 0:  # most batches: no group_by
        return {}
    counts = failures.group_by("column_name", "check_name").len().iter_rows()
    return {f"{column}.{check}": n for column, check, n in counts}


QUARANTINE_COLUMNS = ["row_number", "column_name", "check_name", "reason", "failures", "raw_record"]
_FAILURE_SCHEMA = {
    ROW_COLUMN: pl.Int64,
    "column_name": pl.String,
    "check_name": pl.String,
    "reason": pl.String,
    "position": pl.Int32,
}


@dataclass(frozen=True)
class ValidatedBatch:
    good: pl.DataFrame  # _elt_row + contract columns as text, in contract order
    quarantined: pl.DataFrame  # QUARANTINE_COLUMNS, one row per rejected row
    rows_read: int
    failure_counts: dict[str, int]  # "column.check" -> failing rows in this batch
    # A single-column primary key whose good rows' values strictly increase: their first and last
    # value. Files exported in key order then need no duplicate-key query (staged_file.py).
    increasing_keys: tuple[object, object] | None = None
    # The good rows' typed key when the key is one integer column: the file's repeated keys are
    # then counted as it streams by (staged_file.StagedFile.repeated_keys), not in PostgreSQL.
    integer_keys: pl.Series | None = None
    rows_rescued: int = 0  # good rows with something in the rescue column
    # The good rows' typed values (_elt_row + contract columns, in good's order): what a binary
    # COPY sends for a Parquet file's typed columns. None where no binary COPY asked for them
    # (BatchValidator's `typed_only`).
    typed: pl.DataFrame | None = None


class BatchValidator:
    """Validates the batches of one file against one contract."""

    def __init__(
        self,
        contract: Contract,
        header: HeaderMapping,
        source_types: dict[str, pl.DataType],
        typed_only: frozenset[str] = frozenset(),
    ):
        """`typed_only`: columns whose good values go to PostgreSQL as typed values (a binary
        COPY), not as text: their text is made only for the rows the quarantine quotes."""
        self.contract = contract
        self.typed_only = typed_only
        self.schema = build_schema(contract)
        self.headers = {c.name: header.sources.get(c.name, c.header) for c in contract.columns}
        policy = contract.policy
        self.rescue = policy.rescue_column if policy.rescues else None
        # Columns whose bad values are rescued (a required column has no NULL to leave behind),
        # and the file's columns the contract does not name, rescued whole.
        self.rescuable = (
            [c.name for c in contract.columns if not contract.is_required(c)]
            if policy.bad_values == "rescue"
            else []
        )
        self.extras = header.extra if policy.extra_columns == "rescue" else []
        self.source_types = source_types
        self.widens = policy.type_changes == "widen"
        self.casts: dict[str, ColumnCast] = {}
        timezone = contract.source.timezone
        widened: dict[str, PgType] = {}
        for column in contract.columns:
            source = source_types.get(column.name, pl.String())
            try:
                self.casts[column.name] = column_cast(column, source, timezone)
            except UncastableColumn:
                wider = type_for_source(column, source, timezone) if self.widens else None
                if wider is None:
                    raise
                widened[column.name] = wider
        if widened:  # a Parquet column of a wider type (timestamps for a date column)
            raise SchemaGrowth([], widened)

    def validate(self, batch: pl.DataFrame) -> ValidatedBatch:
        if REJECTED_COLUMN in batch.columns:
            return self._rejected_by_reader(batch)
        return self._validate(batch)[0]

    def validate_consecutive(self, batches: list[pl.DataFrame]) -> list[ValidatedBatch]:
        """Consecutive batches of one file (rows numbered in order), validated in one pass and
        returned one per batch, each as if validated alone: the casts and pandera cost about as
        much per call as for 15,000 rows."""
        if len(batches) == 1:
            return [self.validate(batches[0])]
        whole, failures, cast = self._validate(pl.concat(batches, how="vertical", rechunk=True))
        rows = whole.good[ROW_COLUMN]  # in row order, as the good rows' `cast` and `typed`
        parts, start = [], 0
        for batch in batches:
            first, last = batch[ROW_COLUMN][0], batch[ROW_COLUMN][-1]
            end = rows.search_sorted(last, side="right")
            good, own_cast = whole.good[start:end], cast[start:end]
            typed = whole.typed[start:end] if whole.typed is not None else None
            start = end
            quarantined, own_failures = whole.quarantined, failures
            if failures.height:  # most batches have none
                quarantined = quarantined.filter(pl.col("row_number").is_between(first, last))
                own_failures = failures.filter(pl.col(ROW_COLUMN).is_between(first, last))
            parts.append(
                ValidatedBatch(
                    good=good,
                    quarantined=quarantined,
                    rows_read=batch.height,
                    failure_counts=_failure_counts(own_failures),
                    increasing_keys=self._increasing_keys(own_cast),
                    integer_keys=self._integer_keys(own_cast),
                    rows_rescued=int(good[self.rescue].is_not_null().sum()) if self.rescue else 0,
                    typed=typed,
                )
            )
        return parts

    def validate_many(self, batches: list[pl.DataFrame]) -> list[ValidatedBatch]:
        """Batches of several small files, validated in one pass and returned one per file, each
        as if validated alone. Casting and pandera cost far more per call than per row, so a
        backlog of small files shares that cost. Rows are told apart by a combined row number
        (the file's place times 2^40, plus its row)."""
        # One chunk, not one per file: every expression below would otherwise pay per chunk.
        combined = pl.concat(batches, how="vertical", rechunk=True)
        heights = pl.Series([b.height for b in batches], dtype=pl.Int64)
        rows = pl.int_range(0, combined.height, dtype=pl.Int64, eager=True)
        place = heights.cum_sum().search_sorted(rows, side="right").cast(pl.Int64)
        combined = combined.with_columns(pl.col(ROW_COLUMN) + place * _FILE_STRIDE)
        whole, failures, cast = self._validate(combined)
        good = _by_file(whole.good, ROW_COLUMN, len(batches))
        quarantined = _by_file(whole.quarantined, "row_number", len(batches))
        own_failures = _by_file(failures, ROW_COLUMN, len(batches))
        typed = _by_file(
            cast.select(ROW_COLUMN, *self.contract.target.primary_key), ROW_COLUMN, len(batches)
        )
        return [
            ValidatedBatch(
                good=good[place],
                quarantined=quarantined[place],
                rows_read=batch.height,
                failure_counts=_failure_counts(own_failures[place]),
                increasing_keys=self._increasing_keys(typed[place]),
                integer_keys=self._integer_keys(typed[place]),
                rows_rescued=int(good[place][self.rescue].is_not_null().sum())
                if self.rescue
                else 0,
            )
            for place, batch in enumerate(batches)
        ]

    def _validate(self, batch: pl.DataFrame) -> tuple[ValidatedBatch, pl.DataFrame, pl.DataFrame]:
        """The batch validated; with its failures (row, column, check) and its good rows typed."""
        names = [c.name for c in self.contract.columns]
        cast = self._cast(batch, names)
        cast_failures = self._cast_failures(batch, cast, names)
        if self.widens and cast_failures.height:
            self._widen_for(batch, cast_failures)
        cast, cast_failures, rescued = self._rescue_values(cast, cast_failures)
        check_failures = self._check_failures(batch, cast, names)
        failures = pl.concat([cast_failures, check_failures], how="vertical")
        if failures.height:  # most batches have none: no join, no sort (cast is in row order)
            # A value that could not be cast is also NULL in the typed frame: report the cast.
            failures = failures.sort("position").unique([ROW_COLUMN, "column_name"], keep="first")
            bad_rows = failures.select(ROW_COLUMN).unique()
            cast = cast.join(bad_rows, on=ROW_COLUMN, how="anti").sort(ROW_COLUMN)
        good = cast.select(pl.col(ROW_COLUMN), *[pl.col(f"__text_{n}").alias(n) for n in names])
        rows_rescued = 0
        if self.rescue is not None:
            rescue = self._rescue_texts(batch, rescued)
            good = good.join(rescue, on=ROW_COLUMN, how="left", maintain_order="left")
            rows_rescued = int(good[self.rescue].is_not_null().sum())
        validated = ValidatedBatch(
            good=good,
            quarantined=self._quarantine_records(batch, failures),
            rows_read=batch.height,
            failure_counts=_failure_counts(failures),
            increasing_keys=self._increasing_keys(cast),
            integer_keys=self._integer_keys(cast),
            rows_rescued=rows_rescued,
            typed=cast.select(pl.col(ROW_COLUMN), *names) if self.typed_only else None,
        )
        return validated, failures, cast

    def _widen_for(self, batch: pl.DataFrame, failures: pl.DataFrame) -> None:
        """Raise SchemaGrowth when a wider type would take values the columns refused
        (policy.type_changes: widen); the file is then read again with the wider columns."""
        widened: dict[str, PgType] = {}
        for name in failures["column_name"].unique(maintain_order=True).to_list():
            rows = failures.filter(pl.col("column_name") == name)[ROW_COLUMN]
            values = batch.filter(pl.col(ROW_COLUMN).is_in(rows.implode())).select(name)
            source = self.source_types.get(name, pl.String())
            wider = wider_type(
                self.contract.column(name), values, source, self.contract.source.timezone
            )
            if wider is not None:
                widened[name] = wider
        if widened:
            raise SchemaGrowth([], widened)

    def _rescue_values(
        self, cast: pl.DataFrame, failures: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Take the cast failures of rescuable columns out of the failures: their rows load, with
        NULL in that column (the value goes to the rescue column). Returns (cast, the remaining
        failures, the rescued ones: row, column_name, reason)."""
        taken = pl.col("column_name").is_in(self.rescuable)
        rescued = failures.filter(taken)
        if rescued.height == 0:
            return cast, failures, rescued
        updates = []
        for name in rescued["column_name"].unique().to_list():
            rows = rescued.filter(pl.col("column_name") == name)[ROW_COLUMN].implode()
            hit = pl.col(ROW_COLUMN).is_in(rows)
            for column in (name, f"__text_{name}"):
                updates.append(pl.when(hit).then(None).otherwise(pl.col(column)).alias(column))
        return cast.with_columns(updates), failures.filter(~taken), rescued

    def _rescue_texts(self, batch: pl.DataFrame, rescued: pl.DataFrame) -> pl.DataFrame:
        """Per row with anything to rescue, the rescue column's JSON text: {column: {value,
        reason}} for every bad value (by column name) and every column the contract does not
        name (by the file's header), the value as the file had it."""
        assert self.rescue is not None
        parts = []
        for name in rescued["column_name"].unique(maintain_order=True).to_list():
            reasons = rescued.filter(pl.col("column_name") == name).select(ROW_COLUMN, "reason")
            value = value_as_text(self.source_types.get(name, pl.String()), pl.col(name))
            parts.append(
                batch.join(reasons, on=ROW_COLUMN).select(
                    ROW_COLUMN, _rescue_entry(name, value, pl.col("reason"))
                )
            )
        for index, header in enumerate(self.extras):
            value = pl.col(f"{EXTRA_PREFIX}{index}")
            parts.append(
                batch.filter(value.is_not_null()).select(
                    ROW_COLUMN, _rescue_entry(header, value, pl.lit(NOT_IN_CONTRACT))
                )
            )
        if not parts:
            return pl.DataFrame(schema={ROW_COLUMN: pl.Int64, self.rescue: pl.String})
        return (
            pl.concat(parts)
            .group_by(ROW_COLUMN)
            .agg((pl.lit("{") + pl.col("entry").str.join(",") + pl.lit("}")).alias(self.rescue))
        )

    def _rejected_by_reader(self, batch: pl.DataFrame) -> ValidatedBatch:
        """Rows the reader rejected (ragged CSV records): quarantined as they are, uncast."""
        failure = pl.struct(
            pl.lit(None, pl.String).alias("column"),
            pl.lit(READER_CHECK).alias("check"),
            pl.col(REJECTED_COLUMN).alias("reason"),
        )
        quarantined = batch.select(
            pl.col(ROW_COLUMN).alias("row_number"),
            pl.lit(None, pl.String).alias("column_name"),
            pl.lit(READER_CHECK).alias("check_name"),
            pl.col(REJECTED_COLUMN).alias("reason"),
            pl.format("[{}]", failure.struct.json_encode()).alias("failures"),
            pl.col(RAW_RECORD_COLUMN).alias("raw_record"),
        )
        names = [c.name for c in self.contract.table_columns]
        return ValidatedBatch(
            good=pl.DataFrame(schema={ROW_COLUMN: pl.Int64, **dict.fromkeys(names, pl.String)}),
            quarantined=quarantined,
            rows_read=batch.height,
            failure_counts={f"row.{READER_CHECK}": batch.height},
        )

    def _increasing_keys(self, good: pl.DataFrame) -> tuple[object, object] | None:
        """(first, last) typed key of the good rows if the key is one column and strictly increases.

        Distinct typed values mean distinct values in PostgreSQL (its equal values always cast to
        equal typed values), so strictly increasing keys cannot repeat.
        """
        key = self.contract.target.primary_key
        if len(key) != 1 or good.height == 0:
            return None
        values = good[key[0]]
        if values.null_count() or not bool(
            (values.slice(1) > values.slice(0, len(values) - 1)).all()
        ):
            return None
        return values[0], values[-1]

    def _integer_keys(self, good: pl.DataFrame) -> pl.Series | None:
        """The good rows' typed key, if the key is one integer column. Equal integers are equal
        in PostgreSQL and distinct ones distinct, so counting repeats here counts PostgreSQL's."""
        key = self.contract.target.primary_key
        if len(key) != 1 or not good.schema[key[0]].is_integer():
            return None
        return good[key[0]]

    def _cast(self, batch: pl.DataFrame, names: list[str]) -> pl.DataFrame:
        """Typed value, text and failure flag per column (reasons come later, for failures only).

        Columns with a fast cast take it first; only the rows it leaves unsettled (another
        spelling, or a bad value) take the full cast, whose results then replace theirs.
        """
        fast: dict[str, pl.Expr] = {
            n: expr for n in names if (expr := self.casts[n].fast) is not None
        }
        if not fast:
            return batch.select(self._cast_exprs(names))
        cast = batch.select(
            pl.col(ROW_COLUMN),
            *[fast.get(n, self.casts[n].typed).alias(n) for n in names],
            # a value the fast cast settles is written without surrounding whitespace: as is
            *[(pl.col(n) if n in fast else self._text(n)).alias(f"__text_{n}") for n in names],
            *[
                (pl.lit(False) if n in fast else self.casts[n].failed).alias(f"__failed_{n}")
                for n in names
            ],
        )
        unsettled = pl.Series([False] * batch.height)
        for name in fast:
            unsettled = unsettled | (cast[name].is_null() & batch[name].is_not_null())
        if not unsettled.any():
            return cast
        rows = unsettled.arg_true()
        full = batch[rows].select(self._cast_exprs(names))
        return cast.with_columns(cast[c].scatter(rows, full[c]) for c in full.columns[1:])

    def _cast_exprs(self, names: list[str]) -> list[pl.Expr]:
        return [
            pl.col(ROW_COLUMN),
            *[self.casts[n].typed.alias(n) for n in names],
            *[self._text(n).alias(f"__text_{n}") for n in names],
            *[self.casts[n].failed.alias(f"__failed_{n}") for n in names],
        ]

    def _text(self, name: str) -> pl.Expr:
        """What the good rows send for a column: its text, or for a column sent typed the value
        as read (its typed value replaces it; spelling it out would cost more than the cast)."""
        return pl.col(name) if name in self.typed_only else self.casts[name].text

    def _cast_failures(
        self, batch: pl.DataFrame, cast: pl.DataFrame, names: list[str]
    ) -> pl.DataFrame:
        """One row per value that could not be cast, with its reason (computed for those only)."""
        # Which columns failed at all, in one pass (most batches: none), before a filter each.
        failed_any = cast.select(pl.col(f"__failed_{n}").any() for n in names).row(0)
        parts = []
        for position, (n, failed) in enumerate(zip(names, failed_any, strict=True)):
            if not failed:
                continue
            failed_rows = cast.filter(pl.col(f"__failed_{n}"))[ROW_COLUMN]
            parts.append(
                batch.filter(pl.col(ROW_COLUMN).is_in(failed_rows.implode())).select(
                    pl.col(ROW_COLUMN),
                    pl.lit(n).alias("column_name"),
                    pl.lit(f"type:{self.contract.column(n).type}").alias("check_name"),
                    self.casts[n].reason.alias("reason"),
                    pl.lit(position, dtype=pl.Int32).alias("position"),
                )
            )
        return pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=_FAILURE_SCHEMA)

    def _check_failures(
        self, batch: pl.DataFrame, cast: pl.DataFrame, names: list[str]
    ) -> pl.DataFrame:
        typed = cast.select(names)
        clean = self.schema.clean
        if clean is not None and clean.holds(typed):  # pandera would find nothing wrong
            return pl.DataFrame(schema=_FAILURE_SCHEMA)
        import pandera.errors as pa_errors  # here: a file of clean batches never imports pandera

        try:
            self.schema.pandera.validate(typed, lazy=True)
        except pa_errors.SchemaErrors as errors:
            cases = errors.failure_cases
        else:
            return pl.DataFrame(schema=_FAILURE_SCHEMA)
        if cases.filter(pl.col("index").is_null()).height:
            problems = cases.filter(pl.col("index").is_null())["check"].to_list()
            raise RuntimeError(f"validation of the whole batch failed: {problems}")
        lookup = pl.DataFrame(
            [
                (column, number, info.name, info.expectation)
                for column, infos in self.schema.catalog.items()
                for number, info in enumerate(infos)
            ],
            schema={
                "column": pl.String,
                "check_number": pl.Int32,
                "name": pl.String,
                "expectation": pl.String,
            },
            orient="row",
        )
        positions = {n: len(names) + i for i, n in enumerate(names)}  # after every cast failure
        not_null = pl.col("check") == "not_nullable"
        rows = (
            cases.with_columns(pl.col("check_number").cast(pl.Int32))
            .join(lookup, on=["column", "check_number"], how="left")
            .select(
                cast[ROW_COLUMN].gather(cases["index"].cast(pl.Int64)).alias(ROW_COLUMN),
                pl.col("column").alias("column_name"),
                pl.when(not_null)
                .then(pl.lit("not_null"))
                .otherwise(pl.coalesce("name", "check"))
                .alias("check_name"),
                pl.when(not_null)
                .then(pl.lit("is required but empty"))
                .otherwise(pl.coalesce("expectation", pl.format("fails {}", pl.col("check"))))
                .alias("expectation"),
                pl.col("column").replace_strict(positions, return_dtype=pl.Int32).alias("position"),
            )
        )
        # Quote the value as written in the file, not as cast (-1, not -1.0).
        failing = rows.select(ROW_COLUMN).unique()
        texts = cast.join(failing, on=ROW_COLUMN, how="semi").select(
            ROW_COLUMN, *[pl.col(f"__text_{n}").alias(n) for n in names if n not in self.typed_only]
        )
        if self.typed_only:  # spelled now, for these rows alone
            spelled = batch.join(failing, on=ROW_COLUMN, how="semi").select(
                ROW_COLUMN, *[self.casts[n].text.alias(n) for n in names if n in self.typed_only]
            )
            texts = texts.join(spelled, on=ROW_COLUMN, how="left")
        texts = texts.unpivot(index=ROW_COLUMN, variable_name="column_name", value_name="value")
        value = pl.col("value")
        shown = (
            pl.when(value.is_null())
            .then(pl.lit("NULL"))
            .otherwise(pl.format("'{}'", value.str.slice(0, 80)))
        )
        return rows.join(texts, on=[ROW_COLUMN, "column_name"], how="left").select(
            ROW_COLUMN,
            "column_name",
            "check_name",
            pl.format("{}: {} {}", pl.col("column_name"), shown, pl.col("expectation")).alias(
                "reason"
            ),
            "position",
        )

    def _quarantine_records(self, batch: pl.DataFrame, failures: pl.DataFrame) -> pl.DataFrame:
        if failures.height == 0:
            return pl.DataFrame(
                schema={"row_number": pl.Int64, **dict.fromkeys(QUARANTINE_COLUMNS[1:], pl.String)}
            )
        per_row = (
            failures.sort(ROW_COLUMN, "position")
            .with_columns(
                pl.struct(
                    pl.col("column_name").alias("column"),
                    pl.col("check_name").alias("check"),
                    pl.col("reason"),
                )
                .struct.json_encode()
                .alias("failure")
            )
            .group_by(ROW_COLUMN, maintain_order=True)
            .agg(
                pl.col("column_name").first(),
                pl.col("check_name").first(),
                pl.col("reason").first(),
                pl.len().alias("n"),
                pl.col("failure").str.join(",").alias("failures"),
            )
        )
        fields = [pl.col(n).cast(pl.String).alias(h) for n, h in self.headers.items()]
        # A quarantined row keeps the columns the contract does not name too, when they are kept.
        fields += [pl.col(f"{EXTRA_PREFIX}{i}").alias(h) for i, h in enumerate(self.extras)]
        raw = batch.select(
            pl.col(ROW_COLUMN), pl.struct(fields).struct.json_encode().alias("raw_record")
        )
        return per_row.join(raw, on=ROW_COLUMN, how="left").select(
            pl.col(ROW_COLUMN).alias("row_number"),
            pl.col("column_name"),
            pl.col("check_name"),
            pl.when(pl.col("n") > 1)
            .then(pl.format("{} (+{} more)", pl.col("reason"), pl.col("n") - 1))
            .otherwise(pl.col("reason"))
            .alias("reason"),
            pl.format("[{}]", pl.col("failures")).alias("failures"),
            pl.col("raw_record"),
        )
