"""The alert sensors (README, Alerts), defined when a channel is configured and on by default.

- `elt_alerts_failed_runs` (Dagster's run-status sensor on FAILURE) and `elt_alerts_loaded_runs`
  (on SUCCESS) read the manifest rows of the files of each finished run: a file failed (its bad
  file, broken policy or blocking check, terminal database error), was interrupted so often it is
  no longer retried, or quarantined at least its threshold of rows. A failed run that recorded no
  file (the warehouse did not answer, the code did not load) and that Dagster will not retry is
  alerted from the run's own failure message.
- `elt_alerts_watch` (a plain sensor) covers what no run event announces: a dataset whose newest
  load is older than its contract's `freshness_hours`, and files whose runs were interrupted
  too often (the file sensor decides that after the run). It also reads back the manifest for
  failures and quarantines since its last tick, so files loaded by `elt ingest` are alerted too.

Every sensor enqueues into the outbox and then delivers what is due (postgres/alerts.py): each
event once per channel, retried with backoff, and a channel that is down costs one attempt per
tick, is logged, and never stops a load (loads never wait on alerts).
"""

# No `from __future__ import annotations`: Dagster reads the sensors' signatures at runtime.
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

from elt_assets.alerts.channels import Channel, DeliveryError, dataset_channels, deliver
from elt_assets.alerts.events import (
    Alert,
    FileFacts,
    file_alerts,
    not_fresh_alert,
    run_failed_alert,
)
from elt_assets.contracts.model import Contract
from elt_assets.landing.keys import key_to_path
from elt_assets.orchestration.names import (
    DATASET_TAG,
    DEFAULT_NAMING,
    FILE_TAG,
    SHA_TAG,
    WILL_RETRY_TAG,
    Naming,
    batch_op_name,
)
from elt_assets.orchestration.resources import warehouse_of
from elt_assets.postgres import alerts as outbox
from elt_assets.postgres.recovery import MAX_INTERRUPTIONS
from elt_assets.settings import AlertSettings

if TYPE_CHECKING:
    import psycopg


# One tick delivers at most this many alerts, for at most this long (a sensor's tick must end
# well within Dagster's timeout); the rest are due on the next tick.
DELIVERIES_PER_TICK = 25
DELIVERY_SECONDS_PER_TICK = 30
# The watch reads the manifest again from this long before its last tick: a load transaction
# stamps its row when it starts and may commit minutes later.
WATCH_OVERLAP = timedelta(hours=1)
PARTITION_TAG = "dagster/partition"  # Dagster's tag on a run of one partition


@dataclass(frozen=True)
class AlertRules:
    """What each dataset is alerted on, and where to."""

    settings: AlertSettings
    channels: dict[str, list[Channel]]  # dataset -> its channels (only datasets that have any)
    quarantine_rows: dict[str, int]
    freshness_hours: dict[str, float]

    @classmethod
    def of(cls, contracts: Sequence[Contract], settings: AlertSettings) -> "AlertRules":
        channels = {c.name: dataset_channels(c.alerts, settings) for c in contracts}
        channels = {name: found for name, found in channels.items() if found}
        return cls(
            settings=settings,
            channels=channels,
            quarantine_rows={
                c.name: c.alerts.quarantine_rows or settings.quarantine_rows
                for c in contracts
                if c.name in channels
            },
            freshness_hours={
                c.name: c.freshness_hours
                for c in contracts
                if c.name in channels and c.freshness_hours is not None
            },
        )

    def channel_ids(self, dataset: str) -> list[str]:
        return [channel.id for channel in self.channels.get(dataset, [])]


def run_files(run: dg.DagsterRun, dataset: str) -> list[str]:
    """The landed files a run of an ingest or batch job loads."""
    if FILE_TAG in run.tags:
        return [run.tags[FILE_TAG]]
    if PARTITION_TAG in run.tags:
        return [key_to_path(run.tags[PARTITION_TAG])]
    config: dict[str, Any] = dict(run.run_config or {})
    ops = config.get("ops", {})
    keys = ops.get(batch_op_name(dataset), {}).get("config", {}).get("partition_keys", [])
    return [key_to_path(key) for key in keys]


