"""Vectorised casts from file values to the contract's types, with the reason a value fails.

Two outputs per column, both polars expressions over a whole batch:
- `typed`: the value in the polars dtype validation works on (for pandera's checks);
- `text`: what is sent to PostgreSQL. For CSV this is the field exactly as written (trimmed only
  for non-text types, as PostgreSQL itself trims them), so PostgreSQL parses every value and the
  table holds exactly what its own COPY would produce. For Parquet it is the typed value written
  in a form PostgreSQL reads back exactly.

Each cast accepts a subset of what PostgreSQL accepts (ISO dates and timestamps, plain numbers),
so a value we pass never fails in PostgreSQL; a value we reject goes to the quarantine with a
reason. PostgreSQL stays the last word: the COPY writer isolates any row it still refuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from elt_assets.contracts.model import Column
from elt_assets.contracts.types import INTEGER_RANGES, PgType
from elt_assets.errors import TerminalError
from elt_assets.landing.readers import typed_as_text
from elt_assets.validation.arrays import array_failures

WHITESPACE = " \t\n\r\x0b\x0c"
_INTEGER = r"^[+-]?[0-9]+$"
_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_FLOAT_SPECIAL = r"^(?i)[+-]?(inf|infinity|nan)$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIME = r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
_OFFSET = r"([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)"
_UUID_BODY = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_UUID = rf"^(\{{{_UUID_BODY}\}}|{_UUID_BODY})$"  # braces only in pairs, as PostgreSQL requires
# bytea in PostgreSQL's hex form only: its escape form reads most text as bytes, a strict subset.
_BYTEA = r"^\\x([0-9a-fA-F]{2})*$"
_TRUE = ["t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"]
_FALSE = ["f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0"]
FLOAT4_MAX = 3.4028234663852886e38
_EXACT = Context(prec=2000, Emax=999_999, Emin=-999_999)  # numeric has up to 1000 digits


class UncastableColumn(TerminalError):
    """A Parquet column whose type can never become the contract's type (a file-level error)."""


@dataclass(frozen=True)
class ColumnCast:
    """How one column is typed, validated and sent."""

    typed: pl.Expr  # value in the validation dtype; NULL where the cast failed
    failed: pl.Expr  # True where a non-null input could not be cast
    text: pl.Expr  # String sent to PostgreSQL (NULL stays NULL)
    reason: pl.Expr  # why the cast failed, for the quarantine
    # A cheap cast of the most common spelling: where it gives a value, `typed` would give the
    # same value and `failed` would be False. Rows it leaves NULL take the full cast.
    fast: pl.Expr | None = None


def _reason(column: Column, value: pl.Expr, what: str | pl.Expr) -> pl.Expr:
    """The quarantine reason: "<column>: '<value>' is not <what>", or with an expression `what`,
    the value followed by that text."""
    shown = value.str.slice(0, 80)
    if isinstance(what, str):
        return pl.format("{}: '{}' is not {}", pl.lit(column.name), shown, pl.lit(what))
    return pl.format("{}: '{}' {}", pl.lit(column.name), shown, what)


def _skipped_time(timezone: str) -> str:
    return (
        f"does not exist in {timezone}: the clocks skip it when daylight saving time starts "
        "(PostgreSQL would silently move it an hour later); write it with its UTC offset"
    )


def cast_text_column(column: Column, timezone: str, raw: pl.Expr | None = None) -> ColumnCast:
    """Cast a String column (CSV, or text in Parquet) named after `column`."""
    raw = pl.col(column.name) if raw is None else raw
    kind = column.type
    # PostgreSQL's own input functions trim surrounding whitespace for numbers, booleans, dates
    # and times, never for text, uuid (it refuses it), JSON (it trims only JSON's whitespace)
    # or bytea.
    as_written = kind.is_textual or kind.kind in {"uuid", "jsonb", "bytea"}
    clean = raw if as_written else raw.str.strip_chars(WHITESPACE)
    if kind.element is not None:
        return _array(column, clean, timezone)
    typed, ok, what = _parse(clean, kind, timezone)
    typed = _decide_bounds_exactly(column, typed, clean)
    has_nul = raw.str.contains("\x00", literal=True)
    failed = raw.is_not_null() & (has_nul | ~ok.fill_null(False))
    reason = (
        pl.when(has_nul)
        .then(pl.format("{}: the value contains a NUL character", pl.lit(column.name)))
        .otherwise(_reason(column, clean, what))
    )
    return ColumnCast(
        typed=typed, failed=failed, text=clean, reason=reason, fast=_fast(raw, kind, timezone)
    )


