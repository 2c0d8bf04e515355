"""Loading staged files into their target, and the manifest rows that record them.

One transaction (for one file, or a batch's group of small files in order): the target table's
advisory lock (one writer per table, so parallel runs never deadlock on overlapping keys; their
COPYs into staging still run in parallel), the files' locks, and for each file a check that the
staged slice is what the staged step recorded, the upsert (or append), and the manifest's
`success`; then the table's row count (elt.target_rows). A crash anywhere leaves the target and
the manifest as they were before.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import psycopg
from psycopg import sql

from elt_assets.contracts.model import Contract
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.inspect import slice_counts
from elt_assets.postgres.templates import (
    render,
    render_append,
    render_history_merge,
    render_insert_new,
    render_upsert,
    target_table,
)


class NoStagedSlice(TerminalDatabaseError):
    """The file went straight into its table from its staged step: it has no slice to load
    again (the file itself is loaded; its manifest row stays as it is)."""


@dataclass(frozen=True)
class LoadResult:
    rows_staged: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_deduplicated: int  # rows of the file dropped because a later row had the same key
    rows_replaced: int  # append mode: rows of an earlier load of this file that were replaced
    seconds: float
    # The table's rows when this load committed (elt.target_rows, kept under the table's lock).
    row_count: int
    # History mode: current versions of keys the file lacks, closed (history.close_missing).
    rows_closed: int = 0
    # Loaded by its staged step, straight into the table (postgres/staging.py `_write_straight`).
    straight_to_target: bool = False


class _Statements:
    """The statements a load runs for each of its files, composed and encoded once per load:
    for a small file, composing its upsert took longer than PostgreSQL took to run it."""

    def __init__(self, connection: psycopg.Connection, contract: Contract):
        self._connection, self._contract = connection, contract
        self._encoded: dict[str, bytes] = {}

    def _get(self, name: str, compose: Callable[[Contract], sql.Composable]) -> bytes:
        if name not in self._encoded:
            self._encoded[name] = compose(self._contract).as_bytes(self._connection)
        return self._encoded[name]

    def upsert(self, *, deduplicate: bool, in_order: bool = False, part: bool = False) -> bytes:
        return self._get(
            f"upsert deduplicate={deduplicate} in_order={in_order} part={part}",
            lambda c: render_upsert(c, deduplicate=deduplicate, in_order=in_order, part=part),
        )

    def append(self) -> bytes:
        return self._get("append", render_append)

    def slice_delete(self) -> bytes:
        return self._get("slice_delete", lambda c: render("slice_delete", table=target_table(c)))

    def history_merge(self) -> bytes:
        return self._get("history_merge", render_history_merge)


@dataclass(frozen=True)
class ManifestKey:
    dataset: str
    file: str
    sha256: str


@dataclass(frozen=True)
class Slice:
    """One file's staged rows, as a load reads them: the load that keys them, how many there
    are, how many share a key with another (None: not counted) and whether their keys came in
    order."""

    load: int
    rows: int
    duplicate_key_rows: int | None
    keys_in_order: bool


def manifest_row(connection: psycopg.Connection, key: ManifestKey) -> dict[str, object] | None:
    cursor = connection.execute(render("manifest_row"), key.__dict__)
    row = cursor.fetchone()
    if row is None:
        return None
    assert cursor.description is not None
    return dict(zip([d.name for d in cursor.description], row, strict=True))


@dataclass(frozen=True)
class FileStart:
    """A file a run takes: the content it found and where it came from."""

    key: ManifestKey
    partition_key: str
    size_bytes: int
    file_format: str


def start_files(
    connection: psycopg.Connection, starts: list[FileStart], run_id: str
) -> dict[str, int]:
    """Open (or reopen) the files' manifest rows as `running`, in one transaction. Returns each
    file's load: its manifest row's id."""
    rows = [
        {
            **start.key.__dict__,
            "partition_key": start.partition_key,
            "size_bytes": start.size_bytes,
            "format": start.file_format,
            "run_id": run_id,
        }
        for start in starts
    ]
    loads: dict[str, int] = {}
    with connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(render("manifest_start"), rows, returning=True)
        for start in starts:
            row = cursor.fetchone()
            assert row is not None
            loads[start.key.file] = int(row[0])
            cursor.nextset()
    return loads


@dataclass(frozen=True)
class Recorded:
    """What the manifest records of a file's content: its status and its staged step's counts."""

    status: str
    rows_staged: int | None
    duplicate_key_rows: int | None
    keys_in_order: bool  # the staged step saw every key greater than the one before it
    rows_inserted: int | None
    run_id: str | None
    # The staged step loaded the file itself, straight into the table (`finish_straight`).
    straight_to_target: bool
    rows_updated: int | None
    rows_unchanged: int | None
    rows_closed: int | None
    rows_replaced: int | None
    load: int  # the manifest row's id: the key of this content's staging slice

    def loaded_by(self, runs: Collection[str]) -> bool:
        """Whether one of these runs loaded this content into the table (its staged step
        straight into the table, or its target step)."""
        return self.status == "success" and self.run_id in runs

    def slice(self) -> Slice:
        """The staged slice this content's staged step recorded."""
        rows = int(self.rows_staged or 0)
        return Slice(self.load, rows, self.duplicate_key_rows, self.keys_in_order)

    def as_result(self) -> LoadResult:
        """The content's committed load, as recorded (for a load reported after its run)."""
        rows, inserted = int(self.rows_staged or 0), int(self.rows_inserted or 0)
        updated, unchanged = int(self.rows_updated or 0), int(self.rows_unchanged or 0)
        return LoadResult(
            rows_staged=rows,
            rows_inserted=inserted,
            rows_updated=updated,
            rows_unchanged=unchanged,
            rows_deduplicated=rows - inserted - updated - unchanged,
            rows_replaced=int(self.rows_replaced or 0),
            seconds=0.0,
            row_count=0,  # unknown here: load_files sets it from the table's recorded count
            rows_closed=int(self.rows_closed or 0),
            straight_to_target=self.straight_to_target,
        )


