"""Writing one file's staged slice: the transaction behind the staged asset.

In one transaction, holding the file's advisory lock: delete the file's previous slice, mark its
open quarantine rows resolved, stream every batch (good rows COPYed into staging, rejected rows
COPYed into elt.quarantine), apply the whole-file checks (unique columns, duplicate keys), check
the policy, and record the counts in the manifest. Either all of it commits or none of it does.
A batch's small files, read already, go through the same steps together in one transaction, with
one COPY for all of them (`write_staged_together`). A file its run loads next may go straight
into its table instead, in the same one transaction (`_write_straight`): a first load into the
empty table, or a big file into one with rows (an upserted table's staged in parts on a second
connection meanwhile, `_stage_and_upsert`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from elt_assets.contracts.model import FILE_COLUMN, LOAD_COLUMN, ROW_COLUMN, Contract
from elt_assets.log import get_logger
from elt_assets.postgres.binary import SIGNATURE, TRAILER, BinaryPlan, binary_plan, encode_binary
from elt_assets.postgres.copy import copy_frame, encode_csv, read_ahead
from elt_assets.postgres.inspect import slice_counts
from elt_assets.postgres.load import (
    LoadResult,
    ManifestKey,
    PartsUpsert,
    finish_straight,
    is_empty,
    writer_lock,
)
from elt_assets.postgres.templates import (
    render,
    render_copy,
    render_duplicate_keys,
    render_move_duplicates,
    staging_columns,
    staging_table,
    target_table,
)
from elt_assets.validation.batches import ValidatedBatch
from elt_assets.validation.policy import FileCounts, HeaderReport, StageReport, policy_violations
from elt_assets.validation.staged_file import StagedFile

log = get_logger(__name__)
QUARANTINE_TABLE = sql.Identifier("elt", "quarantine")
QUARANTINE_COLUMNS = [
    "dataset",
    "file",
    "sha256",
    "row_number",
    "column_name",
    "check_name",
    "reason",
    "failures",
    "raw_record",
    "run_id",
]
_CONTEXT_COLUMN = re.compile(r"column (\w+)")


def _quarantine_frame(staged: StagedFile, records: pl.DataFrame) -> pl.DataFrame:
    """Add the file's identity to quarantine records and make every text storable in PostgreSQL."""
    safe = [
        pl.col(c).str.replace_all("\x00", "\\x00", literal=True)
        for c in ("column_name", "check_name", "reason")
    ]
    # jsonb cannot hold \u0000 (a NUL): keep it visible as the text \\u0000 instead. An escaped
    # backslash followed by u0000 (a value that spells \u0000) is no NUL: the escaped backslashes
    # are set aside first (as \x01, which JSON always escapes, so it cannot occur in the text).
    safe_json = [
        pl.col(c)
        .str.replace_all("\\\\", "\x01", literal=True)
        .str.replace_all("\\u0000", "\\\\u0000", literal=True)
        .str.replace_all("\x01", "\\\\", literal=True)
        for c in ("failures", "raw_record")
    ]
    return records.with_columns(
        *safe,
        *safe_json,
        pl.lit(staged.dataset).alias("dataset"),
        pl.lit(staged.file).alias("file"),
        pl.lit(staged.sha256).alias("sha256"),
        pl.lit(staged.run_id).alias("run_id"),
    )


def _refused_records(
    staged: StagedFile, good: pl.DataFrame, refused: list[tuple[int, str, str | None]]
) -> pl.DataFrame:
    """Quarantine records for rows PostgreSQL refused, with its own message as the reason."""
    rows = []
    by_row = {row: (message, column) for row, message, column in refused}
    headers = staged.headers
    for record in good.filter(pl.col(ROW_COLUMN).is_in(list(by_row))).to_dicts():
        message, column = by_row[record[ROW_COLUMN]]
        if column is None:
            match = _CONTEXT_COLUMN.search(message)
            column = match[1] if match else None
        raw = {headers[name]: record[name] for name in headers}
        failure = {"column": column, "check": "postgres", "reason": message}
        rows.append(
            {
                "row_number": record[ROW_COLUMN],
                "column_name": column,
                "check_name": "postgres",
                "reason": message,
                "failures": json.dumps([failure], ensure_ascii=False),
                "raw_record": json.dumps(raw, ensure_ascii=False),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "row_number": pl.Int64,
            "column_name": pl.String,
            "check_name": pl.String,
            "reason": pl.String,
            "failures": pl.String,
            "raw_record": pl.String,
        },
    )


