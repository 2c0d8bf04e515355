"""Where alerts go and how each channel is spoken to: a webhook (JSON, Slack or Teams payloads)
and e-mail over SMTP with STARTTLS (or TLS from the start).

A `Channel` names its destination without its secret: the variable that holds a webhook's URL,
or the recipients of an e-mail (the SMTP server's URL is ELT_ALERT_SMTP_URL). Secrets are read
when an alert is delivered, so they never reach the outbox, a log line or the UI.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from elt_assets.alerts.events import Alert
from elt_assets.contracts.model import DatasetAlerts
from elt_assets.errors import EltError, TransientError
from elt_assets.log import mask_secrets
from elt_assets.settings import AlertSettings, checked_webhook_url, read_secret, smtp_server

WEBHOOK_TIMEOUT_SECONDS = 10
SMTP_TIMEOUT_SECONDS = 15


class DeliveryError(TransientError):
    """A channel did not take an alert; the message says why (never with a secret). Transient:
    the outbox tries again later."""


@dataclass(frozen=True)
class Channel:
    kind: str  # "webhook" or "email"
    target: str  # webhook: the variable holding its URL; email: comma-separated recipients
    format: str = "json"  # a webhook's payload: json, slack or teams

    @property
    def id(self) -> str:
        """The channel as the outbox records it (no secret in it)."""
        return (
            f"webhook:{self.target}:{self.format}"
            if self.kind == "webhook"
            else (f"email:{self.target}")
        )

    @classmethod
    def from_id(cls, channel_id: str) -> Channel:
        kind, _, rest = channel_id.partition(":")
        if kind == "webhook":
            target, _, payload_format = rest.partition(":")
            return cls("webhook", target, payload_format)
        return cls("email", rest)


def dataset_channels(alerts: DatasetAlerts, settings: AlertSettings) -> list[Channel]:
    """A dataset's channels: its contract's where it names them, else the platform's."""
    channels = []
    webhook_env = alerts.webhook_url_env or settings.webhook_env
    if webhook_env:
        channels.append(
            Channel("webhook", webhook_env, alerts.webhook_format or settings.webhook_format)
        )
    recipients = alerts.email_to or list(settings.email_to)
    if settings.smtp and recipients:
        channels.append(Channel("email", ",".join(recipients)))
    return channels


def deliver(
    channel: Channel, alert: Alert, settings: AlertSettings, env: Mapping[str, str] | None = None
) -> None:
    """Send `alert` through `channel`; DeliveryError when it was not taken."""
    try:
        if channel.kind == "webhook":
            _post(channel, alert, env)
        else:
            _mail(channel, alert, settings, env)
    except DeliveryError:
        raise
    except EltError as error:  # a setting that went missing or bad since the code loaded
        raise DeliveryError(str(error)) from None
    except (OSError, smtplib.SMTPException, ssl.SSLError) as error:
        raise DeliveryError(mask_secrets(f"{channel.kind} {_name(channel)}: {error}")) from None


def _name(channel: Channel) -> str:
    return channel.target if channel.kind == "webhook" else f"to {channel.target}"


def _post(channel: Channel, alert: Alert, env: Mapping[str, str] | None) -> None:
    url = read_secret(channel.target, env)
    if url is None:
        raise DeliveryError(
            f"webhook {channel.target} is not set: set it (or {channel.target}_FILE) to the "
            "webhook's URL, or remove it from the contract's alerts."
        )
    checked_webhook_url(channel.target, url)  # http(s) only: no file:// or custom schemes
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(webhook_payload(channel.format, alert)).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "elt-assets-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as error:
        raise DeliveryError(
            f"webhook {channel.target} answered HTTP {error.code} {error.reason}"
        ) from None
    except urllib.error.URLError as error:
        raise DeliveryError(
            mask_secrets(f"webhook {channel.target} cannot be reached: {error.reason}")
        ) from None


def _mail(
    channel: Channel, alert: Alert, settings: AlertSettings, env: Mapping[str, str] | None
) -> None:
    url = read_secret("ELT_ALERT_SMTP_URL", env)
    if url is None or settings.email_from is None:
        raise DeliveryError(
            "e-mail alerts need ELT_ALERT_SMTP_URL and ELT_ALERT_EMAIL_FROM; one is not set."
        )
    server = smtp_server(url)
    message = EmailMessage()
    message["Subject"] = f"[elt-assets] {alert.title}"
    message["From"] = settings.email_from
    message["To"] = ", ".join(channel.target.split(","))
    message.set_content(alert.text())
    context = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    )
    smtp: smtplib.SMTP
    if server.implicit_tls:
        smtp = smtplib.SMTP_SSL(
            server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS, context=context
        )
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS)
    with smtp:
        if not server.implicit_tls:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise DeliveryError(
                    f"the SMTP server {server.host}:{server.port} does not offer STARTTLS; alerts "
                    "are not sent in clear text: enable STARTTLS there, or use smtps://."
                )
            smtp.starttls(context=context)
            smtp.ehlo()
        if server.user is not None:
            smtp.login(server.user, server.password or "")
        smtp.send_message(message)


def webhook_payload(payload_format: str, alert: Alert) -> dict[str, Any]:
    """The JSON body a webhook receives, in its format."""
    if payload_format == "slack":
        return _slack(alert)
    if payload_format == "teams":
        return _teams(alert)
    return {"text": alert.text(), **alert.fields()}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(alert: Alert) -> dict[str, Any]:
    """Slack's incoming-webhook message: `text` for notifications, blocks for the channel."""
    facts = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"}
        for label, value in alert.facts()[:10]  # Slack's limit per section
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(alert.reason)[:3000]}},
        {"type": "section", "fields": facts},
    ]
    if alert.run_url:
        button = {"type": "plain_text", "text": "Open the run"}
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": button, "url": alert.run_url}],
            }
        )
    return {"text": alert.title, "blocks": blocks}


def _teams(alert: Alert) -> dict[str, Any]:
    """An Adaptive Card in the message envelope Teams' workflow webhooks take."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": alert.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": alert.reason, "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": label, "value": value} for label, value in alert.facts()],
            },
        ],
    }
    if alert.run_url:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open the run", "url": alert.run_url}
        ]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }
