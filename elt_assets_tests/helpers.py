"""Helpers for tests that run the real Dagster job on a real instance and database."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dagster as dg

from elt_assets.contracts.loader import load_contracts
from elt_assets.definitions import build_definitions
from elt_assets.landing.keys import path_to_key

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def definitions(contracts_dir: Path) -> dg.Definitions:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return build_definitions(load_contracts(contracts_dir))


def run_file(
    contracts_dir: Path, dataset: str, file: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """Materialise raw -> staged -> target for one landed file, as the sensor's run would."""
    key = path_to_key(file)
    instance.add_dynamic_partitions(f"{dataset}_files", [key])
    job = definitions(contracts_dir).resolve_job_def(f"ingest_{dataset}")
    return job.execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET
    )


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    """The message of the first failed step, for assertions on what users read."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data is not None:
            error = event.step_failure_data.user_failure_data
            if error is not None and error.description:
                return error.description
            info = event.step_failure_data.error
            messages = []
            while info is not None:  # the whole cause chain: "max retries" hides the real error
                messages.append(info.message.strip())
                info = info.cause
            return " <- ".join(messages)
    return ""


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    key = dg.AssetKey(asset.split("/"))
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        if materialization.asset_key == key:
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """{check name: evaluation} for every asset check evaluated in the run."""
    return {
        event.asset_check_evaluation_data.check_name: event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }
