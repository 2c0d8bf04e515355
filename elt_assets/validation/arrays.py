"""The cast of a PostgreSQL array column (integer[], text[], ...) from its literal, `{1,2,NULL}`.

A CSV field holds the literal as written; a Parquet list is written as one by the reader
(landing/nested.py). Either way the literal is split into its elements and every element takes
the cast of the element type, so an array element is checked exactly as a scalar value is: a
numeric(6,1)[] element 5.15 is a bad row, never rounded. All of it is vectorised (list.eval).

The literals accepted are a subset of PostgreSQL's: one dimension, elements quoted ("a,b", with
backslash escapes) or plain (no quote, brace, comma or backslash), unquoted NULL for a null.
"""

from __future__ import annotations

import polars as pl

_SPACE = r"[ \t\n\r\x0b\x0c]"  # what PostgreSQL's array input skips around elements
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PLAIN = r'[^ \t\n\r\x0b\x0c",{}\\](?:[^",{}\\]*[^ \t\n\r\x0b\x0c",{}\\])?'
_ELEMENT = f"(?:{_QUOTED}|{_PLAIN})"
_LITERAL = rf"(?s)^\{{{_SPACE}*(?:{_ELEMENT}(?:{_SPACE}*,{_SPACE}*{_ELEMENT})*)?{_SPACE}*\}}$"


def _elements(literal: pl.Expr) -> pl.Expr:
    """The literal's elements as written: quotes and escapes removed, unquoted NULL as null."""
    item = pl.element()
    unquoted = item.str.slice(1, item.str.len_chars() - 2).str.replace_all(r"(?s)\\(.)", "$1")
    return literal.str.extract_all(f"(?s){_ELEMENT}").list.eval(
        pl.when(item.str.starts_with('"'))
        .then(unquoted)
        .when(item.str.to_uppercase() == "NULL")
        .then(None)
        .otherwise(item)
    )


def array_failures(
    name: str, element_type: str, clean: pl.Expr, element_failed: pl.Expr, element_reason: pl.Expr
) -> tuple[pl.Expr, pl.Expr]:
    """(failed, reason) of an array column's trimmed literal `clean`, given the cast of one
    element (over pl.element()): a literal of another shape fails, as does any bad element."""
    items = _elements(clean)
    shaped = clean.str.contains(_LITERAL)
    bad_element = items.list.eval(element_failed).list.any()
    first_reason = items.list.eval(pl.when(element_failed).then(element_reason))
    failed = clean.is_not_null() & (~shaped | bad_element)
    shape_reason = pl.format(
        "{}: '{}' is not an array of {} written as {{1,2,NULL}} (one dimension, elements "
        'with a comma, brace, quote or backslash in "double quotes")',
        pl.lit(name),
        clean.str.slice(0, 80),
        pl.lit(element_type),
    )
    element = first_reason.list.drop_nulls().list.first() + pl.lit(" (an element of the array)")
    return failed, pl.when(~shaped).then(shape_reason).otherwise(element)