def _array(column: Column, clean: pl.Expr, timezone: str) -> ColumnCast:
    """An array literal, each element cast as a value of the element type."""
    assert column.type.element is not None
    element_column = Column(name=column.name, type=column.type.element)
    element = cast_text_column(element_column, timezone, pl.element())
    failed, reason = array_failures(
        column.name, str(column.type.element), clean, element.failed, element.reason
    )
    return ColumnCast(typed=clean, failed=failed, text=clean, reason=reason)


# The spelling most exports use, with every field in its everyday range (hour 24, second 60 and
# offsets past 15:59 take the general rules below), parsed by Arrow's ISO 8601 cast. Arrow reads
# more than this (an hour without minutes, say), so the shape is checked first.
_FAST_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2} ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
)
_FAST_OFFSET = r"[+-](0[0-9]|1[0-5]):[0-5][0-9]$"
_FAST_BOOLEAN = {"true": True, "false": False, "t": True, "f": False, "1": True, "0": False}
_FAST_NUMERIC_MAX_PRECISION = 15  # digits a float64 holds exactly: comparisons stay exact


def _fast(raw: pl.Expr, kind: PgType, timezone: str) -> pl.Expr | None:
    """The fast cast of the common spelling of a type, or None where the general cast is cheap.

    It reads the value as written: one with surrounding whitespace is left to the general cast.
    Where it gives a value, the general cast gives the same value and does not fail (the tests
    test_fast_casts_agree_* hold them to that). Each input is read once: polars does not share
    a subexpression used twice in one select, and these run on every value of a file.
    """
    k = kind.kind
    if k in INTEGER_RANGES:  # polars reads only [+-]digits, NULL when out of the type's range
        return raw.cast(kind.polars_dtype, strict=False)
    if k in {"real", "double precision"}:
        # polars reads a subset of the general cast's syntax; zero (maybe an underflow) and
        # the infinities are for the general cast to judge.
        value = raw.cast(pl.Float64, strict=False)
        if k == "real":  # a float4 overflow or underflow is for the general cast to report
            single = value.cast(pl.Float32)
            return pl.when(single.is_finite() & (single != 0)).then(value).cast(pl.Float32)
        return pl.when(value.is_finite() & (value != 0)).then(value)
    if k == "boolean":
        return raw.replace_strict(_FAST_BOOLEAN, default=None, return_dtype=pl.Boolean)
    if k == "date":  # Arrow reads only YYYY-MM-DD, year 0000 too (PostgreSQL refuses it)
        return pl.when(_not_year_zero(raw)).then(raw).map_batches(_ISO_DATES, return_dtype=pl.Date)
    if k == "numeric" and kind.precision is not None:
        if kind.precision > _FAST_NUMERIC_MAX_PRECISION:
            return None
        scale = kind.scale or 0
        whole = kind.precision - scale
        if whole == 0:
            return None
        fraction = rf"(\.[0-9]{{1,{scale}}})?" if scale else ""
        shaped = raw.str.contains(rf"^-?[0-9]{{1,{whole}}}{fraction}$")
        number = raw.cast(pl.Float64, strict=False).round(scale, mode="half_away_from_zero")
        return pl.when(shaped).then(number)
    if kind.kind in ("timestamptz", "timestamp"):
        zoned = kind.kind == "timestamptz"
        shaped = raw.str.contains(_FAST_TIMESTAMP + (_FAST_OFFSET if zoned else "$"))
        parse = _ISO_TIMESTAMPS_WITH_OFFSET if zoned else _ISO_TIMESTAMPS
        return (
            pl.when(shaped & _not_year_zero(raw))
            .then(raw)
            .map_batches(parse, return_dtype=kind.polars_dtype)
        )
    return None


