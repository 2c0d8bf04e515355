"""Logging: secrets masked everywhere, JSON lines with context, readable text lines."""

from __future__ import annotations

import io
import itertools
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from elt_assets.log import (
    ContextAndMaskFilter,
    JsonFormatter,
    TextFormatter,
    get_logger,
    log_context,
    mask_secrets,
    register_secret,
)
from elt_assets.settings import read_secret

pytestmark = [pytest.mark.pure]

_names = itertools.count()


# --- mask_secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "connect postgresql://loader:Url-pw-1@db:5432/wh failed",
            "connect postgresql://loader:***@db:5432/wh failed",
        ),
        ("postgres://u:Url-pw-2@h/d", "postgres://u:***@h/d"),
        (
            "dsn=postgresql+psycopg2://dagster:Url-pw-3@h/dagster",
            "dsn=postgresql+psycopg2://dagster:***@h/dagster",
        ),
        # A percent-encoded password (here "p@ss/w:rd x") is masked whole.
        ("postgresql://u:p%40ss%2Fw%3Ard%20x@h/d", "postgresql://u:***@h/d"),
        ("two: postgresql://a:Pw-a1@h/d and postgresql://b:Pw-b2@h/d", None),
        (
            "host=db user=loader password=Kv-pw-4 dbname=wh",
            "host=db user=loader password=*** dbname=wh",
        ),
        ("PASSWORD = Kv-pw-5", "PASSWORD = ***"),
        ("password='quoted pw \\' here' user=x", "password=*** user=x"),
        ("postgresql://u@h/d has no password", "postgresql://u@h/d has no password"),
        ("no secrets in 12:30@home", "no secrets in 12:30@home"),
    ],
)
def test_mask_secrets_patterns(text: str, masked: str | None) -> None:
    result = mask_secrets(text)
    if masked is None:
        assert result == "two: postgresql://a:***@h/d and postgresql://b:***@h/d"
    else:
        assert result == masked


def test_registered_secret_is_masked_anywhere() -> None:
    register_secret("Registered-Secret-7781")
    assert mask_secrets("token Registered-Secret-7781, again Registered-Secret-7781.") == (
        "token ***, again ***."
    )


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert mask_secrets("abc abcdef") == "abc abcdef"


def test_read_secret_registers_raw_and_decoded_url_password() -> None:
    url = "postgresql://loader:Enc%2Fpw%40-6612@db/warehouse"
    assert read_secret("ELT_DATABASE_URL", {"ELT_DATABASE_URL": url}) == url
    # The decoded password shows up in driver errors; the encoded one in echoed URLs.
    assert mask_secrets("password authentication failed: Enc/pw@-6612") == (
        "password authentication failed: ***"
    )
    assert mask_secrets("url fragment Enc%2Fpw%40-6612") == "url fragment ***"


# --- formatters ------------------------------------------------------------------------------


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, logging.StreamHandler[io.StringIO]]]:
    """A fresh `elt_assets.*` logger from get_logger, writing to a string at DEBUG."""
    logger = get_logger(f"test_log_{next(_names)}")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def lines(handler: logging.StreamHandler[io.StringIO]) -> list[str]:
    return handler.stream.getvalue().splitlines()


def test_json_lines_with_context_and_fields(
    capture: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = capture
    handler.setFormatter(JsonFormatter())
    before = datetime.now(UTC)
    with log_context(run_id="run-1", dataset="orders"), log_context(file="a b.csv"):
        logger.info("loaded %s rows\nsecond line", 12, extra={"rows": 12, "table": "s.o"})
    logger.warning("outside")
    first, second = (json.loads(line) for line in lines(handler))  # one object per line
    assert first["level"] == "INFO"
    assert first["logger"] == logger.name
    assert first["message"] == "loaded 12 rows\nsecond line"
    assert (first["run_id"], first["dataset"], first["file"]) == ("run-1", "orders", "a b.csv")
    assert first["fields"] == {"rows": 12, "table": "s.o"}
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC) + timedelta(seconds=1)
    # The context ends with its block.
    assert second["message"] == "outside"
    assert "dataset" not in second and "run_id" not in second and "fields" not in second


