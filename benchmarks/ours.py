"""Our path, measured in a fresh process: the real ingest job for one file's partition, in process.

Run by benchmarks/run.py as `python -m benchmarks.ours LANDING CONTRACTS FILE`, with the database
URLs in the environment. It materialises raw -> staged -> target (the checks included) exactly as
a sensor's run would, on an ephemeral Dagster instance, and prints one JSON line: seconds of the
job, peak RSS of this process, and the step timings the assets reported.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings
from pathlib import Path

import dagster as dg


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started, in MB.

    Linux's VmHWM, not getrusage: ru_maxrss survives execve, so a child started by the benchmark
    would report the parent's peak (the parent holds whole files in memory for the binary limit).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def main(landing: str, contracts: str, file: str) -> None:
    import os

    os.environ["ELT_LANDING_DIR"] = landing
    os.environ["ELT_CONTRACTS_DIR"] = contracts
    from elt_assets.cli.command import lean_arrow_memory

    lean_arrow_memory()  # as in the runs `elt dev`, `elt worker` and the image start
    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions
    from elt_assets.landing.keys import path_to_key

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        definitions = build_definitions(load_contracts(Path(contracts)))
    job = definitions.resolve_job_def("ingest_bench_orders")
    key = path_to_key(file)
    rss_before = peak_rss_mb()
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("bench_orders_files", [key])
        started = time.perf_counter()
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        seconds = time.perf_counter() - started
    metadata: dict[str, object] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        for name, value in materialization.metadata.items():
            if name.startswith(("seconds", "rows_")):
                metadata[f"{materialization.asset_key.path[0]}.{name}"] = value.value
    print(
        json.dumps(
            {
                "success": result.success,
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_mb": rss_before,
                "metadata": metadata,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
