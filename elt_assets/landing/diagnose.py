"""Find where a CSV file goes wrong, so the error can name the line.

Only called after the fast reader has failed; it re-reads the file line by line with Python's csv
module (strict mode) and reports the first problem: bytes invalid in the declared encoding, a
record with the wrong number of fields, a NUL byte, or a quote that is never closed.
"""

from __future__ import annotations

import codecs
import csv
import gzip
from collections.abc import Iterator
from typing import BinaryIO

from elt_assets.contracts.model import CsvOptions
from elt_assets.landing.source import Source, is_gzip

_FIELD_LIMIT = 16 << 20
EMPTY_LINE = "an empty line inside the data; remove it or quote it"


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
    while raw := stream.readline(line_limit + 1):
        counter[0] += 1
        total += len(raw)
        if len(raw) > line_limit:
            raise _Located(
                counter[0],
                f"a single record is larger than {line_limit} bytes (a line without a line "
                "break that long); if the file is right, raise ELT_MAX_RECORD_BYTES",
            )
        if total > max_bytes:
            return  # beyond what the reader itself reads (the gzip bound): no verdict
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


def locate_csv_problem(
    source: Source, options: CsvOptions, record_limit: int, gzip_limit: int
) -> tuple[int, str] | None:
    """(line, message) for the first problem found, or None if Python reads the file cleanly.
    The limits are the reader's: the longest record, and the most bytes a gzip may inflate to."""
    csv.field_size_limit(_FIELD_LIMIT)
    gzipped = is_gzip(source)
    with source.open() as raw:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw) if gzipped else raw  # type: ignore[assignment]
        max_bytes = gzip_limit if gzipped else source.size
        counter = [0]
        lines = _decoded_lines(stream, options.encoding, counter, record_limit, max_bytes)
        reader = csv.reader(
            lines, delimiter=options.delimiter, quotechar=options.quote, strict=True
        )
        expected: int | None = None
        try:
            while True:
                start = counter[0] + 1
                try:
                    record = next(reader)
                except StopIteration:
                    return None
                except csv.Error as error:
                    text = str(error)
                    if "unexpected end of data" in text:
                        return (
                            start,
                            "a quoted field starting here is never closed (unterminated quote)",
                        )
                    if "NUL" in text:
                        return counter[0], "the line contains a NUL byte; is this a binary file?"
                    if "field larger" in text:
                        return start, f"a field is larger than {_FIELD_LIMIT} bytes"
                    return counter[0], f"malformed CSV ({text})"
                if expected is None:
                    expected = len(record)
                elif len(record) != expected and record != []:
                    return (
                        start,
                        f"expected {expected} fields like the first line, found {len(record)} "
                        "(a ragged row: an unquoted delimiter or a missing value?)",
                    )
                elif record == [] and expected != 0:
                    return start, EMPTY_LINE
        except _Located as located:
            return located.line, located.message
        except (EOFError, OSError) as error:
            return counter[0], f"the file cannot be read to the end ({error})"