def recorded_contents(
    connection: psycopg.Connection, dataset: str, contents: dict[str, str]
) -> dict[str, Recorded]:
    """The manifest's rows of these files (file -> the sha256 of its content now), by file."""
    params = {"dataset": dataset, "files": list(contents), "hashes": list(contents.values())}
    rows = connection.execute(render("manifest_contents"), params).fetchall()
    return {file: Recorded(*rest) for file, *rest in rows}


def finish_straight(
    connection: psycopg.Connection,
    contract: Contract,
    key: ManifestKey,
    run_id: str,
    result: LoadResult,
    *,
    into_empty: bool,
) -> None:
    """Record a file its staged step loaded straight into its table (postgres/staging.py) as
    loaded: the manifest's `success` and the table's row count (exactly the rows it added, when
    the table was empty), in that transaction, the table's writer lock held."""
    connection.execute(render("manifest_finish"), _finished(key, run_id, result))
    change = result.rows_inserted - result.rows_replaced
    _row_count(connection, contract, change if into_empty else None, change)


class PartsUpsert:
    """A big file's staged slice upserted into its table a part at a time, as its staged step
    commits the parts (postgres/staging.py `_stage_and_upsert`), in that step's transaction, the
    table's writer lock held: the target step's statement for a slice whose keys do not repeat,
    on each part's rows. A key that repeats within a part fails the statement; one repeated
    across parts is the staged step's to find (its file checks) before `finish`."""

    def __init__(self, connection: psycopg.Connection, contract: Contract, load: int):
        self._connection, self._contract, self._load = connection, contract, load
        self._statements = _Statements(connection, contract)
        self._seconds = 0.0
        self.inserted = self.updated = 0

    def upsert(self, after_row: int, last_row: int, *, in_order: bool) -> None:
        """The slice's rows numbered after `after_row` up to `last_row` (in key order already:
        `in_order`)."""
        started = time.perf_counter()
        statement = self._statements.upsert(deduplicate=False, in_order=in_order, part=True)
        params = {"load": self._load, "after_row": after_row, "last_row": last_row}
        row = self._connection.execute(statement, params).fetchone()
        assert row is not None
        self.inserted, self.updated = self.inserted + int(row[0]), self.updated + int(row[1])
        self._seconds += time.perf_counter() - started

    def finish(self, key: ManifestKey, run_id: str, rows_staged: int) -> None:
        """Every part upserted: the file recorded as loaded (`finish_straight`)."""
        unchanged = rows_staged - self.inserted - self.updated
        result = LoadResult(
            rows_staged, self.inserted, self.updated, unchanged, 0, 0, self._seconds, row_count=0
        )
        finish_straight(self._connection, self._contract, key, run_id, result, into_empty=False)


