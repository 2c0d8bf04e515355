"""Loading one staged file into its target, and the manifest row that records it.

One transaction: the target table's advisory lock (one writer per table, so parallel runs never
deadlock on overlapping keys; their COPYs into staging still run in parallel), a check that the
staged slice is what the staged step recorded, the upsert (or append), and the manifest's
`success`. A crash anywhere leaves the target and the manifest as they were before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from elt_assets.contracts.model import Contract
from elt_assets.postgres.errors import TerminalDatabaseError
from elt_assets.postgres.templates import (
    render,
    render_append,
    render_history_merge,
    render_insert_new,
    render_upsert,
    staging_table,
    target_table,
)


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


@dataclass(frozen=True)
class ManifestKey:
    dataset: str
    file: str
    sha256: str


def manifest_row(connection: psycopg.Connection, key: ManifestKey) -> dict[str, object] | None:
    cursor = connection.execute(render("manifest_row"), key.__dict__)
    row = cursor.fetchone()
    if row is None:
        return None
    assert cursor.description is not None
    return dict(zip([d.name for d in cursor.description], row, strict=True))


def start_file(
    connection: psycopg.Connection,
    key: ManifestKey,
    *,
    partition_key: str,
    size_bytes: int,
    file_format: str,
    run_id: str,
) -> None:
    """Open the file's manifest row as `running` (one statement: its own transaction on the
    pool's autocommit connections, or part of the caller's)."""
    connection.execute(
        render("manifest_start"),
        {
            **key.__dict__,
            "partition_key": partition_key,
            "size_bytes": size_bytes,
            "format": file_format,
            "run_id": run_id,
        },
    )


def fail_file(connection: psycopg.Connection, key: ManifestKey, error: str, run_id: str) -> None:
    with connection.transaction():
        connection.execute(
            render("manifest_fail"), {**key.__dict__, "error": error, "run_id": run_id}
        )


def load_file(
    connection: psycopg.Connection,
    contract: Contract,
    key: ManifestKey,
    run_id: str,
    *,
    rows_before: int | None = None,
) -> LoadResult:
    """Upsert or append the file's staged slice and mark it loaded, atomically.

    The table's row count comes with it. `rows_before`: the table's rows after this run's previous
    load of it (a batch); then the count is carried forward (elt.target_rows) rather than counted,
    and a table that had rows is not asked whether it is empty (the upsert is right either way).
    None (a run's first load) counts the table.
    """
    started = time.perf_counter()
    params = {"file": key.file}
    table = f"{contract.target.schema_}.{contract.target.table}"
    with connection.transaction():
        connection.execute(
            render("lock_table_file"), {"table": table, "dataset": key.dataset, "file": key.file}
        )
        recorded = manifest_row(connection, key)
        staged_rows = _staged_rows(connection, contract, key.file)
        if recorded is None or recorded["rows_staged"] != staged_rows:
            raise TerminalDatabaseError(
                f"the staging slice of {key.file} has {staged_rows} rows but the manifest recorded "
                f"{None if recorded is None else recorded['rows_staged']}: another run replaced it "
                "or the server restarted (staging is UNLOGGED); materialise staged again"
            )
        counted, closed = None, 0
        if contract.target.mode == "history":
            source_rows, inserted, updated, closed, merged = _merge_history(
                connection, contract, params
            )
            removed = merged  # versions folded into a neighbour
        elif contract.target.mode == "upsert":
            source_rows, inserted, updated, first_load = _upsert(
                connection,
                contract,
                params,
                staged_rows,
                recorded.get("duplicate_key_rows"),
                maybe_empty=not rows_before,
            )
            removed = 0
            counted = inserted if first_load else None
        else:
            deleted = connection.execute(
                render("slice_delete", table=target_table(contract)), params
            )
            removed = max(deleted.rowcount, 0)  # an earlier load of this file, replaced
            inserted = max(connection.execute(render_append(contract), params).rowcount, 0)
            source_rows, updated = staged_rows, 0
        unchanged = source_rows - inserted - updated
        connection.execute(
            render("manifest_finish"),
            {
                **key.__dict__,
                "run_id": run_id,
                "rows_inserted": inserted,
                "rows_updated": updated,
                "rows_unchanged": unchanged,
            },
        )
        row_count = _row_count(
            connection, contract, counted, None if rows_before is None else inserted - removed
        )
    return LoadResult(
        rows_staged=staged_rows,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_unchanged=unchanged,
        rows_deduplicated=staged_rows - source_rows,
        rows_replaced=removed if contract.target.mode == "append" else 0,
        seconds=time.perf_counter() - started,
        row_count=row_count,
        rows_closed=closed,
    )


def _row_count(
    connection: psycopg.Connection, contract: Contract, counted: int | None, change: int | None
) -> int:
    """The table's rows now, inside the load's transaction (the table's lock is held).

    `counted`: known exactly (an empty table's first load); `change`: rows added minus rows
    removed, to carry the recorded count forward (None: count them). A table never counted, or
    dropped and created again since (a new relid), is counted.
    """
    target = target_table(contract).as_string(connection)
    if counted is None and change is not None:
        row = connection.execute(
            render("target_rows_carry"), {"target": target, "change": change}
        ).fetchone()
        if row is not None:
            return int(row[0])
    if counted is None:
        row = connection.execute(render("table_row_count", table=target_table(contract))).fetchone()
        counted = int(row[0]) if row else 0
    connection.execute(render("target_rows_set"), {"target": target, "row_count": counted})
    return counted


def _upsert(
    connection: psycopg.Connection,
    contract: Contract,
    params: dict[str, str],
    staged_rows: int,
    duplicate_key_rows: object,
    *,
    maybe_empty: bool,
) -> tuple[int, int, int, bool]:
    """(rows of the slice after deduplication, rows inserted, rows updated, first load).

    The cheapest statement that is exact: a plain INSERT for a first load of a file with unique
    keys (the table's lock is held, so "empty" stays true), no DISTINCT ON when no key repeats,
    else the full deduplicating upsert. Unknown duplicate counts (NULL) take the full path.
    """
    if duplicate_key_rows == 0:
        # Only a table that looks empty is locked against writers: the lock also waits for
        # autovacuum (up to deadlock_timeout, 1 s by default, before autovacuum gives way), which
        # often works on a table after a big load. A non-empty table takes the upsert, which is
        # right whatever happens to the table meanwhile.
        if maybe_empty and _is_empty(connection, contract):
            connection.execute(render("table_lock_writes", table=target_table(contract)))
            if maybe_empty and _is_empty(connection, contract):
                inserted = connection.execute(render_insert_new(contract), params).rowcount
                return staged_rows, inserted, 0, True
        row = connection.execute(render_upsert(contract, deduplicate=False), params).fetchone()
        assert row is not None
        return staged_rows, int(row[0]), int(row[1]), False
    row = connection.execute(render_upsert(contract), params).fetchone()
    assert row is not None
    source_rows, inserted, updated = (int(v) for v in row)
    return source_rows, inserted, updated, False


def _merge_history(
    connection: psycopg.Connection, contract: Contract, params: dict[str, str]
) -> tuple[int, int, int, int, int]:
    """(versions in the slice, versions added, versions corrected, current versions closed,
    versions folded into a neighbour and deleted)."""
    close = contract.target.history.close_missing
    row = connection.execute(
        render_history_merge(contract), {**params, "close_missing": close}
    ).fetchone()
    assert row is not None
    source_rows, inserted, corrected, closed, merged = (int(v) for v in row)
    return source_rows, inserted, corrected, closed, merged


def _is_empty(connection: psycopg.Connection, contract: Contract) -> bool:
    row = connection.execute(render("table_is_empty", table=target_table(contract))).fetchone()
    return bool(row and row[0])


def _staged_rows(connection: psycopg.Connection, contract: Contract, file: str) -> int:
    row = connection.execute(
        render("slice_count", table=staging_table(contract)), {"file": file}
    ).fetchone()
    return int(row[0]) if row else 0
