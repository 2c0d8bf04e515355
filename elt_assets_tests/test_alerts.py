"""Alerts (orchestration/alerts.py) delivered for real: a local HTTP server stands in for the
webhooks and aiosmtpd for the mail relay (STARTTLS with its own CA, and a login). Files are
loaded by real runs on a real instance; the alert sensors are evaluated as the daemon evaluates
them, cursor and all.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from elt_assets.alerts.channels import Channel, DeliveryError, deliver, webhook_payload
from elt_assets.alerts.events import Alert
from elt_assets.contracts.loader import ContractError, load_contracts
from elt_assets.definitions import build_definitions
from elt_assets.orchestration.resources import build_resources
from elt_assets.postgres.embedded import free_port
from elt_assets.settings import AlertSettings, SettingError, Settings
from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import Webhooks, run_file, serve_webhooks

pytestmark = [pytest.mark.db, pytest.mark.dagster]

ORDERS = """
    name: orders
    source: {glob: "orders/*.csv"}
    target: {schema: shop, table: orders, primary_key: [id]}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: amount, type: "numeric(10,2)", checks: {ge: 0}}
    policy: {bad_rows: quarantine, max_bad_row_ratio: 0.5}
    freshness_hours: 1
"""
# A dataset whose owners take its alerts: its own webhook (Slack) and recipients.
EVENTS = """
    name: events
    source: {glob: "events/*.csv"}
    target: {schema: shop, table: events, mode: append}
    columns:
      - {name: id, type: bigint, nullable: false}
    alerts:
      webhook_url_env: EVENTS_TEAM_WEBHOOK
      webhook_format: slack
      email_to: [events-owner@example.com]
"""
SMTP_LOGIN, SMTP_PASSWORD = "alerts", "smtp-secret-4711"


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    with serve_webhooks() as hooks:
        yield hooks


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Relay:
    """aiosmtpd on loopback: STARTTLS required, login required; keeps what it accepts."""

    port: int
    ca_file: Path
    messages: list[tuple[list[str], Any]] = field(default_factory=list)

    def mails(self) -> list[tuple[list[str], str, str]]:
        """(recipients, subject, body) of each accepted message."""
        return [
            (rcpt, str(msg["Subject"]), msg.get_payload(decode=True).decode())
            for rcpt, msg in self.messages
        ]


class _Handler:
    def __init__(self, relay: Relay):
        self.relay = relay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.relay.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def _login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_LOGIN.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok)


def start_relay(tmp_path: Path, tls: bool = True) -> tuple[Relay, Controller]:
    cert, key = self_signed(tmp_path)
    relay = Relay(free_port(), cert)
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    controller = Controller(
        _Handler(relay),
        hostname="127.0.0.1",
        port=relay.port,
        tls_context=context,
        require_starttls=tls,
        authenticator=_login,
        auth_require_tls=tls,
        auth_exclude_mechanism=["CRAM-MD5"],
    )
    controller.start()
    return relay, controller


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    found, controller = start_relay(tmp_path)
    yield found
    controller.stop()


@pytest.fixture
def alerting(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    webhooks: Webhooks,
    relay: Relay,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Both channels configured for the platform; `events` has its own."""
    monkeypatch.setenv("ELT_ALERT_WEBHOOK_URL", webhooks.url("/platform"))
    monkeypatch.setenv("EVENTS_TEAM_WEBHOOK", webhooks.url("/events-team"))
    monkeypatch.setenv(
        "ELT_ALERT_SMTP_URL", f"smtp://{SMTP_LOGIN}:{SMTP_PASSWORD}@127.0.0.1:{relay.port}"
    )
    monkeypatch.setenv("ELT_ALERT_SMTP_CA_FILE", str(relay.ca_file))
    monkeypatch.setenv("ELT_ALERT_EMAIL_FROM", "elt@example.com")
    monkeypatch.setenv("ELT_ALERT_EMAIL_TO", "ops@example.com, data@example.com")
    monkeypatch.setenv("ELT_ALERT_QUARANTINE_ROWS", "2")
    monkeypatch.setenv("ELT_UI_URL", "https://dagster.example.com/")
    write_contract(contracts_dir, ORDERS)
    write_contract(contracts_dir, EVENTS)
    return contracts_dir


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


