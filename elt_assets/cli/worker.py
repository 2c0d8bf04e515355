"""`elt worker`: a Celery worker executing the runs that Dagster's CeleryRunLauncher sends it.

The Celery deployment (deploy/celery) runs the daemon, the webserver, the code server and any
number of these workers on separate machines that share only PostgreSQL, the broker and the
landing zone. Each run is executed by dagster-celery's own task, in a pool process of its own
that serves one run and exits (fresh contracts, memory handed back); the worker's main process
stays, so a run whose process is killed is reported FAILURE to Celery, which Dagster's run
monitoring reads and acts on (dagster.yaml `run_monitoring`, `run_retries`).

The app is built here rather than with `dagster-celery worker start`, which writes the broker URL,
password included, into a file under DAGSTER_HOME.
"""

from __future__ import annotations

import os
from typing import Any

from elt_assets.postgres.connection import one_at_a_time
from elt_assets.settings import SettingError, celery_urls

# What the launcher's `config_source` in deploy/celery/dagster.yaml also says: the SQLAlchemy
# transport hands broker_transport_options to create_engine, so dagster-celery's defaults (publish
# retries) must be emptied; result_extended keeps the worker's name with each task's state.
CELERY_CONFIG = {
    "broker_transport_options": {},
    "result_extended": True,
    "broker_connection_retry_on_startup": True,
}


def _create_broker_tables(app: Any, broker: str, queue: str) -> None:
    """kombu's SQLAlchemy transport creates its tables on first use, and two workers starting
    together on an empty database collide (duplicate sequence): create them one at a time."""
    url = "postgresql://" + broker.split("://", 1)[1]
    with (
        one_at_a_time(url, setting="ELT_CELERY_BROKER_URL", name="elt:celery-broker"),
        app.connection_for_write() as connection,
    ):
        connection.default_channel.queue_declare(queue=queue)


def run_worker(name: str, concurrency: int, queue: str) -> int:
    """Run a Celery worker in the foreground until it is stopped (SIGTERM: warm shutdown)."""
    if concurrency < 1:
        raise SettingError(f"--concurrency must be at least 1, not {concurrency}.")
    if not os.environ.get("DAGSTER_HOME"):
        raise SettingError(
            "DAGSTER_HOME is not set: `elt worker` executes runs for a Dagster instance; point "
            "DAGSTER_HOME at a directory holding the deployment's dagster.yaml "
            "(deploy/celery/dagster.yaml)."
        )
    broker, backend = celery_urls()
    # The runs' Dagster instance (deploy/celery/dagster.yaml) reads them too.
    os.environ.setdefault("ELT_CELERY_BROKER_URL", broker)
    os.environ.setdefault("ELT_CELERY_BACKEND_URL", backend)
    try:
        from dagster_celery.make_app import make_app
        from dagster_celery.tasks import create_execute_job_task, create_resume_job_task
    except ImportError:
        raise SettingError(
            "`elt worker` needs dagster-celery: install elt-assets with its celery extra "
            "(pip install 'elt-assets[celery]'; the Docker image has it)."
        ) from None

    app = make_app(  # type: ignore[no-untyped-call]
        {
            "broker": broker,
            "backend": backend,
            "include": [],
            "config_source": {
                **CELERY_CONFIG,
                # A run's log lines reach its stderr, which Celery logs (as WARNING by default).
                "worker_redirect_stdouts_level": "INFO",
                # A killed run process is reported failed after 2 s, not 10: its result, had it
                # finished, was already stored in the backend by the process itself.
                "worker_lost_wait": 2.0,
            },
            "task_default_queue": queue,
        }
    )
    create_execute_job_task(app)
    create_resume_job_task(app)
    if broker.startswith("sqla+"):
        _create_broker_tables(app, broker, queue)
    app.worker_main(
        [
            "worker",
            f"--hostname={name}@%h",
            f"--queues={queue}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            "--prefetch-multiplier=1",
            "--max-tasks-per-child=1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ]
    )
    return 0