def _by_arrow(
    arrow_type: pa.DataType, by_polars: Callable[[pl.Series], pl.Series]
) -> Callable[[pl.Series], pl.Series]:
    """A parse by Arrow's ISO 8601 cast, about ten times faster than polars' strptime. Arrow
    refuses the whole batch for one value it cannot read (30 February): that batch goes through
    `by_polars`, value by value, whose NULLs are left to the general cast."""

    def parse(values: pl.Series) -> pl.Series:
        try:
            parsed = pc.cast(values.to_arrow(), arrow_type)
        except pa.ArrowInvalid:
            return by_polars(values)
        return cast(pl.Series, pl.from_arrow(parsed))

    return parse


def _dates_by_polars(values: pl.Series) -> pl.Series:
    shaped = values.str.contains(_DATE)  # polars' %Y-%m-%d reads 2024-1-5 too
    return pl.select(pl.when(shaped).then(values.str.to_date("%Y-%m-%d", strict=False))).to_series()


_ISO_DATES = _by_arrow(pa.date32(), _dates_by_polars)
_ISO_TIMESTAMPS = _by_arrow(
    pa.timestamp("us"),
    lambda v: v.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"),
)
_ISO_TIMESTAMPS_WITH_OFFSET = _by_arrow(  # as UTC instants
    pa.timestamp("us", tz="UTC"),
    lambda v: v.str.to_datetime(
        "%Y-%m-%d %H:%M:%S%.f%:z", strict=False, time_unit="us"
    ).dt.convert_time_zone("UTC"),
)


def _parse(clean: pl.Expr, kind: PgType, timezone: str) -> tuple[pl.Expr, pl.Expr, str | pl.Expr]:
    """(typed value, syntax-and-range ok, description of what was expected)."""
    k = kind.kind
    if k in INTEGER_RANGES:
        low, high = INTEGER_RANGES[k]
        typed = clean.cast(pl.Int64, strict=False)
        ok = clean.str.contains(_INTEGER) & typed.is_between(low, high)
        return typed.cast(kind.polars_dtype, strict=False), ok, f"a whole number in {k} range"
    if k == "numeric":
        return _numeric(clean, kind)
    if k in {"real", "double precision"}:
        typed = clean.cast(pl.Float64, strict=False)
        special = clean.str.contains(_FLOAT_SPECIAL)
        mantissa_nonzero = clean.str.replace(r"[eE].*$", "").str.contains("[1-9]")
        in_range = typed.is_finite() & ~((typed == 0) & mantissa_nonzero)
        if k == "real":  # PostgreSQL parses real as float4: over- and underflow refer to it
            single = typed.cast(pl.Float32)
            in_range = in_range & single.is_finite() & ~((single == 0) & mantissa_nonzero)
        ok = special | (clean.str.contains(_DECIMAL) & in_range)
        return typed.cast(kind.polars_dtype), ok, f"a {k} number"
    if k == "boolean":
        lowered = clean.str.to_lowercase()
        typed = pl.when(lowered.is_in(_TRUE)).then(True).when(lowered.is_in(_FALSE)).then(False)
        return typed, lowered.is_in(_TRUE + _FALSE), "a boolean (true/false, t/f, yes/no, 1/0)"
    if k == "varchar":
        assert kind.length is not None
        fits = clean.str.strip_chars_end(" ").str.len_chars() <= kind.length
        return clean, fits, f"at most {kind.length} characters long"
    if k == "text":
        return clean, pl.lit(True), "text"
    if k == "date":
        typed = pl.when(_not_year_zero(clean)).then(clean.str.to_date("%Y-%m-%d", strict=False))
        return typed, clean.str.contains(_DATE) & typed.is_not_null(), "a date as YYYY-MM-DD"
    if k == "timestamp":
        typed = pl.when(_not_year_zero(clean)).then(_to_naive_datetime(clean))
        ok = clean.str.contains(f"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{_TIME}$") & typed.is_not_null()
        return typed, ok, "a timestamp as YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]"
    if k == "timestamptz":
        return _timestamptz(clean, timezone)
    if k == "uuid":
        return clean, clean.str.contains(_UUID), "a UUID"
    if k == "bytea":
        return clean, clean.str.contains(_BYTEA), r"bytes in hex form (\x0a1b...)"
    # jsonb: PostgreSQL is the validator (the COPY writer quarantines what it refuses)
    return clean, pl.lit(True), "JSON"


