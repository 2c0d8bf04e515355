"""Streaming readers: a landed file as bounded polars batches, never the whole file in memory.

CSV goes through pyarrow's streaming reader, which keeps PostgreSQL's CSV meaning: an unquoted
empty field is NULL, a quoted empty field ("") is an empty string, quotes, delimiters and line
breaks inside quoted fields are data. Every value stays text here; typing is validation's job.
The bytes pass through a tap that hashes them (to detect a file that changes while being read),
bounds decompression, and tracks quote parity (pyarrow accepts an unterminated quote at the end
of a file; PostgreSQL does not). Parquet is read row group by row group with its own types.

Every failure to read raises `FileRejected`, naming the file and, where known, line and column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from elt_assets.contracts.model import (
    EXTRA_PREFIX,
    RAW_RECORD_COLUMN,
    REJECTED_COLUMN,
    ROW_COLUMN,
    Contract,
)
from elt_assets.contracts.types import PgType
from elt_assets.errors import TerminalError
from elt_assets.landing import nested as nested_values
from elt_assets.landing.diagnose import (
    EMPTY_LINE,
    Located,
    RaggedRecord,
    excel_hint,
    locate_csv_problem,
    ragged_records,
)
from elt_assets.landing.source import (
    COMPRESSIONS,
    DECOMPRESSION_ERRORS,
    Source,
    as_source,
    decompressing,
    kind_of,
)
from elt_assets.log import get_logger

log = get_logger(__name__)

MAX_COLUMNS = 4096
MAX_ROW_BYTES = 1 << 20  # one CSV record; pyarrow's block size (ELT_MAX_RECORD_BYTES)
GZIP_RATIO_LIMIT = 500  # decompressed / compressed, beyond a 1 GiB floor: a bomb (any codec)
GZIP_FLOOR_BYTES = 1 << 30
READ_CHUNK = 1 << 20
# An uncompressed CSV file up to this size is read whole before pyarrow parses it: handing a
# small file to pyarrow's read-ahead thread through Python costs more than reading it (1.6 ms
# per 100-row file, 1.1 ms read whole).
WHOLE_READ_BYTES = 1 << 20
# A batch also ends at this much column data, however few rows: wide rows keep memory flat.
MAX_PARQUET_ROW_BYTES = 64 << 20  # a Parquet row's declared uncompressed size, at most
MAX_BATCH_BYTES = 8 << 20


class FileRejected(TerminalError):
    """The file as a whole cannot be loaded. The message says where and what to do."""

    def __init__(
        self, file: str, problem: str, *, line: int | None = None, column: str | None = None
    ):
        self.file, self.problem, self.line, self.column = file, problem, line, column
        where = "".join(
            [f", line {line}" if line is not None else "", f", column {column!r}" if column else ""]
        )
        super().__init__(f"{file}{where}: {problem}")


class FileChanged(TerminalError):
    """The file's bytes changed while it was being read; it is retried once it is stable."""


@dataclass(frozen=True)
class HeaderMapping:
    """How the file's columns meet the contract's."""

    sources: dict[str, str]  # contract column -> column in the file
    missing: list[str] = field(default_factory=list)  # contract columns absent (filled with NULL)
    extra: list[str] = field(default_factory=list)  # file columns the contract does not know


def map_header(contract: Contract, file_columns: list[str], file: str) -> HeaderMapping:
    """Match file columns to contract columns by name; column order never matters.

    strict: names must match exactly, no column missing, none extra.
    tolerant: names match after trimming and case-folding; extra columns are ignored and missing
    nullable columns are filled with NULL (a missing required column still rejects the file).
    policy.new_columns, when set, decides about extra columns instead (fail, ignore, rescue).
    """
    tolerant = contract.policy.schema_drift == "tolerant"

    def norm(name: str) -> str:
        return name.strip().casefold() if tolerant else name

    by_name: dict[str, str] = {}
    for name in file_columns:
        if norm(name) in by_name:
            raise FileRejected(file, f"the header has column {name!r} twice", line=1)
        by_name[norm(name)] = name
    sources: dict[str, str] = {}
    missing: list[str] = []
    for column in contract.columns:
        found = by_name.get(norm(column.header))
        if found is None:
            missing.append(column.name)
        else:
            sources[column.name] = found
    used = set(sources.values())
    extra = [name for name in file_columns if name not in used]
    # Columns the dataset's files added are optional: the files from before them lack them.
    strictly_missing = [n for n in missing if n not in contract.added_columns]
    required_missing = [n for n in missing if contract.is_required(contract.column(n))]
    refused_extra = extra if contract.policy.extra_columns == "fail" else []
    if not tolerant and (strictly_missing or refused_extra):
        parts = []
        if strictly_missing:
            parts.append(f"missing columns {strictly_missing}")
        if refused_extra:
            parts.append(f"unexpected columns {refused_extra}")
        fix = (
            "fix the file, update the contract, or set policy.schema_drift: tolerant (or "
            "policy.new_columns: ignore or rescue)"
        )
        raise FileRejected(file, f"{' and '.join(parts)} (schema_drift: strict); {fix}", line=1)
    if required_missing:
        raise FileRejected(
            file, f"required columns {required_missing} are missing from the header", line=1
        )
    return HeaderMapping(sources, missing, extra)


_BOM = b"\xef\xbb\xbf"


