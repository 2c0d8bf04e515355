"""Casting file values to contract types: the typed value, whether it failed, and why.

Expected values follow PostgreSQL's own input rules (each one was checked against PostgreSQL 18:
`SELECT 'value'::type`); our casts accept a subset of PostgreSQL's syntax, so every value we accept
must be one PostgreSQL accepts too, with the same meaning.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elt_assets.contracts.model import Column
from elt_assets.validation.casts import (
    WHITESPACE,
    UncastableColumn,
    cast_text_column,
    cast_typed_column,
)
from elt_assets.validation.growth import wider_type

pytestmark = [pytest.mark.pure]

FAILED = object()  # expected outcome: the cast fails


def column(type_: str, name: str = "v") -> Column:
    return Column.model_validate({"name": name, "type": type_})


def cast_text(type_: str, values: list[str | None], tz: str = "UTC") -> list[dict[str, Any]]:
    cast = cast_text_column(column(type_), tz)
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    return frame.select(
        cast.typed.alias("typed"),
        cast.failed.alias("failed"),
        cast.reason.alias("reason"),
        cast.text.alias("text"),
    ).to_dicts()


def check_cases(type_: str, cases: list[tuple[str, Any]], tz: str = "UTC") -> None:
    """Each (input, expected typed value or FAILED); failures must name the column and value."""
    results = cast_text(type_, [value for value, _ in cases], tz)
    for (value, expected), result in zip(cases, results, strict=True):
        if expected is FAILED:
            assert result["failed"] is True, f"{type_} {value!r} should fail: {result}"
            assert result["reason"].startswith("v: "), result["reason"]
            as_written = type_.startswith(("text", "varchar", "uuid", "jsonb"))
            shown = value if as_written else value.strip()
            assert f"'{shown}'" in result["reason"], result["reason"]
        else:
            assert result["failed"] is False, f"{type_} {value!r} should pass: {result}"
            typed = result["typed"]
            if isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(typed), (value, typed)
            else:
                assert typed == expected, (value, typed, expected)
                assert type(typed) is type(expected), (value, typed)


def test_null_stays_null_and_is_not_a_failure() -> None:
    for type_ in ("integer", "numeric(5,2)", "boolean", "date", "timestamptz", "uuid", "jsonb"):
        [result] = cast_text(type_, [None])
        assert result == {"typed": None, "failed": False, "reason": None, "text": None}


# -- integers ------------------------------------------------------------------------------------


def test_smallint_range_edges_and_syntax() -> None:
    check_cases(
        "smallint",
        [
            ("32767", 32767),
            ("-32768", -32768),
            ("+5", 5),
            (" 12 ", 12),
            ("007", 7),
            ("32768", FAILED),
            ("-32769", FAILED),
            ("1.0", FAILED),
            ("1e2", FAILED),
            ("", FAILED),
            ("٣", FAILED),  # an Arabic-Indic digit: not ASCII
            ("1 2", FAILED),
        ],
    )


def test_integer_range_edges() -> None:
    check_cases(
        "integer",
        [
            ("2147483647", 2147483647),
            ("-2147483648", -2147483648),
            ("2147483648", FAILED),
            ("-2147483649", FAILED),
        ],
    )


def test_bigint_range_edges() -> None:
    check_cases(
        "bigint",
        [
            ("9223372036854775807", 2**63 - 1),
            ("-9223372036854775808", -(2**63)),
            ("9223372036854775808", FAILED),
            ("-9223372036854775809", FAILED),
            ("99999999999999999999", FAILED),
        ],
    )


def test_integer_failure_reason_names_column_value_and_type() -> None:
    [result] = cast_text("integer", ["12x"])
    assert result["reason"] == "v: '12x' is not a whole number in integer range"


def test_non_text_values_are_sent_trimmed_text_values_as_written() -> None:
    assert cast_text("integer", [" 12 "])[0]["text"] == "12"
    assert cast_text("text", [" 12 "])[0]["text"] == " 12 "


# -- numeric -------------------------------------------------------------------------------------


def test_numeric_precision_and_scale() -> None:
    check_cases(
        "numeric(5,2)",
        [
            ("999.99", 999.99),
            ("999.994", FAILED),  # PostgreSQL would round it: a bad row, never changed
            ("999.995", FAILED),  # would round to 1000.00: too many places, and overflow
            ("-999.995", FAILED),
            ("0.125", FAILED),
            ("-0.125", FAILED),
            ("0.120", 0.12),  # only zeros beyond the scale: stored as written
            ("1.5E-1", 0.15),
            (".5", 0.5),
            ("5.", 5.0),
            ("+1.25", 1.25),
            ("1e2", 100.0),
            ("1E-2", 0.01),
            ("12345.6", FAILED),
            ("1e3", FAILED),
            ("NaN", float("nan")),
            ("nan", float("nan")),
            ("inf", FAILED),
            ("abc", FAILED),
            ("1,5", FAILED),
        ],
    )


def test_a_value_postgresql_would_round_is_a_bad_row_never_silently_changed() -> None:
    """PostgreSQL stores 9.994 in numeric(3,2) as 9.99 without a word: here it is a bad row."""
    check_cases("numeric(3,2)", [("9.995", FAILED), ("9.994", FAILED), ("9.990", 9.99)])
    check_cases("numeric(2,0)", [("99.4", FAILED), ("99.0", 99.0), ("1.5e1", 15.0)])
    check_cases("numeric(2,0)", [("1.55e1", FAILED), ("-99.5", FAILED)])


def test_numeric_38_10_limit_is_decided_on_the_exact_value() -> None:
    """10^28 - 10^-10 is 1e28 as a float64, yet it fits numeric(38,10); one more place, which
    PostgreSQL would round away, is a bad row."""
    big = "9999999999999999999999999999.9999999999"
    results = cast_text("numeric(38,10)", [big, big + "0", big + "4", "-" + big + "5"])
    assert [r["failed"] for r in results] == [False, False, True, True]


def test_numeric_overflow_reason() -> None:
    [result] = cast_text("numeric(5,2)", ["999.995"])
    assert result["reason"] == (
        "v: '999.995' is not a number that fits numeric(5,2) as written: at most 2 decimal "
        "places (a value is never rounded)"
    )


def test_unconstrained_numeric_keeps_every_digit_in_the_text_sent() -> None:
    many = "123456789012345678901234567890.123456789012345"
    [result] = cast_text("numeric", [many])
    assert result["failed"] is False
    assert result["text"] == many  # PostgreSQL parses the exact text
    assert result["typed"] == pytest.approx(1.2345678901234568e29)
    check_cases("numeric", [("-1e5", -100000.0), ("NaN", float("nan")), ("Infinity", FAILED)])


# -- floating point ------------------------------------------------------------------------------


def test_double_precision_values_and_specials() -> None:
    check_cases(
        "double precision",
        [
            ("1.5", 1.5),
            ("-0", -0.0),
            ("1e308", 1e308),
            ("4.9e-324", 5e-324),  # a denormal: PostgreSQL accepts it
            ("inf", math.inf),
            ("Infinity", math.inf),
            ("-Infinity", -math.inf),
            ("+INF", math.inf),
            ("NaN", float("nan")),
            ("-nan", float("nan")),
            ("1e400", FAILED),  # overflow
            ("1e-400", FAILED),  # underflow to zero
            ("0e-400", 0.0),  # a real zero is not an underflow
            ("1.2.3", FAILED),
            ("infinite", FAILED),
        ],
    )


def test_real_uses_the_float4_range() -> None:
    check_cases(
        "real",
        [
            ("1.5", 1.5),
            ("Infinity", math.inf),
            ("nan", float("nan")),
            ("3.4028235e38", 3.4028234663852886e38),  # what PostgreSQL prints for FLT_MAX
            ("1e-45", 1.401298464324817e-45),  # float4 denormal, accepted by PostgreSQL
            ("3.5e38", FAILED),
            ("3.40282357e38", FAILED),  # beyond FLT_MAX + half an ulp: PostgreSQL refuses it
            ("1e-46", FAILED),  # underflows float4 (but not float8)
            ("1e-50", FAILED),
            ("1e400", FAILED),
            ("1e-400", FAILED),
        ],
    )


def test_float_failure_reason() -> None:
    [result] = cast_text("real", ["1e400"])
    assert result["reason"] == "v: '1e400' is not a real number"


# -- boolean -------------------------------------------------------------------------------------


def test_boolean_accepts_every_postgresql_spelling() -> None:
    trues = ["t", "tr", "tru", "true", "TRUE", "True", "y", "ye", "yes", "YES", "on", "On", "1"]
    falses = ["f", "fa", "fal", "fals", "false", "FALSE", "n", "no", "NO", "of", "off", "OFF", "0"]
    check_cases(
        "boolean",
        [(v, True) for v in trues] + [(v, False) for v in falses] + [(" yes ", True)],
    )


def test_boolean_rejects_other_spellings() -> None:
    check_cases(
        "boolean",
        [(v, FAILED) for v in ["o", "2", "-1", "truee", "yess", "onn", "nope", "", "ja", "10"]],
    )
    [result] = cast_text("boolean", ["nope"])
    assert result["reason"] == "v: 'nope' is not a boolean (true/false, t/f, yes/no, 1/0)"


# -- text ----------------------------------------------------------------------------------------


def test_text_is_kept_exactly_and_nul_is_rejected() -> None:
    results = cast_text("text", ["  x  ", "", "a\x00b", "😀\r\n"])
    assert [r["typed"] for r in results[:2]] == ["  x  ", ""]
    assert [r["failed"] for r in results] == [False, False, True, False]
    assert results[2]["reason"] == "v: the value contains a NUL character"
    assert results[3]["text"] == "😀\r\n"


def test_nul_is_rejected_for_every_type() -> None:
    [result] = cast_text("integer", ["1\x00"])
    assert result["failed"] is True
    assert result["reason"] == "v: the value contains a NUL character"


def test_varchar_length_ignores_trailing_spaces_like_postgresql() -> None:
    """PostgreSQL truncates excess trailing spaces silently; any other excess is an error."""
    check_cases(
        "varchar(3)",
        [
            ("abc", "abc"),
            ("ab   ", "ab   "),
            ("abc  ", "abc  "),
            ("   ", "   "),
            ("é😀x", "é😀x"),  # characters, not bytes
            ("abcd", FAILED),
            ("abcd ", FAILED),
            (" abc", FAILED),  # leading spaces count
        ],
    )
    [result] = cast_text("varchar(3)", ["abcd"])
    assert result["reason"] == "v: 'abcd' is not at most 3 characters long"


# -- dates and times -----------------------------------------------------------------------------


def test_date_valid_and_invalid() -> None:
    check_cases(
        "date",
        [
            ("2024-02-29", date(2024, 2, 29)),
            ("0001-01-01", date(1, 1, 1)),
            ("9999-12-31", date(9999, 12, 31)),
            (" 2024-01-01 ", date(2024, 1, 1)),
            ("2024-02-30", FAILED),
            ("2023-02-29", FAILED),
            ("2024-13-01", FAILED),
            ("2024-1-1", FAILED),
            ("20240101", FAILED),
            ("01/02/2024", FAILED),
            ("2024-01-01T00:00", FAILED),
        ],
    )
    [result] = cast_text("date", ["2024-02-30"])
    assert result["reason"] == "v: '2024-02-30' is not a date as YYYY-MM-DD"


def test_timestamp_formats() -> None:
    check_cases(
        "timestamp",
        [
            ("2024-01-01 10:00:00", datetime(2024, 1, 1, 10)),
            ("2024-01-01T10:00:00", datetime(2024, 1, 1, 10)),
            ("2024-01-01 10:00", datetime(2024, 1, 1, 10)),
            ("2024-01-01T23:59", datetime(2024, 1, 1, 23, 59)),
            ("2024-01-01 10:00:00.5", datetime(2024, 1, 1, 10, 0, 0, 500000)),
            ("2024-01-01 10:00:00.123456", datetime(2024, 1, 1, 10, 0, 0, 123456)),
            ("2024-01-01", datetime(2024, 1, 1)),
            ("2024-01-01 25:00", FAILED),
            ("2024-02-30 10:00", FAILED),
            ("2024-01-01 10:00:00+02", FAILED),  # an offset has no meaning for timestamp
            ("2024-01-01 10", FAILED),
            ("yesterday", FAILED),
        ],
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_timestamptz_offsets() -> None:
    check_cases(
        "timestamptz",
        [
            ("2024-01-01 10:00:00Z", utc(2024, 1, 1, 10)),
            ("2024-01-01T10:00:00z", utc(2024, 1, 1, 10)),
            ("2024-01-01 10:00:00+02", utc(2024, 1, 1, 8)),
            ("2024-01-01 10:00:00+02:30", utc(2024, 1, 1, 7, 30)),
            ("2024-01-01 10:00:00-0530", utc(2024, 1, 1, 15, 30)),
            ("2024-01-01 10:00:00 +02:00", utc(2024, 1, 1, 8)),
            ("2024-01-01T10:00+01", utc(2024, 1, 1, 9)),
            ("2024-01-01 10:00:00.25-01", utc(2024, 1, 1, 11, 0, 0, 250000)),
            ("2024-01-01+02", FAILED),  # an offset needs a time
            ("2024-01-01 10:00:00+2", FAILED),
            ("2024-01-01 10:00:00 UTC", FAILED),  # zone names are outside our subset
        ],
        tz="Asia/Tokyo",  # irrelevant when the value carries its offset
    )


def test_timestamptz_without_offset_is_read_in_the_contract_time_zone() -> None:
    check_cases(
        "timestamptz",
        [
            ("2024-01-15 12:00:00", utc(2024, 1, 15, 11)),  # CET, +01
            ("2024-07-15 12:00:00", utc(2024, 7, 15, 10)),  # CEST, +02
            ("2024-01-15", utc(2024, 1, 14, 23)),  # a bare date is local midnight
            ("2024-03-31 01:59:59", utc(2024, 3, 31, 0, 59, 59)),  # before spring forward
            ("2024-03-31 03:00:00", utc(2024, 3, 31, 1)),  # after it
            # Fall back: 02:30 happens twice; PostgreSQL takes the later one (standard time).
            ("2024-10-27 02:30:00", utc(2024, 10, 27, 1, 30)),
        ],
        tz="Europe/Berlin",
    )


def test_timestamptz_in_the_spring_forward_gap_is_rejected_saying_why() -> None:
    """PostgreSQL would move 02:30 to 03:30 silently; the reason names the clock change."""
    [result] = cast_text("timestamptz", ["2024-03-31 02:30:00"], tz="Europe/Berlin")
    assert result["failed"] is True
    assert result["reason"].startswith(
        "v: '2024-03-31 02:30:00' does not exist in Europe/Berlin: the clocks skip it"
    )
    assert "UTC offset" in result["reason"]


def test_year_zero_is_refused_like_postgresql_does() -> None:
    check_cases("date", [("0000-01-01", FAILED), ("0001-01-01", date(1, 1, 1))])
    check_cases("timestamp", [("0000-12-31 10:00:00", FAILED)])
    check_cases("timestamptz", [("0000-12-31 10:00:00+00:00", FAILED)])


# -- uuid, jsonb ---------------------------------------------------------------------------------


def test_uuid_forms() -> None:
    canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    check_cases(
        "uuid",
        [
            (canonical, canonical),
            (canonical.upper(), canonical.upper()),  # PostgreSQL lower-cases it itself
            ("a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            ("{" + canonical + "}", "{" + canonical + "}"),
            ("{" + canonical, FAILED),  # braces only in pairs
            (canonical + "}", FAILED),
            (canonical[:-1], FAILED),
            (canonical[:-1] + "g", FAILED),
            ("not-a-uuid", FAILED),
            (" " + canonical, FAILED),  # PostgreSQL's uuid input does not trim: COPY refuses it
            (canonical + "\t", FAILED),
        ],
    )
    [result] = cast_text("uuid", ["not-a-uuid"])
    assert result["reason"] == "v: 'not-a-uuid' is not a UUID"


def test_jsonb_passes_through_for_postgresql_to_judge() -> None:
    values = ['{"a": [1, 2.50]}', '{"a":', "null", " [1] ", "\x0c1"]
    results = cast_text("jsonb", values)
    assert [r["failed"] for r in results] == [False] * 5
    # Sent as written: JSON allows only its own whitespace around a value (not a form feed).
    assert [r["text"] for r in results] == values


# -- typed (Parquet) sources ---------------------------------------------------------------------


def cast_series(type_: str, series: pl.Series, tz: str = "UTC") -> list[dict[str, Any]]:
    cast = cast_typed_column(column(type_), series.dtype, tz)
    return (
        pl.DataFrame({"v": series})
        .select(
            cast.typed.alias("typed"),
            cast.failed.alias("failed"),
            cast.reason.alias("reason"),
            cast.text.alias("text"),
        )
        .to_dicts()
    )


def test_typed_integers_are_range_checked() -> None:
    results = cast_series("integer", pl.Series([1, 2**31 - 1, 2**31, -(2**31) - 1, None]))
    assert [r["typed"] for r in results] == [1, 2**31 - 1, None, None, None]
    assert [r["failed"] for r in results] == [False, False, True, True, False]
    assert results[2]["reason"] == "v: '2147483648' is not in range for integer"
    assert [r["text"] for r in results[:2]] == ["1", "2147483647"]
    unsigned = cast_series("bigint", pl.Series([2**64 - 1, 5], dtype=pl.UInt64))
    assert [r["failed"] for r in unsigned] == [True, False]


def test_typed_floats_into_numeric() -> None:
    results = cast_series(
        "numeric(5,2)", pl.Series([1.25, 9.995, 999.995, float("nan"), float("inf")])
    )
    assert [r["failed"] for r in results] == [False, True, True, False, True]
    assert results[0]["text"] == "1.25"  # PostgreSQL parses the text: 9.995 it would round
    assert cast_series("numeric", pl.Series([2**62]))[0]["text"] == str(2**62)  # exact


def test_typed_floats_into_real_and_double() -> None:
    real = cast_series("real", pl.Series([1.5, 3.5e38, 1e-50, 0.0, float("inf"), float("nan")]))
    assert [r["failed"] for r in real] == [False, True, True, False, False, False]
    assert real[0]["typed"] == 1.5
    double = cast_series("double precision", pl.Series([0.1, 5e-324, -0.0]))
    assert [r["failed"] for r in double] == [False, False, False]
    assert [r["text"] for r in double] == ["0.1", "5e-324", "-0.0"]


def test_typed_bool_and_date() -> None:
    booleans = cast_series("boolean", pl.Series([True, False, None]))
    assert [(r["typed"], r["text"]) for r in booleans] == [
        (True, "true"),
        (False, "false"),
        (None, None),
    ]
    [day] = cast_series("date", pl.Series([date(2024, 2, 29)]))
    assert (day["typed"], day["text"], day["failed"]) == (date(2024, 2, 29), "2024-02-29", False)


def test_tz_aware_datetimes_into_timestamptz() -> None:
    tokyo = timezone(timedelta(hours=9))
    series = pl.Series([datetime(2024, 1, 1, 19, tzinfo=tokyo)]).dt.convert_time_zone("Asia/Tokyo")
    [result] = cast_series("timestamptz", series, tz="Europe/Berlin")  # tz ignored: it is aware
    assert result["typed"] == utc(2024, 1, 1, 10)
    assert result["text"] == "2024-01-01 10:00:00.000000+00:00"


def test_naive_datetimes_into_timestamptz_use_the_contract_time_zone() -> None:
    series = pl.Series(
        [
            datetime(2024, 1, 1, 10),
            datetime(2024, 7, 1, 10, 0, 0, 123456),
            datetime(2024, 10, 27, 2, 30),  # ambiguous: the later, standard-time reading
            datetime(2024, 3, 31, 2, 30),  # does not exist in Berlin
        ]
    )
    results = cast_series("timestamptz", series, tz="Europe/Berlin")
    assert [r["typed"] for r in results[:3]] == [
        utc(2024, 1, 1, 9),
        utc(2024, 7, 1, 8, 0, 0, 123456),
        utc(2024, 10, 27, 1, 30),
    ]
    # Sent as the wall-clock time: PostgreSQL reads it in the contract's zone (its TimeZone while
    # staging) and makes the same choice for the repeated 02:30 (standard time).
    assert [r["text"] for r in results[:3]] == [
        "2024-01-01 10:00:00.000000",
        "2024-07-01 10:00:00.123456",
        "2024-10-27 02:30:00.000000",
    ]
    assert results[3]["reason"].startswith(
        "v: '2024-03-31 02:30:00.000000' does not exist in Europe/"
    )
    assert [r["failed"] for r in results] == [False, False, False, True]


def test_aware_datetimes_into_timestamp_keep_the_wall_clock() -> None:
    series = pl.Series([utc(2024, 1, 1, 10)]).dt.convert_time_zone("Asia/Tokyo")
    [result] = cast_series("timestamp", series)
    assert (result["typed"], result["text"]) == (
        datetime(2024, 1, 1, 19),
        "2024-01-01 19:00:00.000000",
    )


@pytest.mark.parametrize(
    ("type_", "values", "texts"),
    [
        ("date", [date(1, 1, 1), date(9999, 12, 31)], ["0001-01-01", "9999-12-31"]),
        (
            "timestamp",
            [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)],
            ["0001-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999"],
        ),
    ],
)
def test_dates_and_timestamps_are_sent_as_iso_text(
    type_: str, values: list[object], texts: list[str]
) -> None:
    assert [r["text"] for r in cast_series(type_, pl.Series(values))] == texts


def test_years_past_9999_are_spelled_by_polars_as_before() -> None:
    days = pl.Series("v", [19_723, 10_000 * 366], dtype=pl.Int32).cast(pl.Date)  # 2024-01-01, ...
    text = cast_typed_column(column("date"), pl.Date, "UTC").text
    assert pl.DataFrame(days).select(text).to_series().to_list() == [
        "2024-01-01",
        "+11990-09-28",
    ]


def test_text_from_numbers() -> None:
    assert [r["text"] for r in cast_series("text", pl.Series([1, -2]))] == ["1", "-2"]
    assert [r["text"] for r in cast_series("text", pl.Series([1.5, 2.0]))] == ["1.5", "2.0"]
    narrow = cast_series("varchar(2)", pl.Series([12, 123]))
    assert [r["failed"] for r in narrow] == [False, True]


def test_string_parquet_columns_are_cast_like_csv() -> None:
    [result] = cast_series("integer", pl.Series([" 42 "]))
    assert (result["typed"], result["text"], result["failed"]) == (42, "42", False)


def test_whole_floats_become_integers_and_other_floats_are_bad_rows() -> None:
    """pandas' integers with gaps: float64 in the file, whole numbers in range."""
    values = pl.Series([3.0, -0.0, 2.5, float("nan"), 2.0**31, None])
    results = cast_series("integer", values)
    assert [(r["typed"], r["text"], r["failed"]) for r in results] == [
        (3, "3", False),
        (0, "0", False),
        (None, None, True),
        (None, None, True),
        (None, None, True),
        (None, None, False),
    ]


