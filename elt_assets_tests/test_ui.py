"""What the Dagster UI shows, asked the way the UI asks: Dagster's GraphQL API of a served
instance (issue 25). No screenshots here; scripts/screenshot.py makes the README's.

The story a user lives: the sample orders land beside a file that breaks its contract's policy
(too many bad rows) and a file that cannot be parsed (a quote never closed). `elt ingest` loads
what it can; `dg dev` serves the instance (webserver and daemon). The table must stay green, each
bad file must be red on its own partition with its reason, and once the sender's corrected files
land, the sensor loads them and everything is green, freshness included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from elt_assets.landing.keys import path_to_key
from elt_assets_tests.conftest import Warehouse, copy_examples
from elt_assets_tests.served import Served, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.db]

BIN = Path(sys.executable).parent
HEADER = "order_id,customer_id,status,amount,currency,ordered_at,note,updated_at\n"
UNREADABLE = "orders/orders_2026-11-22.csv"
# Line 3 opens a quote that is never closed: the file cannot be read.
UNREADABLE_TEXT = HEADER + (
    "1,2,new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n"
    '2,2,"new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n'
)
FIXED_TEXT = HEADER + (
    "1,2,new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n"
    "2,2,new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n"
)
BAD_ROWS = "orders/orders_2026-11-23.csv"
# Half the rows have a status the contract does not know: over the 5% policy.
BAD_ROWS_TEXT = HEADER + "".join(
    f"{n},3,{'lost' if n % 2 else 'paid'},2.00,EUR,2026-11-23 08:00:00,,2026-11-23T09:00:00+01:00\n"
    for n in range(10, 20)
)
GOOD_ROWS_TEXT = BAD_ROWS_TEXT.replace(",lost,", ",paid,")
STAGED = ["staged", "orders_staging"]
TARGET = ["sales", "orders"]
STAGED_CHECKS = ("contract_conformance", "rows_reconciled", "schema_drift")
TABLE_CHECKS = ("primary_key_valid", "row_count_not_dropped")


@pytest.fixture
def served(tmp_path: Path, warehouse: Warehouse) -> Iterator[tuple[Served, dict[str, str], Path]]:
    landing, contracts = tmp_path / "landing", tmp_path / "contracts"
    landing.mkdir()
    contracts.mkdir()
    copy_examples(landing, contracts)
    for other in ("customers", "events"):  # one dataset keeps the run short
        (contracts / f"{other}.yaml").unlink()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    work = tmp_path / "elsewhere"  # a user's own directory, outside the checkout
    work.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env = {
        **base,
        "DAGSTER_HOME": str(home),
        "ELT_DATABASE_URL": warehouse.loader_url,
        "ELT_OWNER_DATABASE_URL": warehouse.owner_url,
        "ELT_LANDING_DIR": str(landing),
        "ELT_CONTRACTS_DIR": str(contracts),
        "ELT_STATE_DIR": str(tmp_path / "state"),
        "ELT_SENSOR_INTERVAL_SECONDS": "3",
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "2",
        "PYTHONWARNINGS": "ignore",
    }
    (landing / UNREADABLE).write_text(UNREADABLE_TEXT)
    (landing / BAD_ROWS).write_text(BAD_ROWS_TEXT)
    ingest = subprocess.run(
        [str(BIN / "elt"), "ingest"], check=False, cwd=work, env=env, capture_output=True, text=True
    )
    assert ingest.returncode == 1, ingest.stdout + ingest.stderr  # two files failed
    command = [str(BIN / "dg"), "dev", "-m", "elt_assets.definitions"]
    server = Served(command, env, work, tmp_path / "dagster-dev.log")
    try:
        server.wait_until_up()
        yield server, env, landing
    finally:
        server.stop()


def test_a_bad_file_is_red_on_its_partition_and_the_table_stays_green(
    served: tuple[Served, dict[str, str], Path], warehouse: Warehouse
) -> None:
    ui, _, landing = served
    unreadable, bad_rows = path_to_key(UNREADABLE), path_to_key(BAD_ROWS)
    good = [
        path_to_key("orders/orders_2026-11-20.csv"),
        path_to_key("orders/orders_2026-11-21.csv.gz"),
    ]

    # The table was never touched by the bad files: its checks passed after each good load and
    # no run marked them failed (they are not planned in a file's run).
    for check in TABLE_CHECKS:
        history = ui.executions(TARGET, check)
        assert history, f"{check} was never evaluated"
        assert {e["status"] for e in history} == {"SUCCEEDED"}, (check, history)
        assert all(e["partition"] is None for e in history), history
    assert set(ui.latest_check_statuses(TARGET).values()) == {"SUCCEEDED"}

    # Each bad file is one failed partition of the target; the good ones are materialised.
    target = ui.partitions(TARGET)
    assert sorted(target["failedPartitions"]) == sorted([unreadable, bad_rows]), target
    assert sorted(target["materializedPartitions"]) == sorted(good), target
    # The unreadable file never reached staging: red there too. The file over the bad-row limit
    # was staged (its good rows in the slice, its bad rows quarantined) and stopped by the check.
    staged = ui.partitions(STAGED)
    assert staged["failedPartitions"] == [unreadable], staged
    assert sorted(staged["materializedPartitions"]) == sorted([*good, bad_rows]), staged

    # The file checks' history names the file; the policy failure says why on the check itself.
    conformance = [
        e for e in ui.executions(STAGED, "contract_conformance") if e["partition"] == bad_rows
    ]
    assert [e["status"] for e in conformance] == ["FAILED"], conformance
    assert "max_bad_row_ratio 5.00% allows" in conformance[0]["evaluation"]["description"]
    for check in STAGED_CHECKS:
        for execution in ui.executions(STAGED, check):
            assert execution["partition"] in {*good, unreadable, bad_rows}, (check, execution)
        # The unreadable file's checks could not run: red on its partition only (Dagster's
        # resolution of a check planned in a failed run), with no evaluation that blames the data.
        unread = [e for e in ui.executions(STAGED, check) if e["partition"] == unreadable]
        assert [e["status"] for e in unread] == ["EXECUTION_FAILED"], (check, unread)
        assert unread[0]["evaluation"] is None, unread

    # The unreadable file's reason (file and line) is in the failure its partition links to.
    messages = ui.failure_messages(unreadable)
    assert any(f"{UNREADABLE}, line 3" in m for m in messages), messages
    # ...and in the manifest.
    error = warehouse.value(
        "SELECT error FROM elt.ingestion_manifest WHERE file = %s ORDER BY id DESC LIMIT 1",
        (UNREADABLE,),
    )
    assert f"{UNREADABLE}, line 3" in error

    # The sender's corrected files land; the sensor (daemon) loads them; everything is green.
    (landing / UNREADABLE).write_text(FIXED_TEXT)
    (landing / BAD_ROWS).write_text(GOOD_ROWS_TEXT)

    def all_loaded() -> bool:
        statuses = ui.partitions(TARGET)
        return not statuses["failedPartitions"] and len(statuses["materializedPartitions"]) == 4

    wait_for("the corrected files loaded by the sensor", all_loaded)
    assert not ui.partitions(STAGED)["failedPartitions"]
    assert set(ui.latest_check_statuses(TARGET).values()) == {"SUCCEEDED"}
    for partition in (unreadable, bad_rows):
        for check in ("contract_conformance", "rows_reconciled"):
            latest = next(e for e in ui.executions(STAGED, check) if e["partition"] == partition)
            assert latest["status"] == "SUCCEEDED", (partition, check, latest)
    assert wait_for("freshness evaluated", lambda: ui.freshness(TARGET)) == "HEALTHY"