def _copy_quarantine(
    connection: psycopg.Connection, staged: StagedFile, records: pl.DataFrame
) -> None:
    if records.height:
        _copy_quarantine_frame(connection, _quarantine_frame(staged, records), staged.file)


def _copy_quarantine_frame(connection: psycopg.Connection, frame: pl.DataFrame, file: str) -> None:
    """Quarantine records (with their files' identity) into elt.quarantine, every one of them."""
    refused = copy_frame(connection, QUARANTINE_TABLE, QUARANTINE_COLUMNS, frame, "row_number")
    if refused:  # the quarantine must hold every rejected row; never drop one silently
        raise RuntimeError(f"could not write quarantine rows of {file}: {refused[0][1]}")


def _move_duplicates(connection: psycopg.Connection, staged: StagedFile) -> int:
    """Run the file-wide unique checks; offending rows move from staging to the quarantine."""
    contract = staged.contract
    groups = [[c.name] for c in contract.columns if c.checks.unique]
    groups += [list(group) for group in contract.checks.unique]
    moved = 0
    for group in groups:
        cursor = connection.execute(
            render_move_duplicates(contract, group),
            {
                "dataset": staged.dataset,
                "file": staged.file,
                "load": _load(staged),
                "sha256": staged.sha256,
                "run_id": staged.run_id,
                "first_column": group[0],
                "label": ", ".join(group),
            },
        )
        if cursor.rowcount:
            moved += cursor.rowcount
            staged.failure_counts[f"{'+'.join(group)}.unique"] += cursor.rowcount
    return moved


def _duplicate_keys(
    connection: psycopg.Connection,
    staged: StagedFile,
    counts: FileCounts,
    *,
    counted: bool,
) -> None:
    """How many keys repeat within the file: none if they came in order; as the reader counted
    them when it could (`counted`: the slice holds every good row it saw, and the key is one
    integer column), else counted by PostgreSQL in the slice."""
    if not staged.contract.target.primary_key:
        return
    if staged.keys_increasing and len(staged.contract.target.primary_key) == 1:
        counts.keys_in_order = True  # every staged key was greater than the one before it
        return  # so none repeats
    repeated = staged.repeated_keys() if counted else None
    if repeated is not None:
        counts.duplicate_keys, counts.duplicate_key_rows, counts.duplicate_key_examples = repeated
        return
    row = connection.execute(
        render_duplicate_keys(staged.contract), {"load": _load(staged)}
    ).fetchone()
    assert row is not None
    counts.duplicate_keys, counts.duplicate_key_rows = int(row[0]), int(row[1])
    counts.duplicate_key_examples = list(row[2] or [])


def _tagged(good: pl.DataFrame, staged: StagedFile) -> pl.DataFrame:
    """A batch's good rows with the staging table's own columns: the file and the load."""
    return good.with_columns(
        pl.lit(staged.file).alias(FILE_COLUMN), pl.lit(_load(staged), pl.Int64).alias(LOAD_COLUMN)
    )


def _load(staged: StagedFile) -> int:
    """The file's load (its manifest row's id), which keys its staging slice."""
    if staged.load is None:
        raise ValueError(f"{staged.file}: no manifest row opened for it (its load) to stage under")
    return staged.load


_Encoded = tuple[ValidatedBatch, pl.DataFrame, bytes | memoryview, bool]


