"""Settings from the environment: secrets from variables or files, errors naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from elt_assets.log import mask_secrets
from elt_assets.settings import (
    SettingError,
    Settings,
    celery_urls,
    checkout_root,
    database_url,
    max_record_bytes,
    read_secret,
    refuse_superuser,
    require_database_url,
    require_separate_roles,
)

pytestmark = [pytest.mark.pure]

URL = "postgresql://loader:Pw-settings-1@db.example:5432/warehouse"


# --- secrets ---------------------------------------------------------------------------------


def test_read_secret_from_variable() -> None:
    assert read_secret("ELT_DATABASE_URL", {"ELT_DATABASE_URL": URL}) == URL


def test_read_secret_from_file_is_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(f"  {URL}\n", encoding="utf-8")
    env = {"ELT_DATABASE_URL_FILE": str(secret)}
    assert read_secret("ELT_DATABASE_URL", env) == URL


@pytest.mark.parametrize("env", [{}, {"ELT_DATABASE_URL": ""}, {"ELT_DATABASE_URL_FILE": ""}])
def test_read_secret_unset_is_none(env: dict[str, str]) -> None:
    assert read_secret("ELT_DATABASE_URL", env) is None


def test_read_secret_both_set_names_both(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(URL, encoding="utf-8")
    env = {"ELT_DATABASE_URL": URL, "ELT_DATABASE_URL_FILE": str(secret)}
    with pytest.raises(SettingError) as caught:
        read_secret("ELT_DATABASE_URL", env)
    assert str(caught.value) == (
        "ELT_DATABASE_URL and ELT_DATABASE_URL_FILE are both set: keep only one of them."
    )


def test_read_secret_missing_file_names_variable_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    with pytest.raises(SettingError) as caught:
        read_secret("ELT_DATABASE_URL", {"ELT_DATABASE_URL_FILE": str(missing)})
    message = str(caught.value)
    assert message.startswith(f"ELT_DATABASE_URL_FILE points to {str(missing)!r}")
    assert "cannot be read (No such file or directory)" in message
    assert "mount the secret file there or fix the path" in message


def test_read_secret_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SettingError) as caught:
        read_secret("ELT_OWNER_DATABASE_URL", {"ELT_OWNER_DATABASE_URL_FILE": str(tmp_path)})
    assert str(caught.value).startswith(f"ELT_OWNER_DATABASE_URL_FILE points to {str(tmp_path)!r}")
    assert "(Is a directory)" in str(caught.value)


@pytest.mark.parametrize("content", ["", "\n", "   \n\t"])
def test_read_secret_empty_file(tmp_path: Path, content: str) -> None:
    secret = tmp_path / "url"
    secret.write_text(content, encoding="utf-8")
    with pytest.raises(SettingError) as caught:
        read_secret("ELT_DATABASE_URL", {"ELT_DATABASE_URL_FILE": str(secret)})
    assert str(caught.value) == f"ELT_DATABASE_URL_FILE points to {str(secret)!r}, which is empty."


def test_read_secret_registers_the_url_password() -> None:
    url = "postgresql://loader:Zq7-registered-pw@db/warehouse"
    read_secret("ELT_DATABASE_URL", {"ELT_DATABASE_URL": url})
    # The bare password is masked anywhere it shows up later, not only inside a URL.
    assert mask_secrets("auth failed for Zq7-registered-pw") == "auth failed for ***"


# --- database URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "host=db user=loader password=Xy9-not-a-url",
        "mysql://loader:Xy9-not-a-url@db/warehouse",
        "postgresql+psycopg2://loader:Xy9-not-a-url@db/warehouse",  # SQLAlchemy only
        "Xy9-not-a-url",
    ],
)
def test_database_url_rejects_non_url_without_echoing_it(value: str) -> None:
    with pytest.raises(SettingError) as caught:
        database_url("ELT_DATABASE_URL", {"ELT_DATABASE_URL": value})
    message = str(caught.value)
    assert message.startswith("ELT_DATABASE_URL must be a URL like postgresql://")
    assert "the value is not shown" in message
    assert "Xy9-not-a-url" not in message


@pytest.mark.parametrize(
    "value", ["postgresql://u:p@h:5432/d", "postgres://u:p@h/d", "postgresql:///d?host=/tmp"]
)
def test_database_url_accepts_libpq_schemes(value: str) -> None:
    assert database_url("ELT_DATABASE_URL", {"ELT_DATABASE_URL": value}) == value


def test_dagster_url_accepts_sqlalchemy_psycopg2_scheme() -> None:
    value = "postgresql+psycopg2://dagster:pw12@h/dagster"
    env = {"ELT_DAGSTER_DATABASE_URL": value}
    assert database_url("ELT_DAGSTER_DATABASE_URL", env) == value


def test_dagster_url_rejects_postgres_scheme() -> None:
    """SQLAlchemy (Dagster's storage) no longer accepts the `postgres://` alias."""
    env = {"ELT_DAGSTER_DATABASE_URL": "postgres://dagster:pw12@h/dagster"}
    with pytest.raises(SettingError, match=r"^ELT_DAGSTER_DATABASE_URL must be a URL"):
        database_url("ELT_DAGSTER_DATABASE_URL", env)


def test_require_database_url_explains_what_to_set() -> None:
    with pytest.raises(SettingError) as caught:
        require_database_url("ELT_OWNER_DATABASE_URL", {})
    assert str(caught.value).startswith(
        "ELT_OWNER_DATABASE_URL is not set: set it (or ELT_OWNER_DATABASE_URL_FILE) to "
    )
    assert require_database_url("ELT_OWNER_DATABASE_URL", {"ELT_OWNER_DATABASE_URL": URL}) == URL


def test_celery_urls_default_to_the_dagster_database_through_psycopg_3() -> None:
    env = {"ELT_DAGSTER_DATABASE_URL": "postgresql+psycopg2://dagster:pw-c1@h:5433/dagster"}
    assert celery_urls(env) == (
        "sqla+postgresql+psycopg://dagster:pw-c1@h:5433/dagster",
        "db+postgresql+psycopg://dagster:pw-c1@h:5433/dagster",
    )
    assert mask_secrets(celery_urls(env)[0]).count("pw-c1") == 0
    own = {"ELT_CELERY_BROKER_URL": "amqp://u:pw-c2@rabbit//", **env}
    assert celery_urls(own)[0] == "amqp://u:pw-c2@rabbit//"
    assert celery_urls(own)[1].startswith("db+postgresql+psycopg://")


def test_celery_urls_without_any_database_say_what_to_set() -> None:
    with pytest.raises(SettingError, match="set ELT_DAGSTER_DATABASE_URL"):
        celery_urls({})
    both = {"ELT_CELERY_BROKER_URL": "amqp://r//", "ELT_CELERY_BACKEND_URL": "redis://r/0"}
    assert celery_urls(both) == ("amqp://r//", "redis://r/0")


# --- Settings.from_env -----------------------------------------------------------------------


def test_from_env_defaults() -> None:
    settings = Settings.from_env({})
    # No directory defaults to the working directory's: `elt dev` alone uses the samples.
    assert settings.landing_dir is None and settings.contracts_dir is None
    root = checkout_root()
    assert root is not None and (root / "pyproject.toml").is_file()  # the suite runs a checkout
    assert settings.state_dir == root / ".elt"
    samples = settings.with_samples()
    assert samples.landing_dir == root / "examples" / "landing"
    assert samples.contracts_dir == root / "examples" / "contracts"
    assert settings.log_level == "INFO"
    assert settings.log_format == "auto"
    assert settings.embedded_pg_port == 54329
    assert settings.pg_bin_dir is None
    assert settings.sensor_interval_seconds == 15
    assert settings.max_runs_per_tick == 1000
    assert settings.batch_rows == 15_000


def test_from_env_reads_every_setting(tmp_path: Path) -> None:
    landing, contracts, bin_dir = tmp_path / "in", tmp_path / "contracts", tmp_path / "bin"
    for folder in (landing, contracts, bin_dir):
        folder.mkdir()
    (bin_dir / "postgres").write_text("#!/bin/sh\n", encoding="utf-8")
    env = {
        "ELT_LANDING_DIR": str(landing),
        "ELT_CONTRACTS_DIR": str(contracts),
        "ELT_STATE_DIR": str(tmp_path / "state"),  # need not exist yet
        "ELT_LOG_LEVEL": " debug ",
        "ELT_LOG_FORMAT": "JSON",
        "ELT_EMBEDDED_PG_PORT": "1024",
        "ELT_PG_BIN_DIR": str(bin_dir),
        "ELT_SENSOR_INTERVAL_SECONDS": "3600",
        "ELT_MAX_RUNS_PER_TICK": "1",
        "ELT_BATCH_ROWS": "10000000",
    }
    settings = Settings.from_env(env)
    assert settings.landing_dir == landing
    assert settings.contracts_dir == contracts
    assert settings.state_dir == tmp_path / "state"
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.embedded_pg_port == 1024
    assert settings.pg_bin_dir == bin_dir
    assert settings.sensor_interval_seconds == 3600
    assert settings.max_runs_per_tick == 1
    assert settings.batch_rows == 10_000_000


def test_blank_values_mean_the_default() -> None:
    settings = Settings.from_env(
        {"ELT_LOG_LEVEL": "  ", "ELT_BATCH_ROWS": "", "ELT_PG_BIN_DIR": " "}
    )
    assert (settings.log_level, settings.batch_rows, settings.pg_bin_dir) == ("INFO", 15_000, None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ELT_LOG_LEVEL", "verbose", "ELT_LOG_LEVEL='VERBOSE': use DEBUG, INFO, WARNING or ERROR."),
        ("ELT_LOG_LEVEL", "CRITICAL", "ELT_LOG_LEVEL='CRITICAL': use DEBUG, INFO, WARNING or"),
        ("ELT_LOG_FORMAT", "xml", "ELT_LOG_FORMAT='xml': use json, text or auto."),
        ("ELT_EMBEDDED_PG_PORT", "80", "ELT_EMBEDDED_PG_PORT=80 is out of range: use 1024..65535."),
        ("ELT_EMBEDDED_PG_PORT", "65536", "ELT_EMBEDDED_PG_PORT=65536 is out of range"),
        ("ELT_EMBEDDED_PG_PORT", "5432x", "ELT_EMBEDDED_PG_PORT='5432x' is not a whole number."),
        ("ELT_SENSOR_INTERVAL_SECONDS", "0", "ELT_SENSOR_INTERVAL_SECONDS=0 is out of range: use"),
        ("ELT_SENSOR_INTERVAL_SECONDS", "3601", "ELT_SENSOR_INTERVAL_SECONDS=3601 is out of range"),
        ("ELT_SENSOR_INTERVAL_SECONDS", "1.5", "ELT_SENSOR_INTERVAL_SECONDS='1.5' is not a whole"),
        ("ELT_FILE_QUIET_SECONDS", "-1", "ELT_FILE_QUIET_SECONDS=-1 is out of range: use 0..3600."),
        ("ELT_FILE_QUIET_SECONDS", "2s", "ELT_FILE_QUIET_SECONDS='2s' is not a whole number."),
        ("ELT_MAX_RUNS_PER_TICK", "10001", "ELT_MAX_RUNS_PER_TICK=10001 is out of range: use 1..1"),
        ("ELT_MAX_RUNS_PER_TICK", "-1", "ELT_MAX_RUNS_PER_TICK=-1 is out of range"),
        ("ELT_BATCH_ROWS", "999", "ELT_BATCH_ROWS=999 is out of range: use 1000..10000000."),
        ("ELT_BATCH_MAX_FILES", "2001", "ELT_BATCH_MAX_FILES=2001 is out of range: use 1..2000."),
        ("ELT_BATCH_ROWS", "lots", "ELT_BATCH_ROWS='lots' is not a whole number."),
    ],
)
def test_from_env_malformed_value_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("name", ["ELT_LANDING_DIR", "ELT_CONTRACTS_DIR"])
def test_a_missing_directory_is_named_where_a_command_needs_it(tmp_path: Path, name: str) -> None:
    existing = tmp_path / "exists"
    existing.mkdir()
    env = {"ELT_LANDING_DIR": str(existing), "ELT_CONTRACTS_DIR": str(existing)}
    env[name] = str(tmp_path / "missing")
    settings = Settings.from_env(env)  # reading the settings never checks directories
    assert getattr(settings, name.removeprefix("ELT_").lower()) == tmp_path / "missing"
    require = (
        settings.require_landing_dir
        if name == "ELT_LANDING_DIR"
        else settings.require_contracts_dir
    )
    with pytest.raises(SettingError) as caught:
        require()
    assert str(caught.value) == (
        f"{name} points to {tmp_path / 'missing'}, which is not a directory: create it or fix it."
    )


