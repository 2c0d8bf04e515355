"""What `elt contract infer` proposes for a column: a name from its header, a type from its values.

Shared by the command (cli/infer.py) and by schema evolution (postgres/evolution.py), which names
and types a column a file adds exactly as infer would. A type is proposed only when the
platform's own casts accept every sampled value as it; when in doubt, text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import polars as pl

from elt_assets.contracts.model import Column
from elt_assets.contracts.types import INTEGER_RANGES, Kind, PgType
from elt_assets.errors import TerminalError
from elt_assets.landing import nested as nested_values
from elt_assets.validation.casts import (
    WHITESPACE,
    UncastableColumn,
    cast_text_column,
    cast_typed_column,
)

TIMEZONE = "UTC"
SNAKE = re.compile(r"^[a-z_][a-z0-9_]*$")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_PLAIN_DECIMAL = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$")
_LEADING_ZERO = re.compile(r"^[+-]?0[0-9]+(\.[0-9]*)?$")
_BOOLEANS = {"true", "false", "t", "f", "yes", "no", "y", "n", "on", "off", "1", "0"}
_WITH_OFFSET = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)? ?"
    r"([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)$"
)
_MAX_NAME_BYTES = 63
# integer only while the sample stays well inside its range (2 147 483 647): ids grow.
INTEGER_HEADROOM = 100_000_000


class UnloadableColumn(TerminalError):
    """A Parquet column of a type the platform cannot load (the message names it)."""


# -- names -------------------------------------------------------------------------------------


def snake_case(text: str) -> str:
    """'Customer Name' -> customer_name, 'orderID' -> order_id, 'Prénom' -> prenom ('' if none)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    split = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", ascii_text)
    return re.sub(r"[^a-z0-9]+", "_", split.lower()).strip("_")


def column_names(headers: Sequence[str]) -> list[str]:
    """A valid, unique, lowercase snake_case column name for every header, in order."""
    names: list[str] = []
    taken: set[str] = set()
    for position, header in enumerate(headers, start=1):
        base = header if SNAKE.match(header) and not header.startswith("_") else snake_case(header)
        if not base:
            base = f"column_{position}"
        elif base[0].isdigit():
            base = f"col_{base}"
        base = base[:_MAX_NAME_BYTES].rstrip("_")
        name, suffix = base, 2
        while name in taken:  # "Order ID" and "order_id" both want order_id
            name = f"{base[: _MAX_NAME_BYTES - len(str(suffix)) - 1].rstrip('_')}_{suffix}"
            suffix += 1
        taken.add(name)
        names.append(name)
    return names


# -- types -------------------------------------------------------------------------------------


def accepts(values: pl.Series, kind: PgType, source: pl.DataType | None = None) -> bool:
    """Whether the platform's casts take every non-null value of `values` as `kind`."""
    column = Column(name="value", type=kind)
    # An all-null Parquet column (type null) is read as text, as BatchValidator reads it.
    frame = pl.DataFrame({"value": values.cast(pl.String) if source == pl.Null else values})
    try:
        if source is None or source in (pl.String, pl.Null):
            column_cast = cast_text_column(column, TIMEZONE)
        else:
            column_cast = cast_typed_column(column, source, TIMEZONE)
        return not frame.select(column_cast.failed.any()).item()
    except (UncastableColumn, pl.exceptions.PolarsError):
        return False


@dataclass(frozen=True)
class Guess:
    type: PgType
    note: str | None = None


TEXT = PgType("text")


def infer_text_type(values: pl.Series, taken: frozenset[str] | None = None) -> Guess:
    """The type of a CSV column from its non-null values, checked with the platform's casts.
    `taken`: the kinds of ASKED_TOGETHER whose casts take every non-blank value, when they were
    asked for many columns at once (`infer_text_types`)."""
    if values.len() == 0:
        return Guess(TEXT, "no value in the sample: review the type")
    values = values.cast(pl.String)
    clean = values.str.strip_chars(WHITESPACE)
    blank = int((clean == "").sum())
    present = values.filter(clean != "")
    casts = _Casts(present, taken)
    guess = _typed_guess(casts, clean.filter(clean != ""))
    if blank and guess.type != TEXT:
        return Guess(
            TEXT,
            f'text: {blank} blank value(s) (a quoted "" is an empty string, not NULL); '
            f"without them the column would be {guess.type}",
        )
    if guess.type == TEXT and guess.note is None and values.str.contains("\x00").any():
        return Guess(TEXT, "some values contain NUL characters: those rows will be quarantined")
    return guess


# The kinds a value is data of rather than a name (`data_like`), and those whose casts
# `infer_text_types` asks about every column at once.
DATA_KINDS: tuple[Kind, ...] = ("numeric", "double precision", "date", "timestamp", "timestamptz")
DATA_KINDS += ("uuid",)
ASKED_TOGETHER: tuple[Kind, ...] = ("boolean", "integer", "bigint", *DATA_KINDS)


