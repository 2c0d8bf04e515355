"""A starting contract for a file: `elt contract infer FILE` reads a sample and writes YAML.

Only the first rows are read (10 000 by default), streamed by the platform's own `FileReader`, so a
huge file costs one block. Each column gets the narrowest type that the platform's *own* casts
(`validation/casts.py`) accept for every sampled value, which the result verifies: a CSV column is
boolean, integer or bigint (by range), numeric(p,s) for plain decimals, date, timestamp (no
offset) or timestamptz (offsets), uuid, else text. A Parquet column keeps its file type where the
platform can load it. When in doubt the type is text: numbers with leading zeros (codes), whole
numbers beyond bigint (identifiers), blanks ("" is an empty string, not NULL) or mixed values.

Nulls are the unquoted empty field, and the NULL spellings of `NULL_MARKERS` when they stand where
a typed column has no value: those are then listed in `source.csv.null_values`, so the loader reads
them as NULL too. Every column is nullable except the primary key, which must have no null in the
sample. Headers that are not lowercase snake_case become snake_case names with `source_name`
keeping the header. The YAML is checked against the contract model before it is returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from elt_assets.contracts.loader import format_validation_error
from elt_assets.contracts.model import (
    DATASET_NAME,
    MAX_TABLE_COLUMNS,
    READS_ONLY,
    REJECTED_COLUMN,
    ROW_COLUMN,
    Contract,
)
from elt_assets.contracts.types import PgType
from elt_assets.errors import TerminalError
from elt_assets.landing.diagnose import excel_hint
from elt_assets.landing.readers import FileReader, FileRejected, header_names
from elt_assets.landing.source import (
    COMPRESSIONS,
    DECOMPRESSION_ERRORS,
    LocalSource,
    compression_of,
    decompressing,
    kind_of,
)
from elt_assets.settings import max_record_bytes
from elt_assets.validation.inference import (
    SNAKE,
    TEXT,
    Guess,
    UnloadableColumn,
    column_names,
    infer_parquet_type,
    infer_text_types,
    snake_case,
)
from elt_assets.validation.inference import (
    data_like as data_like_values,
)

DEFAULT_SAMPLE_ROWS = 10_000
DEFAULT_SCHEMA = "imported"
WINDOWS_WESTERN = "cp1252"  # tried when a file is not UTF-8 and no --encoding was given
NOT_UTF8 = "bytes that are not valid utf-8"  # how the reader says so, and what it advises
READER_ADVICE = "set source.csv.encoding to the file's real encoding"

# Spellings of "no value" that exports write. One is added to source.csv.null_values only when it
# stands in a column that is otherwise typed (in a text column it may be data: "NA" = Namibia).
NULL_MARKERS = ("NULL", "null", "Null", "N/A", "n/a", "NA", "None", "none", "\\N")


class InferError(TerminalError):
    """The file cannot give a contract (missing, unreadable, empty, a key with nulls)."""

    usage = False


class InferUsageError(InferError):
    """The arguments cannot give a valid contract (an unknown key column, a bad name)."""

    usage = True


@dataclass(frozen=True)
class InferredColumn:
    name: str
    header: str  # as written in the file
    type: PgType
    nullable: bool
    nulls: int  # in the sample, NULL markers included
    note: str | None = None


@dataclass(frozen=True)
class InferredContract:
    name: str
    file: Path
    format: Literal["csv", "parquet"]
    rows_sampled: int
    sample_limit: int
    columns: list[InferredColumn]
    primary_key: list[str]
    schema: str
    table: str
    glob: str
    glob_in_landing: bool = False  # the glob is the file's folder in the landing directory
    explicit_format: bool = False  # the extension does not say the format
    delimiter: str = ","
    delimiter_detected: bool = False  # sniffed from the file, not given with --delimiter
    encoding: str = "utf8"
    encoding_detected: bool = False  # from a byte-order mark, not given with --encoding
    encoding_guessed: bool = False  # not UTF-8, read as WINDOWS_WESTERN instead
    null_values: list[str] = field(default_factory=list)
    header: bool = True  # False: the first line is data (--no-header)
    header_doubt: str | None = None  # why the first line may be data after all
    ragged: list[str] = field(default_factory=list)  # rows of the wrong length, quarantined
    duplicate_keys: int = 0  # rows of the sample whose key appeared earlier in it
    # Parquet columns of a type the platform cannot load, left out of the contract: why, each.
    left_out: list[str] = field(default_factory=list)

    @property
    def yaml(self) -> str:
        return render_yaml(self)


# -- names -------------------------------------------------------------------------------------


def dataset_name(path: Path) -> str:
    """The file's stem as a dataset name: 'orders_2026-11-20.csv.gz' -> orders_2026_11_20."""
    stem = path.name
    for suffix in (".gz", ".bz2", ".xz", ".zst", ".csv", ".tsv", ".txt", ".parquet", ".pq"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    name = snake_case(stem)[:50].rstrip("_")
    if not name:
        return "dataset"
    return f"dataset_{name}"[:50].rstrip("_") if name[0].isdigit() else name


def _in_landing(path: Path, landing_dir: Path | None) -> bool:
    if landing_dir is None:
        return False
    return path.resolve().is_relative_to(landing_dir.resolve())


def _glob(path: Path, landing_dir: Path | None, name: str) -> str:
    lower = path.name.lower()
    if lower.endswith((".csv", ".csv.gz")):
        pattern = "*.{csv,csv.gz}"  # not *.csv*: that would take a .csv.zip, which is refused
    else:
        compressed = lower.endswith((".gz", ".bz2", ".xz", ".zst"))
        pattern = "*" + ("".join(path.suffixes[-2:]) if compressed else path.suffix)
    folder = name
    if landing_dir is not None:
        try:
            relative = path.resolve().parent.relative_to(landing_dir.resolve())
        except ValueError:
            pass
        else:
            parts = relative.parts
            if not parts:
                return pattern
            # Dated sub-folders (events/2026/11/21/) are common: take the whole tree.
            return f"{parts[0]}/**/{pattern}" if len(parts) > 1 else f"{parts[0]}/{pattern}"
    return f"{folder}/{pattern}"


# -- reading the sample ------------------------------------------------------------------------

DELIMITERS = (",", ";", "\t", "|")
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 20


def sniff_delimiter(path: Path, encoding: str = "utf8") -> str:
    """The delimiter of a CSV file's first lines: the one Excel's hint names (`sep=;` first),
    else of `, ; tab |`, the one found the same number of times (at least once, outside quotes)
    on every line read, the most frequent if several; else the one most frequent in the header;
    "," when none occurs (one column)."""
    try:
        compression = compression_of(LocalSource(path))
        with path.open("rb") as raw:
            head = decompressing(compression, raw).read(SNIFF_BYTES)
    except DECOMPRESSION_ERRORS:
        return ","  # the reader reports what is wrong with the file
    try:
        text = head.decode(encoding, errors="replace")
    except LookupError:  # an encoding name only the reader knows
        text = head.decode("utf8", errors="replace")
    text = text.lstrip("\ufeff")
    lines = [line for line in text.splitlines()[:SNIFF_LINES] if line.strip()]
    hinted = excel_hint(lines[0]) if lines else None
    if hinted in DELIMITERS:
        return hinted  # Excel's `sep=;` names it
    if hinted is not None:
        lines = lines[1:]
    if len(lines) > 1 and len(head) == SNIFF_BYTES:
        lines = lines[:-1]  # the last line may be cut off
    if not lines:
        return ","
    counts = {d: [_outside_quotes(line, d) for line in lines] for d in DELIMITERS}
    steady = [d for d in DELIMITERS if counts[d][0] > 0 and len(set(counts[d])) == 1]
    if steady:
        return max(steady, key=lambda d: counts[d][0])
    best = max(DELIMITERS, key=lambda d: counts[d][0])
    return best if counts[best][0] > 0 else ","


def _outside_quotes(line: str, delimiter: str) -> int:
    count, quoted = 0, False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            count += 1
    return count


def _detect_format(path: Path, file: str) -> Literal["csv", "parquet"]:
    """Parquet or CSV (plain or compressed), from the first bytes; anything else is said."""
    kind = kind_of(LocalSource(path))
    if kind == "Parquet":
        return "parquet"
    if kind == "encrypted Parquet":
        raise InferError(
            f"{file}: an encrypted Parquet file (its footer is encrypted); the platform does not "
            "decrypt Parquet: ask for the file without Parquet modular encryption"
        )
    if kind not in (None, *COMPRESSIONS, "UTF-16 text"):
        raise InferError(
            f"{file}: the file is a {kind} archive, which the platform does not read (an archive "
            "may hold many files): extract the CSV, or compress it with gzip, bzip2, xz or zstd"
        )
    if path.name.lower().endswith((".parquet", ".pq")):
        raise InferError(
            f"{file}: named like a Parquet file, but its first bytes are not Parquet's (PAR1): "
            "it is not a Parquet file, or it is truncated"
        )
    return "csv"


def _provisional(
    headers: list[str],
    names: list[str],
    fmt: str,
    delimiter: str,
    encoding: str,
    header: bool = True,
) -> Contract:
    """A contract that reads every column as it is, to sample the file through FileReader."""
    return Contract.model_validate(
        {
            "name": "inferred",
            "source": {
                "glob": "*",
                "format": fmt,
                "csv": {"delimiter": delimiter, "encoding": encoding, "header": header},
            },
            "target": {"schema": "inferred", "table": "inferred", "mode": "append"},
            "columns": [
                {"name": n, "type": "text", "source_name": h}
                for n, h in zip(names, headers, strict=True)
            ],
        },
        context={READS_ONLY: True},
    )


def _headers(
    path: Path, file: str, fmt: str, delimiter: str, encoding: str, header: bool = True
) -> list[str]:
    if fmt == "parquet":
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as error:
            raise InferError(
                f"{file}: not a readable Parquet file ({error}); it may be truncated or corrupt"
            ) from None
        for arrow_field in schema:
            if pa.types.is_decimal256(arrow_field.type):
                raise InferError(
                    f"{file}: Parquet column {arrow_field.name!r} is {arrow_field.type}, which the "
                    "platform cannot read; write it as decimal128 (up to 38 digits) or as a string"
                )
        return list(schema.names)
    probe = _provisional(["x"], ["x"], fmt, delimiter, encoding)
    # The loader's own header parsing (dialect, BOM, encoding errors, limits).
    reader = FileReader(path, file, probe, record_limit=max_record_bytes())
    first = reader._csv_header(compression_of(LocalSource(path)))
    if not header:  # the first record is data: its columns are named by position
        return [f"column_{n}" for n in range(1, len(first) + 1)]
    return header_names(first)


def _check_headers(file: str, headers: list[str]) -> None:
    seen: dict[str, str] = {}
    for header in headers:
        folded = header.strip().casefold()
        if header in seen.values():
            raise InferError(
                f"{file}: the header has column {header!r} twice; the platform cannot load such "
                "a file: ask the sender for distinct column names (or, if the first line is data "
                "rather than names, run again with --no-header)"
            )
        if folded in seen:
            raise InferError(
                f"{file}: headers {seen[folded]!r} and {header!r} differ only in case or spaces; "
                "a contract cannot read both: ask the sender for distinct column names"
            )
        seen[folded] = header


def read_sample(
    path: Path,
    file: str,
    rows: int,
    delimiter: str = ",",
    encoding: str = "utf8",
    header: bool = True,
) -> Sample:
    """The format, headers, column names and first `rows` rows of a file."""
    if not path.exists():
        raise InferError(f"{file}: no such file")
    if not path.is_file():
        raise InferError(f"{file}: not a regular file")
    try:
        if path.stat().st_size == 0:
            raise InferError(f"{file}: the file is empty (0 bytes); expected at least a header")
        fmt = _detect_format(path, file)
        if fmt == "parquet" and not header:
            raise InferUsageError(f"{file}: --no-header is for CSV; Parquet names its columns")
        headers = _headers(path, file, fmt, delimiter, encoding, header)
        _check_headers(file, headers)
        names = column_names(headers)
        contract = _provisional(headers, names, fmt, delimiter, encoding, header)
        batches = cast(
            Generator[pl.DataFrame, None, None],
            FileReader(
                path, file, contract, batch_rows=rows, record_limit=max_record_bytes()
            ).batches(),
        )
        ragged: list[str] = []
        try:
            # Rows of the wrong length come first, apart (the reader quarantines them).
            first = next(batches, None)
            while first is not None and REJECTED_COLUMN in first.columns:
                ragged += first[REJECTED_COLUMN].to_list()
                first = next(batches, None)
        finally:
            batches.close()  # stop reading: the rest of the file is never touched
    except FileRejected as error:
        raise InferError(str(error)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InferError(f"{file}: cannot be read ({error})") from None
    if first is None:  # no rows: a Parquet file still has its types
        first = _no_rows(path, names) if fmt == "parquet" else None
        first = pl.DataFrame(schema=dict.fromkeys(names, pl.String)) if first is None else first
    return Sample(fmt, headers, names, first.drop(ROW_COLUMN, strict=False).head(rows), ragged)


def _no_rows(path: Path, names: list[str]) -> pl.DataFrame | None:
    """An empty frame of the Parquet file's column types (an extension type as its storage),
    columns named `names`."""
    schema = pq.read_schema(path)
    fields = [
        pa.field(name, f.type.storage_type if isinstance(f.type, pa.BaseExtensionType) else f.type)
        for name, f in zip(names, schema, strict=True)
    ]
    try:
        frame = pl.from_arrow(pa.schema(fields).empty_table())
    except (pl.exceptions.PolarsError, pa.ArrowException):
        return None
    return frame if isinstance(frame, pl.DataFrame) else None


@dataclass(frozen=True)
class Sample:
    """The first rows of a file, read as the loader reads them."""

    format: Literal["csv", "parquet"]
    headers: list[str]  # as written
    names: list[str]  # as columns
    rows: pl.DataFrame
    ragged: list[str]  # why each row of the wrong length (in the whole file) is quarantined


# -- types -------------------------------------------------------------------------------------


# -- the contract ------------------------------------------------------------------------------


def infer_contract(
    path: Path,
    *,
    name: str | None = None,
    primary_key: Sequence[str] = (),
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    schema: str = DEFAULT_SCHEMA,
    table: str | None = None,
    landing_dir: Path | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    header: bool = True,
) -> InferredContract:
    """Read the first `sample_rows` rows of `path` and infer a contract (checked to load).
    Without a `delimiter`, a CSV file's is sniffed from its first lines. With `header` False,
    the first line is data and the columns are named by position (column_1, ...)."""
    file = str(path)
    guessable = encoding is None  # no --encoding: another may be tried
    encoding_detected = (
        encoding is None and path.is_file() and kind_of(LocalSource(path)) == "UTF-16 text"
    )
    encoding = "utf-16" if encoding_detected else (encoding or "utf8")
    detected = delimiter is None
    if delimiter is None:
        delimiter = sniff_delimiter(path, encoding)
    if sample_rows < 1:
        raise InferUsageError(f"--sample-rows must be at least 1, not {sample_rows}")
    dataset = name if name is not None else dataset_name(path)
    if not DATASET_NAME.match(dataset) or len(dataset) > 50:
        raise InferUsageError(
            f"dataset name {dataset!r}: use lowercase letters, digits and _, at most 50 characters"
        )
    reader = _SampleReader(path, sample_rows, header, may_guess=guessable and not encoding_detected)
    read, encoding, delimiter, guessed = reader.read(encoding, delimiter, sniffed=detected)
    fmt, headers, names, sample = read.format, read.headers, read.names, read.rows
    key = _key_columns(primary_key, headers, names)
    markers = _null_markers(sample, fmt)
    empty = {name: _is_null(sample[name], fmt, markers) for name in names}
    guesses, left_out = _guesses(path, read, empty, key)
    columns = []
    for title, column in zip(headers, names, strict=True):
        if column not in guesses:
            continue  # left out
        guess, nulls = guesses[column], int(empty[column].sum())
        if column in key and nulls:
            raise InferError(
                f"{file}: primary key column {title!r} is empty in {nulls} of {sample.height} "
                "sampled rows; a key must never be NULL: choose another key or fix the file"
            )
        columns.append(
            InferredColumn(column, title, guess.type, column not in key, nulls, guess.note)
        )
    if left_out and not columns:
        raise InferError(f"{file}: no column can be loaded: {'; '.join(left_out)}")
    columns, beyond = _within_column_limit(columns, key)
    if beyond:
        left_out.append(
            f"{len(beyond):,} columns beyond the {MAX_TABLE_COLUMNS:,} a dataset's table can have "
            f"(PostgreSQL's limit): {beyond[0]} to {beyond[-1]} are not loaded; to load one, "
            "put it in place of a column above"
        )
    inferred = InferredContract(
        name=dataset,
        file=path,
        format=fmt,
        rows_sampled=sample.height,
        sample_limit=sample_rows,
        columns=columns,
        primary_key=key,
        schema=schema,
        table=table or dataset,
        glob=_glob(path, landing_dir, dataset),
        glob_in_landing=_in_landing(path, landing_dir),
        explicit_format=fmt != _format_by_extension(path),
        delimiter=delimiter,
        delimiter_detected=detected and delimiter != "," and fmt == "csv",
        encoding=encoding,
        encoding_detected=encoding_detected,
        encoding_guessed=guessed,
        null_values=markers,
        header=header,
        ragged=read.ragged,
        header_doubt=_header_doubt(headers) if header and fmt == "csv" else None,
        duplicate_keys=sample.height - sample.select(key).n_unique()
        if key and sample.height
        else 0,
        left_out=left_out,
    )
    _check_loads(inferred)
    return inferred


def _guesses(
    path: Path, read: Sample, empty: dict[str, pl.Series], key: Sequence[str]
) -> tuple[dict[str, Guess], list[str]]:
    """Each column's type (by name), and why the columns left out cannot be loaded. A CSV
    file's columns are asked together; a Parquet file's keep their own types."""
    file = str(path)
    if read.format == "csv":
        present = {n: read.rows[n].filter(~empty[n]) for n in read.names}
        return infer_text_types(present), []
    uuids = _uuid_columns(path)
    guesses, left_out = {}, []
    for title, column in zip(read.headers, read.names, strict=True):
        if title in uuids:  # the reader gives their text, which is always a UUID
            guesses[column] = Guess(PgType("uuid"))
            continue
        try:
            guesses[column] = infer_parquet_type(read.rows[column], file, title)
        except UnloadableColumn as error:
            if column in key:
                raise InferError(str(error)) from None
            left_out.append(str(error).removeprefix(f"{file}: "))  # the rest can load
    return guesses, left_out


def _is_null(values: pl.Series, fmt: str, markers: Sequence[str]) -> pl.Series:
    """The sample's empty values: nulls, and in a CSV file the null markers found."""
    return values.is_null() | values.is_in(markers) if fmt == "csv" else values.is_null()


def _within_column_limit(
    columns: list[InferredColumn], key: Sequence[str]
) -> tuple[list[InferredColumn], list[str]]:
    """The columns a table can hold (the key's, then the others in the file's order), and the
    headers of the rest."""
    if len(columns) <= MAX_TABLE_COLUMNS:
        return columns, []
    room = MAX_TABLE_COLUMNS - len(key)
    others = [c for c in columns if c.name not in key]
    kept = {*key, *(c.name for c in others[:room])}
    return [c for c in columns if c.name in kept], [c.header for c in others[room:]]


def _uuid_columns(path: Path) -> frozenset[str]:
    """The Parquet file's columns of its UUID logical type (16 bytes that are a UUID)."""
    schema = pq.read_schema(path)
    return frozenset(f.name for f in schema if isinstance(f.type, pa.UuidType))


def _header_doubt(headers: list[str]) -> str | None:
    """Why the first line may be data rather than names: at least half of its values are
    numbers, dates or timestamps (names rarely are; a wide table of years is the exception)."""
    data_like = [h for h, like in zip(headers, data_like_values(headers), strict=True) if like]
    if not data_like or len(data_like) * 2 < len(headers):
        return None
    shown = ", ".join(repr(h) for h in data_like[:3])
    return (
        f"the first line looks like data, not column names ({len(data_like)} of {len(headers)} "
        f"are numbers or dates: {shown}); if the file has no header, run again with --no-header"
    )


def _format_by_extension(path: Path) -> str:
    return "parquet" if path.name.lower().endswith((".parquet", ".pq")) else "csv"


@dataclass
class _SampleReader:
    """The first rows of a file, read as UTF-8 (or as given); with `may_guess`, a file that is
    not UTF-8 is read as WINDOWS_WESTERN, which the contract then says, to review."""

    path: Path
    rows: int
    header: bool
    may_guess: bool

    def read(
        self, encoding: str, delimiter: str, *, sniffed: bool
    ) -> tuple[Sample, str, str, bool]:
        """(the sample, its encoding, its delimiter, whether the encoding was guessed)."""
        file = str(self.path)
        try:
            read = read_sample(self.path, file, self.rows, delimiter, encoding, self.header)
            return read, encoding, delimiter, False
        except InferError as error:
            if NOT_UTF8 not in str(error):
                raise
            advice = str(error).replace(
                READER_ADVICE, "pass --encoding with the file's real encoding"
            )
            if not self.may_guess:
                raise InferError(advice) from None
        delimiter = sniff_delimiter(self.path, WINDOWS_WESTERN) if sniffed else delimiter
        try:
            read = read_sample(self.path, file, self.rows, delimiter, WINDOWS_WESTERN, self.header)
        except InferError:
            raise InferError(f"{advice} (it is not {WINDOWS_WESTERN} either)") from None
        return read, WINDOWS_WESTERN, delimiter, True


def _key_columns(wanted: Sequence[str], headers: list[str], names: list[str]) -> list[str]:
    """Key columns by name or by header (exact, then ignoring case and spaces)."""
    key: list[str] = []
    for item in wanted:
        found = next((n for n in names if n == item), None)
        if found is None:
            found = next((n for n, h in zip(names, headers, strict=True) if h == item), None)
        if found is None:
            folded = item.strip().casefold()
            found = next(
                (n for n, h in zip(names, headers, strict=True) if h.strip().casefold() == folded),
                None,
            )
        if found is None:
            raise InferUsageError(
                f"--primary-key {item!r} is not a column of the file (columns: {', '.join(names)})"
            )
        if found in key:
            raise InferUsageError(f"--primary-key {item!r} is given twice")
        key.append(found)
    return key


def _null_markers(sample: pl.DataFrame, fmt: str) -> list[str]:
    """The NULL_MARKERS that stand in a CSV column whose other values are all of a typed kind."""
    if fmt != "csv":
        return []
    found: dict[str, set[str]] = {}  # column -> the markers in it
    others: dict[str, pl.Series] = {}  # column -> its other values
    for column in sample.columns:
        values = sample[column].drop_nulls()
        present = set(values.filter(values.is_in(NULL_MARKERS)).unique().to_list())
        if present:
            found[column] = present
            others[column] = values.filter(~values.is_in(NULL_MARKERS))
    typed = [c for c, guess in infer_text_types(others).items() if guess.type != TEXT]
    chosen = set().union(*(found[c] for c in typed))
    return [m for m in NULL_MARKERS if m in chosen]


def _check_loads(inferred: InferredContract) -> None:
    try:
        Contract.model_validate(yaml.safe_load(inferred.yaml))
    except ValidationError as error:
        raise InferUsageError(
            f"the inferred contract would not load: {format_validation_error(error)}"
        ) from None


# -- YAML --------------------------------------------------------------------------------------


def _scalar(value: str) -> str:
    """A YAML scalar: plain for identifiers, else double-quoted (JSON strings are valid YAML)."""
    plain = SNAKE.match(value) or re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value)
    special = value.lower() in {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}
    return value if plain and not special else json.dumps(value, ensure_ascii=False)


def _flow_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


def _column_line(column: InferredColumn, rows: int) -> str:
    parts = [f"name: {column.name}", f"type: {_scalar(str(column.type))}"]
    if not column.nullable:
        parts.append("nullable: false")
    if column.header != column.name:
        parts.append(f"source_name: {_scalar(column.header)}")
    line = "  - {" + ", ".join(parts) + "}"
    remarks = [f"empty in {column.nulls} of {rows} rows" if column.nulls else "never empty"]
    if column.note:
        remarks.append(column.note)
    if rows == 0:
        remarks = [column.note or "no rows sampled"]
    return f"{line}  # {'; '.join(remarks)}"


def _ragged_comment(ragged: list[str]) -> list[str]:
    if not ragged:
        return []
    return [
        f"# {len(ragged)} row(s) of the file have the wrong number of fields and are quarantined "
        f"under this contract; the first: {ragged[0]}"
    ]


def _csv_options(inferred: InferredContract) -> list[str]:
    """The source.csv lines that differ from the defaults, each with why."""
    csv_options = []
    if not inferred.header:
        csv_options.append("    header: false  # the first line is data: columns by position")
    if inferred.delimiter != ",":
        said = "  # detected from the first lines: review" if inferred.delimiter_detected else ""
        csv_options.append(f"    delimiter: {_scalar(inferred.delimiter)}{said}")
    if inferred.encoding.lower().replace("-", "") not in {"utf8"}:
        said = "  # from the file's byte-order mark" if inferred.encoding_detected else ""
        if inferred.encoding_guessed:
            said = "  # the file is not UTF-8; Windows' Western European reads it: review"
        csv_options.append(f"    encoding: {_scalar(inferred.encoding)}{said}")
    if inferred.null_values:
        csv_options.append(
            f"    null_values: {_flow_list(inferred.null_values)}"
            "  # seen where typed columns have no value (also NULL in text columns)"
        )
    return csv_options


def render_yaml(inferred: InferredContract) -> str:
    rows = inferred.rows_sampled
    sampled = (
        f"all {rows} rows sampled: the whole file"
        if rows < inferred.sample_limit
        else f"the first {rows} rows sampled"
    )
    shown = " ".join(inferred.file.name.split())  # a comment must stay on its line
    where = (
        "from where the file lies in it"
        if inferred.glob_in_landing
        else "review (the file is not in a landing directory the command knows: --landing DIR)"
    )
    lines = [
        f"# Starting contract inferred by `elt contract infer` from {shown}",
        f"# ({inferred.format}, {sampled}).",
        "# Review before use. Each type accepts every sampled value under the platform's own",
        "# casts, but later rows may not fit (they would be quarantined); when in doubt a column",
        "# is text. Review types, nullable (only primary-key columns are NOT NULL), the target,",
        "# the glob, and add checks (README, 'Adding a dataset').",
        *([f"# WARNING: {inferred.header_doubt}."] if inferred.header_doubt else []),
        *_ragged_comment(inferred.ragged),
        f"name: {inferred.name}",
        "source:",
        f"  glob: {_scalar(inferred.glob)}  # relative to the landing directory: {where}",
    ]
    if inferred.explicit_format:
        lines.append(f"  format: {inferred.format}  # the extension does not say it")
    csv_options = _csv_options(inferred)
    if inferred.format == "csv" and csv_options:
        lines += ["  csv:", *csv_options]
    if any(c.type.kind == "timestamptz" and c.note for c in inferred.columns):
        lines.append("  timezone: UTC  # how timestamps without an offset are read: review")
    lines += [
        "target:",
        f"  schema: {_scalar(inferred.schema)}  # review: where the table is created",
        f"  table: {_scalar(inferred.table)}",
    ]
    if inferred.primary_key:
        lines += ["  mode: upsert", f"  primary_key: {_flow_list(inferred.primary_key)}"]
        if inferred.duplicate_keys:
            lines.append(
                f"  # the key repeats in the sample ({inferred.duplicate_keys} rows): "
                "duplicate_keys: last keeps the last row of a key"
            )
    else:
        lines.append(
            "  mode: append  # no primary key given: rows are appended (elt contract infer "
            "--primary-key COL for upsert)"
        )
    lines.append("columns:")
    lines += [_column_line(c, rows) for c in inferred.columns]
    lines += [f"  # left out: {' '.join(reason.split())}" for reason in inferred.left_out]
    lines += [
        "policy:",
        "  schema_drift: strict  # strict | tolerant (extra columns ignored, missing ones NULL)",
        "  bad_rows: quarantine  # quarantine | fail",
        "  max_bad_row_ratio: 0.01  # above it the whole file fails",
    ]
    if inferred.primary_key:
        lines.append("  duplicate_keys: last  # last | fail (the same key twice in one file)")
    if inferred.left_out:
        lines.append("  new_columns: ignore  # the columns left out above are not loaded")
    return "\n".join(lines) + "\n"