def _encoded(
    staged: StagedFile, columns: list[str], *, binary: bool = True
) -> Generator[_Encoded, None, None]:
    """Each batch with its good rows tagged with the file, and those rows encoded for COPY (in
    binary where the file's types allow it and `binary`, else csv; the last item says which),
    read and encoded ahead in two threads unless the file was read already (a small file:
    nothing to overlap)."""

    plan: BinaryPlan | None = None

    def typed_columns(sources: dict[str, pl.DataType]) -> frozenset[str]:
        """Decided once the file's types are known, before its first batch is validated."""
        nonlocal plan
        plan = binary_plan(staged.contract, sources)
        if plan is None:
            return frozenset()
        plan = plan.laid_out(columns)  # a staging table's, or a target's (a direct first load)
        return frozenset(plan.typed - {ROW_COLUMN, LOAD_COLUMN})

    def encode(batches: Iterator[ValidatedBatch]) -> Generator[_Encoded, None, None]:
        for batch in batches:
            good = _tagged(batch.good, staged)
            if plan is None:
                yield batch, good, encode_csv(good, columns), False
                continue
            if batch.typed is None:  # rejected whole by the reader: no good rows to send
                yield batch, good, b"", True
                continue
            wanted_typed = plan.typed - {LOAD_COLUMN}  # the file's columns and row numbers
            typed = [batch.typed[n] for n in wanted_typed]
            yield batch, good, encode_binary(good.with_columns(typed), plan), True

    if staged.read_already:
        return encode(staged.batches())
    # Three threads in a row: one reads, casts and validates a batch, the next encodes the one
    # before it, and the caller sends the one before that (Arrow and polars release the GIL).
    validated = staged.batches(typed_columns if binary else None)
    return read_ahead(encode(read_ahead(validated)))


@contextlib.contextmanager
def _copy_into(
    cursor: psycopg.Cursor[Any], table: sql.Identifier, columns: list[str], binary: bool
) -> Iterator[psycopg.Copy]:
    """A COPY of encoded batches; a binary one opens with its signature and ends with its
    trailer."""
    with cursor.copy(render_copy(table, columns, binary=binary)) as copy:
        if binary:
            copy.write(SIGNATURE)
        yield copy
        if binary:
            copy.write(TRAILER)


class _Progress:
    """Logs how far a big file has come, every few seconds (terminal and Dagster run view)."""

    INTERVAL_SECONDS = 5.0

    def __init__(self, staged: StagedFile):
        self.staged = staged
        self.rows = 0
        self.started = self.last = time.monotonic()

    def batch(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.INTERVAL_SECONDS:
            self.last = now
            rate = self.rows / (now - self.started)
            log.info("%s: %s rows read so far (%.0f rows/s)", self.staged.file, self.rows, rate)


def _stream(
    connection: psycopg.Connection, staged: StagedFile, table: sql.Identifier, columns: list[str]
) -> tuple[str, int]:
    """The whole file in one COPY stream, so PostgreSQL never waits for the next batch's end.
    Returns the COPY's format (csv, or binary) and the rows PostgreSQL says it copied.

    Only a batch with rejected rows ends the COPY, to write them to the quarantine (another
    table on the same connection); the next batch starts a new one.
    """
    progress = _Progress(staged)
    binary, copied = False, 0
    with connection.cursor() as cursor, contextlib.ExitStack() as open_copy:
        copy = None
        for batch, _good, payload, binary in _encoded(staged, columns):
            progress.batch(batch.rows_read)
            if copy is None:
                copy = open_copy.enter_context(_copy_into(cursor, table, columns, binary))
            copy.write(payload)
            if batch.quarantined.height:
                open_copy.close()
                copy, copied = None, copied + cursor.rowcount
                _copy_quarantine(connection, staged, batch.quarantined)
        if copy is not None:
            open_copy.close()
            copied += cursor.rowcount
    return "binary" if binary else "csv", copied


def _stream_isolating(
    connection: psycopg.Connection, staged: StagedFile, table: sql.Identifier, columns: list[str]
) -> int:
    """A COPY per batch in a savepoint; rows PostgreSQL refuses go to the quarantine. Returns
    how many it refused."""
    progress = _Progress(staged)
    refused_rows = 0
    for batch, good, payload, _ in _encoded(staged, columns, binary=False):
        progress.batch(batch.rows_read)
        refused = copy_frame(connection, table, columns, good, ROW_COLUMN, bytes(payload))
        _copy_quarantine(connection, staged, batch.quarantined)
        if refused:
            records = _refused_records(staged, good, refused)
            staged.note_refused(records)
            _copy_quarantine(connection, staged, records)
            refused_rows += len(refused)
    return refused_rows


def _summarise_reading(staged: StagedFile, report: StageReport) -> None:
    """What the reader gathered while the file streamed by, into the report."""
    report.failure_counts = dict(staged.failure_counts)
    report.sample = list(staged.sample)
    report.schema_change = staged.schema_change
    if staged.header is not None:
        header = staged.header
        report.header = HeaderReport(dict(header.sources), list(header.missing), list(header.extra))


def _storable(value: object) -> object:
    """`value` with every NUL in its texts spelled \\x00: jsonb cannot hold \\u0000."""
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def read_stage_report(connection: psycopg.Connection, key: ManifestKey) -> StageReport | None:
    """The report the staged step recorded for this content of the file, if any."""
    row = connection.execute(render("manifest_stage_report"), key.__dict__).fetchone()
    return StageReport.from_json(row[0]) if row and row[0] is not None else None


def _begin(
    connection: psycopg.Connection, contract: Contract, files: list[str], run_id: str
) -> sql.Identifier:
    """The staging transaction's first statements (`_begin_files`), and the files' previous
    slices out of the way. Returns the staging table."""
    _begin_files(connection, contract, files, run_id)
    table = staging_table(contract)
    connection.execute(
        render("slices_replace", table=table), {"dataset": contract.name, "files": files}
    )
    return table


def _begin_files(
    connection: psycopg.Connection, contract: Contract, files: list[str], run_id: str
) -> None:
    """The files' locks, the contract's time zone (values without an offset are read in it, by
    PostgreSQL itself) and the files' open quarantine rows superseded."""
    names = {"dataset": contract.name, "files": files}
    connection.execute(render("lock_files"), names)
    _local_timezone(connection, contract)
    connection.execute(render("quarantine_supersede"), {**names, "run_id": run_id})


def _local_timezone(connection: psycopg.Connection, contract: Contract) -> None:
    connection.execute(render("timezone_local"), {"timezone": contract.source.timezone})


def _file_checks(connection: psycopg.Connection, staged: StagedFile, report: StageReport) -> None:
    """The whole-file checks, on the rows the file just staged."""
    checked = time.perf_counter()
    report.duplicates_moved = _move_duplicates(connection, staged)
    # The reader's count of repeated keys holds while the slice has every good row it saw.
    whole = not report.duplicates_moved and not report.refused_by_postgres
    _duplicate_keys(connection, staged, report.counts, counted=whole)
    report.seconds["file_checks"] = time.perf_counter() - checked


def _open_quarantine(connection: psycopg.Connection, staged: StagedFile) -> int:
    """The file's open quarantine rows, as PostgreSQL counts them in the staging transaction."""
    params = {"dataset": staged.dataset, "file": staged.file}
    row = connection.execute(render("quarantine_open_count"), params).fetchone()
    return int(row[0]) if row else 0


def _record(
    connection: psycopg.Connection,
    written: list[tuple[StagedFile, StageReport]],
    counted: dict[str, tuple[int, int]],
) -> None:
    """Each file's counts, its policy's verdict and the reader's findings into its report and
    manifest row (failed, if the policy says so), in the staging transaction: one statement
    for all the files' rows, one for those that failed (each sent as a pipeline)."""
    staged_rows, failed_rows = [], []
    for staged, report in written:
        counts = report.counts
        counts.rows_read = staged.rows_read
        counts.rows_rescued = staged.rows_rescued
        counts.rows_staged, counts.rows_quarantined = counted[staged.file]
        report.violations = policy_violations(staged.contract, counts)
        _summarise_reading(staged, report)
        params = {
            "dataset": staged.dataset,
            "file": staged.file,
            "sha256": staged.sha256,
            "run_id": staged.run_id,
        }
        staged_rows.append(
            {
                **params,
                "rows_read": counts.rows_read,
                "rows_staged": counts.rows_staged,
                "rows_quarantined": counts.rows_quarantined,
                "duplicate_key_rows": counts.duplicate_key_rows,
                "stage_report": Jsonb(_storable(report.to_json())),
            }
        )
        if report.violations:
            failed_rows.append({**params, "error": "; ".join(report.violations)})
    with connection.cursor() as cursor:
        cursor.executemany(render("manifest_staged"), staged_rows)
        if failed_rows:
            cursor.executemany(render("manifest_fail"), failed_rows)


# Another connection of the same database, for as long as its context lasts.
Connect = Callable[[], contextlib.AbstractContextManager[psycopg.Connection]]


def write_staged(
    connection: psycopg.Connection, staged: StagedFile, another: Connect | None = None
) -> StageReport:
    """Replace the file's staging slice and quarantine rows, in one transaction.

    A file this run loads next goes straight into its target instead (`_write_straight`), when
    it can; a big one into a table with rows only given `another` connection to stage it on."""
    if staged.load_gate is not None and _may_load_straight(staged):
        report = _write_straight(connection, staged, staged.load_gate, another)
        if report is not None:
            return report
        staged.restart()
    columns = staging_columns(staged.contract)
    report = StageReport(FileCounts(), [])
    started = time.perf_counter()
    with connection.transaction():
        table = _begin(connection, staged.contract, [staged.file], staged.run_id)
        copied: int | None = None  # rows PostgreSQL's COPY says it wrote
        try:
            with connection.transaction():
                report.copy_format, copied = _stream(connection, staged, table, columns)
        except psycopg.errors.DataError:
            # PostgreSQL refused a value our validation let through (rare): read the file again,
            # a COPY per batch, isolating the refused rows with PostgreSQL's own reasons.
            log.info("%s: PostgreSQL refused a value; isolating the refused rows", staged.file)
            staged.restart()
            report.refused_by_postgres = _stream_isolating(connection, staged, table, columns)
        report.seconds["copy"] = time.perf_counter() - started
        _file_checks(connection, staged, report)
        if copied is None:  # COPYs of isolated batches: their rows counted in the slice
            counted = slice_counts(connection, staged.contract, {staged.file: _load(staged)})
        else:
            staged_rows = copied - report.duplicates_moved
            counted = {staged.file: (staged_rows, _open_quarantine(connection, staged))}
        _record(connection, [(staged, report)], counted)
    report.seconds["stage_total"] = time.perf_counter() - started
    return report


class _NotStraight(Exception):
    """The file cannot load straight into the target: it takes the staging path instead."""


# The smallest file that goes straight into a table that has rows. An upserted table takes it
# staged in parts on a second connection while its step's transaction upserts each part (a
# 200,000-row delta into 1M rows, in a prototype: 1.6 s instead of 2.1 s for its COPY and
# upsert); a smaller file is one part anyway, with nothing to overlap. An appended table takes
# the rows by COPY itself; the same size keeps one rule for both, and a small file's slice
# for its target step, as before.
STRAIGHT_INTO_ROWS_BYTES = 1 << 20
# Rows of a big file staged and committed before its step's transaction upserts them: small
# enough that the upsert starts early, big enough that each part's statements cost little.
PART_ROWS = 30_000


def _may_load_straight(staged: StagedFile) -> bool:
    """Whether the file may skip its staging slice: no whole-file check needs the staged rows. A
    history table merges versions and a unique check moves rows out of the slice; repeated keys
    are counted only where the table refuses them (an upsert's key is always enforced: its
    ON CONFLICT needs it), so an appended file with a key is staged, where they are counted."""
    contract = staged.contract
    if contract.target.mode == "history":
        return False
    if contract.target.mode == "append" and contract.target.primary_key:
        return False
    return not contract.checks.unique and not any(c.checks.unique for c in contract.columns)


def _write_straight(
    connection: psycopg.Connection,
    staged: StagedFile,
    may_load: Callable[[StageReport], bool],
    another: Connect | None,
) -> StageReport | None:
    """The file's good rows loaded into its target by the staged step itself, with the
    quarantine rows, the staged report and the manifest's `success`, in one transaction; None,
    with nothing written, when it cannot: another load is writing the table, or the file would
    not load as it is (PostgreSQL refuses a value, the policy or a blocking check fails, or, in
    an empty table, a key repeats), which the staging path then handles and reports.

    The table's writer lock (lock_table) is taken first, without waiting: a table another load
    is writing to takes this file's slice in staging meanwhile, as before, so files of one table
    still stage in parallel. An empty table takes the rows from COPY itself
    (`_copy_first_load`); a table with rows, a file of STRAIGHT_INTO_ROWS_BYTES or more: an
    upserted one a part at a time as `another` connection stages the parts
    (`_stage_and_upsert`), an appended one from COPY itself (`_copy_and_append`). A file COPYed
    into its table keeps no slice: loading it again takes its whole partition (postgres/load.py
    NoStagedSlice).
    """
    contract = staged.contract
    report = StageReport(FileCounts(), [], straight_to_target=True)
    started = time.perf_counter()
    try:
        with connection.transaction():
            taken = connection.execute(render("lock_table_try"), writer_lock(contract)).fetchone()
            if not (taken and taken[0]):
                return None
            connection.execute(render("writer_platform"))
            if is_empty(connection, contract):
                _copy_first_load(connection, staged, report, may_load)
            elif staged.size_bytes < STRAIGHT_INTO_ROWS_BYTES:
                return None
            elif contract.target.mode == "upsert":
                if another is None:
                    return None
                _stage_and_upsert(connection, staged, report, may_load, another)
            else:
                _copy_and_append(connection, staged, report, may_load)
    except (
        _NotStraight,
        psycopg.errors.IntegrityError,
        psycopg.errors.DataError,
        psycopg.errors.CardinalityViolation,  # a key repeated within a part of a big file
        psycopg.errors.LockNotAvailable,
    ) as error:
        # PostgreSQL's message may quote a row's values: only its kind goes to the log.
        why = str(error) if isinstance(error, _NotStraight) else type(error).__name__
        log.info("%s: staged first, not straight into the table (%s)", staged.file, why)
        return None
    report.seconds["stage_total"] = time.perf_counter() - started
    return report


def _copy_first_load(
    connection: psycopg.Connection,
    staged: StagedFile,
    report: StageReport,
    may_load: Callable[[StageReport], bool],
) -> None:
    """A first load: the good rows COPYed into the empty target itself, which the table's lock,
    taken without waiting (an autovacuum or an outside writer holding it: staged instead), keeps
    empty for this file. A plain INSERT of the staged slice would do the same (postgres/load.py);
    this saves that whole step (a 1M-row file: 1.7-1.9 s)."""
    contract = staged.contract
    target = target_table(contract)
    connection.execute(render("table_lock_writes_now", table=target))
    if not is_empty(connection, contract):
        raise _NotStraight("the table is not empty any more")
    columns = [c.name for c in contract.table_columns]
    if contract.target.mode == "append":
        columns.append(FILE_COLUMN)
    _begin(connection, contract, [staged.file], staged.run_id)
    started = time.perf_counter()
    report.copy_format, copied = _stream(connection, staged, target, columns)
    report.seconds["copy"] = time.perf_counter() - started
    report.counts.keys_in_order = bool(
        staged.keys_increasing and len(contract.target.primary_key) == 1
    )
    # The target's primary key let no key repeat.
    _record_passing(connection, staged, report, copied, may_load)
    key = ManifestKey(staged.dataset, staged.file, staged.sha256)
    result = LoadResult(copied, copied, 0, 0, 0, 0, seconds=0.0, row_count=0)
    finish_straight(connection, contract, key, staged.run_id, result, into_empty=True)


def _stage_and_upsert(
    connection: psycopg.Connection,
    staged: StagedFile,
    report: StageReport,
    may_load: Callable[[StageReport], bool],
    another: Connect,
) -> None:
    """A big file into an upserted table that has rows, its COPY and its upsert overlapped: its
    slice is staged a part at a time on `another` connection, each part committed as soon as it
    is written (`_StagingInParts`), while this transaction writes each part's quarantined rows
    and upserts its rows, then checks the whole slice as a staged one is checked and records
    the file as loaded. On two cores the upsert, PostgreSQL's longest step, no longer waits for
    the whole file to be read and COPYed. Its keys must not repeat (they would be upserted
    twice): a file whose keys do, fails a part's upsert or the file checks and is staged
    instead."""
    contract = staged.contract
    _begin_files(connection, contract, [staged.file], staged.run_id)
    started = time.perf_counter()
    upserts = PartsUpsert(connection, contract, _load(staged))
    with another() as second:
        staging = _StagingInParts(second, staged)
        try:
            for part in staging:
                for records in part.quarantined:
                    _copy_quarantine(connection, staged, records)
                if part.rows:
                    upserts.upsert(part.after_row, part.last_row, in_order=part.in_order)
        finally:
            staging.stop()
    report.copy_format, copied = staging.copy_format, staging.copied
    report.seconds["copy"] = time.perf_counter() - started
    _file_checks(connection, staged, report)
    if report.counts.duplicate_key_rows:
        raise _NotStraight("keys repeat within the file")
    _record_passing(connection, staged, report, copied, may_load)
    key = ManifestKey(staged.dataset, staged.file, staged.sha256)
    upserts.finish(key, staged.run_id, copied)


@dataclass
class _Part:
    """Rows of a file's slice committed in staging (numbered after `after_row` up to
    `last_row`), and the rows its batches quarantined, for the loading transaction to write."""

    after_row: int
    last_row: int
    rows: int = 0
    in_order: bool = True  # every key of the file so far greater than the one before it
    quarantined: list[pl.DataFrame] = field(default_factory=list)

    def add(self, batch: ValidatedBatch, good: pl.DataFrame) -> None:
        if good.height:
            self.rows += good.height
            self.last_row = max(self.last_row, int(good[ROW_COLUMN].max()))  # type: ignore[arg-type]
        if batch.quarantined.height:
            self.quarantined.append(batch.quarantined)


class _Stopped(Exception):
    """The loading transaction stopped taking parts (it failed): the part being written is
    rolled back."""


class _StagingInParts:
    """A file's staging slice written on its own connection in a thread of its own: the file's
    earlier slices deleted (committed at once: a slice the loading transaction had deleted
    would make a new row with its load and row number wait for that transaction, which waits
    for the part), then a COPY per part of PART_ROWS rows or more, each committed and handed
    over in turn (iterate this object; errors are raised there). `stop()` ends it and waits."""

    def __init__(self, connection: psycopg.Connection, staged: StagedFile):
        self.copy_format, self.copied = "csv", 0
        self._parts: queue.Queue[_Part | BaseException | None] = queue.Queue()
        self._stopping = threading.Event()
        context = contextvars.copy_context()  # log context (dataset, file, run) follows the work
        self._thread = threading.Thread(
            target=context.run, args=(self._run, connection, staged), name="staging-parts"
        )
        self._thread.start()

    def __iter__(self) -> Iterator[_Part]:
        while (part := self._parts.get()) is not None:
            if isinstance(part, BaseException):
                raise part
            yield part

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self, connection: psycopg.Connection, staged: StagedFile) -> None:
        try:
            self._write(connection, staged)
            self._parts.put(None)
        except BaseException as error:  # raised where the parts are taken
            self._parts.put(error)

    def _write(self, connection: psycopg.Connection, staged: StagedFile) -> None:
        contract = staged.contract
        table, columns = staging_table(contract), staging_columns(contract)
        names = {"dataset": contract.name, "files": [staged.file]}
        connection.execute(render("slices_replace", table=table), names)  # autocommit
        progress = _Progress(staged)
        with contextlib.closing(_encoded(staged, columns)) as encoded:
            item, last_row = next(encoded, None), 0
            while item is not None:
                part = _Part(after_row=last_row, last_row=last_row)
                with connection.transaction(), connection.cursor() as cursor:
                    _local_timezone(connection, contract)
                    with _copy_into(cursor, table, columns, binary=item[3]) as copy:
                        while item is not None and part.rows < PART_ROWS:
                            if self._stopping.is_set():
                                raise _Stopped()
                            batch, good, payload, binary = item
                            progress.batch(batch.rows_read)
                            copy.write(payload)
                            part.add(batch, good)
                            item = next(encoded, None)
                    self.copied += cursor.rowcount
                self.copy_format = "binary" if binary else "csv"
                part.in_order = staged.keys_increasing
                last_row = part.last_row
                self._parts.put(part)