def test_command_line_directories_win_and_are_named_in_errors(tmp_path: Path) -> None:
    env = {"ELT_LANDING_DIR": str(tmp_path / "nope"), "ELT_CONTRACTS_DIR": str(tmp_path)}
    settings = Settings.from_env(env).with_directories(str(tmp_path), "relative/contracts")
    assert settings.require_landing_dir() == tmp_path  # the flag, not the setting
    assert settings.contracts_dir == (Path.cwd() / "relative/contracts").resolve()
    with pytest.raises(SettingError, match=r"^--contracts points to .*relative/contracts, which"):
        settings.require_contracts_dir()
    unset = Settings.from_env({})
    with pytest.raises(SettingError) as caught:
        unset.require_landing_dir("--landing")
    assert str(caught.value) == (
        "ELT_LANDING_DIR is not set: set it to the landing directory, or pass --landing DIR."
    )


def test_from_env_pg_bin_dir_without_postgres(tmp_path: Path) -> None:
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"ELT_PG_BIN_DIR": str(tmp_path)})
    assert str(caught.value).startswith(
        f"ELT_PG_BIN_DIR={str(tmp_path)!r} has no `postgres` binary: point it at a PostgreSQL bin"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", False), ("true", True), ("YES", True), ("1", True), ("off", False), ("0", False)],
)
def test_refuse_superuser(value: str, expected: bool) -> None:
    assert refuse_superuser({"ELT_REFUSE_SUPERUSER": value}) is expected