def _numeric(clean: pl.Expr, kind: PgType) -> tuple[pl.Expr, pl.Expr, str]:
    typed = clean.cast(pl.Float64, strict=False)
    is_nan = clean.str.to_lowercase() == "nan"
    ok = (clean.str.contains(_DECIMAL) & typed.is_finite()) | is_nan
    what = "a number"
    if kind.precision is not None:
        scale = kind.scale or 0
        ok = ok & (is_nan | (_fits_exactly(kind, typed, clean) & _kept_as_written(clean, scale)))
        what = _fitting(kind)
    return typed, ok, what


def _fitting(kind: PgType) -> str:
    scale = kind.scale or 0
    return (
        f"a number that fits numeric({kind.precision},{scale}) as written: at most {scale} "
        "decimal places (a value is never rounded)"
    )


def _kept_as_written(text: pl.Expr, scale: int) -> pl.Expr:
    """Whether numeric(p, scale) stores the value without rounding it: no digit but zeros beyond
    `scale` places. PostgreSQL would round 5.15 into numeric(6,1) to 5.2 without a word; a value
    changed on its way in is a bad row. Values written with an exponent (rare) are decided on
    their exact decimal value."""
    plain = text.str.strip_chars(WHITESPACE)
    places = plain.str.extract(r"\.([0-9]*)", 1).str.strip_chars_end("0").str.len_chars()
    written_plainly = places.fill_null(0) <= scale
    step = Decimal(1).scaleb(-scale)

    def exactly(texts: pl.Series) -> pl.Series:
        def kept(value: str | None) -> bool | None:
            """None where the range check has the last word (not a number, or far too big)."""
            try:
                number = _EXACT.create_decimal(value) if value is not None else None
                if number is None or not number.is_finite():
                    return None
                return number == number.quantize(step, context=_EXACT)
            except InvalidOperation:
                return None

        result = pl.repeat(None, len(texts), dtype=pl.Boolean, eager=True)
        for index in texts.is_not_null().arg_true().to_list():  # only those with an exponent
            result = result.scatter(index, kept(texts[index]))
        return result

    with_exponent = plain.str.contains("[eE]")
    exact = pl.when(with_exponent).then(plain).map_batches(exactly, return_dtype=pl.Boolean)
    return pl.when(with_exponent).then(exact.fill_null(True)).otherwise(written_plainly)


def _numeric_bound(kind: PgType) -> float:
    """The smallest magnitude that numeric(p,s) overflows on once rounded to s places.

    PostgreSQL rounds half away from zero, so 10^(p-s) - 0.5*10^-s already overflows. The bound is
    computed exactly and then rounded to a float like the values are, so a value whose float lands
    on the bound is rejected (rounding the float itself misjudges 9.995 = 9.99499...).
    """
    assert kind.precision is not None
    scale = kind.scale or 0
    return float(Decimal(10) ** (kind.precision - scale) - Decimal(5) * Decimal(10) ** (-scale - 1))


