"""The alerts' side of the warehouse: the facts they are about, and the outbox that sends each
event once per channel and retries what a channel did not take (sql/migrations/0008_alerts.sql).

Enqueueing is idempotent (the event's key is unique per channel), so any number of sensors, a
restarted daemon, or the same content failing again enqueue an event once. Delivery claims rows
first, so two sensors never send the same row at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from elt_assets.alerts.events import Alert, FileFacts
from elt_assets.postgres.templates import render

# A claimed row is due again after this long if its sender never reported back (it died).
CLAIM_SECONDS = 120
# A row a channel did not take is tried again after 30 s, 1, 2, 4 ... minutes, at most an hour
# apart; after MAX_ATTEMPTS (about two hours of trying) it is given up as `dead`.
MAX_ATTEMPTS = 8
FIRST_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 3600


@dataclass(frozen=True)
class Outgoing:
    """An outbox row claimed for delivery."""

    id: int
    channel: str
    alert: Alert
    attempts: int


def _facts(rows: Iterable[Sequence[Any]]) -> list[FileFacts]:
    return [FileFacts(*row) for row in rows]


def newest_file_facts(
    connection: psycopg.Connection, dataset: str, files: list[str]
) -> list[FileFacts]:
    """The newest manifest row of each of `files` that has one."""
    rows = connection.execute(
        render("manifest_files_newest"), {"dataset": dataset, "files": files}
    ).fetchall()
    return _facts(rows)


def finished_since(
    connection: psycopg.Connection, thresholds: dict[str, int], since: datetime
) -> list[FileFacts]:
    """Files of the datasets in `thresholds` that failed since `since`, or loaded with at least
    their dataset's threshold of quarantined rows."""
    datasets = list(thresholds)
    rows = connection.execute(
        render("manifest_finished_since"),
        {"datasets": datasets, "thresholds": [thresholds[d] for d in datasets], "since": since},
    ).fetchall()
    return _facts(rows)


def newest_successes(
    connection: psycopg.Connection, datasets: list[str]
) -> dict[str, tuple[datetime, float]]:
    """Each dataset's newest successful load: (when it committed, seconds ago)."""
    rows = connection.execute(render("manifest_newest_success"), {"datasets": datasets})
    return {str(dataset): (when, float(age)) for dataset, when, age in rows}


def enqueue(connection: psycopg.Connection, alert: Alert, channels: list[str]) -> int:
    """Record `alert` for each channel that does not have its event yet; how many were new."""
    added = 0
    with connection.transaction():
        for channel in channels:
            cursor = connection.execute(
                render("alert_enqueue"),
                {
                    "event_key": alert.key,
                    "channel": channel,
                    "kind": alert.kind,
                    "dataset": alert.dataset,
                    "file": alert.file,
                    "alert": Jsonb(alert.fields()),
                },
            )
            added += cursor.rowcount
    return added


def claim_due(connection: psycopg.Connection, limit: int) -> list[Outgoing]:
    """Up to `limit` rows due for delivery, claimed for CLAIM_SECONDS."""
    with connection.transaction():
        rows = connection.execute(
            render("alert_claim"), {"claim_seconds": CLAIM_SECONDS, "limit": limit}
        ).fetchall()
    return [
        Outgoing(int(i), str(channel), Alert.from_fields(fields), int(attempts))
        for i, channel, fields, attempts in sorted(rows)
    ]


def mark_sent(connection: psycopg.Connection, outgoing: Outgoing) -> None:
    with connection.transaction():
        connection.execute(render("alert_sent"), {"id": outgoing.id})


def mark_not_sent(connection: psycopg.Connection, outgoing: Outgoing, error: str) -> bool:
    """Record a failed delivery; True when the row is given up (`dead`)."""
    delay = min(FIRST_DELAY_SECONDS * 2**outgoing.attempts, MAX_DELAY_SECONDS)
    with connection.transaction():
        row = connection.execute(
            render("alert_not_sent"),
            {
                "id": outgoing.id,
                "max_attempts": MAX_ATTEMPTS,
                "delay_seconds": delay,
                "error": error,
            },
        ).fetchone()
    return bool(row and row[0] == "dead")
