"""How long staging slices (and files' partitions) stay: deleted some time after a load ended.

A slice is only needed until its file is loaded; it is kept a while (ELT_STAGING_RETENTION_HOURS)
so that the target can be materialised again and the staged rows inspected. After that the
landed file is the source again: materialising the partition stages it anew. Without pruning,
staging would hold a second copy of every file ever loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from elt_assets.contracts.model import Contract
from elt_assets.postgres.tables import inspect_table
from elt_assets.postgres.templates import STAGING_SCHEMA, render, staging_table


@dataclass(frozen=True)
class Pruned:
    dataset: str
    rows: int
    files: int


def prune_staging(connection: psycopg.Connection, contract: Contract, hours: int) -> Pruned:
    """Delete the slices of the dataset's files whose latest attempt ended over `hours` ago."""
    with connection.transaction():
        if not inspect_table(connection, STAGING_SCHEMA, contract.name):
            return Pruned(contract.name, 0, 0)  # never staged anything yet
        row = connection.execute(
            render("staging_prune", staging=staging_table(contract)),
            {"dataset": contract.name, "hours": hours},
        ).fetchone()
    rows, files = (int(row[0]), int(row[1])) if row else (0, 0)
    return Pruned(contract.name, rows, files)


def expired_partitions(connection: psycopg.Connection, contract: Contract, days: int) -> list[str]:
    """Partition keys of the dataset's files whose latest attempt ended over `days` ago."""
    rows = connection.execute(
        render("partitions_expired"), {"dataset": contract.name, "days": days}
    ).fetchall()
    return [str(key) for (key,) in rows]
