"""Alerts: what an operator is told, and the channels that tell them (README, Alerts).

events.py decides which facts of the manifest and of Dagster's runs are worth a message and what
it says; channels.py renders a message for a webhook (JSON, Slack, Teams) or an e-mail and
delivers it. The sensors that watch for the facts are in orchestration/alerts.py; the outbox that
makes each event alerted once and retries its delivery is postgres/alerts.py.
"""
