"""The hand-written loop over many small files, the floor `elt ingest` is measured against.

Run as its own process (start-up included, like the user's command): for each CSV file of a
folder, in name order and in one transaction, COPY its bytes into an UNLOGGED staging table,
upsert into the target (`INSERT ... ON CONFLICT DO UPDATE`), empty the staging table, commit. No
validation, no manifest, no checks: what a careful engineer writes for a one-off.

    python -m benchmarks.small_loop URL TARGET FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

from benchmarks.limit import STAGE, _upsert_sql, reset


def main(url: str, target: str, folder: Path) -> None:
    reset(url, target)
    upsert = _upsert_sql(target)
    with psycopg.connect(url) as connection:
        for path in sorted(folder.glob("*.csv")):
            with (
                connection.cursor() as cursor,
                cursor.copy(f"COPY {STAGE} FROM STDIN (FORMAT csv, HEADER true)") as copy,
            ):
                copy.write(path.read_bytes())
            connection.execute(upsert)
            connection.execute(f"DELETE FROM {STAGE}")
            connection.commit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