def _finished(key: ManifestKey, run_id: str, result: LoadResult) -> dict[str, object]:
    """The parameters of manifest_finish: a file's load, as it went."""
    return {
        **key.__dict__,
        "run_id": run_id,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "rows_unchanged": result.rows_unchanged,
        "rows_closed": result.rows_closed,
        "rows_replaced": result.rows_replaced,
    }


def fail_file(connection: psycopg.Connection, key: ManifestKey, error: str, run_id: str) -> None:
    with connection.transaction():
        connection.execute(
            render("manifest_fail"), {**key.__dict__, "error": error, "run_id": run_id}
        )


def writer_lock(contract: Contract) -> dict[str, str]:
    """The parameters of the table's writer lock (lock_table.sql, lock_table_try.sql): one key
    per target table, the same for every load that takes it, waiting or not."""
    return {"table": f"{contract.target.schema_}.{contract.target.table}"}


def load_files(
    connection: psycopg.Connection,
    contract: Contract,
    keys: list[ManifestKey],
    run_id: str,
    *,
    rows_before: int | None = None,
    retried_runs: Collection[str] = (),
) -> list[LoadResult]:
    """Upsert or append the files' staged slices in order and mark each loaded, in one
    transaction: all of them or none.

    A file this run loaded already (its staged step, straight into the table; or an
    earlier attempt of its step, whose commit was answered by an error), or a run this one
    re-executes loaded (`retried_runs`: a run that died between the load's commit and its
    report, retried from its failure), is reported as that load recorded it: loading its slice
    again could undo what a newer file wrote since.

    Each result has the table's row count after its file: the count the table's last load
    recorded (elt.target_rows), carried forward by what these files changed; counted instead
    when it cannot be carried (`_row_count`). `rows_before`: the table's rows after this run's
    previous load of it (a batch): a table that had rows is not asked whether it is empty (the
    upsert is right either way).
    """
    results: list[LoadResult] = []
    changes: list[int] = []  # rows each file added minus rows it removed
    reported: set[str] = set()  # loaded before (by this run or one it retries): as recorded
    files = [k.file for k in keys]
    with connection.transaction():
        connection.execute(render("lock_table"), writer_lock(contract))
        connection.execute(render("writer_platform"))
        connection.execute(render("lock_files"), {"dataset": contract.name, "files": files})
        recorded = recorded_contents(connection, contract.name, {k.file: k.sha256 for k in keys})
        loads = {file: known.load for file, known in recorded.items()}
        staged = {f: rows for f, (rows, _) in slice_counts(connection, contract, loads).items()}
        maybe_empty, empty_before = not rows_before, False
        statements = _Statements(connection, contract)
        for key in keys:
            known = recorded.get(key.file)
            if known is not None and known.loaded_by({run_id, *retried_runs}):
                results.append(known.as_result())  # counted in the table's rows then
                reported.add(key.file)  # its manifest row stays as its load finished it
                changes.append(0)
                maybe_empty = maybe_empty and not known.rows_inserted
                continue
            in_staging = staged.get(key.file, 0)
            # A file staged in parts as it was upserted keeps its slice; one COPYed into its
            # table itself has none.
            if known is not None and known.straight_to_target and known.rows_staged != in_staging:
                raise NoStagedSlice(
                    f"{key.file} went straight into the table from its staged step and kept "
                    "no staging slice; to load it again, materialise its whole partition (raw, "
                    "staged and target)"
                )
            if known is None or known.rows_staged != in_staging:
                raise TerminalDatabaseError(
                    f"the staging slice of {key.file} has {in_staging} rows but the "
                    f"manifest recorded {None if known is None else known.rows_staged}: another "
                    "run replaced it or the server restarted (staging is UNLOGGED); materialise "
                    "staged again"
                )
            result, change, first_load = _load_slice(
                connection, statements, contract, key.file, known.slice(), maybe_empty
            )
            empty_before = empty_before or (first_load and not results)
            maybe_empty = maybe_empty and result.rows_inserted == 0
            results.append(result)
            changes.append(change)
        finished = [
            _finished(key, run_id, result)
            for key, result in zip(keys, results, strict=True)
            if key.file not in reported
        ]
        if finished:
            with connection.cursor() as cursor:
                cursor.executemany(render("manifest_finish"), finished)
        # A table that was empty before the first file holds exactly what the files added; else
        # the count recorded by the table's last load is carried forward by what these changed.
        counted = sum(changes) if empty_before else None
        after = _row_count(
            connection, contract, counted, sum(changes), within_run=rows_before is not None
        )
    counts = []
    for change in reversed(changes):  # the count after each file, from the count after the last
        counts.append(after)
        after -= change
    return [
        dataclasses.replace(result, row_count=count)
        for result, count in zip(results, reversed(counts), strict=True)
    ]


def _load_slice(
    connection: psycopg.Connection,
    statements: _Statements,
    contract: Contract,
    file: str,
    rows: Slice,
    maybe_empty: bool,
) -> tuple[LoadResult, int, bool]:
    """One file's slice into the target, in the caller's transaction (its locks held): the
    result (row count still 0), the rows it added minus those it removed, and whether it was a
    first load into the empty table."""
    started = time.perf_counter()
    params: dict[str, object] = {"file": file, "load": rows.load}
    staged_rows = rows.rows
    first_load, closed = False, 0
    if contract.target.mode == "history":
        source_rows, inserted, updated, closed, removed = _merge_history(
            connection, statements, contract, params
        )  # removed: versions folded into a neighbour
    elif contract.target.mode == "upsert":
        source_rows, inserted, updated, first_load = _upsert(
            connection,
            statements,
            contract,
            params,
            staged_rows,
            rows.duplicate_key_rows,
            maybe_empty=maybe_empty,
            in_order=rows.keys_in_order,
        )
        removed = 0
    else:
        deleted = connection.execute(statements.slice_delete(), params)
        removed = max(deleted.rowcount, 0)  # an earlier load of this file, replaced
        inserted = max(connection.execute(statements.append(), params).rowcount, 0)
        source_rows, updated = staged_rows, 0
    result = LoadResult(
        rows_staged=staged_rows,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_unchanged=source_rows - inserted - updated,
        rows_deduplicated=staged_rows - source_rows,
        rows_replaced=removed if contract.target.mode == "append" else 0,
        seconds=time.perf_counter() - started,
        row_count=0,
        rows_closed=closed,
    )
    return result, inserted - removed, first_load


