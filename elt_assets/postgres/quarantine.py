"""A file's quarantined rows as CSV for its sender: what `elt quarantine export` writes.

One line per quarantined row: row_number, column_name, check_name, reason (a leading `file`
column when the export spans every file of the dataset, a `resolved_at` column with resolved
rows), then the row's original fields. raw_record is jsonb, which does not keep key order, so the
fields follow the contract's column order under their headers (source_name), and keys the contract
does not know come last, sorted. Values are written exactly as raw_record holds them, in
PostgreSQL's CSV convention: an empty unquoted field is NULL, a quoted "" is an empty string.

Both queries run in one read-only REPEATABLE READ transaction (the header and the rows see the
same snapshot) and the rows stream through a server-side cursor, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import psycopg

from elt_assets.contracts.model import Contract
from elt_assets.postgres.templates import render

LEADING_COLUMNS = ["row_number", "column_name", "check_name", "reason"]
CURSOR_ROWS = 2_000


def field_columns(contract: Contract, keys: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(CSV header, raw_record keys that fill it, first found wins) in the file's header order.

    A contract column is filled from its header, else its name (rows the unique check moved from
    staging carry column names), else a key equal after trimming and case-folding (a tolerant
    contract keeps the file's own spelling). Keys no column claims follow, sorted.
    """
    remaining = sorted(set(keys))
    columns: list[tuple[str, list[str]]] = []
    for column in contract.columns:
        wanted = {column.header.strip().casefold(), column.name.casefold()}
        exact = [k for k in dict.fromkeys([column.header, column.name]) if k in remaining]
        folded = [k for k in remaining if k not in exact and k.strip().casefold() in wanted]
        sources = exact + folded
        remaining = [k for k in remaining if k not in sources]
        columns.append((column.header, sources))
    return columns + [(key, [key]) for key in remaining]


def csv_field(value: object) -> str:
    """One CSV field: NULL is an empty unquoted field; "" and special characters are quoted."""
    if value is None:
        return ""
    text = str(value)
    if text == "" or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(values: Sequence[object]) -> str:
    return ",".join(csv_field(v) for v in values) + "\n"


def export_quarantine(
    connection: psycopg.Connection,
    contract: Contract,
    out: TextIO,
    *,
    file: str | None,
    include_resolved: bool,
) -> int:
    """Write the header and every matching quarantined row to `out`; the number of rows."""
    params: dict[str, Any] = {
        "dataset": contract.name,
        "file": file,
        "include_resolved": include_resolved,
    }
    rows = 0
    with connection.transaction():
        connection.execute(render("transaction_snapshot_read_only"))
        keys = [key for (key,) in connection.execute(render("quarantine_export_keys"), params)]
        columns = field_columns(contract, keys)
        header = [
            *(["file"] if file is None else []),
            *LEADING_COLUMNS,
            *(["resolved_at"] if include_resolved else []),
            *(name for name, _ in columns),
        ]
        out.write(csv_line(header))
        with connection.cursor(name="elt_quarantine_export") as cursor:
            cursor.itersize = CURSOR_ROWS
            cursor.execute(render("quarantine_export"), params)
            for row_file, row_number, column, check, reason, resolved_at, fields in cursor:
                values = fields or {}
                line: list[object] = [row_number, column, check, reason]
                if file is None:
                    line.insert(0, row_file)
                if include_resolved:
                    line.append(resolved_at)
                for _, sources in columns:
                    present = [values[k] for k in sources if k in values]
                    line.append(next((v for v in present if v is not None), None))
                out.write(csv_line(line))
                rows += 1
    return rows