def _copy_and_append(
    connection: psycopg.Connection,
    staged: StagedFile,
    report: StageReport,
    may_load: Callable[[StageReport], bool],
) -> None:
    """A file into an appended table that has rows (a table without a key: nothing can
    conflict): the rows an earlier load of this file appended deleted, as its target step would
    (they are replaced, not appended twice), and the good rows COPYed into the table itself."""
    contract = staged.contract
    target = target_table(contract)
    _begin(connection, contract, [staged.file], staged.run_id)
    deleted = connection.execute(render("slice_delete", table=target), {"file": staged.file})
    started = time.perf_counter()
    columns = [c.name for c in contract.table_columns] + [FILE_COLUMN]
    report.copy_format, copied = _stream(connection, staged, target, columns)
    report.seconds["copy"] = time.perf_counter() - started
    _record_passing(connection, staged, report, copied, may_load)
    key = ManifestKey(staged.dataset, staged.file, staged.sha256)
    replaced = max(deleted.rowcount, 0)
    result = LoadResult(copied, copied, 0, 0, 0, replaced, seconds=0.0, row_count=0)
    finish_straight(connection, contract, key, staged.run_id, result, into_empty=False)


def _record_passing(
    connection: psycopg.Connection,
    staged: StagedFile,
    report: StageReport,
    copied: int,
    may_load: Callable[[StageReport], bool],
) -> None:
    """A file on its way straight into its table: its counts (the open quarantine rows counted)
    and the staged report recorded, as the staging path records them; raises _NotStraight when
    the file may not load (its policy or a blocking check fails), to stage it instead."""
    _record(
        connection,
        [(staged, report)],
        {staged.file: (copied, _open_quarantine(connection, staged))},
    )
    if report.violations or not may_load(report):
        raise _NotStraight("the file does not pass its blocking checks")