class Daemon:
    """Evaluates the alert sensors as Dagster's daemon does: a fresh load of the code, the
    sensor's stored cursor, its resources."""

    def __init__(self, contracts_dir: Path, instance: dg.DagsterInstance):
        self.contracts_dir, self.instance = contracts_dir, instance
        self.cursors: dict[str, str | None] = {}

    def definitions(self) -> dg.Definitions:
        return build_definitions(
            load_contracts(self.contracts_dir), alerts=AlertSettings.from_env()
        )

    def tick(self, name: str, cursor: str | None = None) -> None:
        definitions = self.definitions()
        sensor = definitions.resolve_sensor_def(name)
        resources = build_resources(Settings.from_env())
        with dg.build_sensor_context(
            instance=self.instance,
            resources=resources,
            cursor=cursor if cursor is not None else self.cursors.get(name),
            definitions=definitions,
            sensor_name=name,
        ) as context:
            result = sensor.evaluate_tick(context)
        self.cursors[name] = result.cursor

    def all(self) -> None:
        for name in ("elt_alerts_failed_runs", "elt_alerts_loaded_runs", "elt_alerts_watch"):
            self.tick(name)


def land(landing: Path, relative: str, text: str) -> None:
    path = landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_each_event_reaches_each_channel_once_with_its_file_reason_counts_and_run(
    alerting: Path,
    landing: Path,
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    webhooks: Webhooks,
    relay: Relay,
) -> None:
    daemon = Daemon(alerting, instance)
    daemon.all()  # the sensors start from now: nothing earlier is alerted

    # A file that loads with 2 of 4 rows quarantined (the threshold is 2) ...
    land(landing, "orders/a.csv", "id,amount\n1,10.00\n2,-1\n3,x\n4,4.00\n")
    assert run_file(alerting, "orders", "orders/a.csv", instance).success
    # ... and one that breaks its policy (3 of 4 rows bad: over max_bad_row_ratio).
    land(landing, "orders/b.csv", "id,amount\n5,-1\n6,-2\n7,-3\n8,1.00\n")
    failed = run_file(alerting, "orders", "orders/b.csv", instance)
    assert not failed.success
    daemon.all()

    by_kind = {body["kind"]: body for body in webhooks.bodies("/platform")}
    assert len(by_kind) == len(webhooks.bodies("/platform")) == 2
    quarantined, failure = by_kind["quarantine"], by_kind["file_failed"]
    assert quarantined["kind"] == "quarantine" and quarantined["file"] == "orders/a.csv"
    assert quarantined["counts"] == {
        "rows_read": 4,
        "rows_inserted": 2,
        "rows_updated": 0,
        "rows_quarantined": 2,
    }
    assert failure["kind"] == "file_failed" and failure["file"] == "orders/b.csv"
    assert failure["reason"].startswith("3 of 4 rows (75.00%) failed validation, more than max")
    assert failure["run_url"] == f"https://dagster.example.com/runs/{failed.run_id}"
    assert failure["text"].startswith("File failed: orders / orders/b.csv")
    mails = {subject: (to, body) for to, subject, body in relay.mails()}
    assert sorted(mails) == [
        "[elt-assets] 2 rows quarantined: orders / orders/a.csv",
        "[elt-assets] File failed: orders / orders/b.csv",
    ]
    to, body = mails["[elt-assets] File failed: orders / orders/b.csv"]
    assert to == ["ops@example.com", "data@example.com"]
    assert failed.run_id in body and "max_bad_row_ratio" in body

    # The same content failing again, and a daemon restarted from a cursor before the failure
    # (it died after sending, before saving its cursor), send nothing new.
    before = daemon.cursors["elt_alerts_failed_runs"]
    assert not run_file(alerting, "orders", "orders/b.csv", instance).success
    daemon.all()
    daemon.tick("elt_alerts_failed_runs", cursor=before)
    assert len(webhooks.bodies("/platform")) == 2 and len(relay.mails()) == 2

    # The events team gets its dataset's alerts, in Slack's format, at its own address only.
    land(landing, "events/e.csv", "id\n1\n")
    assert not run_file(alerting, "events", "events/missing.csv", instance).success
    daemon.all()
    [slack] = webhooks.bodies("/events-team")
    assert slack["text"] == "Run failed before loading: events / events/missing.csv"
    assert slack["blocks"][0]["type"] == "header"
    assert any(b["type"] == "actions" for b in slack["blocks"])
    assert relay.mails()[-1][0] == ["events-owner@example.com"]
    assert len(webhooks.bodies("/platform")) == 2
    # No secret went into the outbox.
    stored = json.dumps(warehouse.query("SELECT channel, alert, last_error FROM elt.alert_outbox"))
    assert SMTP_PASSWORD not in stored and "/platform" not in stored and "127.0.0.1" not in stored
    assert warehouse.value("SELECT count(*) FROM elt.alert_outbox WHERE status <> 'sent'") == 0


