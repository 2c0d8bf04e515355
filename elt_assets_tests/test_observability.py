"""Our log lines reach Dagster's run view, and secrets never reach logs or metadata."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from elt_assets_tests.conftest import TEST_PASSWORD, Warehouse, write_contract
from elt_assets_tests.helpers import run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

ROOT = Path(__file__).resolve().parent.parent
# The python_logs section of the shipped dagster.yaml, so the test proves that configuration.
SHIPPED_PYTHON_LOGS = {
    "python_logs": yaml.safe_load((ROOT / "dagster.yaml").read_text())["python_logs"]
}

CONTRACT = """
    name: items
    source: {glob: "items/*.csv"}
    target: {schema: shop, table: items, primary_key: [id]}
    columns:
      - {name: id, type: bigint}
      - {name: label, type: text}
"""


def test_platform_log_lines_appear_in_the_run_log_with_dataset_context(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, CONTRACT)
    (landing / "items").mkdir()
    (landing / "items" / "a.csv").write_text("id,label\n1,x\n")
    with dg.instance_for_test(overrides=SHIPPED_PYTHON_LOGS) as instance:
        result = run_file(contracts_dir, "items", "items/a.csv", instance)
        assert result.success, step_failure(result)
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    # Table creation is logged by elt_assets.postgres.tables during the staged step.
    assert any("created target table shop.items" in m for m in messages)


def test_no_password_in_run_logs_or_metadata(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """The warehouse password (known to the test) is in no event of a run, even a failing one."""
    write_contract(contracts_dir, CONTRACT)
    (landing / "items").mkdir()
    (landing / "items" / "good.csv").write_text("id,label\n1,x\n")
    (landing / "items" / "bad.csv").write_text("id,label\n1,x,extra\n")
    with dg.instance_for_test(overrides=SHIPPED_PYTHON_LOGS) as instance:
        runs = [
            run_file(contracts_dir, "items", file, instance)
            for file in ("items/good.csv", "items/bad.csv")
        ]
        assert runs[0].success and not runs[1].success
        texts = []
        for result in runs:
            for entry in instance.all_logs(result.run_id):
                texts.append(entry.user_message)
                if entry.dagster_event is not None:
                    texts.append(repr(entry.dagster_event.event_specific_data))
    assert len(texts) > 20
    assert not [t for t in texts if TEST_PASSWORD in t]