def _fits_exactly(kind: PgType, value: pl.Expr, text: pl.Expr) -> pl.Expr:
    """Whether the value fits numeric(p,s): on floats, except next to the limit.

    numeric(38,10) holds up to 10^28 - 10^-10, which is 1e28 as a float64: values within float
    and rounding error of the limit are decided on their exact decimal value, rounded half away
    from zero to s places as PostgreSQL stores it. Only those few values are looked at in Python.
    """
    assert kind.precision is not None
    scale = kind.scale or 0
    bound = _numeric_bound(kind)
    limit = Decimal(10) ** (kind.precision - scale)
    step = Decimal(1).scaleb(-scale)
    window = bound * 1e-15 + float(step)

    def decide(parts: pl.Series) -> pl.Series:
        values, texts = parts.struct.field("value"), parts.struct.field("text")
        result = values.abs() < bound
        near = ((values.abs() - bound).abs() <= window).fill_null(False)
        for index in near.arg_true().to_list():
            try:
                exact = _EXACT.create_decimal(texts[index].strip(WHITESPACE))
                exact = exact.quantize(step, rounding=ROUND_HALF_UP, context=_EXACT)
            except InvalidOperation:
                continue
            result = result.scatter(index, exact.copy_abs() < limit)  # abs() would round
        return result

    return pl.struct(value.alias("value"), text.alias("text")).map_batches(
        decide, return_dtype=pl.Boolean
    )


def _decide_bounds_exactly(column: Column, typed: pl.Expr, text: pl.Expr) -> pl.Expr:
    """numeric values next to a ge/gt/le/lt bound, moved to the side of it they really are on.

    The checks compare float64 values, and numeric(38,10) holds more digits than a float64:
    100000000000000000.0000000001 is 1e17 as a float, so `le: 1e17` would pass it. Values within
    float and rounding error of a bound are decided on their exact decimal value, rounded to the
    column's scale as PostgreSQL stores it, and placed one float step to the right side of the
    bound (or on it). Only those few values are looked at in Python; the rest stays vectorised.
    """
    if column.type.kind != "numeric":
        return typed
    checks = column.checks
    bounds = [
        b
        for b in (checks.ge, checks.gt, checks.le, checks.lt)
        if isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b)
    ]
    if not bounds:
        return typed
    scale = column.type.scale if column.type.precision is not None else None
    step = Decimal(1).scaleb(-scale) if scale is not None else None
    unit = float(step) if step is not None else 0.0

    def decide(pair: pl.Series) -> pl.Series:
        values = pair.struct.field("typed")
        texts = pair.struct.field("text")
        for bound in bounds:
            exact_bound, near_bound = Decimal(str(bound)), float(bound)
            window = unit + abs(near_bound) * 1e-15 + 1e-300
            near = ((values - near_bound).abs() <= window).fill_null(False)
            for index in near.arg_true().to_list():
                try:
                    exact = _EXACT.create_decimal(texts[index].strip(WHITESPACE))
                    if step is not None:  # rounded half away from zero, as PostgreSQL stores it
                        exact = exact.quantize(step, rounding=ROUND_HALF_UP, context=_EXACT)
                except InvalidOperation:
                    continue
                side = 0 if exact == exact_bound else (1 if exact > exact_bound else -1)
                placed = near_bound if side == 0 else math.nextafter(near_bound, side * math.inf)
                values = values.scatter(index, placed)
        return values

    return pl.struct(typed.alias("typed"), text.alias("text")).map_batches(
        decide, return_dtype=pl.Float64
    )


