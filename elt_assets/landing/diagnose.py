"""Find where a CSV file goes wrong, so the error can name the line.

Only called after the fast reader has failed; it re-reads the file line by line with Python's csv
module (strict mode) and reports the first problem: bytes invalid in the declared encoding, a
record with the wrong number of fields, a NUL byte, or a quote that is never closed.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from elt_assets.contracts.model import CsvOptions
from elt_assets.landing.source import (
    DECOMPRESSION_ERRORS,
    Source,
    compression_of,
    decompressing,
)

_FIELD_LIMIT = 16 << 20
EMPTY_LINE = "an empty line inside the data; remove it or quote it"
_EXCEL_HINT = re.compile(r"^sep=(.?)$", re.IGNORECASE)


def excel_hint(line: str) -> str | None:
    """The delimiter named by Excel's hint when `line` (a file's first line, without its line
    break) is one, `sep=;`, else None. Excel writes it before the header and reads it so; it is
    neither header nor data."""
    match = _EXCEL_HINT.match(line.strip().strip('"'))
    return match[1] if match else None


@dataclass(frozen=True)
class Located:
    """Where a CSV file first goes wrong, and how; `ragged` when only a record's number of
    fields is wrong (its quoting intact): a bad row, not a broken file."""

    line: int
    message: str
    ragged: bool = False


class _Located(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def _decoded_lines(
    stream: BinaryIO, encoding: str, counter: list[int], line_limit: int, max_bytes: int
) -> Iterator[str]:
    """Lines of at most `line_limit` bytes (a longer one is the problem: it is never read whole,
    so a gigabyte without a line break cannot fill memory), up to `max_bytes` in all."""
    decoder = codecs.getincrementaldecoder(encoding)()
    first = True
    total = 0
    for raw in _raw_lines(stream, line_limit + 1):
        counter[0] += 1
        total += len(raw)
        if len(raw) > line_limit:
            raise _Located(
                counter[0],
                f"a single record is larger than {line_limit} bytes (a line without a line "
                "break that long); if the file is right, raise ELT_MAX_RECORD_BYTES",
            )
        if total > max_bytes:
            return  # beyond what the reader itself reads (the decompression bound): no verdict
        try:
            text = decoder.decode(raw)
        except UnicodeDecodeError as error:
            raise _Located(
                counter[0],
                f"bytes that are not valid {encoding} ({error.reason} at byte {error.start + 1} "
                "of the line); set source.csv.encoding to the file's real encoding",
            ) from None
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text


def _raw_lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The file's lines with their endings, which may be LF, CRLF or a lone CR (old Mac
    exports): a line of `limit` bytes without one is returned as it is. (readline knows LF only,
    and would read a CR-only file as one line.)"""
    buffer, at = b"", 0
    while True:
        ends = [e for e in (buffer.find(b"\n", at), buffer.find(b"\r", at)) if e >= 0]
        end = min(ends, default=-1)
        if end + 1 == len(buffer) and buffer.endswith(b"\r"):
            end = -1  # a CR at the end of what was read: the next byte may be its LF
        if end >= 0 and end - at < limit:
            end += buffer.startswith(b"\r\n", end)
            yield buffer[at : end + 1]
            at = end + 1
            continue
        if len(buffer) - at >= limit:
            yield buffer[at : at + limit]
            at += limit
            continue
        chunk = stream.read(64 * 1024)
        if not chunk:
            if at < len(buffer):
                yield buffer[at:]
            return
        buffer, at = buffer[at:] + chunk, 0


@dataclass(frozen=True)
class RaggedRecord:
    """A record with more or fewer fields than the header, its quoting intact."""

    number: int  # the data record's number (1 is the first after the header)
    line: int  # where it starts in the file
    fields: list[str]
    expected: int


def _records(
    source: Source, options: CsvOptions, record_limit: int, expansion_limit: int
) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every record, leading empty lines and Excel's delimiter hint
    skipped; raises _Located for a problem of structure (encoding, an unclosed quote, a NUL
    byte, a line over the limit)."""
    csv.field_size_limit(_FIELD_LIMIT)
    compression = compression_of(source)
    with source.open() as raw:
        stream = decompressing(compression, raw)  # type: ignore[arg-type]
        max_bytes = expansion_limit if compression else source.size
        counter = [0]
        lines = _decoded_lines(stream, options.encoding, counter, record_limit, max_bytes)
        reader = csv.reader(
            lines, delimiter=options.delimiter, quotechar=options.quote, strict=True
        )
        started = False
        try:
            while True:
                start = counter[0] + 1
                try:
                    record = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise _structure(error, start, counter[0]) from None
                first = not started and options.header and record
                if first and excel_hint(options.delimiter.join(record)):
                    continue  # Excel's `sep=;` before the header (as readers.py skips it)
                if record or started:
                    started = True
                    yield start, record
        except DECOMPRESSION_ERRORS as error:
            raise _Located(counter[0], f"the file cannot be read to the end ({error})") from None


def _structure(error: csv.Error, start: int, line: int) -> _Located:
    text = str(error)
    if "unexpected end of data" in text:
        return _Located(start, "a quoted field starting here is never closed (unterminated quote)")
    if "NUL" in text:
        return _Located(line, "the line contains a NUL byte; is this a binary file?")
    if "field larger" in text:
        return _Located(start, f"a field is larger than {_FIELD_LIMIT} bytes")
    return _Located(line, f"malformed CSV ({text})")


def ragged_message(expected: int, found: int) -> str:
    return (
        f"expected {expected} fields like the first line, found {found} "
        "(a ragged row: an unquoted delimiter or a missing value?)"
    )


def locate_csv_problem(
    source: Source, options: CsvOptions, record_limit: int, expansion_limit: int
) -> Located | None:
    """The first problem found, or None if Python reads the file cleanly. The limits are the
    reader's: the longest record, and the most bytes a compressed file may inflate to."""
    expected: int | None = None
    try:
        for start, record in _records(source, options, record_limit, expansion_limit):
            if expected is None:
                expected = len(record)
            elif record == [] and expected != 0:
                return Located(start, EMPTY_LINE)
            elif len(record) != expected:
                return Located(start, ragged_message(expected, len(record)), ragged=True)
    except _Located as located:
        return Located(located.line, located.message)
    return None


def ragged_records(
    source: Source, options: CsvOptions, record_limit: int, expansion_limit: int, limit: int
) -> list[RaggedRecord] | Located:
    """Every ragged record of a file whose structure is otherwise sound (at most `limit` of
    them); else the first problem that makes the file unreadable."""
    expected = None if options.header else 0  # without a header, the first record decides
    number, found = 0, []
    try:
        for start, record in _records(source, options, record_limit, expansion_limit):
            if expected is None:
                expected = len(record)  # the header
                continue
            number += 1
            if number == 1 and not options.header:
                expected = len(record)
            if record == [] and expected != 0:
                return Located(start, EMPTY_LINE)
            if len(record) != expected:
                found.append(RaggedRecord(number, start, record, expected))
                if len(found) > limit:
                    return Located(
                        start,
                        f"more than {limit:,} ragged rows: the file's layout is not the "
                        "contract's (another delimiter?); " + ragged_message(expected, len(record)),
                    )
    except _Located as located:
        return Located(located.line, located.message)
    return found
