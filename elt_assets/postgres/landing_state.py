"""The file sensor's memory in elt.landing_files, and duplicates recorded in the manifest."""

from __future__ import annotations

import psycopg

from elt_assets.contracts.model import Contract
from elt_assets.landing.discovery import Decision, Known
from elt_assets.landing.keys import path_to_key
from elt_assets.postgres.templates import render


def load_known(connection: psycopg.Connection, dataset: str) -> dict[str, Known]:
    rows = connection.execute(render("landing_files_load"), {"dataset": dataset}).fetchall()
    return {row[0]: Known(*row[1:]) for row in rows}


def loaded_content(
    connection: psycopg.Connection, dataset: str, hashes: list[str]
) -> dict[str, str]:
    """{sha256: file} for the contents among `hashes` this dataset has already loaded."""
    rows = connection.execute(
        render("manifest_loaded_content"), {"dataset": dataset, "hashes": hashes}
    ).fetchall()
    return dict(rows)


def save_decision(connection: psycopg.Connection, contract: Contract, decision: Decision) -> None:
    """Write back what one tick saw, and record duplicate contents, in one transaction."""
    observations = decision.observations
    with connection.transaction():
        if observations:
            connection.execute(
                render("landing_files_save"),
                {
                    "dataset": contract.name,
                    "files": [o.file.relative_path for o in observations],
                    "sizes": [o.file.size_bytes for o in observations],
                    "mtimes": [o.file.mtime_ns for o in observations],
                    "hashes": [o.sha256 for o in observations],
                    "hashed_sizes": [o.file.size_bytes if o.sha256 else None for o in observations],
                    "hashed_mtimes": [o.file.mtime_ns if o.sha256 else None for o in observations],
                    "hashed_etags": [o.file.etag if o.sha256 else None for o in observations],
                    "requested": [o.requested for o in observations],
                },
            )
        for landed, sha, original in decision.duplicates:
            connection.execute(
                render("manifest_duplicate"),
                {
                    "dataset": contract.name,
                    "file": landed.relative_path,
                    "partition_key": path_to_key(landed.relative_path),
                    "sha256": sha,
                    "size_bytes": landed.size_bytes,
                    "format": contract.file_format(landed.relative_path),
                    "duplicate_of": original,
                },
            )