def test_require_separate_roles_is_off_unless_asked() -> None:
    assert require_separate_roles({}) is False
    assert require_separate_roles({"ELT_REQUIRE_SEPARATE_ROLES": "true"}) is True


def test_refuse_superuser_rejects_other_words() -> None:
    with pytest.raises(SettingError, match=re.escape("ELT_REFUSE_SUPERUSER='maybe' is not a")):
        refuse_superuser({"ELT_REFUSE_SUPERUSER": "Maybe"})


def test_max_record_bytes_is_bounded_and_named_in_errors() -> None:
    assert max_record_bytes({"ELT_MAX_RECORD_BYTES": "4194304"}) == 4 << 20
    with pytest.raises(SettingError, match=r"ELT_MAX_RECORD_BYTES=12 is out of range"):
        max_record_bytes({"ELT_MAX_RECORD_BYTES": "12"})


def test_every_setting_the_platform_reads_has_a_row_in_the_readme() -> None:
    root = Path(__file__).resolve().parent.parent
    read = set(re.findall(r"\bELT_[A-Z_]+[A-Z]\b", (root / "elt_assets/settings.py").read_text()))
    documented = set(re.findall(r"^\| `(ELT_[A-Z_]+)` \|", (root / "README.md").read_text(), re.M))
    assert read - {"ELT_DATABASE_URL_FILE"} <= documented, sorted(read - documented)