def infer_text_types(samples: dict[str, pl.Series]) -> dict[str, Guess]:
    """infer_text_type of many columns (name -> non-null values), each general cast asked once
    for all of them: a file of a thousand columns costs a few queries, not thousands."""
    stacked = [
        values.cast(pl.String).to_frame("value").with_columns(column=pl.lit(name))
        for name, values in samples.items()
    ]
    taken: dict[str, frozenset[str]] = {}
    if stacked:
        frame = pl.concat(stacked).filter(pl.col("value").str.strip_chars(WHITESPACE) != "")
        refused = [
            cast_text_column(Column(name="value", type=PgType(kind)), TIMEZONE)
            .failed.any()
            .alias(kind)
            for kind in ASKED_TOGETHER
        ]
        for row in frame.group_by("column").agg(refused).iter_rows(named=True):
            taken[row["column"]] = frozenset(k for k in ASKED_TOGETHER if not row[k])
    return {
        name: infer_text_type(values, taken.get(name, frozenset(ASKED_TOGETHER)))
        for name, values in samples.items()
    }


@dataclass(frozen=True)
class _Casts:
    """Whether the platform's casts take every one of `values` as a type: from what was asked
    for many columns at once where it was, else asked now."""

    values: pl.Series
    taken: frozenset[str] | None

    def accept(self, kind: PgType) -> bool:
        if self.taken is not None and str(kind) in ASKED_TOGETHER:
            return str(kind) in self.taken
        return accepts(self.values, kind)

    def verified(self, kind: PgType, note: str | None = None) -> Guess:
        return Guess(kind, note) if self.accept(kind) else Guess(TEXT)


def _typed_guess(casts: _Casts, clean: pl.Series) -> Guess:
    if clean.len() == 0:
        return Guess(TEXT)
    texts = clean.to_list()
    if all(_INTEGER.match(v) or _PLAIN_DECIMAL.match(v) for v in texts) and any(
        _LEADING_ZERO.match(v) for v in texts
    ):
        return Guess(TEXT, "text: numbers with leading zeros (codes?) keep their zeros as text")
    lowered = {v.lower() for v in texts}
    if lowered <= _BOOLEANS and not lowered <= {"0", "1"}:
        return casts.verified(PgType("boolean"))
    if all(_INTEGER.match(v) for v in texts):
        return _integer(casts, texts)
    if all(_PLAIN_DECIMAL.match(v) for v in texts):
        return _decimal(casts, texts)
    for kind in (PgType("numeric"), PgType("double precision")):  # exponents, NaN, Infinity
        if casts.accept(kind):
            return Guess(kind, "numbers with an exponent or NaN/Infinity: review the type")
    if casts.accept(PgType("date")):
        return Guess(PgType("date"))
    with_offset = int(clean.str.contains(_WITH_OFFSET).sum())
    if with_offset == 0 and casts.accept(PgType("timestamp")):
        return Guess(PgType("timestamp"))
    if with_offset and casts.accept(PgType("timestamptz")):
        without = clean.len() - with_offset
        note = (
            f"{without} of {clean.len()} values have no offset: they are read in source.timezone"
            if without
            else None
        )
        return Guess(PgType("timestamptz"), note)
    if casts.accept(PgType("uuid")):
        return Guess(PgType("uuid"))
    return Guess(TEXT)


def data_like(values: Sequence[str]) -> list[bool]:
    """For each value, whether the platform's casts read it as a number, a date, a timestamp or
    a UUID (a header that does is more likely data than a name); all values in one query."""
    frame = pl.DataFrame({"value": list(values)}, schema={"value": pl.String})
    read = [
        ~cast_text_column(Column(name="value", type=PgType(k)), TIMEZONE).failed for k in DATA_KINDS
    ]
    blank = pl.col("value").str.strip_chars(WHITESPACE) == ""
    return frame.select(pl.any_horizontal(read) & ~blank).to_series().to_list()


def _integer(casts: _Casts, texts: list[str]) -> Guess:
    largest = max(abs(int(v)) for v in texts)
    if largest <= INTEGER_HEADROOM:
        return casts.verified(PgType("integer"))
    bottom, top = INTEGER_RANGES["bigint"]
    if all(bottom <= int(v) <= top for v in texts):
        return casts.verified(PgType("bigint"))
    return Guess(TEXT, "text: whole numbers beyond bigint (identifiers?); numeric if quantities")


SCALE_HEADROOM = 2  # decimal places beyond the sample's, for numeric(p,s)