def _to_naive_datetime(clean: pl.Expr) -> pl.Expr:
    """ISO date and optional time (T or space, minutes, seconds, fraction) as a naive datetime,
    the value PostgreSQL reads: it reads a fraction of a second as a double and rounds it to
    whole microseconds (rint(strtod(fraction) * 1e6)), carrying into the second, where polars
    would cut the digits beyond the sixth; and after a leap second (:60, the next minute's
    start) it allows nothing."""
    spaced = clean.str.replace("T", " ", literal=True)
    full = (
        pl.when(spaced.str.contains(r"^.{10}$"))
        .then(spaced + " 00:00:00")
        .when(spaced.str.contains(r"^.{10} [0-9]{2}:[0-9]{2}$"))
        .then(spaced + ":00")
        .otherwise(spaced)
    )
    fraction = full.str.extract(r"(\.[0-9]*)$", 1)
    seconds = full.str.replace(r"\.[0-9]*$", "").str.to_datetime(
        "%Y-%m-%d %H:%M:%S", strict=False, time_unit="us"
    )
    micros = (
        (pl.lit("0") + fraction + pl.lit("0")).cast(pl.Float64, strict=False) * 1_000_000
    ).round(0, mode="half_to_even")
    micros = pl.when(fraction.is_null()).then(0).otherwise(micros.cast(pl.Int64, strict=False))
    leap_and_more = full.str.contains(r":60(\.[0-9]*)?$") & (micros > 0)
    return pl.when(~leap_and_more).then(seconds + pl.duration(microseconds=micros))


def _not_year_zero(clean: pl.Expr) -> pl.Expr:
    """Year 0000 does not exist for PostgreSQL (1 BC precedes AD 1); polars would read it."""
    return ~clean.str.starts_with("0000")


def _timestamptz(clean: pl.Expr, timezone: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    # An offset only counts after a time: the "-01" that ends "2026-01-01" is the day.
    with_time = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)"
    parts = clean.str.extract_groups(f"{with_time} ?{_OFFSET}$")
    has_offset = parts.struct.field("2").is_not_null()
    # +HH, +HHMM or +HH:MM (Z: +00), up to 15:59 hours as PostgreSQL takes them (the fast cast
    # too), subtracted from the time as written.
    offset = parts.struct.field("2").str.replace("^[zZ]$", "+00").str.replace(":", "", literal=True)
    hours = offset.str.slice(1, 2).cast(pl.Int32, strict=False)
    minutes = offset.str.slice(3, 2).cast(pl.Int32, strict=False).fill_null(0)
    too_far = has_offset & ((hours > 15) | (minutes > 59)).fill_null(True)
    sign = pl.when(offset.str.starts_with("-")).then(-1).otherwise(1)
    with_offset = (
        _to_naive_datetime(parts.struct.field("1"))
        - pl.duration(minutes=sign * (hours * 60 + minutes))
    ).dt.replace_time_zone("UTC")
    naive = _to_naive_datetime(clean)
    local = naive.dt.replace_time_zone(
        timezone, ambiguous="latest", non_existent="null"
    ).dt.convert_time_zone("UTC")
    typed = (
        pl.when(~_not_year_zero(clean) | too_far)
        .then(None)
        .when(has_offset)
        .then(with_offset)
        .otherwise(local)
    )
    without_offset = clean.str.contains(f"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{_TIME}$")
    ok = (has_offset | without_offset) & typed.is_not_null()
    # A local time in the gap of a spring-forward change parses but does not exist.
    skipped = ~has_offset & without_offset & naive.is_not_null() & local.is_null()
    what = (
        pl.when(skipped)
        .then(pl.lit(_skipped_time(timezone)))
        .otherwise(pl.lit("is not a timestamp as YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][+HH:MM|Z]"))
    )
    return typed, ok, what