class _QuoteCheck:
    """Finds the first quote that is not at a field boundary, on the raw bytes, vectorised.

    A quote with an even number of quotes before it opens a quoted field: it must follow a
    delimiter, a line break, the start of the data or another quote (a doubled quote). With an odd
    number it closes one: a delimiter, a line break, the end or another quote must follow. Readers
    disagree on anything else: pyarrow keeps the quotes of Jo"h"n as data, PostgreSQL's COPY reads
    them as quoting (John), so such a file has no single meaning and is rejected, naming its line.
    Only for encodings where the quote, the delimiter and the line break are single ASCII bytes.
    """

    def __init__(self, file: str, quote: bytes, delimiter: bytes):
        self._file = file
        self._quote_byte = quote[:1]
        self._boundaries = set(delimiter + b"\n\r" + quote)  # a quote may touch these
        self._quotes = 0  # quotes before the current chunk
        self._lines = 0  # line breaks before the current chunk
        self._previous = ord("\n")  # the byte before the current chunk (start of data: a break)
        self._pending: tuple[int, int] | None = None  # a closing quote ending the last chunk
        self._bom = _BOM  # what is left to match of a UTF-8 BOM at the start of the data

    def feed(self, data: bytes) -> None:
        while self._bom and data:  # a BOM is not data, even split across chunks
            if data[0] != self._bom[0]:
                self._bom = b""
                break
            data, self._bom = data[1:], self._bom[1:]
        if not data:
            return
        if self._pending is not None:
            if data[0] not in self._boundaries:
                self._reject(*self._pending, closing=True)
            self._pending = None
        if self._quote_byte in data:
            self._check(data)
        self._lines += data.count(b"\n")
        self._previous = data[-1]

    # Up to this many quotes in a chunk, they are judged one by one: the vectorised pass costs
    # about 0.3 ms to set up, more than a small file's whole parse.
    FEW_QUOTES = 512

    def _check(self, data: bytes) -> None:
        count = data.count(self._quote_byte)
        if count <= self.FEW_QUOTES:
            self._check_each(data, count)
            return
        chunk = pa.Array.from_buffers(pa.uint8(), len(data), [None, pa.py_buffer(data)])
        quote = pa.scalar(self._quote_byte[0], pa.uint8())
        # The quotes' offsets: 0, 1, 2, ... filtered where a byte is the quote (five times
        # faster than indices_nonzero).
        positions = pc.filter(_offsets(len(data)), pc.equal(chunk, quote))
        if len(positions):
            allowed = pa.array(sorted(self._boundaries), pa.uint8())
            before = pa.concat_arrays([pa.array([self._previous], pa.uint8()), chunk[:-1]])
            after = pa.concat_arrays([chunk[1:], pa.array([ord("\n")], pa.uint8())])
            ordinal = pc.cumulative_sum(pc.cast(pc.is_valid(positions), pa.int64()))  # 1, 2, ...
            opening = pc.equal(pc.bit_wise_and(pc.add(ordinal, self._quotes - 1), 1), 0)
            bad_open = pc.and_(opening, pc.invert(pc.is_in(pc.take(before, positions), allowed)))
            bad_close = pc.and_(
                pc.invert(opening), pc.invert(pc.is_in(pc.take(after, positions), allowed))
            )
            last = positions[-1].as_py()
            if last == len(data) - 1 and not opening[-1].as_py():
                self._pending = (last, self._lines + data.count(b"\n", 0, last))
                bad_close = pc.and_(bad_close, pc.not_equal(positions, last))
            bad = pc.indices_nonzero(pc.or_(bad_open, bad_close))
            if len(bad):
                index = bad[0].as_py()
                position = positions[index].as_py()
                line = self._lines + data.count(b"\n", 0, position)
                self._reject(position, line, closing=not opening[index].as_py())
            self._quotes += len(positions)

    @property
    def quotes(self) -> int:
        """The quotes in the data so far."""
        return self._quotes

    def _check_each(self, data: bytes, count: int) -> None:
        """`_check` one quote at a time, with the same verdicts (test_properties holds them to the
        same slow reference)."""
        last = len(data) - 1
        opening = self._quotes % 2 == 0
        position = data.find(self._quote_byte)
        while position != -1:
            if opening:
                before = data[position - 1] if position else self._previous
                if before not in self._boundaries:
                    self._reject(position, self._lines + data.count(b"\n", 0, position), False)
            elif position == last:  # judged by the first byte of the next chunk
                self._pending = (position, self._lines + data.count(b"\n", 0, position))
            elif data[position + 1] not in self._boundaries:
                self._reject(position, self._lines + data.count(b"\n", 0, position), True)
            opening = not opening
            position = data.find(self._quote_byte, position + 1)
        self._quotes += count

    def _reject(self, position: int, lines_before: int, closing: bool) -> None:
        problem = (
            "text follows the closing quote of a field"
            if closing
            else "a quote inside a field that does not start with one"
        )
        raise FileRejected(
            self._file,
            f'{problem} (as in "ab"c or a"b); CSV readers disagree on what that means: quote '
            'the whole field and double every quote inside it ("a""b")',
            line=lines_before + 1,
        )


_OFFSETS: list[pa.Array] = []  # 0, 1, 2, ... as uint32: built once, longer when a chunk is


def _offsets(count: int) -> pa.Array:
    """The offsets 0 .. count - 1 (uint32); a slice of one array kept for every chunk."""
    if not _OFFSETS or len(_OFFSETS[0]) < count:
        size = max(count, READ_CHUNK)
        ones = pc.fill_null(pa.nulls(size, pa.uint32()), pa.scalar(1, pa.uint32()))
        _OFFSETS[:] = [pc.subtract(pc.cumulative_sum(ones), pa.scalar(1, pa.uint32()))]
    return _OFFSETS[0].slice(0, count)


