"""Secret hygiene: a known password never appears in anything the platform writes or raises.

Real scenarios, successes and failures, with passwords known to the test: the suite's
TEST_PASSWORD (the loader's and the owner's, inside ELT_DATABASE_URL / ELT_OWNER_DATABASE_URL),
wrong and unreachable URLs with passwords of their own, and the embedded server's generated
passwords. Scanned: the stdout and stderr of real `elt` subprocesses, every Python log record,
every Dagster event of the runs (messages, metadata of materialisations and checks, failures with
their causes and stacks) and the messages of the exceptions raised.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import pytest
import yaml

from elt_assets.orchestration.resources import build_resources
from elt_assets.postgres.embedded import free_port
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import SettingError, Settings
from elt_assets_tests.conftest import TEST_PASSWORD, Warehouse, with_credentials, write_contract
from elt_assets_tests.helpers import run_file, step_failure

pytestmark = [pytest.mark.db]

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_PYTHON_LOGS = {
    "python_logs": yaml.safe_load((ROOT / "dagster.yaml").read_text())["python_logs"]
}
ELT = Path(sys.executable).parent / "elt"
CONTRACT = """
    name: items
    source: {glob: "items/*.csv"}
    target: {schema: shop, table: items, primary_key: [id]}
    columns:
      - {name: id, type: bigint}
      - {name: label, type: text}
"""
BROKEN_CONTRACT = "name: broken\nsource: {glob: 'b/*.csv'}\ncolumns: [{name: x, type: strng}]\n"
WRONG_PASSWORD = "Wr0ng-Passw0rd-4242"
UNREACHABLE_PASSWORD = "Unreach4ble-Passw0rd-77"


def leaks(texts: Iterable[str], *secrets: str) -> list[str]:
    """The texts that contain any of `secrets`."""
    return [t for t in texts if any(s in t for s in secrets)]


def land_items(landing: Path) -> None:
    (landing / "items").mkdir()
    (landing / "items" / "good.csv").write_text("id,label\n1,one\n2,two\n")
    (landing / "items" / "ragged.csv").write_text('id,label\n3,"three\n')  # unreadable
    (landing / "items" / "later.csv").write_text("id,label\n4,four\n")


def run_texts(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    """Every text of a run: log messages, whole events (metadata, errors with causes), checks."""
    texts = []
    for entry in instance.all_logs(result.run_id):
        texts.append(entry.user_message)
        texts.append(repr(entry))
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                texts += [error.message, "".join(error.stack)]
                error = error.cause
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        texts += [f"{k}={v.value!r}" for k, v in materialization.metadata.items()]
    for event in result.get_asset_check_evaluations():
        texts += [f"{k}={v.value!r}" for k, v in event.metadata.items()]
        texts.append(repr(event.description))
    return texts


@pytest.mark.dagster
def test_runs_that_succeed_and_fail_leak_no_password_anywhere(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert TEST_PASSWORD in os.environ["ELT_DATABASE_URL"]  # the runs hold it: a leak could happen
    write_contract(contracts_dir, CONTRACT)
    (contracts_dir / "broken.yaml").write_text(BROKEN_CONTRACT)
    land_items(landing)
    texts: list[str] = []
    with (
        caplog.at_level(logging.DEBUG),
        dg.instance_for_test(overrides=SHIPPED_PYTHON_LOGS) as instance,
    ):
        good = run_file(contracts_dir, "items", "items/good.csv", instance)
        ragged = run_file(contracts_dir, "items", "items/ragged.csv", instance)
        # Fails after its raw step: the table check finds the loader may not write the table.
        warehouse.query("REVOKE INSERT, UPDATE ON shop.items FROM elt_loader")
        midway = run_file(contracts_dir, "items", "items/later.csv", instance)
        for result in (good, ragged, midway):
            texts += run_texts(instance, result)
    assert good.success, step_failure(good)
    assert "items/ragged.csv, line 2" in step_failure(ragged)
    assert "the role that loads (elt_loader) lacks INSERT, UPDATE on the target shop.items" in (
        step_failure(midway)
    )
    staged = warehouse.value(
        "SELECT status FROM elt.ingestion_manifest WHERE file = %s", ["items/later.csv"]
    )
    assert staged == "failed"
    records = [r.getMessage() for r in caplog.records]
    records += [r.exc_text or "" for r in caplog.records]
    assert len(texts) > 50 and len(records) > 5
    assert leaks(texts + records, TEST_PASSWORD) == []


@pytest.mark.parametrize(
    ("url_template", "password"),
    [
        ("postgresql://elt_loader:{pw}@127.0.0.1:{closed}/warehouse", UNREACHABLE_PASSWORD),
        ("postgresql://elt_loader:{pw}@{host}:{port}/{db}", WRONG_PASSWORD),
        ("postgresql://elt_loader:{pw}%zz@{host}:{port}/{db}", WRONG_PASSWORD),  # bad escape
        ("postgresql://elt_loader:{pw}@[::1:{port}/{db}", WRONG_PASSWORD),  # unparseable
    ],
    ids=["unreachable", "wrong-password", "bad-percent-escape", "unparseable"],
)
def test_connection_errors_name_the_setting_never_the_password(
    warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    url_template: str,
    password: str,
) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(warehouse.loader_url)
    url = url_template.format(
        pw=password,
        closed=free_port(),
        host=parts.hostname,
        port=parts.port,
        db=warehouse.name,
    )
    monkeypatch.setenv("ELT_DATABASE_URL", url)
    resource = PostgresResource.from_env()
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception) as caught, resource.connection():
        pass
    resource.close()
    message = str(caught.value)
    assert "ELT_DATABASE_URL" in message
    chain = [message, repr(caught.value), *(r.getMessage() for r in caplog.records)]
    assert leaks(chain, password, TEST_PASSWORD) == []


# -- the `elt` command ------------------------------------------------------------------------


def elt_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """The caller's environment without ELT_* / DAGSTER_* variables, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    if os.environ.get("ELT_PG_BIN_DIR"):
        base["ELT_PG_BIN_DIR"] = os.environ["ELT_PG_BIN_DIR"]
    return {**base, "ELT_STATE_DIR": str(tmp_path / "state"), "ELT_LOG_LEVEL": "DEBUG", **env}


