"""The `elt` command.

    elt dev                 the platform on this machine: embedded PostgreSQL + Dagster UI
    elt ingest              load new files now, without the UI (same assets as the sensor)
    elt db start|stop|status|url|psql|init
    elt check-defs          load the Dagster definitions as the UI would, and report problems
    elt exec -- CMD ...     run CMD with *_FILE secrets resolved (for container entry points)

Exit status: 0 success, 1 a file or a check failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from elt_assets.log import configure_logging, get_logger, mask_secrets
from elt_assets.settings import SECRET_SETTINGS, SettingError, Settings, read_secret

log = get_logger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elt",
        description="Files landing in a directory become typed, up-to-date PostgreSQL tables, "
        "as Dagster assets. Configuration comes from ELT_* environment variables (README).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 success, 1 a file failed, 2 usage or configuration error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="run the platform: embedded PostgreSQL, Dagster webserver and daemon",
        description="Start the embedded PostgreSQL (unless ELT_DATABASE_URL and "
        "ELT_DAGSTER_DATABASE_URL are set), prepare the databases, and run the Dagster UI and "
        "daemon with the file sensors on. Ctrl-C stops everything it started.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address of the UI (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=3000, help="port of the UI (default 3000)")

    ingest = commands.add_parser(
        "ingest",
        help="load new files now, headless",
        description="Discover new files like the sensor does and materialise them in this "
        "process; print one line (or a JSON document) per file. The target database is "
        "ELT_DATABASE_URL, else the embedded server.",
    )
    ingest.add_argument("--landing", metavar="DIR", help="landing directory (ELT_LANDING_DIR)")
    ingest.add_argument("--contracts", metavar="DIR", help="contracts dir (ELT_CONTRACTS_DIR)")
    ingest.add_argument("--dataset", metavar="NAME", help="only this dataset")
    ingest.add_argument("--json", action="store_true", help="print one JSON document")
    ingest.add_argument(
        "--dry-run", action="store_true", help="parse and validate every file, write nothing"
    )
    ingest.add_argument(
        "--retry-failed",
        action="store_true",
        help="also run again the files whose last attempt failed (after fixing a contract)",
    )

    db = commands.add_parser("db", help="the embedded PostgreSQL, and database set-up")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("start", help="start the embedded server (kept running)")
    db_commands.add_parser("stop", help="stop the embedded server")
    db_commands.add_parser("status", help="is the embedded server running, where, which version")
    url = db_commands.add_parser("url", help="connection URL of the embedded server")
    url.add_argument(
        "--role", default="elt_loader", choices=["elt_loader", "elt_owner", "dagster", "postgres"]
    )
    url.add_argument("--database", default="warehouse")
    url.add_argument(
        "--with-password", action="store_true", help="include the password (it is masked otherwise)"
    )
    psql = db_commands.add_parser("psql", help="open psql on the embedded warehouse")
    psql.add_argument(
        "--role", default="elt_owner", choices=["elt_loader", "elt_owner", "dagster", "postgres"]
    )
    psql.add_argument("--database", default="warehouse")
    psql.add_argument("args", nargs=argparse.REMAINDER, help="extra psql arguments")
    db_commands.add_parser(
        "init",
        help="apply migrations, roles, grants and contract tables",
        description="Apply sql/ migrations, create the roles and grants, and create the tables "
        "of every contract, as ELT_OWNER_DATABASE_URL (else ELT_DATABASE_URL, else the "
        "embedded server). Idempotent.",
    )

    commands.add_parser(
        "check-defs", help="load the Dagster definitions and report broken contracts"
    )
    execute = commands.add_parser(
        "exec",
        help="run a command with *_FILE secrets resolved into the environment",
        description="For container entry points: checks the settings, turns every "
        "ELT_*_URL_FILE into its ELT_*_URL, then replaces itself with COMMAND.",
    )
    execute.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(check_dirs=args.command not in {"db", "exec"})
        configure_logging(settings.log_level, settings.log_format)
        return _dispatch(args, settings)
    except SettingError as error:
        print(f"elt: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from elt_assets.devserver import DevError
        from elt_assets.ingest import UsageError
        from elt_assets.postgres.embedded import EmbeddedServerError
        from elt_assets.postgres.errors import TerminalDatabaseError, TransientDatabaseError

        known = (
            DevError,
            UsageError,
            EmbeddedServerError,
            TerminalDatabaseError,
            TransientDatabaseError,
        )
        if isinstance(error, known):
            print(f"elt: error: {mask_secrets(str(error))}", file=sys.stderr)
            return 2
        raise


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "dev":
        from elt_assets.devserver import run_dev

        return run_dev(settings, args.host, args.port)
    if args.command == "ingest":
        return _ingest(args)
    if args.command == "db":
        from elt_assets.dbcommands import run_db

        return run_db(args, settings)
    if args.command == "check-defs":
        return _check_defs(settings)
    return _exec(args.argv)


def _ingest(args: argparse.Namespace) -> int:
    from elt_assets.ingest import print_outcome, run_ingest

    if args.landing:
        os.environ["ELT_LANDING_DIR"] = args.landing
    if args.contracts:
        os.environ["ELT_CONTRACTS_DIR"] = args.contracts
    settings = Settings.from_env()
    outcome = run_ingest(settings, args.dataset, args.dry_run, args.retry_failed)
    print_outcome(outcome, args.json)
    return outcome.exit_code


def _check_defs(settings: Settings) -> int:
    """Load the definitions exactly as Dagster does, and resolve every asset graph piece."""
    import warnings

    import dagster as dg

    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions

    contract_set = load_contracts(settings.contracts_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        definitions = build_definitions(contract_set)
        dg.Definitions.validate_loadable(definitions)
        repository = definitions.get_repository_def()
        jobs = [j for j in repository.get_all_jobs() if not j.name.startswith("__")]
    print(
        f"ok: {len(contract_set.contracts)} datasets, {len(jobs)} jobs, "
        f"{len(repository.sensor_defs)} sensors"
    )
    for error in contract_set.errors:
        print(f"broken contract {error}", file=sys.stderr)
    return 1 if contract_set.errors else 0


def _exec(argv: list[str]) -> NoReturn:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        raise SettingError("elt exec needs a command: elt exec -- dagster-webserver ...")
    for name in SECRET_SETTINGS:
        value = read_secret(name)
        if value is not None:
            os.environ[name] = value
            os.environ.pop(f"{name}_FILE", None)
    os.execvp(command[0], command)  # noqa: S606 (replaces this process by design)


if __name__ == "__main__":
    raise SystemExit(main())
