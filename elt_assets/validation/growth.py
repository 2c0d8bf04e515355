"""What a file needs of its dataset's tables before its rows can be staged: columns to add
(policy.new_columns: add) and columns to widen (policy.type_changes: widen).

Found while the file is read, before any of its rows is written: the reader raises SchemaGrowth,
the staging writer grows the tables (postgres/evolution.py) and reads the file again with the
grown contract. A new column is named and typed as `elt contract infer` would (text when
unsure); a column is widened to the narrowest allowed type that takes every value the file sent
that the column could not (contracts/types.py `widens_to`), never narrowed. A value no wider type
takes (a word in a number column) stays a bad value.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import polars as pl

from elt_assets.contracts.model import Column, Contract
from elt_assets.contracts.types import Kind, PgType
from elt_assets.errors import TerminalError
from elt_assets.validation.casts import (
    WHITESPACE,
    ColumnCast,
    UncastableColumn,
    cast_text_column,
    cast_typed_column,
)
from elt_assets.validation.inference import (
    TEXT,
    Guess,
    column_names,
    infer_parquet_type,
    infer_text_types,
)

MAX_VARCHAR = 10_485_760
MAX_NUMERIC_PRECISION = 1000


class SchemaGrowth(TerminalError):
    """The file needs the tables to grow first: `added` columns, `widened` column -> type.

    A signal the staging writer catches (postgres/io_manager.py `stage_file`); terminal should a
    path that cannot grow tables ever meet it."""

    def __init__(self, added: list[Column], widened: dict[str, PgType]):
        self.added, self.widened = added, widened
        changes = [f"+{c.name} {c.type}" for c in added]
        changes += [f"{name} -> {kind}" for name, kind in widened.items()]
        super().__init__(", ".join(changes))


def new_columns(
    contract: Contract, headers: list[str], sample: list[pl.Series], file: str
) -> list[Column]:
    """Columns for the file's headers the contract lacks, named as `elt contract infer` would
    (never the name of an existing column), typed from the file's first values."""
    existing = [c.name for c in contract.table_columns]
    names = column_names([*existing, *headers])[len(existing) :]
    texts = {  # typed together, as `elt contract infer` types a file's columns
        header: values.cast(pl.String).drop_nulls()
        for header, values in zip(headers, sample, strict=True)
        if values.dtype in (pl.String, pl.Null)
    }
    guessed = infer_text_types({h: v for h, v in texts.items() if v.len()})
    return [
        Column(name=name, type=_new_type(values, header, file, guessed), source_name=header)
        for name, header, values in zip(names, headers, sample, strict=True)
    ]


def _new_type(values: pl.Series, header: str, file: str, guessed: dict[str, Guess]) -> PgType:
    """The type `elt contract infer` would propose for a new column's first values (`guessed`:
    the text columns' types, found together); text when there is no value or no guess."""
    if values.dtype in (pl.String, pl.Null):
        return guessed[header].type if header in guessed else TEXT
    try:
        return infer_parquet_type(values, file, header).type
    except TerminalError:
        return TEXT


def column_cast(column: Column, source: pl.DataType, timezone: str) -> ColumnCast:
    """How values of `source` dtype become `column`'s type (raises UncastableColumn)."""
    if source in (pl.String, pl.Null):
        # A Parquet column of type null (all values missing) has no str namespace.
        raw = pl.col(column.name).cast(pl.String) if source == pl.Null else None
        return cast_text_column(column, timezone, raw)
    return cast_typed_column(column, source, timezone)


def wider_type(
    column: Column, values: pl.DataFrame, source: pl.DataType, timezone: str
) -> PgType | None:
    """The narrowest type `column` may widen to that takes every value of `values` (the file's
    values the column's own type refused) that any wider type takes; None when none does."""
    candidates = _wider_candidates(column, values[column.name])
    fits: list[tuple[PgType, pl.Series]] = []
    for candidate in candidates:
        try:
            cast = column_cast(Column(name=column.name, type=candidate), source, timezone)
        except UncastableColumn:
            continue
        fits.append((candidate, ~values.select(cast.failed.fill_null(False)).to_series()))
    if not fits or not fits[-1][1].any():
        return None
    widest = fits[-1][1]  # the values some wider type takes: the widest takes them all
    return next(kind for kind, fit in fits if bool((fit | ~widest).all()))


def type_for_source(column: Column, source: pl.DataType, timezone: str) -> PgType | None:
    """For a Parquet column whose type can never become the column's (a timestamp for a date
    column): the narrowest wider type that can take it, if any."""
    for candidate in _wider_candidates(column, pl.Series(dtype=source)):
        try:
            column_cast(Column(name=column.name, type=candidate), source, timezone)
        except UncastableColumn:
            continue
        return candidate
    return None


def _wider_candidates(column: Column, values: pl.Series) -> list[PgType]:
    """The types `column` may widen to, narrowest first, sized from `values` where the type has
    a size (varchar's length, numeric's digits)."""
    kind = column.type
    if kind.kind == "varchar":
        assert kind.length is not None
        longest = values.cast(pl.String).str.len_chars().max()
        length = max(kind.length + 1, int(longest) if isinstance(longest, int) else 0)
        longer = [PgType("varchar", length=length)] if length <= MAX_VARCHAR else []
        return [*longer, PgType("text")]
    if kind.kind == "numeric" and kind.precision is not None:
        sized = _numeric_for(kind, values)
        return [*([sized] if sized is not None else []), PgType("numeric")]
    return [PgType(k) for k in _WIDER_IN_ORDER if kind.widens_to(PgType(k))]


_WIDER_IN_ORDER: tuple[Kind, ...] = (
    "integer",
    "bigint",
    "numeric",
    "double precision",
    "timestamp",
)


def _numeric_for(kind: PgType, values: pl.Series) -> PgType | None:
    """numeric(p,s) with room for every value: as many digits before the point and after it as
    the widest value (or the column) has; None when that passes numeric's 1000 digits."""
    assert kind.precision is not None
    scale = kind.scale or 0
    whole, places = kind.precision - scale, scale
    for text in values.cast(pl.String).drop_nulls().to_list():
        try:
            number = Decimal(text.strip(WHITESPACE))
        except InvalidOperation:
            continue
        if not number.is_finite():
            continue
        _sign, digits, exponent = number.normalize().as_tuple()
        assert isinstance(exponent, int)
        places = max(places, -exponent)
        whole = max(whole, len(digits) + exponent)
    if whole + places > MAX_NUMERIC_PRECISION:
        return None
    return PgType("numeric", precision=whole + places, scale=places)