@pytest.mark.parametrize(
    ("type_", "source"),
    [
        ("date", pl.Series([1.5])),
        ("date", pl.Series([datetime(2024, 1, 1)])),
        ("integer", pl.Series([date(2024, 1, 1)])),
        ("boolean", pl.Series([1])),
        ("uuid", pl.Series([1])),
        ("timestamptz", pl.Series([date(2024, 1, 1)])),
    ],
)
def test_impossible_pairs_are_uncastable(type_: str, source: pl.Series) -> None:
    with pytest.raises(UncastableColumn, match="'v'") as caught:
        cast_typed_column(column(type_), source.dtype, "UTC")
    assert type_ in str(caught.value)


# -- the fast casts agree with the general cast --------------------------------------------------

FAST_TYPES = [
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "boolean",
    "date",
    "numeric(12,2)",
    "numeric(15,4)",
    "numeric(3,0)",
    "timestamp",
    "timestamptz",
]
TRICKY_VALUES = [
    *["0", "-0", "+1", "007", " 12", "12 ", "1e3", "1E-3", "1.5", "-1.25", ".5", "5.", "-", ""],
    *["32767", "32768", "-32768", "-32769", "2147483647", "2147483648", "-2147483649"],
    *["9223372036854775807", "9223372036854775808", "999999999999999999", "1000000000000000000"],
    *["0.1", "0.29", "0.9999", "0.99995", "999", "999.5", "9999999999.99", "9999999999.995"],
    *["99999999999.99", "1.005", "100000000000000.5", "1.0000000000000001", "nan", "NaN", "inf"],
    *["123456789012345.12345678901234567", "0.000000000000000000000000000000000000000000001"],
    *["3.4028235e38", "340282350000000000000000000000000000000", "1e-50", "0.0000000000000001"],
    *["t", "f", "true", "false", "TRUE", "yes", "no", "on", "off", "1", "0", "tru", "x"],
    *["2024-02-29", "2023-02-29", "0000-01-01", "2024-1-5", "2024-13-01", "9999-12-31"],
    *["2024-01-01 10:00:00", "2024-01-01 10:00:00.123456+02:00", "2024-01-01T10:00:00Z"],
    # read as written by the fast casts: whitespace, NUL, other digits and forms are not theirs
    *["1\x00", "\t7", "2024-01-05 ", "2024-01-05\x00", "١٢", "0x10", "1_000", "+.5", "-.5e-3"],
    *["+2024-01-05", "2024-01-05T00", "2024-01-05 10", "2024-01-05 10:00", "1e-400", "1e400"],
]