def write_staged_together(
    connection: psycopg.Connection, files: list[StagedFile]
) -> list[StageReport]:
    """Small files of one dataset, read and validated already (`read_together`), staged in one
    transaction: each exactly as write_staged would, with one COPY for all their good rows and
    one for all their quarantined rows, and the per-file statements of the transaction once for
    all. Each report's seconds are the group's, shared out evenly.

    Raises psycopg.errors.DataError, with nothing written, when PostgreSQL refuses a value: the
    files are then staged one by one, where the refused rows are isolated.
    """
    contract = files[0].contract
    columns = staging_columns(contract)
    reports = [StageReport(FileCounts(), []) for _ in files]
    started = time.perf_counter()
    with connection.transaction():
        table = _begin(connection, contract, [f.file for f in files], files[0].run_id)
        good, rejected = [], []
        for staged in files:
            for batch in staged.batches():  # in memory: read together already
                good.append(_tagged(batch.good, staged))
                if batch.quarantined.height:
                    rejected.append(_quarantine_frame(staged, batch.quarantined))
        with connection.cursor() as cursor, cursor.copy(render_copy(table, columns)) as copy:
            copy.write(encode_csv(pl.concat(good), columns))
        if rejected:
            group = f"{files[0].file} and the {len(files) - 1} files staged with it"
            _copy_quarantine_frame(connection, pl.concat(rejected), group)
        copied = time.perf_counter() - started
        for staged, report in zip(files, reports, strict=True):
            _file_checks(connection, staged, report)
        counted = slice_counts(connection, contract, {f.file: _load(f) for f in files})
        _record(connection, list(zip(files, reports, strict=True)), counted)
        for report in reports:
            report.seconds["copy"] = copied / len(files)
    total = time.perf_counter() - started
    for report in reports:
        report.seconds["stage_total"] = total / len(files)
    return reports
