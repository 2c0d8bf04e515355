"""COPY of polars frames through psycopg 3, with PostgreSQL as the last word on every value.

A frame is written as CSV by polars (Rust, no Python loop over rows) and streamed with
`COPY ... FROM STDIN (FORMAT csv)`. Strings are always quoted, so an empty string stays an empty
string and only a missing value becomes NULL. If PostgreSQL refuses a value our validation let
through (a data error, SQLSTATE class 22), the COPY runs inside a savepoint, so the frame is split
in halves until the refused rows are isolated; they come back with PostgreSQL's own message and
the rest is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl
import psycopg
from psycopg import sql

from elt_assets.postgres.errors import describe
from elt_assets.postgres.templates import render_copy

MAX_REFUSED_PER_BATCH = 1_000
COPY_CHUNK_BYTES = 1 << 20
_COPY_COLUMN = re.compile(r"^COPY [^,]+, line \d+, column (\w+): ", re.MULTILINE)


class TooManyRefused(Exception):
    """PostgreSQL refused so many rows of one batch that isolating them is not worth it."""


def _write(
    connection: psycopg.Connection,
    table: sql.Identifier,
    columns: Sequence[str],
    frame: pl.DataFrame,
) -> None:
    payload = frame.select(columns).write_csv(
        include_header=False, quote_style="non_numeric", line_terminator="\n"
    )
    data = payload.encode("utf-8")
    with connection.cursor() as cursor, cursor.copy(render_copy(table, columns)) as copy:
        view = memoryview(data)
        for start in range(0, len(view), COPY_CHUNK_BYTES):
            copy.write(view[start : start + COPY_CHUNK_BYTES])


def _refused_column(error: psycopg.Error) -> str | None:
    """The column of a refused value: COPY names it in its context line, which is not always the
    first (a JSON error puts the JSON parser's context first)."""
    if error.diag.column_name:
        return error.diag.column_name
    match = _COPY_COLUMN.search(error.diag.context or "")
    return match[1] if match else None


def copy_frame(
    connection: psycopg.Connection,
    table: sql.Identifier,
    columns: Sequence[str],
    frame: pl.DataFrame,
    row_column: str,
) -> list[tuple[int, str, str | None]]:
    """COPY `frame` into `table`; returns (row, PostgreSQL's message, column) for refused rows."""
    if frame.height == 0:
        return []
    try:
        with connection.transaction():
            _write(connection, table, columns, frame)
        return []
    except psycopg.errors.DataError as error:
        if frame.height == 1:
            return [(int(frame[row_column][0]), describe(error), _refused_column(error))]
        first_error = error
    refused: list[tuple[int, str, str | None]] = []
    middle = frame.height // 2
    for half in (frame.slice(0, middle), frame.slice(middle)):
        refused.extend(copy_frame(connection, table, columns, half, row_column))
        if len(refused) > MAX_REFUSED_PER_BATCH:
            raise TooManyRefused(
                f"PostgreSQL refused more than {MAX_REFUSED_PER_BATCH} rows of one batch; the "
                f"first: {describe(first_error)}"
            )
    return refused