def assert_fast_agrees(type_: str, values: list[str]) -> int:
    """Where the fast cast gives a value, the general cast gives the same one and passes it.
    Returns how many values the fast cast settled."""
    cast = cast_text_column(column(type_), "UTC")
    if cast.fast is None:
        return 0
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String}).select(
        cast.fast.alias("fast"), cast.typed.alias("typed"), cast.failed.alias("failed"), "v"
    )
    settled = frame.filter(pl.col("fast").is_not_null())
    for fast, typed, failed, value in settled.iter_rows():
        assert failed is False, f"{type_}: the fast cast passed {value!r}, the general one fails it"
        assert fast == typed, f"{type_}: {value!r} fast {fast!r} != general {typed!r}"
        # what the fast cast settles is sent as written, which must be what the general cast sends
        assert value == value.strip(WHITESPACE), f"{type_}: the fast cast read {value!r}"
    return settled.height


@pytest.mark.parametrize("type_", FAST_TYPES)
def test_fast_casts_agree_with_the_general_cast(type_: str) -> None:
    settled = assert_fast_agrees(type_, TRICKY_VALUES)
    assert settled > 0  # the fast cast is in use for this type and settles its plain spellings


@given(
    values=st.lists(st.text(alphabet="0123456789-+.eE :tfTF", min_size=1, max_size=24), max_size=60)
)
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
def test_fast_casts_agree_on_generated_spellings(values: list[str]) -> None:
    for type_ in [*FAST_TYPES, "numeric(4,4)", "numeric(20,2)", "numeric"]:  # the last: no fast
        assert_fast_agrees(type_, values)