def _decimal(casts: _Casts, texts: list[str]) -> Guess:
    """numeric(p,s): s as in the sample plus headroom when every decimal has it, p with
    headroom too."""
    digits, scales = 0, set()
    for text in texts:
        whole, _, fraction = text.lstrip("+-").partition(".")
        digits = max(digits, len(whole.lstrip("0")))
        if "." in text:
            scales.add(len(fraction))
    if len(scales) > 1:
        return casts.verified(
            PgType("numeric"), "decimals of varying scale: numeric keeps every digit"
        )
    sampled = scales.pop() if scales else 0
    scale = sampled + SCALE_HEADROOM  # a later file with a place more is not a bad row at once
    precision = max(2 * digits, digits + 4) + scale
    if precision > 1000:
        return casts.verified(PgType("numeric"))
    note = (
        f"{sampled} decimal place(s) in the sample, {SCALE_HEADROOM} more allowed; a value with "
        "more places is a bad row, never rounded: review"
    )
    return casts.verified(PgType("numeric", precision=precision, scale=scale), note)


def infer_parquet_type(values: pl.Series, file: str, header: str) -> Guess:
    """The contract type of a Parquet column: its own type where the platform loads it."""
    dtype = values.dtype
    if dtype.is_nested():
        return _nested_guess(dtype, file, header)
    kind = _parquet_kind(dtype)
    if kind is None:
        raise UnloadableColumn(
            f"{file}: Parquet column {header!r} is {dtype}, which the platform cannot load; "
            "flatten it or write it as a string (e.g. JSON text)"
        )
    if accepts(values, kind, dtype):
        plain = kind != TEXT or dtype in (pl.String, pl.Null, pl.Categorical, pl.Enum)
        if dtype.is_float() and _whole_numbers(values):
            return Guess(kind, WHOLE_FLOATS)
        return Guess(kind, None if plain else f"{dtype} in the file: loaded as text")
    if accepts(values, TEXT, dtype):
        if isinstance(dtype, pl.Datetime) and dtype.time_unit == "ns":
            return Guess(TEXT, NANOSECOND_TEXT.format(kind=kind))
        return Guess(TEXT, f"{dtype} in the file: loaded as text")
    raise UnloadableColumn(
        f"{file}: Parquet column {header!r} ({dtype}) cannot be loaded as any type the "
        "platform has; the sender can write it as a number or a string"
    )


NANOSECOND_TEXT = (
    "nanoseconds in the sample, which PostgreSQL's {kind} cannot keep: text keeps them "
    "({kind} would make those rows bad)"
)
WHOLE_FLOATS = (
    "whole numbers only: if they count things (pandas writes integers with gaps as floats), "
    "bigint loads them exactly"
)


def _whole_numbers(values: pl.Series) -> bool:
    """Every value a finite whole number (and at least one value)."""
    present = values.drop_nulls().cast(pl.Float64)
    return bool(len(present)) and bool((present.is_finite() & (present.floor() == present)).all())


def _nested_guess(dtype: pl.DataType, file: str, header: str) -> Guess:
    """A list of scalars becomes an array of their type; any other nesting (structs, maps, lists
    of lists) becomes jsonb. The reader writes either exactly (landing/nested.py)."""
    guess = Guess(
        PgType("jsonb"),
        f"{_NESTED_KINDS.get(type(dtype), 'nested lists')} in the file, loaded as JSON",
    )
    if isinstance(dtype, pl.List | pl.Array) and not dtype.inner.is_nested():
        element = _parquet_kind(cast(pl.DataType, dtype.inner))
        if element is not None:
            guess = Guess(PgType.array_of(element))
    problem = nested_values.unsupported(pl.Series(dtype=dtype).to_arrow().type, guess.type)
    if problem is not None:
        raise UnloadableColumn(
            f"{file}: Parquet column {header!r} ({dtype}) cannot be loaded: {problem}"
        )
    return guess


_NESTED_KINDS = {pl.Struct: "structs", pl.Map: "maps"}


def _parquet_kind(dtype: pl.DataType) -> PgType | None:
    if isinstance(dtype, pl.Decimal):
        return PgType("numeric", precision=dtype.precision, scale=dtype.scale)
    if isinstance(dtype, pl.Datetime):
        return PgType("timestamptz" if dtype.time_zone else "timestamp")
    if dtype.is_nested() or isinstance(dtype, pl.Object):
        return None
    simple: dict[type[pl.DataType], PgType] = {
        pl.Boolean: PgType("boolean"),
        pl.Int8: PgType("smallint"),
        pl.Int16: PgType("smallint"),
        pl.UInt8: PgType("smallint"),
        pl.Int32: PgType("integer"),
        pl.UInt16: PgType("integer"),
        pl.Int64: PgType("bigint"),
        pl.UInt32: PgType("bigint"),
        pl.UInt64: PgType("numeric", precision=20, scale=0),
        pl.Float32: PgType("real"),
        pl.Float64: PgType("double precision"),
        pl.Date: PgType("date"),
        pl.Binary: PgType("bytea"),
    }
    return simple.get(type(dtype), TEXT)