def cast_typed_column(column: Column, source: pl.DataType, timezone: str) -> ColumnCast:
    """Cast a typed Parquet column; raises UncastableColumn when the types can never meet."""
    if source == pl.String:
        return cast_text_column(column, timezone)
    raw = pl.col(column.name)
    kind = column.type.kind
    target = column.type.polars_dtype
    if kind in {"text", "varchar"} and not (source.is_nested() or source == pl.Binary):
        return cast_text_column(column, timezone, typed_as_text(source, raw))
    if kind == "bytea" and source == pl.Binary:
        hexed = pl.lit("\\x") + raw.bin.encode("hex")  # exact: every byte as two hex digits
        return _typed(column, hexed, pl.lit(True), hexed)
    if source == pl.Binary or source.is_nested():
        raise _refused(column, source)
    if kind in INTEGER_RANGES and source.is_integer():
        low, high = INTEGER_RANGES[kind]
        ok = raw.is_between(low, high)
        return _typed(column, raw.cast(target, strict=False), ok, raw.cast(pl.String))
    if kind in INTEGER_RANGES and source.is_float():
        return _whole_floats(column, raw, INTEGER_RANGES[kind])
    if kind == "numeric" and (source.is_numeric()):
        return _typed_numeric(column, source, raw)
    if kind in {"real", "double precision"} and source.is_numeric():
        value = raw.cast(pl.Float64)
        single = value.cast(pl.Float32)  # real is float4: no over- or underflow of finite values
        fits = single.is_finite() & ((single != 0) | (value == 0))
        ok = pl.lit(True) if kind == "double precision" else ~value.is_finite() | fits
        return _typed(column, value.cast(target), ok, value.cast(pl.String))
    if kind == "boolean" and source == pl.Boolean:
        return _typed(column, raw, pl.lit(True), raw.cast(pl.String))
    if kind == "date" and source == pl.Date:
        return _typed(column, raw, pl.lit(True), _iso_text(raw, timestamps=False))
    if kind in {"timestamp", "timestamptz"} and isinstance(source, pl.Datetime):
        return _datetime(column, source, timezone)
    if kind == "date" and isinstance(source, pl.Datetime):
        raise UncastableColumn(f"column {column.name!r} holds timestamps; the contract says date")
    raise UncastableColumn(
        f"column {column.name!r} is {source} in the Parquet file and cannot become "
        f"{column.type}; change the contract's type or the file"
    )


def _whole_floats(column: Column, raw: pl.Expr, bounds: tuple[int, int]) -> ColumnCast:
    """Floats into an integer column: pandas writes integers with gaps as float64 (1.0, null,
    3.0). A whole number in range is that integer exactly (a float64 holds every integer it
    spells); a fraction, infinity, NaN or a value out of range is a bad row."""
    value = raw.cast(pl.Float64)
    low, high = float(bounds[0]), float(bounds[1] + 1)  # both exact: powers of two
    ok = value.is_finite() & (value.floor() == value) & (value >= low) & (value < high)
    typed = pl.when(ok).then(value).cast(column.type.polars_dtype, strict=False)
    return _typed(
        column, typed, ok, typed.cast(pl.String), f"a whole number in range for {column.type}"
    )


def _typed_numeric(column: Column, source: pl.DataType, raw: pl.Expr) -> ColumnCast:
    """A Parquet number into numeric: sent as written, checked against numeric(p, s)."""
    as_float = raw.cast(pl.Float64)
    ok = as_float.is_finite() | as_float.is_nan()
    text = raw.cast(pl.String)
    what = None
    if column.type.precision is not None:
        scale = column.type.scale or 0
        whole = column.type.precision - scale
        if isinstance(source, pl.Decimal) and source.scale <= scale and _whole(source) <= whole:
            ok = pl.lit(True)  # every value of the file's decimal type fits, exactly
        else:
            # Integers and decimals of no larger scale are kept as written by construction.
            narrow = isinstance(source, pl.Decimal) and source.scale <= scale
            exact = source.is_integer() or narrow
            kept = pl.lit(True) if exact else _kept_as_written(text, scale)
            fits = _fits_exactly(column.type, as_float, text)
            ok = ok & (as_float.is_nan() | (fits & kept))
        what = _fitting(column.type)
    return _typed(column, _decide_bounds_exactly(column, as_float, text), ok, text, what)


def _whole(source: pl.Decimal) -> int:
    """How many digits a decimal type holds before its point."""
    assert source.precision is not None
    return source.precision - source.scale