@pytest.mark.parametrize(
    ("declared", "values", "wider"),
    [
        ("smallint", ["40000"], "integer"),
        ("smallint", ["40000", "3000000000"], "bigint"),
        ("integer", ["3000000000", "3.5"], "numeric"),
        ("integer", ["9223372036854775808"], "numeric"),
        ("numeric(6,2)", ["12345.678"], "numeric(8,3)"),
        ("numeric(6,2)", ["1e7"], "numeric(10,2)"),
        ("numeric(6,2)", ["0.00001"], "numeric(9,5)"),
        ("varchar(4)", ["ABCDEF", "ABCDEFG"], "varchar(7)"),
        ("real", ["1e300"], "double precision"),
        ("date", ["2024-01-02 10:30:00"], "timestamp"),
        # Nothing wider takes these: they stay bad values.
        ("integer", ["many"], None),
        ("date", ["2024-13-45"], None),
        ("timestamptz", ["tomorrow"], None),
        ("text[]", ["{unclosed"], None),
    ],
)
def test_a_column_widens_to_the_narrowest_type_that_takes_the_values(
    declared: str, values: list[str], wider: str | None
) -> None:
    column = Column(name="c", type=declared)
    found = wider_type(column, pl.DataFrame({"c": values}), pl.String(), "UTC")
    assert (str(found) if found is not None else None) == wider
    if found is not None:
        assert column.type.widens_to(found)