def elt(
    tmp_path: Path, commands: dict[str, tuple[list[str], dict[str, str]]]
) -> dict[str, tuple[int, str]]:
    """Run independent `elt` commands at once: {name: (exit status, stdout + stderr)}."""
    children = {
        name: subprocess.Popen(
            [str(ELT), *args],
            env=elt_env(tmp_path, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, env) in commands.items()
    }
    results = {}
    for name, child in children.items():
        stdout, stderr = child.communicate(timeout=240)
        results[name] = (child.returncode, stdout + "\n" + stderr)
    return results


@pytest.fixture
def project(tmp_path: Path) -> dict[str, str]:
    landing, contracts = tmp_path / "landing", tmp_path / "contracts"
    landing.mkdir()
    contracts.mkdir()
    write_contract(contracts, CONTRACT)
    (contracts / "broken.yaml").write_text(BROKEN_CONTRACT)
    land_items(landing)
    return {"ELT_LANDING_DIR": str(landing), "ELT_CONTRACTS_DIR": str(contracts)}


@pytest.mark.slow
@pytest.mark.dagster
def test_elt_ingest_check_defs_and_failing_urls_print_no_password(
    tmp_path: Path, warehouse: Warehouse, project: dict[str, str]
) -> None:
    urls = {"ELT_DATABASE_URL": warehouse.loader_url, "ELT_OWNER_DATABASE_URL": warehouse.owner_url}
    wrong = with_credentials(warehouse.loader_url, "elt_loader", WRONG_PASSWORD, warehouse.name)
    unreachable = f"postgresql://elt_loader:{UNREACHABLE_PASSWORD}@127.0.0.1:{free_port()}/w"
    results = elt(
        tmp_path,
        {
            "ingest": (["ingest", "--json"], {**project, **urls, "ELT_LOG_FORMAT": "json"}),
            "check-defs": (["check-defs"], {**project, **urls}),
            "wrong": (["ingest"], {**project, **urls, "ELT_DATABASE_URL": wrong}),
            "unreachable": (
                ["ingest"],
                {**project, "ELT_DATABASE_URL": unreachable, "ELT_LOG_FORMAT": "text"},
            ),
        },
    )
    status, output = results["ingest"]
    assert status == 2, output  # a broken contract: configuration error
    assert '"status": "success"' in output  # but the good files loaded
    assert "items/ragged.csv, line 2" in output
    status, output = results["check-defs"]
    assert status == 2 and "broken contract broken.yaml" in output, output
    status, output = results["wrong"]
    assert status == 2 and "password authentication failed" in output, output
    status, output = results["unreachable"]
    assert status == 2 and "ELT_DATABASE_URL" in output, output
    found = {
        name: leaks([output], TEST_PASSWORD, WRONG_PASSWORD, UNREACHABLE_PASSWORD)
        for name, (_, output) in results.items()
    }
    assert found == {name: [] for name in results}


@pytest.mark.slow
def test_elt_db_commands_mask_passwords_and_psql_takes_every_other_argument(tmp_path: Path) -> None:
    env = {"ELT_EMBEDDED_PG_PORT": str(free_port())}
    status, started = elt(tmp_path, {"start": (["db", "start"], env)})["start"]
    assert status == 0, started
    try:
        secrets_dir = tmp_path / "state" / "postgres" / "secrets"
        results = elt(
            tmp_path,
            {
                "masked": (["db", "url"], env),
                "status": (["db", "status"], env),
                "shown": (["db", "url", "--with-password"], env),
                # Every argument that is not elt's goes to psql, with or without `--`.
                "psql": (["db", "psql", "-At", "-c", "SELECT current_user"], env),
                "psql --": (
                    ["db", "psql", "--role", "elt_loader", "--", "-Atc", "SELECT 6*7"],
                    env,
                ),
                "unknown": (["db", "status", "-c", "x"], env),
            },
        )
        passwords = {p.name: p.read_text().strip() for p in secrets_dir.iterdir()}
    finally:
        elt(tmp_path, {"stop": (["db", "stop"], env)})
    assert [status for status, _ in results.values()] == [0, 0, 0, 0, 0, 2], results
    assert results["psql"][1].split() == ["elt_owner"]
    assert results["psql --"][1].split() == ["42"]
    assert "unrecognized arguments: -c x" in results["unknown"][1]
    masked, status_text, shown = (results[k][1] for k in ("masked", "status", "shown"))
    assert "running" in status_text
    assert {"postgres", "elt_loader", "elt_owner"} <= set(passwords)
    loader = passwords["elt_loader"]
    port = env["ELT_EMBEDDED_PG_PORT"]
    assert f"postgresql://elt_loader:***@127.0.0.1:{port}/warehouse" in masked
    assert f"# password in {secrets_dir / 'elt_loader'}" in masked
    # Only the explicit flag shows it, for tools such as psql.
    assert f"postgresql://elt_loader:{loader}@127.0.0.1:{port}/warehouse" in shown
    found = leaks([started, masked, status_text], *passwords.values())
    assert found == []


# -- the resources: where configuration enters -------------------------------------------------


@pytest.mark.pure
def test_the_resources_hold_the_url_variables_names_never_their_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Dagster shows of a resource (its field values) names the variables; the URLs are read
    when a run uses them, from the variable or from the *_FILE secret file."""
    loader_password, owner_password = "L0ader-In-Env-31", "0wner-In-File-62"
    monkeypatch.setenv(
        "ELT_DATABASE_URL", f"postgresql://elt_loader:{loader_password}@db.example/w"
    )
    monkeypatch.delenv("ELT_OWNER_DATABASE_URL", raising=False)
    secret = tmp_path / "owner_url"
    secret.write_text(f"postgresql://elt_owner:{owner_password}@db.example/w\n")
    monkeypatch.setenv("ELT_OWNER_DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("ELT_LANDING_DIR", str(tmp_path))
    resources = build_resources(Settings.from_env())
    warehouse = resources["elt_warehouse"]
    assert isinstance(warehouse, PostgresResource)
    shown = json.dumps(
        {name: r.model_dump() for name, r in resources.items() if name != "elt_staging_io_manager"},
        default=str,
    )
    assert leaks([shown], loader_password, owner_password) == []
    assert "ELT_DATABASE_URL" in shown and "ELT_OWNER_DATABASE_URL_FILE" in shown
    assert str(tmp_path) in shown  # the landing directory is shown as it is
    assert warehouse.url_value().endswith(f":{loader_password}@db.example/w")
    assert warehouse.owner_url_value().endswith(f":{owner_password}@db.example/w")


@pytest.mark.pure
def test_a_resource_without_a_url_names_the_setting_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ELT_DATABASE_URL", "ELT_DATABASE_URL_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingError, match="ELT_DATABASE_URL is not set: set it"):
        PostgresResource.from_env().url_value()
