"""Logging: JSON lines in production, readable lines on a terminal, secrets always masked.

All modules log through `logging.getLogger("elt_assets....")`. dagster.yaml lists `elt_assets` as a
managed Python logger, so inside a run these lines also appear in the Dagster run view. Each record
carries the run, dataset and file it concerns (set with `log_context`), and every line passes
through `mask_secrets`, which hides DSN passwords and every secret value registered at start-up.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^@\s/]*)@", re.I)
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("elt_log_context")


def register_secret(value: str) -> None:
    """Remember a secret (a password) so that no log line or message ever shows it."""
    if len(value) >= 4:  # masking 1-3 characters would mangle ordinary text
        with _secrets_lock:
            _secrets.add(value)


def secrets_in_url(url: str) -> list[str]:
    """The password in a postgresql:// URL (raw and decoded), to register as secrets."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def mask_secrets(text: str) -> str:
    """`text` with URL passwords, password=... pairs and registered secrets replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Attach fields (run_id, dataset, file) to every record logged inside the block."""
    token = _context.set({**_context.get({}), **fields})
    try:
        yield
    finally:
        # A generator (an asset that yields inside the block) may be finalised later, in another
        # context, by the garbage collector: that context never saw the fields, and raising here
        # would only become an "exception ignored" report from whatever thread runs the GC.
        with contextlib.suppress(ValueError):
            _context.reset(token)


class ContextAndMaskFilter(logging.Filter):
    """Adds the current log context to each record and masks secrets in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get({}).items():
            setattr(record, key, value)
        message = mask_secrets(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        return True


_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_CONTEXT_KEYS = ("run_id", "dataset", "file")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, run_id, dataset, file, message..."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            if hasattr(record, key):
                document[key] = getattr(record, key)
        fields = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and key not in _CONTEXT_KEYS and not key.startswith("_")
        }
        if fields:
            document["fields"] = fields
        if record.exc_info:
            document["exception"] = record.exc_text or self.formatException(record.exc_info)
        return mask_secrets(json.dumps(document, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal: time, level, logger, [dataset file], message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(where)s%(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        where = " ".join(str(getattr(record, k)) for k in ("dataset", "file") if hasattr(record, k))
        record.where = f"[{where}] " if where else ""
        return mask_secrets(super().format(record))


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Route the `elt_assets` loggers to stderr in the chosen format (idempotent)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextAndMaskFilter())
    logger = logging.getLogger("elt_assets")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = True


def get_logger(name: str) -> logging.Logger:
    """A logger under `elt_assets` whose records are always masked, whatever handler shows them."""
    logger = logging.getLogger(name if name.startswith("elt_assets") else f"elt_assets.{name}")
    if not any(isinstance(f, ContextAndMaskFilter) for f in logger.filters):
        logger.addFilter(ContextAndMaskFilter())
    return logger