def test_values_no_wider_type_takes_are_left_out_of_the_choice() -> None:
    """'many' in an integer column widens nothing; the big number beside it still widens."""
    column = Column(name="c", type="integer")
    frame = pl.DataFrame({"c": ["3000000000", "many"]})
    assert str(wider_type(column, frame, pl.String(), "UTC")) == "bigint"


def _field(low: int, high: int, width: int) -> st.SearchStrategy[str]:
    """A zero-padded number, mostly in range, sometimes just past it (or 0, or 99...)."""
    return st.one_of(st.integers(low, high), st.sampled_from([0, high + 1, 10**width - 1])).map(
        lambda n: str(n).zfill(width)[-width:]
    )


TIMESTAMP_SPELLINGS = st.builds(
    lambda y, mo, d, h, mi, s, frac, sign, oh, om, sep: (
        f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}" + ("" if oh is None else f"{sign}{oh}:{om}")
    ),
    _field(1, 9999, 4),
    _field(1, 12, 2),
    _field(1, 31, 2),
    _field(0, 23, 2),
    _field(0, 59, 2),
    _field(0, 59, 2),
    st.sampled_from(["", ".5", ".05", ".123456", ".1234567", ".000001", "."]),
    st.sampled_from(["+", "-"]),
    st.one_of(st.none(), _field(0, 15, 2)),
    _field(0, 59, 2),
    st.sampled_from([" ", " ", "T"]),
)


@given(values=st.lists(TIMESTAMP_SPELLINGS, min_size=1, max_size=40))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_fast_timestamp_casts_agree_on_generated_timestamps(values: list[str]) -> None:
    """The fast timestamp casts see whole, plausible spellings here (the generic alphabet above
    is too short to make one): in-range and just-out-of-range fields (30 February, hour 24,
    second 60, offsets past 15:59), all fraction lengths, with and without an offset."""
    for type_ in ("timestamp", "timestamptz"):
        assert_fast_agrees(type_, values)
        plain = ["2024-01-01 10:00:00+02:00", "2024-01-01 10:00:00"]
        assert assert_fast_agrees(type_, [*values, *plain]) >= 1  # the fast cast is in use
