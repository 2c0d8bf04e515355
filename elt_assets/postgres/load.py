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
    # History mode: current versions of keys the file lacks, closed (history.close_missing).
    rows_closed: int = 0
    # The table's rows at commit when this load alone decides it (a first load into the empty
    # table, under its lock), so nobody has to count them; else None.
    row_count: int | None = None


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
    with connection.transaction():
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
    connection: psycopg.Connection, contract: Contract, key: ManifestKey, run_id: str
) -> LoadResult:
    """Upsert or append the file's staged slice and mark it loaded, atomically."""
    started = time.perf_counter()
    params = {"file": key.file}
    table = f"{contract.target.schema_}.{contract.target.table}"
    with connection.transaction():
        connection.execute(render("lock_table"), {"table": table})
        connection.execute(render("lock_file"), {"dataset": key.dataset, "file": key.file})
        recorded = manifest_row(connection, key)
        staged_rows = _staged_rows(connection, contract, key.file)
        if recorded is None or recorded["rows_staged"] != staged_rows:
            raise TerminalDatabaseError(
                f"the staging slice of {key.file} has {staged_rows} rows but the manifest recorded "
                f"{None if recorded is None else recorded['rows_staged']}: another run replaced it "
                "or the server restarted (staging is UNLOGGED); materialise staged again"
            )
        row_count, closed = None, 0
        if contract.target.mode == "history":
            source_rows, inserted, updated, closed = _merge_history(connection, contract, params)
            replaced = 0
        elif contract.target.mode == "upsert":
            source_rows, inserted, updated, first_load = _upsert(
                connection, contract, params, staged_rows, recorded.get("duplicate_key_rows")
            )
            replaced = 0
            row_count = inserted if first_load else None
        else:
            deleted = connection.execute(
                render("slice_delete", table=target_table(contract)), params
            )
            replaced = max(deleted.rowcount, 0)
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
    return LoadResult(
        rows_staged=staged_rows,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_unchanged=unchanged,
        rows_deduplicated=staged_rows - source_rows,
        rows_replaced=replaced,
        seconds=time.perf_counter() - started,
        row_count=row_count,
        rows_closed=closed,
    )


def _upsert(
    connection: psycopg.Connection,
    contract: Contract,
    params: dict[str, str],
    staged_rows: int,
    duplicate_key_rows: object,
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
        if _is_empty(connection, contract):
            connection.execute(render("table_lock_writes", table=target_table(contract)))
            if _is_empty(connection, contract):
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
) -> tuple[int, int, int, int]:
    """(versions in the slice, versions added, versions corrected, current versions closed)."""
    close = contract.target.history.close_missing
    row = connection.execute(
        render_history_merge(contract), {**params, "close_missing": close}
    ).fetchone()
    assert row is not None
    source_rows, inserted, corrected, closed, _merged = (int(v) for v in row)
    return source_rows, inserted, corrected, closed


def _is_empty(connection: psycopg.Connection, contract: Contract) -> bool:
    row = connection.execute(render("table_is_empty", table=target_table(contract))).fetchone()
    return bool(row and row[0])


def _staged_rows(connection: psycopg.Connection, contract: Contract, file: str) -> int:
    row = connection.execute(
        render("slice_count", table=staging_table(contract)), {"file": file}
    ).fetchone()
    return int(row[0]) if row else 0
