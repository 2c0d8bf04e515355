"""The Dagster instance: the settings the platform relies on, checked where a project's code
loads, and how a run uses the instance's storage.

Definitions cannot set them: they live in the instance's `dagster.yaml`. The platform's own
(`elt dev`, the Docker image) ships them; a Dagster project that adds the component has its own
instance, so `build_elt_defs` reads that file (Dagster reads it from $DAGSTER_HOME) and warns
once about what is missing, with what it costs (a WARNING line of the `elt_assets` logger).
Dagster offers no public API for an instance's settings, hence the file. The pool limit is not
checked: `dagster instance concurrency set` keeps it in the instance's database, not in the file.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
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


# The instance whose storage keeps its connections in this process (at most one at a time).
_pooled: weakref.WeakSet[dg.DagsterInstance] = weakref.WeakSet()


def keep_storage_connections(instance: dg.DagsterInstance) -> None:
    """Let this process's instance keep its PostgreSQL storage connections between events.

    By default Dagster's PostgreSQL storage opens a connection for every event it writes and
    every query it makes, and password authentication makes each one cost 20-30 ms: a file's
    run opened about 170 (one small file's `elt ingest` keeping its runs took 4.5 s, 2.85 s with
    this), a batch five or more per file. The webserver's own setting (a pool of one
    connection, more when threads need them) fixes it; statement_timeout 0 keeps the storage's
    default of none. SQLite and in-memory storages ignore it. For run processes only: a code
    server's instance is Dagster's to tune. Dagster documents no setting for it, so a version
    without the method only loses the speed.

    One instance at a time per process: Dagster's storages do not close kept connections when
    their instance is disposed, only the garbage collector does, with the instance. A process
    serving one run (Dagster's run workers, `elt worker`) or one command (`elt ingest`) has
    one instance; one that executes run after run with a new instance each (a Celery worker
    serving many tasks) would hold two connections per finished run until a collection
    (measured: up to 16 per process), so there the next instance is pooled only once the last
    one is gone, and the others run as Dagster made them.
    """
    optimize = getattr(instance, "optimize_for_webserver", None)
    if optimize is None or len(_pooled):
        return
    _ping_pooled_connections()
    optimize(statement_timeout=0, pool_recycle=3600, max_overflow=4)
    _pooled.add(instance)


@functools.cache
def _ping_pooled_connections() -> None:
    """Test every pooled PostgreSQL connection as it is taken, and replace one that is gone.

    A connection a storage opens per event survives a restart of Dagster's PostgreSQL (its
    connect is retried with backoff); a kept one breaks on its next event after the restart,
    losing that event or failing the step. A `SELECT 1` as it is taken (SQLAlchemy's own
    recipe for pessimistic disconnect handling: `DisconnectionError` makes the pool open a new
    one, whose connect the storage retries) costs a round trip instead of a connection. The
    listener sees every SQLAlchemy pool of the process, so it tests only psycopg2 connections,
    the driver of Dagster's PostgreSQL storage, on which `SELECT 1` is valid SQL.
    """
    # SQLAlchemy is Dagster's storage library (a dependency of ours for its version bound);
    # imported here: 0.2 s of imports a process that pools nothing need not pay.
    import sqlalchemy

    def ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if not type(dbapi_connection).__module__.startswith("psycopg2"):
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as gone:
            raise sqlalchemy.exc.DisconnectionError(str(gone)) from gone

    sqlalchemy.event.listen(sqlalchemy.pool.Pool, "checkout", ping)