def _row_count(
    connection: psycopg.Connection,
    contract: Contract,
    counted: int | None,
    change: int | None,
    *,
    within_run: bool = False,
) -> int:
    """The table's rows now, inside the load's transaction (the table's lock is held).

    `counted`: known exactly (an empty table's first load); `change`: rows added minus rows
    removed, to carry the recorded count forward (None: count them). The table is counted when
    it never was, was dropped and created again since (a new relid), or noted a write made
    outside the platform since its last count (migrations/0010); a table that cannot note them
    is counted by each run's first load of it (`within_run` False).
    """
    target = target_table(contract).as_string(connection)
    if counted is None and change is not None:
        params = _target_rows_params(target, change=change, within_run=within_run)
        row = connection.execute(render("target_rows_carry"), params).fetchone()
        if row is not None:
            return int(row[0])
    if counted is None:
        row = connection.execute(
            render("target_rows_count", table=target_table(contract)), {"target": target}
        ).fetchone()
        counted = int(row[0]) if row else 0
    connection.execute(render("target_rows_set"), _target_rows_params(target, row_count=counted))
    return counted


def _target_rows_params(target: str, **values: object) -> dict[str, object]:
    """Parameters of the elt.target_rows statements: the table's name twice, as `target` (cast
    to regclass there) and as `name` (compared as text), since one parameter used both ways is
    typed regclass by PostgreSQL."""
    return {"target": target, "name": target, **values}


def _upsert(
    connection: psycopg.Connection,
    statements: _Statements,
    contract: Contract,
    params: dict[str, object],
    staged_rows: int,
    duplicate_key_rows: object,
    *,
    maybe_empty: bool,
    in_order: bool,
) -> tuple[int, int, int, bool]:
    """(rows of the slice after deduplication, rows inserted, rows updated, first load).

    The cheapest statement that is exact: a plain INSERT for a first load of a file with unique
    keys (the table's lock is held, so "empty" stays true), no DISTINCT ON when no key repeats,
    else the full deduplicating upsert. Unknown duplicate counts (NULL) take the full path.
    Rows go in key order; a slice the staged step saw in key order is not sorted again.
    """
    if duplicate_key_rows == 0:
        # Only a table that looks empty is locked against writers: the lock also waits for
        # autovacuum (up to deadlock_timeout, 1 s by default, before autovacuum gives way), which
        # often works on a table after a big load. A non-empty table takes the upsert, which is
        # right whatever happens to the table meanwhile.
        if maybe_empty and is_empty(connection, contract):
            connection.execute(render("table_lock_writes", table=target_table(contract)))
            if maybe_empty and is_empty(connection, contract):
                insert = render_insert_new(contract, in_order=in_order)
                inserted = connection.execute(insert, params).rowcount
                return staged_rows, inserted, 0, True
        unique = statements.upsert(deduplicate=False, in_order=in_order)
        row = connection.execute(unique, params).fetchone()
        assert row is not None
        return staged_rows, int(row[0]), int(row[1]), False
    row = connection.execute(statements.upsert(deduplicate=True), params).fetchone()
    assert row is not None
    source_rows, inserted, updated = (int(v) for v in row)
    return source_rows, inserted, updated, False


def _merge_history(
    connection: psycopg.Connection,
    statements: _Statements,
    contract: Contract,
    params: dict[str, object],
) -> tuple[int, int, int, int, int]:
    """(versions in the slice, versions added, versions corrected, current versions closed,
    versions folded into a neighbour and deleted)."""
    close = contract.target.history.close_missing
    row = connection.execute(
        statements.history_merge(), {**params, "close_missing": close}
    ).fetchone()
    assert row is not None
    source_rows, inserted, corrected, closed, merged = (int(v) for v in row)
    return source_rows, inserted, corrected, closed, merged


def is_empty(connection: psycopg.Connection, contract: Contract) -> bool:
    """Whether the target has no row (ask it under the table's lock for an answer that holds)."""
    row = connection.execute(render("table_is_empty", table=target_table(contract))).fetchone()
    return bool(row and row[0])
