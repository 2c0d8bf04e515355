"""The hostile corpus: every file of corpus/landing/ through the real ingestion job, end to end.

Each file has its expected outcome in corpus/expected.yaml (reasoned from its bytes: what
PostgreSQL's own COPY makes of it, and nothing silently dropped or changed). One test per file
runs the real job (`helpers.run_file`) on one database and one Dagster instance shared by the
module, after emptying that dataset's target, and checks the manifest (status, error, counts), the
step's failure message, every open quarantine row and the target rows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from elt_assets.postgres.connection import connect
from elt_assets_tests.conftest import TEMPLATE, Server, Warehouse
from elt_assets_tests.helpers import run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

CORPUS = Path(__file__).resolve().parent / "corpus"
EXPECTED: dict[str, Any] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
FILES: dict[str, dict[str, Any]] = EXPECTED["files"]
SCHEMA = "corpus"


@dataclass
class Corpus:
    warehouse: Warehouse
    landing: Path
    contracts: dict[str, Path]  # dataset -> a folder holding only its contract
    instance: dg.DagsterInstance


@pytest.fixture(scope="module")
def corpus(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    """One database, landing copy and Dagster instance for the whole corpus."""
    name = f"elt_corpus_{os.getpid()}"
    with connect(pg_server.superuser_url, setting="test server") as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER elt_owner").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    warehouse = Warehouse(pg_server, name)
    root = tmp_path_factory.mktemp("corpus")
    landing = root / "landing"
    shutil.copytree(CORPUS / "landing", landing)
    contracts: dict[str, Path] = {}
    for path in sorted((CORPUS / "contracts").glob("*.yaml")):
        folder = root / "contracts" / path.stem
        folder.mkdir(parents=True)
        shutil.copy(path, folder / path.name)
        contracts[path.stem] = folder
    try:
        with pytest.MonkeyPatch.context() as patch, dg.DagsterInstance.ephemeral() as instance:
            patch.setenv("ELT_DATABASE_URL", warehouse.loader_url)
            patch.setenv("ELT_OWNER_DATABASE_URL", warehouse.owner_url)
            patch.setenv("ELT_LANDING_DIR", str(landing))
            patch.delenv("ELT_DATABASE_URL_FILE", raising=False)
            patch.delenv("ELT_OWNER_DATABASE_URL_FILE", raising=False)
            yield Corpus(warehouse, landing, contracts, instance)
    finally:
        with connect(pg_server.superuser_url, setting="test server") as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def landed_files() -> set[str]:
    root = CORPUS / "landing"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_every_corpus_file_has_an_expectation_and_every_expectation_a_file() -> None:
    assert landed_files() == set(FILES)
    assert len(FILES) >= 30
    contracts = {p.stem for p in (CORPUS / "contracts").glob("*.yaml")}
    assert {spec["dataset"] for spec in FILES.values()} == contracts == set(EXPECTED["datasets"])
    for file, spec in FILES.items():
        assert file.split("/")[0] == spec["dataset"], file
        assert spec["status"] in {"success", "failed"}, file
        assert ("error" in spec) == (spec["status"] == "failed"), file


def empty_target(warehouse: Warehouse, dataset: str) -> None:
    """Each file's expectation is the target it alone produces."""
    with psycopg.connect(warehouse.superuser_url, autocommit=True) as connection:
        exists = connection.execute("SELECT to_regclass(%s)", [f"{SCHEMA}.{dataset}"]).fetchone()
        if exists and exists[0] is not None:
            connection.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(SCHEMA, dataset)))


def target_rows(warehouse: Warehouse, dataset: str, select: list[str]) -> list[list[str | None]]:
    # The expressions are this module's own reviewed test data, never user input.
    columns = ", ".join(f"({expression})::text" for expression in select)
    query = f"SELECT {columns} FROM {SCHEMA}.{dataset} AS t ORDER BY t.id"
    with psycopg.connect(warehouse.superuser_url, autocommit=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        if connection.execute("SELECT to_regclass(%s)", [f"{SCHEMA}.{dataset}"]).fetchone() == (
            None,
        ):
            return []
        return [list(row) for row in connection.execute(query)]  # type: ignore[arg-type]


@pytest.mark.parametrize("file", sorted(FILES))
def test_corpus_file(corpus: Corpus, file: str) -> None:
    spec = FILES[file]
    dataset = spec["dataset"]
    warehouse = corpus.warehouse
    empty_target(warehouse, dataset)

    result = run_file(corpus.contracts[dataset], dataset, file, corpus.instance)

    [(status, error, rows_read, rows_staged, rows_quarantined)] = warehouse.query(
        "SELECT status, error, rows_read, rows_staged, rows_quarantined"
        " FROM elt.ingestion_manifest WHERE dataset = %s AND file = %s",
        [dataset, file],
    )
    message = step_failure(result)
    assert (status, result.success) == (spec["status"], spec["status"] == "success"), (
        error or message
    )
    if spec["status"] == "failed":
        assert file in message, message
        for part in spec["error"]:
            assert part in error, f"{part!r} not in the manifest error {error!r}"
            assert part in message, f"{part!r} not in the step failure {message!r}"
    else:
        assert error is None
    if "rows_read" in spec:
        assert rows_read == spec["rows_read"]

    quarantined = warehouse.query(
        "SELECT row_number, column_name, check_name, reason FROM elt.quarantine"
        " WHERE dataset = %s AND file = %s AND resolved_at IS NULL ORDER BY row_number",
        [dataset, file],
    )
    assert [row[:3] for row in quarantined] == [tuple(q[:3]) for q in spec["quarantine"]], (
        quarantined
    )
    for (row, _, _, reason), expected in zip(quarantined, spec["quarantine"], strict=True):
        assert expected[3] in reason, f"row {row}: {expected[3]!r} not in {reason!r}"
    if rows_read is not None:
        assert rows_quarantined == len(spec["quarantine"])
        assert rows_staged + rows_quarantined == rows_read

    select = spec.get("select", EXPECTED["datasets"][dataset])
    actual = target_rows(warehouse, dataset, select)
    expected_target = spec["target"]
    if isinstance(expected_target, dict):
        assert len(actual) == expected_target["count"]
        for row in expected_target["rows"]:
            assert row in actual, row
    else:
        assert actual == expected_target
