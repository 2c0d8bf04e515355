"""What the manifest, the quarantine and the sensor's memory say about every dataset, in numbers:
the source of the metrics endpoint (cli/metrics.py). Four aggregate queries, read-only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import psycopg

from elt_assets.postgres.templates import render

# Upper bounds (seconds) of the load-duration histogram: small files load in well under a
# second, big ones in minutes.
DURATION_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


@dataclass(frozen=True)
class StatusCounts:
    """The manifest rows of one dataset in one status, summed."""

    files: int
    bytes: int
    rows_inserted: int
    rows_updated: int
    rows_quarantined: int


@dataclass
class DatasetStats:
    by_status: dict[str, StatusCounts] = field(default_factory=dict)
    # Finished loads by duration: loads[i] took less than DURATION_BOUNDS[i] and at least the
    # bound before; loads[-1] took longer than the last bound.
    loads: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BOUNDS) + 1))
    load_seconds: float = 0.0
    newest_success_age_seconds: float | None = None
    open_quarantine_rows: int = 0
    files_waiting: int = 0


def dataset_stats(connection: psycopg.Connection) -> dict[str, DatasetStats]:
    """Every dataset the platform has seen a file of, with its numbers now."""
    stats: defaultdict[str, DatasetStats] = defaultdict(DatasetStats)
    for dataset, status, *counts in connection.execute(render("stats_files")):
        stats[dataset].by_status[status] = StatusCounts(*(int(n) for n in counts))
    bounds = {"bounds": list(DURATION_BOUNDS)}
    for dataset, bucket, loads, seconds, age in connection.execute(
        render("stats_durations"), bounds
    ):
        entry = stats[dataset]
        entry.loads[int(bucket)] += int(loads)
        entry.load_seconds += float(seconds)
        if entry.newest_success_age_seconds is None or age < entry.newest_success_age_seconds:
            entry.newest_success_age_seconds = float(age)
    for dataset, rows in connection.execute(render("stats_open_quarantine")):
        stats[dataset].open_quarantine_rows = int(rows)
    for dataset, files in connection.execute(render("stats_waiting")):
        stats[dataset].files_waiting = int(files)
    return dict(stats)
