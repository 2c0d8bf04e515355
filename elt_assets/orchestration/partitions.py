"""One dynamic partition per landed file, one partitions definition per dataset."""

from __future__ import annotations

import dagster as dg

from elt_assets.orchestration.names import files_partitions_name


def files_partitions(dataset: str) -> dg.DynamicPartitionsDefinition:
    """Partitions of a dataset: keys are the files' paths (see landing/keys.py)."""
    return dg.DynamicPartitionsDefinition(name=files_partitions_name(dataset))