def test_a_channel_that_is_down_never_stops_loads_and_is_retried_until_it_answers(
    alerting: Path,
    landing: Path,
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    webhooks: Webhooks,
    relay: Relay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = Daemon(alerting, instance)
    daemon.all()
    # The platform's webhook: first nothing listens on its port, then it answers 503.
    monkeypatch.setenv("ELT_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/platform")
    land(landing, "orders/bad.csv", "id,amount\n1,-1\n2,-2\n")
    assert not run_file(alerting, "orders", "orders/bad.csv", instance).success
    daemon.all()
    land(landing, "orders/good.csv", "id,amount\n3,3.00\n")
    assert run_file(alerting, "orders", "orders/good.csv", instance).success  # loads go on
    assert len(relay.mails()) == 1  # the other channel is not held up
    [(status, attempts, error)] = warehouse.query(
        "SELECT status, attempts, last_error FROM elt.alert_outbox WHERE channel LIKE 'webhook:%'"
    )
    assert (status, attempts) == ("pending", 1)
    assert "ELT_ALERT_WEBHOOK_URL cannot be reached" in error and "127.0.0.1" not in error

    monkeypatch.setenv("ELT_ALERT_WEBHOOK_URL", webhooks.url("/platform"))
    webhooks.failing.add("/platform")
    make_due(warehouse)
    daemon.tick("elt_alerts_watch")
    assert warehouse.value("SELECT last_error FROM elt.alert_outbox WHERE attempts = 2") == (
        "webhook ELT_ALERT_WEBHOOK_URL answered HTTP 503 Service Unavailable"
    )
    daemon.tick("elt_alerts_watch")  # not due yet: nothing is sent
    webhooks.failing.clear()
    assert webhooks.bodies("/platform") == []
    make_due(warehouse)
    daemon.tick("elt_alerts_watch")
    [delivered] = webhooks.bodies("/platform")
    assert delivered["file"] == "orders/bad.csv"
    assert warehouse.query("SELECT status, attempts FROM elt.alert_outbox ORDER BY id") == [
        ("sent", 3),
        ("sent", 1),
    ]

    # A channel that never answers is given up after its last attempt, and says so.
    monkeypatch.setenv("ELT_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/platform")
    land(landing, "orders/worse.csv", "id,amount\n4,-4\n5,-5\n")
    assert not run_file(alerting, "orders", "orders/worse.csv", instance).success
    daemon.tick("elt_alerts_failed_runs")  # its first attempt fails
    warehouse.query("UPDATE elt.alert_outbox SET attempts = 7 WHERE status = 'pending'")
    make_due(warehouse)  # hours pass: this is its eighth attempt
    daemon.tick("elt_alerts_watch")
    assert (
        warehouse.value(
            "SELECT status FROM elt.alert_outbox"
            " WHERE file = 'orders/worse.csv' AND channel LIKE 'web%'"
        )
        == "dead"
    )


def make_due(warehouse: Warehouse) -> None:
    """Time passes: every alert waiting for a retry is due now."""
    warehouse.query("UPDATE elt.alert_outbox SET next_attempt_at = now() WHERE status = 'pending'")


def test_the_watch_alerts_a_stale_dataset_once_per_spell_and_what_no_run_announced(
    alerting: Path,
    landing: Path,
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    webhooks: Webhooks,
) -> None:
    daemon = Daemon(alerting, instance)
    daemon.tick("elt_alerts_watch")
    land(landing, "orders/a.csv", "id,amount\n1,1.00\n")
    assert run_file(alerting, "orders", "orders/a.csv", instance).success
    daemon.tick("elt_alerts_watch")
    assert webhooks.bodies("/platform") == []  # fresh: loaded just now

    # Two hours pass without a file (freshness_hours: 1): one alert, however many ticks.
    warehouse.query("UPDATE elt.ingestion_manifest SET finished_at = now() - interval '2 hours'")
    daemon.tick("elt_alerts_watch")
    daemon.tick("elt_alerts_watch")
    [stale] = webhooks.bodies("/platform")
    assert stale["kind"] == "not_fresh" and stale["dataset"] == "orders"
    assert "2.0 hours ago" in stale["reason"] and "within 1 hours" in stale["reason"]

    # A file the sensor gave up on after its runs were interrupted three times (it marks the
    # row after the last run ended, so no run event announces it), and a file that failed in a
    # run no run sensor saw (`elt ingest` without DAGSTER_HOME): the watch reads them back.
    land(landing, "orders/b.csv", "id,amount\n2,2.00\n")
    assert run_file(alerting, "orders", "orders/b.csv", instance).success
    warehouse.query(
        "UPDATE elt.ingestion_manifest SET status = 'failed', interruptions = 3, "
        "finished_at = now(), error = 'runs have now ended 3 times without finishing it' "
        "WHERE file = 'orders/b.csv'"
    )
    land(landing, "orders/c.csv", "id,amount\n3,-3\n")
    assert not run_file(alerting, "orders", "orders/c.csv", instance).success
    daemon.tick("elt_alerts_watch")
    kinds = [(body["kind"], body.get("file")) for body in webhooks.bodies("/platform")]
    assert kinds == [
        ("not_fresh", None),
        ("interrupted", "orders/b.csv"),
        ("file_failed", "orders/c.csv"),
    ]
    assert webhooks.bodies("/platform")[1]["title"] == (
        "File interrupted 3 times, no longer retried: orders / orders/b.csv"
    )


def test_without_a_channel_there_are_no_alert_sensors(
    warehouse: Warehouse, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ELT_ALERT_WEBHOOK_URL", "ELT_ALERT_SMTP_URL", "ELT_ALERT_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    write_contract(contracts_dir, ORDERS)
    definitions = build_definitions(load_contracts(contracts_dir), alerts=AlertSettings.from_env())
    names = [sensor.name for sensor in definitions.sensors or []]
    assert names == ["orders_files"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ELT_ALERT_WEBHOOK_URL": "ftp://hooks.example.com/x"}, "must be an http(s):// URL"),
        ({"ELT_ALERT_WEBHOOK_FORMAT": "discord"}, "use json, slack or teams"),
        ({"ELT_ALERT_SMTP_URL": "smtp://u:p@mail.example.com"}, "ELT_ALERT_EMAIL_FROM is not"),
        (
            {"ELT_ALERT_SMTP_URL": "mail.example.com:587", "ELT_ALERT_EMAIL_FROM": "a@b.co"},
            "must look like smtp://USER:PASSWORD@HOST:587",
        ),
        ({"ELT_ALERT_SMTP_CA_FILE": "/nonexistent/ca.pem"}, "which is not a file"),
        ({"ELT_ALERT_QUARANTINE_ROWS": "0"}, "out of range"),
    ],
)
def test_alert_settings_of_the_wrong_shape_are_refused_naming_the_setting(
    settings: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingError, match=re.escape(message)) as error:
        AlertSettings.from_env(settings)
    assert "u:p@" not in str(error.value)


def test_a_contract_names_its_webhook_by_variable_and_its_recipients_as_addresses(
    contracts_dir: Path,
) -> None:
    secret = "https://hooks.slack.com/services/T0/B0/x"
    path = contracts_dir / "events.yaml"
    path.write_text(textwrap.dedent(EVENTS.replace("EVENTS_TEAM_WEBHOOK", secret)))
    [error] = load_contracts(contracts_dir).errors
    assert "webhook_url_env must name an environment variable" in error.message
    assert secret not in str(error)
    path.write_text(textwrap.dedent(EVENTS.replace("events-owner@example.com", "owner")))
    [error] = load_contracts(contracts_dir).errors
    assert "'owner' is not one address" in error.message
    assert isinstance(error, ContractError)


def test_an_smtp_server_without_starttls_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    relay, controller = start_relay(tmp_path, tls=False)
    try:
        env = {
            "ELT_ALERT_SMTP_URL": f"smtp://{SMTP_LOGIN}:{SMTP_PASSWORD}@127.0.0.1:{relay.port}",
            "ELT_ALERT_EMAIL_FROM": "elt@example.com",
        }
        settings = AlertSettings.from_env(env)
        alert = Alert("file_failed", "orders", "File failed", "bad", "k")
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as error:
            deliver(Channel("email", "ops@example.com"), alert, settings, env)
        assert SMTP_PASSWORD not in str(error.value)
        assert relay.messages == []
    finally:
        controller.stop()


def test_teams_gets_an_adaptive_card_with_the_facts_and_a_link_to_the_run() -> None:
    alert = Alert(
        kind="file_failed",
        dataset="orders",
        title="File failed: orders / orders/b.csv",
        reason="orders/b.csv: line 3, column amount: not a number",
        key="file_failed/orders/ab",
        file="orders/b.csv",
        counts={"rows_read": 4},
        run_id="r1",
        run_url="https://dagster.example.com/runs/r1",
    )
    payload = webhook_payload("teams", alert)
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"] == alert.title
    facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
    assert facts == {"Dataset": "orders", "File": "orders/b.csv", "Rows read": "4", "Run": "r1"}
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open the run", "url": alert.run_url}
    ]
    assert webhook_payload("json", alert)["reason"] == alert.reason