class _Tap(io.RawIOBase):
    """Reads the raw file, hashing its bytes; decompresses it; bounds expansion; counts quotes."""

    def __init__(
        self,
        source: Source,
        file: str,
        quote: bytes,
        compression: str | None,
        checker: _QuoteCheck | None = None,
    ):
        self._raw = source.open()
        self._stopped = False
        self.error: Exception | None = None
        self.file = file
        self._quote = quote
        self._checker = checker
        self.sha256 = hashlib.sha256()
        self.raw_bytes = 0
        self.data_bytes = 0
        self._quotes = 0  # counted here when no checker counts them
        self._limit = max(GZIP_FLOOR_BYTES, source.size * GZIP_RATIO_LIMIT)
        self.compression = compression
        self._decompressed = decompressing(compression, self._hashing()) if compression else None

    def _hashing(self) -> BinaryIO:
        tap = self

        class Hashing(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                count = tap._raw.readinto(buffer)
                tap.sha256.update(buffer[:count])
                tap.raw_bytes += count
                return count

        return io.BufferedReader(Hashing(), READ_CHUNK)

    def readable(self) -> bool:
        return True

    def stop(self) -> None:
        """Answer every later read with end of data (the reader is done with the file)."""
        self._stopped = True

    def raise_error(self) -> None:
        """Raise what stopped the tap (bad compressed data, a stray quote, a read error), if any."""
        if self.error is not None:
            raise self.error

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Called by pyarrow's read-ahead thread. A problem is kept for the reader's own thread
        to raise (`raise_error`) and ends the data here: an exception raised into pyarrow would
        be held by it as a Python object, which is what `_ArrowCsv` must never leave behind."""
        if self._stopped:
            return 0
        try:
            return self._read(buffer)
        except Exception as error:
            self.error = error
            self._stopped = True
            return 0

    def _read(self, buffer: memoryview) -> int:
        if self._decompressed is not None:
            try:
                data = self._decompressed.read(len(buffer))
            except DECOMPRESSION_ERRORS as error:
                raise FileRejected(
                    self.file,
                    f"the {self.compression} data is corrupt or truncated ({error}); ask the "
                    "sender to resend it",
                ) from None
            if self.data_bytes + len(data) > self._limit:
                raise FileRejected(
                    self.file,
                    f"{self.compression} expands beyond {self._limit} bytes (over "
                    f"{GZIP_RATIO_LIMIT}x its size); refusing a likely decompression bomb",
                )
            buffer[: len(data)] = data
        else:
            count = self._raw.readinto(buffer)
            data = bytes(buffer[:count])  # for the checks below, which search it
            self.sha256.update(data)
            self.raw_bytes += count
        self.data_bytes += len(data)
        if self._checker is not None:
            self._checker.feed(data)  # which counts the quotes
        else:
            self._quotes += data.count(self._quote)
        return len(data)

    @property
    def quotes(self) -> int:
        """The quotes in the data so far (an odd count at the end: a quote left open)."""
        return self._checker.quotes if self._checker is not None else self._quotes

    def read_whole(self) -> pa.Buffer:
        """Everything the tap gives, read here and now, in memory pyarrow owns (so that pyarrow
        holds no Python object). A problem ends the data, as for pyarrow's own reads."""
        whole = pa.BufferOutputStream()
        chunk = memoryview(bytearray(READ_CHUNK))
        while count := self.readinto(chunk):
            whole.write(chunk[:count])
        return whole.getvalue()

    def finish_hash(self) -> str:
        """Read whatever the parser left unread, so the hash covers the whole file."""
        while chunk := self._raw.read(READ_CHUNK):
            self.sha256.update(chunk)
            self.raw_bytes += len(chunk)
        return self.sha256.hexdigest()

    def release(self) -> None:
        """Close the file itself. (`close`, which pyarrow's side calls when it lets go of the
        tap, leaves it open: the hash still reads the rest of it.)"""
        self._raw.close()
        self.close()


class _ArrowCsv:
    """pyarrow's streaming CSV reader over a tap, torn down so that no thread of pyarrow's ever
    runs Python code once `close` has returned.

    The reader reads ahead on threads of its own. Whatever Python object it still holds when the
    interpreter shuts down is released from such a thread, which must then take the GIL: the
    interpreter ends that thread inside C++ code and the process aborts ("terminate called
    without an active exception", exit 134), typically right after a rejected file. So the blocks
    pyarrow reads are copied into memory it owns (no Python bytes in its buffers), and `close`
    waits until pyarrow has let go of the one Python object it holds, the file it reads from.
    """

    RELEASE_TIMEOUT_SECONDS = 60.0

    def __init__(
        self,
        tap: _Tap,
        read_options: pa_csv.ReadOptions,
        parse_options: pa_csv.ParseOptions,
        convert_options: pa_csv.ConvertOptions,
        *,
        whole: bool = False,
    ):
        """`whole`: read the tap to its end first (a small file), so that pyarrow reads from
        its own memory, not through Python."""
        self.tap = tap
        self._released = threading.Event()
        stream: pa.NativeFile | None
        if whole:
            stream = pa.BufferReader(tap.read_whole())
            self._released.set()  # pyarrow never held the tap
        else:
            source: io.BufferedReader | None = io.BufferedReader(tap, READ_CHUNK)
            weakref.finalize(source, self._released.set)
            # Only pyarrow may hold the stream: a Python frame that did (a function taking it as
            # an argument) would keep it alive through the traceback of any error.
            stream = pa.BufferedInputStream(pa.PythonFile(source, mode="r"), READ_CHUNK)
            source = None
        self.reader: pa_csv.CSVStreamingReader | None = None
        try:
            self.reader = pa_csv.open_csv(
                stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
        except BaseException:
            stream = None
            self.close()
            raise
        stream = None

    def read_next_batch(self) -> pa.RecordBatch:
        assert self.reader is not None
        return self.reader.read_next_batch()

    def close(self) -> None:
        """Stop reading and wait until pyarrow has released the file (idempotent)."""
        self.tap.stop()  # a read still on its way gets "end of data" at once
        self.reader = None
        if not self._released.wait(self.RELEASE_TIMEOUT_SECONDS):
            log.warning("%s: the CSV reader did not release the file", self.tap.file)


class FileReader:
    """Streams one landed file as polars batches of the contract's columns plus `_elt_row`.

    Use as a context manager; after `batches()` is exhausted, `sha256`, `rows_read` and
    `bytes_read` describe exactly what was read.
    """

    def __init__(
        self,
        source: Path | Source,
        file: str,
        contract: Contract,
        batch_rows: int = 15_000,
        record_limit: int | None = None,
    ):
        self.source = as_source(source)
        self.file, self.contract, self.batch_rows = file, contract, batch_rows
        self.format = contract.file_format(file)
        self.rows_read = 0
        self.sha256: str | None = None
        self.bytes_read = 0
        self.header: HeaderMapping | None = None
        self.lines_before_header = 0  # empty lines and Excel's hint, skipped
        # The longest CSV record (ELT_MAX_RECORD_BYTES, through the landing resource).
        self.record_limit = record_limit or MAX_ROW_BYTES

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def batches(self) -> Iterator[pl.DataFrame]:
        if self.source.size == 0:
            raise FileRejected(self.file, "the file is empty (0 bytes); expected at least a header")
        if self.format == "parquet":
            yield from self._parquet_batches()
        else:
            yield from self._csv_batches()

    # -- CSV ---------------------------------------------------------------------------------

    def _csv_batches(self) -> Iterator[pl.DataFrame]:
        options = self.contract.source.csv
        kind = kind_of(self.source)
        if kind == "UTF-16 text":
            if not is_utf16(options.encoding):
                raise FileRejected(
                    self.file,
                    "the file is UTF-16 text (its byte-order mark says so): set "
                    "source.csv.encoding: utf-16",
                )
        elif kind is not None and kind not in COMPRESSIONS:
            raise FileRejected(self.file, _not_csv(kind))
        compression = kind if kind in COMPRESSIONS else None
        raw = self._csv_header(compression) if options.header else None
        if raw is not None:
            file_columns = header_names(raw)
            self.header = map_header(self.contract, file_columns, self.file)
        else:
            file_columns = [c.header for c in self.contract.columns]
            self.header = HeaderMapping({c.name: c.header for c in self.contract.columns})
        try:
            yield from self._csv_pass(
                compression, raw or file_columns, file_columns, raw is not None
            )
        except _RaggedRows:
            # Rows with the wrong number of fields, the quoting intact: bad rows, quarantined.
            # The good rows already handed on were all before the first of them.
            ragged = self._ragged_records()
            numbers = _GoodRowNumbers(ragged, already=self.rows_read)
            yield self._ragged_frame(ragged, file_columns)
            try:
                yield from self._csv_pass(
                    compression, raw or file_columns, file_columns, raw is not None, numbers
                )
            except _RaggedRows:  # pyarrow failed on something else, Python's csv did not
                raise FileRejected(
                    self.file,
                    "the CSV cannot be parsed beyond its ragged rows",
                    line=ragged[0].line,
                ) from None
            if numbers.skipped != len(ragged):  # the two readers disagree: trust neither
                raise FileRejected(
                    self.file,
                    f"{len(ragged)} ragged row(s) found by one reader, {numbers.skipped} by the "
                    "other: the file's structure is ambiguous; nothing of it is loaded",
                    line=ragged[0].line,
                ) from None

    def _csv_pass(
        self,
        compression: str | None,
        columns: list[str],
        file_columns: list[str],
        header: bool,
        numbers: _GoodRowNumbers | None = None,
    ) -> Iterator[pl.DataFrame]:
        """One read of the file by pyarrow, start to end, hashing it as it goes. With `numbers`,
        records of the wrong length are skipped (they were quarantined) and the rest numbered
        around them; without, the first one raises _RaggedRows (or FileRejected)."""
        options = self.contract.source.csv
        tap = _Tap(self.source, self.file, options.quote.encode(), compression, self._quote_check())
        try:
            parser = self._open_arrow_csv(tap, columns, header, numbers)
            try:
                yield from self._csv_frames(parser, file_columns, numbers)
            finally:
                parser.close()  # before anything else returns or raises: see _ArrowCsv
            tap.raise_error()  # the data may have ended early because of it
            if tap.quotes % 2:
                raise self._diagnosed("a quoted field is not closed (unterminated quote)")
            self.sha256 = tap.finish_hash()
            self.bytes_read = tap.raw_bytes
        finally:
            tap.release()

    def _ragged_records(self) -> list[RaggedRecord]:
        options = self.contract.source.csv
        found = ragged_records(
            self.source, options, self.record_limit, self._expansion_limit(), MAX_RAGGED_ROWS
        )
        if isinstance(found, Located):
            raise FileRejected(self.file, found.message, line=found.line)
        if not found:  # pyarrow saw one, Python's csv none: trust neither
            raise FileRejected(self.file, "the CSV cannot be parsed (a row of the wrong length)")
        return found

    def _ragged_frame(self, ragged: list[RaggedRecord], file_columns: list[str]) -> pl.DataFrame:
        """The ragged records as rows the reader rejected: their number, why, and their fields
        under the file's headers (extra fields as field_N, N their position)."""
        self.rows_read += len(ragged)
        names = [
            file_columns[i] if i < len(file_columns) else f"field_{i + 1}"
            for i in range(max(len(r.fields) for r in ragged))
        ]
        return pl.DataFrame(
            {
                ROW_COLUMN: [r.number for r in ragged],
                REJECTED_COLUMN: [
                    f"line {r.line}: {len(r.fields)} field(s) where the header has {r.expected} "
                    "(a ragged row: an unquoted delimiter or a missing value?)"
                    for r in ragged
                ],
                RAW_RECORD_COLUMN: [
                    json.dumps(dict(zip(names, r.fields, strict=False)), ensure_ascii=False)
                    for r in ragged
                ],
            },
            schema={ROW_COLUMN: pl.Int64, REJECTED_COLUMN: pl.String, RAW_RECORD_COLUMN: pl.String},
        )

    def _csv_frames(
        self, parser: _ArrowCsv, file_columns: list[str], numbers: _GoodRowNumbers | None
    ) -> Iterator[pl.DataFrame]:
        look_for_empty_lines = len(file_columns) > 1
        for record_batch in self._arrow_batches(parser):
            # By position: the file's own names may be blank (header_names names those).
            batch = record_batch.rename_columns(file_columns)
            frame: pl.DataFrame = pl.from_arrow(batch)  # type: ignore[assignment]
            if (
                look_for_empty_lines
                # A row of nothing but NULLs needs a NULL in every column: most batches have a
                # column without any, and are not scanned row by row.
                and min(column.null_count for column in batch.columns) > 0
                and frame.select(pl.all_horizontal(pl.all().is_null()).any()).item()
            ):
                look_for_empty_lines = False
                self._reject_empty_line()
            if numbers is None:
                yield self._frame(frame)
                continue
            frame, row_numbers = numbers.take(frame)
            if frame.height:
                yield self._frame(frame, row_numbers)

    def _quote_check(self) -> _QuoteCheck | None:
        options = self.contract.source.csv
        try:
            single = [c.encode(options.encoding) for c in (options.quote, options.delimiter, "\n")]
        except UnicodeEncodeError:
            return None
        if single != [
            c.encode("ascii", "replace") for c in (options.quote, options.delimiter, "\n")
        ]:
            return None  # UTF-16 and the like: no single-byte quote to look for
        return _QuoteCheck(self.file, single[0], single[1])

    def _open_arrow_csv(
        self, tap: _Tap, columns: list[str], header: bool, numbers: _GoodRowNumbers | None = None
    ) -> _ArrowCsv:
        options = self.contract.source.csv
        null_values = ["", *options.null_values]
        try:
            return _ArrowCsv(
                tap,
                read_options=pa_csv.ReadOptions(
                    block_size=self.record_limit,
                    use_threads=False,  # the read-ahead thread already overlaps it with COPY
                    encoding=options.encoding,
                    column_names=None if header else columns,
                    skip_rows=self.lines_before_header,
                ),
                parse_options=pa_csv.ParseOptions(
                    delimiter=options.delimiter,
                    quote_char=options.quote,
                    double_quote=True,
                    escape_char=False,
                    newlines_in_values=True,
                    ignore_empty_lines=False,
                    invalid_row_handler=numbers.skip if numbers is not None else None,
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(columns, pa.string()),
                    null_values=null_values,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
                whole=tap.compression is None and self.source.size <= WHOLE_READ_BYTES,
            )
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as error:
            tap.raise_error()  # the data ended early because of it
            raise self._diagnosed(str(error)) from None

    def _arrow_batches(self, parser: _ArrowCsv) -> Iterator[pa.RecordBatch]:
        pending: list[pa.RecordBatch] = []
        pending_rows = pending_bytes = 0
        while True:
            try:
                batch = parser.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as error:
                parser.tap.raise_error()  # the data ended early because of it
                raise self._diagnosed(str(error)) from None
            parser.tap.raise_error()  # a batch cut short by it is never handed on
            pending.append(batch)
            pending_rows += batch.num_rows
            # One batch per parser block of `record_limit` bytes of text (the last one shorter);
            # batch.nbytes would count the parser's whole buffer allocations instead.
            pending_bytes += self.record_limit
            if pending_rows >= self.batch_rows or pending_bytes >= MAX_BATCH_BYTES:
                table = pa.Table.from_batches(pending).combine_chunks()
                full = table.num_rows - table.num_rows % self.batch_rows
                size = full if full else table.num_rows  # byte bound: all of it
                yield from table.slice(0, size).to_batches(max_chunksize=self.batch_rows)
                # The rows beyond the full batches start the next one, not a batch of their own.
                rest = table.slice(size)
                pending, pending_rows = rest.to_batches(), rest.num_rows
                pending_bytes = pending_bytes * rest.num_rows // table.num_rows
        if pending:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield from table.to_batches(max_chunksize=self.batch_rows)

    def _csv_header(self, compression: str | None) -> list[str]:
        """The first record, parsed with the contract's dialect, from at most record_limit bytes."""
        options = self.contract.source.csv
        try:
            with self.source.open() as raw:
                head = decompressing(compression, raw).read(self.record_limit)  # type: ignore[arg-type]
        except DECOMPRESSION_ERRORS as error:
            raise FileRejected(
                self.file,
                f"the {compression} data is corrupt or truncated ({error}); ask for a new copy",
            ) from None
        if not head.strip():
            raise FileRejected(self.file, "the file has no header line (empty after decompression)")
        try:
            text = head.decode(options.encoding)
        except UnicodeDecodeError as error:
            cut = len(head) == self.record_limit and len(head) - error.start <= 4
            if not cut:  # not merely a multi-byte character cut by the read limit
                line = head[: error.start].count(b"\n") + 1
                raise FileRejected(
                    self.file,
                    f"bytes that are not valid {options.encoding} ({error.reason}); "
                    "set source.csv.encoding to the file's real encoding",
                    line=line,
                ) from None
            text = head[: error.start].decode(options.encoding)
        self.lines_before_header, text = _before_header(text.removeprefix("\ufeff"))
        # csv's field limit is process-wide (128 KiB until diagnose.py raises it): a long header
        # must get the same verdict in a fresh process as after a diagnosis.
        csv.field_size_limit(max(csv.field_size_limit(), len(head) + 1))
        records = csv.reader(
            io.StringIO(text, newline=""), delimiter=options.delimiter, quotechar=options.quote
        )
        try:
            header = next(records, None)
        except csv.Error as error:
            raise FileRejected(
                self.file, f"the header cannot be parsed ({error})", line=1
            ) from None
        if header is None:  # a generator must not leak StopIteration
            raise FileRejected(self.file, "the file has no header line", line=1)
        if len(header) > MAX_COLUMNS:
            raise FileRejected(
                self.file, f"the header has {len(header)} columns; at most {MAX_COLUMNS} are read"
            )
        consumed = sum(len(x) for x in header)
        if len(head) == self.record_limit and consumed >= len(text) - len(header) - 2:
            raise FileRejected(
                self.file,
                f"the header line is longer than {self.record_limit} bytes (ELT_MAX_RECORD_BYTES)",
            )
        return header

    def _reject_empty_line(self) -> None:
        """pyarrow reads an empty line as a row of NULLs; PostgreSQL refuses it ("missing data")
        when there is more than one column. A row of NULLs may also be written as ,, so only a real
        empty line, found by re-reading the file, rejects it."""
        located = self._locate()
        if located is not None and located.message == EMPTY_LINE:
            raise FileRejected(self.file, EMPTY_LINE, line=located.line)

    def _expansion_limit(self) -> int:
        """The most bytes a compressed file may decompress to (a bomb beyond)."""
        return max(GZIP_FLOOR_BYTES, self.source.size * GZIP_RATIO_LIMIT)

    def _locate(self) -> Located | None:
        """The first problem Python's csv module finds, reading with this reader's limits."""
        options = self.contract.source.csv
        return locate_csv_problem(self.source, options, self.record_limit, self._expansion_limit())

    def _diagnosed(self, problem: str) -> Exception:
        """Turn a parser error into one that names the line, by re-reading with Python's csv;
        a ragged row under a quarantining contract is not the file's fault (_RaggedRows)."""
        located = self._locate()
        if located is not None:
            if located.ragged and self.contract.policy.bad_rows == "quarantine":
                return _RaggedRows()
            return FileRejected(self.file, located.message, line=located.line)
        if "straddl" in problem:
            problem = (
                f"a single record is larger than {self.record_limit} bytes; if the file is "
                "right, raise ELT_MAX_RECORD_BYTES"
            )
        return FileRejected(self.file, f"the CSV cannot be parsed: {problem}")

    # -- Parquet -----------------------------------------------------------------------------

    def _parquet_batches(self) -> Iterator[pl.DataFrame]:
        try:
            handle = self.source.open_seekable()
        except OSError as error:
            raise FileRejected(self.file, f"the file cannot be opened ({error})") from None
        try:
            yield from self._parquet_frames(handle)
        finally:
            handle.close()
        # What was read is hashed again from the start (Parquet is read out of order).
        digest = hashlib.sha256()
        with self.source.open() as stream:
            while chunk := stream.read(READ_CHUNK):
                digest.update(chunk)
                self.bytes_read += len(chunk)
        self.sha256 = digest.hexdigest()

    def _parquet_frames(self, handle: io.BufferedIOBase) -> Iterator[pl.DataFrame]:
        try:
            # No pre-buffering of whole row groups and no decoding threads: 40 MB less at peak
            # for 100k-row groups, and the read-ahead thread already overlaps reading with COPY.
            # INT96 timestamps (Spark's) as microseconds: nanoseconds wrap beyond 1677-2262, and a
            # page whose CRC does not match is refused, never loaded corrupted.
            parquet = pq.ParquetFile(
                handle,
                pre_buffer=False,
                coerce_int96_timestamp_unit="us",
                page_checksum_verification=True,
            )
            names = parquet.schema_arrow.names
        except (pa.ArrowException, OSError) as error:
            if kind_of(self.source) == "encrypted Parquet":
                raise FileRejected(
                    self.file,
                    "an encrypted Parquet file (its footer is encrypted); the platform does not "
                    "decrypt Parquet: ask for the file without Parquet modular encryption",
                ) from None
            raise FileRejected(
                self.file, f"not a readable Parquet file ({error}); it may be truncated or corrupt"
            ) from None
        try:
            self.header = map_header(self.contract, names, self.file)
            wanted = list(self.header.sources.values())
            if self.contract.policy.extra_columns in ("add", "rescue"):
                wanted += self.header.extra
            for name in wanted:
                arrow_type = parquet.schema_arrow.field(name).type
                if pa.types.is_decimal256(arrow_type):  # polars panics on these
                    raise FileRejected(
                        self.file,
                        f"Parquet column {name!r} is {arrow_type}, which cannot be read; write it "
                        "as decimal128 (up to 38 digits) or as a string",
                        column=name,
                    )
            self._check_declared_sizes(parquet)
            rows = self._parquet_batch_rows(parquet)
            batches = parquet.iter_batches(batch_size=rows, columns=wanted, use_threads=False)
            nested = self._nested_columns(parquet.schema_arrow)
            as_bytes = self._bytea_sources()
            for batch in batches:
                stored = _storage_types(batch, as_bytes)
                self._check_time_range(stored)
                record_batch = self._nested_as_text(stored, nested)
                try:
                    frame = pl.from_arrow(record_batch)
                except pl.exceptions.PanicException as panic:  # a BaseException, not Exception
                    raise FileRejected(
                        self.file,
                        f"a Parquet column has a type polars cannot read ({record_batch.schema}): "
                        f"{str(panic)[:200]}; write it as a supported type (decimal128, string)",
                    ) from None
                yield self._frame(frame)  # type: ignore[arg-type]
        except (pa.ArrowException, OSError) as error:
            if "CRC checksum" in str(error):
                column = _corrupt_column(parquet, wanted)
                raise FileRejected(
                    self.file,
                    "a data page fails its checksum (CRC): the file was damaged after it was "
                    "written; nothing of it is loaded: ask the sender for the file again",
                    column=column,
                ) from None
            raise FileRejected(
                self.file,
                f"the Parquet data cannot be read after row {self.rows_read} ({error})",
            ) from None
        finally:
            parquet.close()

    def _bytea_sources(self) -> frozenset[str]:
        """File columns whose contract column is bytea (a Parquet UUID stays 16 bytes there)."""
        assert self.header is not None
        return frozenset(
            source
            for column in self.contract.columns
            if column.type.kind == "bytea" and (source := self.header.sources.get(column.name))
        )

    def _nested_columns(self, schema: pa.Schema) -> dict[str, PgType]:
        """File columns with nested values (lists, structs, maps) whose contract column is jsonb
        or an array: the reader writes them as text for it. Refuses a pairing that can never
        hold (a struct for integer[]); a nested value for any other type is the casts' refusal."""
        assert self.header is not None
        nested: dict[str, PgType] = {}
        for column in self.contract.columns:
            source = self.header.sources.get(column.name)
            if source is None or not nested_values.is_nested(schema.field(source).type):
                continue
            if column.type.kind != "jsonb" and column.type.element is None:
                continue
            problem = nested_values.unsupported(schema.field(source).type, column.type)
            if problem is not None:
                raise FileRejected(
                    self.file, f"the column cannot be {column.type}: {problem}", column=source
                )
            nested[source] = column.type
        return nested

    def _nested_as_text(self, batch: pa.RecordBatch, nested: dict[str, PgType]) -> pa.RecordBatch:
        """The batch with its nested columns written as jsonb or array text (landing/nested.py)."""
        for source, target in nested.items():
            index = batch.schema.get_field_index(source)
            try:
                text = nested_values.as_text(batch.column(index), target)
            except nested_values.NestedValueError as error:
                row = "" if error.index is None else f"row {self.rows_read + error.index + 1}: "
                raise FileRejected(
                    self.file, f"{row}{error}; nothing of the file is loaded", column=source
                ) from None
            batch = batch.set_column(index, pa.field(source, pa.string()), text)
        return batch

    def _check_time_range(self, batch: pa.RecordBatch) -> None:
        """Refuse a date or timestamp outside 4714 BC - 262142 AD, naming its column and row:
        PostgreSQL holds nothing before, and polars cannot represent what lies beyond (it
        would crash on it). Parquet can hold either (an INT96 or int64 of any size)."""
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            per_day = _TICKS_PER_DAY.get(str(column.type)) or _timestamp_ticks(column.type)
            if per_day is None or column.null_count == len(column):
                continue
            ticks = column.view(pa.int32() if pa.types.is_date32(column.type) else pa.int64())
            # A bound beyond int64 is one no value of the type can pass (nanoseconds hold only
            # 1677-2262), and not a number Arrow compares an int64 with.
            first, end = _FIRST_DAY * per_day, _END_DAY * per_day
            beyond = [
                pc.less(ticks, first) if first > _INT64_MIN else None,
                pc.greater_equal(ticks, end) if end <= _INT64_MAX else None,
            ]
            tests = [test for test in beyond if test is not None]
            if not tests:
                continue
            outside = tests[0] if len(tests) == 1 else pc.or_(*tests)
            if pc.any(outside).as_py():
                index = pc.index(outside, True).as_py()
                raise FileRejected(
                    self.file,
                    f"row {self.rows_read + index + 1}: a {column.type} value outside "
                    "4714-11-24 BC to 262142-12-31, the dates PostgreSQL and the platform can both "
                    "hold; nothing of the file is loaded: ask the sender what the value should be",
                    column=name,
                )

    def _check_declared_sizes(self, parquet: pq.ParquetFile) -> None:
        """Refuse, before reading, a row group whose rows the footer declares larger than
        MAX_PARQUET_ROW_BYTES uncompressed: a few KB of Parquet can inflate to gigabytes (a
        decompression bomb), and a batch is at least one row."""
        metadata = parquet.metadata
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            if group.num_rows and group.total_byte_size / group.num_rows > MAX_PARQUET_ROW_BYTES:
                raise FileRejected(
                    self.file,
                    f"row group {index} declares {group.total_byte_size:,} bytes uncompressed for "
                    f"{group.num_rows:,} row(s), over {MAX_PARQUET_ROW_BYTES:,} bytes per row: "
                    "refused unread (a likely decompression bomb); ask for smaller rows",
                )

    def _parquet_batch_rows(self, parquet: pq.ParquetFile) -> int:
        """Rows per batch: ELT_BATCH_ROWS, fewer when the row groups say rows are wide."""
        metadata = parquet.metadata
        if metadata.num_rows == 0:
            return self.batch_rows
        data_bytes = sum(
            metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
        )
        row_bytes = max(1, data_bytes // metadata.num_rows)
        return max(1, min(self.batch_rows, MAX_BATCH_BYTES // row_bytes))

    # -- shared ------------------------------------------------------------------------------

    def _frame(self, raw: pl.DataFrame, numbers: pl.Series | None = None) -> pl.DataFrame:
        """Rename file columns to contract columns, add missing ones as NULL, number the rows
        (in order, or as `numbers` says)."""
        assert self.header is not None
        start = self.rows_read + 1
        self.rows_read += raw.height
        if numbers is None:
            numbers = pl.int_range(start, start + raw.height, dtype=pl.Int64, eager=True)
        # Built from the columns themselves, not by a select: a select costs a small file more
        # (~0.15 ms) than the rest of its framing.
        columns = [numbers.alias(ROW_COLUMN)]
        for column in self.contract.columns:
            source = self.header.sources.get(column.name)
            if source is None:
                columns.append(pl.repeat(None, raw.height, dtype=pl.String, eager=True))
            else:
                columns.append(raw.get_column(source))
            columns[-1] = columns[-1].alias(column.name)
        kept = self.contract.policy.extra_columns
        if kept in ("add", "rescue") and self.header.extra:
            # What the contract lacks: as text to rescue, typed to add.
            extras = raw.select(
                (
                    value_as_text(raw.schema[name], pl.col(name))
                    if kept == "rescue"
                    else pl.col(name)
                ).alias(f"{EXTRA_PREFIX}{index}")
                for index, name in enumerate(self.header.extra)
            )
            columns += extras.get_columns()
        return pl.DataFrame(columns)


def typed_as_text(source: pl.DataType, value: pl.Expr) -> pl.Expr:
    """A typed Parquet value as text, every digit kept: polars' own cast of a time of day
    drops its fraction (23:59:59.999999 -> 23:59:59)."""
    if source == pl.Time:
        return value.dt.to_string("%H:%M:%S%.f")
    return value.cast(pl.String)


def value_as_text(dtype: pl.DataType, value: pl.Expr) -> pl.Expr:
    """A value of a column the contract does not know, as text for the rescue column: as
    written for CSV; for Parquet, its text form (bytes in hex, nested values as JSON)."""
    if dtype == pl.String:
        return value
    if dtype == pl.Binary:
        return pl.lit("\\x") + value.bin.encode("hex")
    if dtype.is_nested():  # JSON of the value alone: of {"v": value}, without the wrapping
        encoded = pl.struct(value.alias("v")).struct.json_encode()
        return pl.when(value.is_not_null()).then(encoded.str.slice(5, encoded.str.len_chars() - 6))
    return typed_as_text(dtype, value)


def _corrupt_column(parquet: pq.ParquetFile, columns: list[str]) -> str | None:
    """The first column whose pages fail their checksum (read column by column, streamed)."""
    for column in columns:
        try:
            for _ in parquet.iter_batches(columns=[column], use_threads=False):
                pass
        except (pa.ArrowException, OSError):
            return column
    return None


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year; H. Hinnant's method)."""
    year -= month <= 2
    era = year // 400  # floor division: what the C original does with y - 399
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


_FIRST_DAY = _days_from_civil(-4713, 11, 24)  # 4714-11-24 BC, Julian day 0: PostgreSQL's first
_END_DAY = _days_from_civil(262143, 1, 1)  # polars (chrono) holds years up to 262142
_TICKS_PER_DAY = {"date32[day]": 1}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _timestamp_ticks(arrow_type: pa.DataType) -> int | None:
    if not pa.types.is_timestamp(arrow_type):
        return None
    return 86_400 * {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[arrow_type.unit]


def _not_csv(kind: str) -> str:
    """Why a file read as CSV is something else, and what to do."""
    if kind in ("Parquet", "encrypted Parquet"):
        return (
            f"the file is {kind} (its first bytes say so), but the contract reads it as CSV: "
            "name it *.parquet or set source.format: parquet"
        )
    return (
        f"the file is a {kind} archive, which the platform does not read (an archive may hold "
        "many files): send the CSV itself, compressed with gzip, bzip2, xz or zstd, or Parquet"
    )


def is_utf16(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "").startswith("utf16")


def header_names(header: list[str]) -> list[str]:
    """The file's column names, a blank one named by its position (`a,b,` -> column_3)."""
    return [name if name.strip() else f"column_{index}" for index, name in enumerate(header, 1)]


def _storage_types(batch: pa.RecordBatch, as_bytes: frozenset[str]) -> pa.RecordBatch:
    """Extension types as values polars can read (it reads an extension type as one no cast
    knows): a Parquet UUID column (arrow.uuid) as the UUID's text, or as its 16 bytes where the
    contract says bytea (`as_bytes`); a GEOMETRY or GEOGRAPHY column (geoarrow.wkb) as its WKB
    bytes, loaded as bytea."""
    if not any(f.metadata or isinstance(f.type, pa.BaseExtensionType) for f in batch.schema):
        return batch
    columns = [
        _uuid_text(column.storage)
        if isinstance(column.type, pa.UuidType) and name not in as_bytes
        else column.storage
        if isinstance(column.type, pa.BaseExtensionType)
        else column
        for name, column in zip(batch.schema.names, batch.columns, strict=True)
    ]
    pairs = zip(batch.schema, columns, strict=True)
    fields = [pa.field(f.name, c.type, f.nullable) for f, c in pairs]
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _uuid_text(storage: pa.Array) -> pa.Array:
    """16-byte UUIDs as PostgreSQL writes them: lowercase hex in groups of 8-4-4-4-12."""
    hexed = pl.Series(storage).bin.encode("hex")
    groups = [hexed.str.slice(start, length) for start, length in _UUID_GROUPS]
    text = pl.select(pl.concat_str(groups, separator="-")).to_series()
    return text.cast(pl.String).to_arrow().cast(pa.string())


_UUID_GROUPS = ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12))


def _before_header(text: str) -> tuple[int, str]:
    """The lines before a CSV file's header that no reader takes as records (empty lines, and
    Excel's delimiter hint `sep=;` on the first of the others), and the text from the header on.
    The parser skips them too; they still count in the line numbers a message gives."""
    skipped, text = _empty_lines(text)
    first = _FIRST_LINE.match(text)
    if first is not None and excel_hint(first[1]) is not None:
        after_hint, text = _empty_lines(text[first.end() :])
        skipped += 1 + after_hint
    return skipped, text


def _empty_lines(text: str) -> tuple[int, str]:
    """How many empty lines `text` starts with, and the text after them."""
    body = text.lstrip("\r\n")
    prefix = text[: len(text) - len(body)]
    return len(prefix.replace("\r\n", "\n").replace("\r", "\n")), body


_FIRST_LINE = re.compile(r"([^\r\n]*)(\r\n|\n|\r)")
MAX_RAGGED_ROWS = 100_000  # beyond, the file's layout is not the contract's


class _RaggedRows(Exception):
    """The first pass met a record of the wrong length in a file whose quoting is intact."""


class _GoodRowNumbers:
    """The numbers of the good records of the second pass, around the ragged ones.

    pyarrow's invalid-row handler skips the ragged records without saying where they were (it has
    no row numbers when values may hold newlines), so the numbers come from the first pass's
    list: the g-th good record is record g + (ragged records before it). The good records the
    first pass already handed on (`already`, all before the first ragged one) are dropped."""

    def __init__(self, ragged: list[RaggedRecord], already: int):
        # Good records before each ragged one: non-decreasing.
        self.good_before = pl.Series([r.number - i for i, r in enumerate(ragged, 1)])
        self.already, self.seen, self.skipped = already, 0, 0

    def skip(self, row: object) -> str:
        """pyarrow's invalid_row_handler: count the ragged record and skip it."""
        self.skipped += 1
        return "skip"

    def take(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
        ordinals = pl.int_range(self.seen + 1, self.seen + frame.height + 1, eager=True)
        self.seen += frame.height
        keep = ordinals > self.already
        ordinals = ordinals.filter(keep)
        before = self.good_before.search_sorted(ordinals, side="left")
        return frame.filter(keep), (ordinals + before).cast(pl.Int64)
