"""`elt metrics`: the platform's numbers for Prometheus, computed from the manifest at each scrape.

Nothing is counted in memory: every scrape asks PostgreSQL (postgres/stats.py: four aggregate
queries), so any number of processes may load files on any number of hosts and the endpoint
still tells the truth, and a restart loses nothing. Labels are dataset names and statuses only:
never a file name (unbounded) and never a secret. A database that does not answer makes
`elt_up` 0 rather than failing the scrape, so an alert can tell "platform down" from "no data".
`elt dev` serves the same endpoint beside the UI.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from elt_assets.errors import EltError
from elt_assets.log import get_logger
from elt_assets.postgres.connection import connect
from elt_assets.postgres.errors import is_database_error
from elt_assets.postgres.stats import DURATION_BOUNDS, DatasetStats, dataset_stats

log = get_logger(__name__)
STATUSES = ("running", "success", "failed", "duplicate", "interrupted")


class ManifestCollector(Collector):
    """The metrics of every dataset, read from the warehouse at each scrape."""

    def __init__(self, url: str, setting: str):
        self.url, self.setting = url, setting

    def collect(self) -> Iterator[Metric]:
        try:
            with connect(self.url, setting=self.setting, application_name="elt-metrics") as db:
                stats = dataset_stats(db)
        except Exception as error:  # reported as elt_up 0; the scrape itself still succeeds
            if not (isinstance(error, EltError) or is_database_error(error)):
                raise
            log.warning("metrics: the warehouse did not answer: %s", error)
            yield GaugeMetricFamily("elt_up", "1 when the warehouse answered this scrape", 0)
            return
        yield GaugeMetricFamily("elt_up", "1 when the warehouse answered this scrape", 1)
        yield from _metrics(stats)


def _metrics(stats: dict[str, DatasetStats]) -> Iterator[Metric]:
    files = GaugeMetricFamily(
        "elt_files",
        "Files (one per content) by dataset and manifest status",
        labels=["dataset", "status"],
    )
    rows = CounterMetricFamily(
        "elt_rows",
        "Rows inserted and updated by loaded files, and rows quarantined by finished files",
        labels=["dataset", "outcome"],
    )
    loaded_bytes = CounterMetricFamily(
        "elt_loaded_bytes", "Bytes of the files loaded successfully", labels=["dataset"]
    )
    durations = HistogramMetricFamily(
        "elt_load_duration_seconds",
        "Seconds from a file's start to its commit, successful loads",
        labels=["dataset"],
    )
    age = GaugeMetricFamily(
        "elt_newest_success_age_seconds",
        "Seconds since the dataset's newest successful load committed",
        labels=["dataset"],
    )
    quarantine = GaugeMetricFamily(
        "elt_quarantine_open_rows", "Quarantined rows not resolved yet", labels=["dataset"]
    )
    waiting = GaugeMetricFamily(
        "elt_files_waiting",
        "Files seen in the landing zone whose content is not loaded yet",
        labels=["dataset"],
    )
    for dataset, entry in sorted(stats.items()):
        for status in STATUSES:
            counts = entry.by_status.get(status)
            files.add_metric([dataset, status], counts.files if counts else 0)
        success = entry.by_status.get("success")
        finished = [c for s, c in entry.by_status.items() if s in ("success", "failed")]
        rows.add_metric([dataset, "inserted"], success.rows_inserted if success else 0)
        rows.add_metric([dataset, "updated"], success.rows_updated if success else 0)
        rows.add_metric([dataset, "quarantined"], sum(c.rows_quarantined for c in finished))
        loaded_bytes.add_metric([dataset], success.bytes if success else 0)
        cumulative, buckets = 0, []
        for bound, loads in zip((*map(str, DURATION_BOUNDS), "+Inf"), entry.loads, strict=True):
            cumulative += loads
            buckets.append((bound, cumulative))
        durations.add_metric([dataset], buckets, sum_value=entry.load_seconds)
        if entry.newest_success_age_seconds is not None:
            age.add_metric([dataset], entry.newest_success_age_seconds)
        quarantine.add_metric([dataset], entry.open_quarantine_rows)
        waiting.add_metric([dataset], entry.files_waiting)
    yield from (files, rows, loaded_bytes, durations, age, quarantine, waiting)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """One line per scrape would drown the log."""


# Seconds a stop waits for a scrape in progress. One that waits for a warehouse that hangs (up
# to the connect timeout) is not waited out: the process exits and its client sees it close.
STOP_GRACE_SECONDS = 2


def run_metrics(url: str, setting: str, host: str, port: int) -> int:
    """`elt metrics`: serve until SIGTERM or Ctrl-C, then exit 0. The handlers are explicit: as
    a container's first process (or started with the signals ignored) the defaults do nothing.
    They only note the signal, and the server runs in a thread of its own: an exception raised
    by a handler in the middle of a scrape would be caught by wsgiref's error handling, which
    answers 500 and goes on serving."""
    server = metrics_server(url, setting, host, port)
    received: list[int] = []
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, _frame: received.append(signum))
    log.info("metrics on http://%s:%d/metrics (from %s)", host, port, setting)
    serve_in_background(server)
    while not received:
        time.sleep(0.2)
    stopping = threading.Thread(target=server.shutdown, name="elt-metrics-stop", daemon=True)
    stopping.start()  # serve_forever returns once the scrape in progress is answered
    stopping.join(STOP_GRACE_SECONDS)
    if not stopping.is_alive():  # the server stopped serving: its socket can close now
        server.server_close()
    log.info("metrics: stopped")
    return 0


def metrics_server(url: str, setting: str, host: str, port: int) -> WSGIServer:
    """An HTTP server answering /metrics (and anything else) with the platform's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ManifestCollector(url, setting))
    return make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)


def serve_in_background(server: WSGIServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="elt-metrics", daemon=True)
    thread.start()
    return thread