class Alerter:
    """One tick's work: turn facts into alerts, enqueue them, deliver what is due."""

    def __init__(self, rules: AlertRules, context: Any, naming: Naming):
        self.rules, self.context, self.naming = rules, context, naming

    def file_alerts(self, facts: FileFacts) -> list[Alert]:
        return file_alerts(
            facts,
            quarantine_rows=self.rules.quarantine_rows[facts.dataset],
            max_interruptions=MAX_INTERRUPTIONS,
            ui_url=self.rules.settings.ui_url,
        )

    def finished_run(self, failed: bool) -> None:
        run: dg.DagsterRun = self.context.dagster_run
        dataset = run.tags.get(DATASET_TAG, "")
        if dataset not in self.rules.channels:
            return
        files = run_files(run, dataset)
        warehouse = warehouse_of(self.context, self.naming)
        with warehouse.connection() as connection:
            facts = outbox.newest_file_facts(connection, dataset, files) if files else []
            alerts = [alert for fact in facts for alert in self.file_alerts(fact)]
            recorded = {fact.file for fact in facts}
            unrecorded = [file for file in files if file not in recorded]
            if failed and (unrecorded or not files) and run.tags.get(WILL_RETRY_TAG) != "true":
                message = self.context.dagster_event.message or "the run failed"
                alerts.append(
                    run_failed_alert(
                        dataset,
                        unrecorded,
                        run.tags.get(SHA_TAG),
                        run.run_id,
                        message,
                        self.rules.settings.ui_url,
                    )
                )
            self.enqueue(connection, alerts)
            self.deliver_due(connection)

    def watch(self, since: datetime) -> None:
        warehouse = warehouse_of(self.context, self.naming)
        with warehouse.connection() as connection:
            facts = outbox.finished_since(connection, self.rules.quarantine_rows, since)
            alerts = [alert for fact in facts for alert in self.file_alerts(fact)]
            fresh = self.rules.freshness_hours
            newest = outbox.newest_successes(connection, list(fresh)) if fresh else {}
            for dataset, (when, age) in newest.items():
                if age > fresh[dataset] * 3600:
                    alerts.append(not_fresh_alert(dataset, when, age, fresh[dataset]))
            self.enqueue(connection, alerts)
            self.deliver_due(connection)

    def enqueue(self, connection: "psycopg.Connection", alerts: list[Alert]) -> None:
        for alert in alerts:
            if outbox.enqueue(connection, alert, self.rules.channel_ids(alert.dataset)):
                self.context.log.info(f"alert: {alert.title}")

    def deliver_due(self, connection: "psycopg.Connection") -> None:
        """Send what is due; a channel that fails once is not tried again this tick."""
        deadline = time.monotonic() + DELIVERY_SECONDS_PER_TICK
        down: dict[str, str] = {}
        for outgoing in outbox.claim_due(connection, DELIVERIES_PER_TICK):
            if outgoing.channel in down or time.monotonic() > deadline:
                # Left claimed: due again when the claim runs out, without losing an attempt.
                continue
            try:
                deliver(Channel.from_id(outgoing.channel), outgoing.alert, self.rules.settings)
            except DeliveryError as error:
                down[outgoing.channel] = str(error)
                dead = outbox.mark_not_sent(connection, outgoing, str(error))
                then = "given up" if dead else "will be retried"
                self.context.log.warning(
                    f"alert not delivered ({then}): {outgoing.alert.title}: {error}"
                )
                continue
            outbox.mark_sent(connection, outgoing)


def build_alert_sensors(
    contracts: Sequence[Contract],
    jobs: Sequence[Any],
    settings: AlertSettings,
    interval_seconds: int,
    naming: Naming = DEFAULT_NAMING,
) -> list[dg.SensorDefinition]:
    """The three alert sensors, if any dataset has a channel; none otherwise."""
    rules = AlertRules.of(contracts, settings)
    if not rules.channels:
        return []
    resources = {naming.warehouse_key}

    def on_finished(status: dg.DagsterRunStatus, description: str) -> dg.SensorDefinition:
        """Dagster's run-status sensor for runs of our jobs that ended in `status`."""
        failed = status == dg.DagsterRunStatus.FAILURE

        def evaluate(context: dg.RunStatusSensorContext) -> None:
            Alerter(rules, context, naming).finished_run(failed=failed)

        return dg.RunStatusSensorDefinition(
            name=naming.alert_sensor("failed_runs" if failed else "loaded_runs"),
            run_status=status,
            run_status_sensor_fn=evaluate,
            monitored_jobs=list(jobs),
            minimum_interval_seconds=interval_seconds,
            default_status=dg.DefaultSensorStatus.RUNNING,
            required_resource_keys=resources,
            description=description,
        )

    failed_runs = on_finished(
        dg.DagsterRunStatus.FAILURE,
        "Alerts on each failed file of a failed ingest run (and on a run that failed before "
        "recording its files), through the configured channels (README, Alerts).",
    )
    loaded_runs = on_finished(
        dg.DagsterRunStatus.SUCCESS,
        "Alerts on each file of a successful ingest run that quarantined at least its threshold "
        "of rows (ELT_ALERT_QUARANTINE_ROWS, or the contract's).",
    )

    @dg.sensor(
        name=naming.alert_sensor("watch"),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=resources,
        description="Alerts on datasets not loaded within their contract's freshness_hours, on "
        "files interrupted too often to be retried, and on failures and quarantines since its "
        "last tick that no run announced (`elt ingest`); delivers alerts due for a retry.",
    )
    def watch(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SkipReason:
        now = datetime.now(UTC)
        # The cursor is the last tick's time; the first tick starts from now (no history).
        since = datetime.fromisoformat(context.cursor) - WATCH_OVERLAP if context.cursor else now
        Alerter(rules, context, naming).watch(since)
        context.update_cursor(now.isoformat())
        return dg.SkipReason("alerts only: this sensor starts no runs")

    return [failed_runs, loaded_runs, watch]