def test_json_masks_message_fields_and_exception(
    capture: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = capture
    handler.setFormatter(JsonFormatter())
    try:
        raise ConnectionError("cannot reach postgresql://loader:Exc-pw-4455@db/wh")
    except ConnectionError:
        logger.exception(
            "retrying postgresql://loader:Msg-pw-4455@db/wh",
            extra={"dsn": "postgresql://loader:Field-pw-4455@db/wh"},
        )
    output = handler.stream.getvalue()
    assert "pw-4455" not in output
    (document,) = (json.loads(line) for line in lines(handler))
    assert document["level"] == "ERROR"
    assert document["message"] == "retrying postgresql://loader:***@db/wh"
    assert document["fields"] == {"dsn": "postgresql://loader:***@db/wh"}
    assert document["exception"].startswith("Traceback (most recent call last):")
    assert document["exception"].endswith(
        "ConnectionError: cannot reach postgresql://loader:***@db/wh"
    )


def test_json_formatter_masks_even_without_the_filter() -> None:
    logger = logging.getLogger(f"plain_test_log_{next(_names)}")  # not under elt_assets
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("dsn %s", "postgresql://u:NoFilter-pw-1@h/d")
    finally:
        logger.removeHandler(handler)
    document = json.loads(handler.stream.getvalue())
    assert document["message"] == "dsn postgresql://u:***@h/d"


def test_text_lines_show_dataset_and_file(
    capture: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = capture
    handler.setFormatter(TextFormatter())
    with log_context(dataset="orders", file="orders/a.csv"):
        logger.info("staged 3 rows")
    with log_context(dataset="orders"):
        logger.warning("no file")
    logger.error("password=Text-pw-9 rejected")
    first, second, third = lines(handler)
    name = re.escape(logger.name)
    assert re.fullmatch(
        rf"\d\d:\d\d:\d\d INFO    {name} \[orders orders/a.csv\] staged 3 rows", first
    )
    assert re.fullmatch(rf"\d\d:\d\d:\d\d WARNING {name} \[orders\] no file", second)
    assert re.fullmatch(rf"\d\d:\d\d:\d\d ERROR   {name} password=\*\*\* rejected", third)


# --- get_logger ------------------------------------------------------------------------------


def test_get_logger_names_and_filters_once() -> None:
    logger = get_logger("test_log_names")
    assert logger.name == "elt_assets.test_log_names"
    assert get_logger("elt_assets.test_log_names") is logger
    assert sum(isinstance(f, ContextAndMaskFilter) for f in logger.filters) == 1


def test_get_logger_masks_for_any_handler(caplog: pytest.LogCaptureFixture) -> None:
    """Even pytest's own handler (or Dagster's) only ever sees the masked record."""
    logger = get_logger(f"test_log_{next(_names)}")
    caplog.set_level(logging.INFO, logger=logger.name)
    with log_context(dataset="orders"):
        logger.info("connecting to %s", "postgresql://loader:Caplog-pw-31@db/wh")
    (record,) = [r for r in caplog.records if r.name == logger.name]
    assert record.getMessage() == "connecting to postgresql://loader:***@db/wh"
    assert record.dataset == "orders"  # type: ignore[attr-defined]
    assert "Caplog-pw-31" not in caplog.text


def test_get_logger_masks_for_a_plain_handler() -> None:
    logger = get_logger(f"test_log_{next(_names)}")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        try:
            raise RuntimeError("server said: password=Plain-pw-77")
        except RuntimeError:
            logger.exception("failed for %s", "postgresql://u:Plain-pw-78@h/d")
    finally:
        logger.removeHandler(handler)
    output = handler.stream.getvalue()
    assert output.startswith("ERROR failed for postgresql://u:***@h/d\nTraceback")
    assert "RuntimeError: server said: password=***" in output
    assert "Plain-pw-7" not in output