def _refused(column: Column, source: pl.DataType) -> UncastableColumn:
    """Bytes or nested values for a type that cannot hold them. (jsonb and array columns reach
    the casts as text: the reader writes it, landing/nested.py.)"""
    if source == pl.Binary:
        return UncastableColumn(
            f"column {column.name!r} holds bytes (Parquet binary) in the file; declare it bytea"
        )
    arrays = " or an array such as integer[]" if isinstance(source, pl.List | pl.Array) else ""
    return UncastableColumn(
        f"column {column.name!r} holds nested values ({source}) in the Parquet file and cannot "
        f"become {column.type}; declare it jsonb{arrays}"
    )


def _typed(
    column: Column,
    typed: pl.Expr,
    ok: pl.Expr,
    text: pl.Expr,
    what: str | pl.Expr | None = None,
) -> ColumnCast:
    raw = pl.col(column.name)
    return ColumnCast(
        typed=typed,
        failed=raw.is_not_null() & ~ok.fill_null(False),
        text=text,
        reason=_reason(
            column, raw.cast(pl.String), f"in range for {column.type}" if what is None else what
        ),
    )


def _datetime(column: Column, source: pl.Datetime, timezone: str) -> ColumnCast:
    original = pl.col(column.name)
    raw = original.cast(pl.Datetime("us", source.time_zone))
    # PostgreSQL keeps microseconds: a value with a nanosecond part would be cut, so it is a bad
    # row (pandas' nanoseconds are whole microseconds unless the data had finer ones).
    whole = (original.dt.nanosecond() % 1_000 == 0) if source.time_unit == "ns" else pl.lit(True)
    finer = pl.lit(NANOSECONDS)
    if column.type.kind == "timestamp":
        naive = raw.dt.replace_time_zone(None) if source.time_zone else raw
        return _typed(column, naive, whole, _iso_text(naive, timestamps=True), finer)
    if source.time_zone:
        utc = raw.dt.convert_time_zone("UTC")
        text = _iso_text(utc.dt.replace_time_zone(None), timestamps=True) + pl.lit("+00:00")
        return _typed(column, utc, whole & utc.is_not_null(), text, finer)
    utc = raw.dt.replace_time_zone(timezone, ambiguous="latest", non_existent="null")
    utc = utc.dt.convert_time_zone("UTC")
    # The wall-clock time as written, read by PostgreSQL in the contract's time zone (its session
    # TimeZone while staging), exactly as for CSV: no year-0 UTC text for a local time of AD 1.
    text = _iso_text(raw, timestamps=True)
    # Else the only naive value that fails is a time the clocks skip.
    what = pl.when(whole).then(pl.lit(_skipped_time(timezone))).otherwise(finer)
    return _typed(column, utc, whole & utc.is_not_null(), text, what)


NANOSECONDS = (
    "has a nanosecond part, and PostgreSQL keeps microseconds: declare the column text to keep "
    "it, or have the sender round the values"
)


# Years 1-9999, where Arrow's ISO spelling is PostgreSQL's, as days or microseconds since 1970.
_ISO_DAYS = (-719_162, 2_932_896)
_ISO_MICROSECONDS = (-62_135_596_800_000_000, 253_402_300_799_999_999)


def _iso_text(value: pl.Expr, *, timestamps: bool) -> pl.Expr:
    """Dates, or naive microsecond timestamps, as ISO 8601 text by Arrow's cast (about five times
    faster than polars' strftime) when every year is in 1-9999; otherwise by polars."""
    low, high = _ISO_MICROSECONDS if timestamps else _ISO_DAYS
    spelling = "%Y-%m-%d %H:%M:%S%.f" if timestamps else "%Y-%m-%d"

    def text(values: pl.Series) -> pl.Series:
        physical = values.to_physical()
        if physical.null_count() < len(physical):
            least, most = cast(int, physical.min()), cast(int, physical.max())
            if least < low or most > high:
                return values.dt.to_string(spelling)
        spelled = pc.cast(values.to_arrow(), pa.string())
        return cast(pl.Series, pl.from_arrow(spelled))

    return value.map_batches(text, return_dtype=pl.String)
