"""The Dagster instance settings the platform relies on, checked where a project's code loads.

Definitions cannot set them: they live in the instance's `dagster.yaml`. The platform's own
(`elt dev`, the Docker image) ships them; a Dagster project that adds the component has its own
instance, so `build_elt_defs` reads that file (Dagster reads it from $DAGSTER_HOME) and warns
once about what is missing, with what it costs (a WARNING line of the `elt_assets` logger).
Dagster offers no public API for an instance's settings, hence the file. The pool limit is not
checked: `dagster instance concurrency set` keeps it in the instance's database, not in the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from elt_assets.log import get_logger

log = get_logger(__name__)

README_SECTION = "README of elt-assets, 'Use it in your own Dagster project'"

# setting -> (is it on in this configuration, what the user loses without it)
_NEEDED: dict[str, tuple[Callable[[Mapping[str, Any]], bool], str]] = {
    "run_retries": (
        lambda c: _on(c, "run_retries"),
        "a run whose process was killed is not retried",
    ),
    "run_monitoring": (
        lambda c: _on(c, "run_monitoring"),
        "a run whose process died stays STARTED and keeps its pool slots",
    ),
    "python_logs": (
        lambda c: "elt_assets" in _section(c, "python_logs").get("managed_python_loggers", []),
        "elt-assets' log lines (file, line, reason) stay out of the run's log view",
    ),
}


_warned: set[Path] = set()


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = config.get(name)
    return section if isinstance(section, Mapping) else {}


def _on(config: Mapping[str, Any], name: str) -> bool:
    return bool(_section(config, name).get("enabled"))


def missing_settings(config: Mapping[str, Any]) -> dict[str, str]:
    """The settings this instance configuration lacks, each with what it costs."""
    return {name: cost for name, (present, cost) in _NEEDED.items() if not present(config)}


def warn_about_instance_settings() -> None:
    """Warn once per instance when its dagster.yaml lacks a setting the platform relies on.

    Silent when $DAGSTER_HOME is unset (which instance will run the code is not known yet, as
    under `dg check defs`) or when its dagster.yaml cannot be read (Dagster itself reports that).
    """
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return
    path = Path(home) / "dagster.yaml"
    if path in _warned:
        return
    _warned.add(path)
    try:
        config = yaml.safe_load(path.read_text()) if path.exists() else {}
    except (OSError, yaml.YAMLError):
        return
    missing = missing_settings(config if isinstance(config, dict) else {})
    if missing:
        costs = "; ".join(f"{name}: {cost}" for name, cost in missing.items())
        # A log line, not a Python warning: Dagster's `dg check defs` swallows those.
        log.warning(
            "%s lacks settings elt-assets relies on (%s). Loads still work; add the "
            "dagster.yaml snippet from the %s.",
            path,
            costs,
            README_SECTION,
        )
