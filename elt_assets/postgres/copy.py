"""COPY of polars frames through psycopg 3, with PostgreSQL as the last word on every value.

A frame is written as CSV by polars (Rust, no Python loop over rows) and streamed with
`COPY ... FROM STDIN (FORMAT csv)`. Strings are always quoted, so an empty string stays an empty
string and only a missing value becomes NULL. If PostgreSQL refuses a value our validation let
through (a data error, SQLSTATE class 22), the COPY runs inside a savepoint, so the frame is split
in halves until the refused rows are isolated; they come back with PostgreSQL's own message and
the rest is written.
"""

from __future__ import annotations

import contextvars
import io
import queue
import re
import threading
from collections.abc import Generator, Iterable, Sequence
from typing import TypeVar

import polars as pl
import psycopg
from psycopg import sql

from elt_assets.errors import TerminalError
from elt_assets.postgres.errors import describe
from elt_assets.postgres.templates import render_copy

MAX_REFUSED_PER_BATCH = 1_000
COPY_CHUNK_BYTES = 1 << 20
_COPY_COLUMN = re.compile(r"^COPY [^,]+, line \d+, column (\w+): ", re.MULTILINE)


T = TypeVar("T")


class TooManyRefused(TerminalError):
    """PostgreSQL refused so many rows of one batch that isolating them is not worth it."""


def encode_csv(frame: pl.DataFrame, columns: Sequence[str]) -> bytes:
    """The frame's `columns` as COPY CSV: strings quoted (so "" stays empty), NULL as nothing."""
    buffer = io.BytesIO()
    frame.select(columns).write_csv(
        buffer, include_header=False, quote_style="non_numeric", line_terminator="\n"
    )
    return buffer.getvalue()


def _write(
    connection: psycopg.Connection, table: sql.Identifier, columns: Sequence[str], data: bytes
) -> None:
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
    payload: bytes | None = None,
) -> list[tuple[int, str, str | None]]:
    """COPY `frame` into `table`; returns (row, PostgreSQL's message, column) for refused rows.

    `payload` is the frame already encoded by `encode_csv` (e.g. by a read-ahead thread).
    """
    if frame.height == 0:
        return []
    try:
        with connection.transaction():
            _write(connection, table, columns, payload or encode_csv(frame, columns))
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


class _End:
    """Marks the end of a read-ahead stream, carrying the producer's exception if it failed."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def read_ahead(items: Iterable[T], depth: int = 1) -> Generator[T, None, None]:
    """Iterate `items` in a background thread, up to `depth` items ahead of the consumer.

    The next batch is read, validated and encoded (polars and pyarrow release the GIL) while
    PostgreSQL parses the current one: on two cores the two halves of the work overlap. The
    producer's exceptions are re-raised here; if the consumer stops early, the producer stops.
    """
    handoff: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        result: _End = _End()
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            result = _End(error)
        while not stop.is_set():
            try:
                handoff.put(result, timeout=0.1)
                return
            except queue.Full:
                continue

    context = contextvars.copy_context()  # log context (dataset, file, run) follows the work
    thread = threading.Thread(target=context.run, args=(produce,), name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:  # release the file a generator holds open
            close()
