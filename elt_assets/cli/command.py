"""The `elt` command.

    elt dev                 the platform on this machine: embedded PostgreSQL + Dagster UI
    elt ingest              load new files now, without the UI (same assets as the sensor)
    elt db start|stop|status|url|psql|init
    elt check-defs          load the Dagster definitions as the UI would, and report problems
    elt contract infer FILE print a starting contract (YAML) inferred from a sample of FILE
    elt quarantine export   a dataset's (or file's) quarantined rows as CSV, for the sender
    elt worker              a Celery worker that executes Dagster runs (deploy/celery)
    elt metrics             the platform's metrics for Prometheus, from the manifest
    elt exec -- CMD ...     run CMD with *_FILE secrets resolved (for container entry points)

Exit status: 0 success, 1 a file or a check failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from elt_assets.errors import EltError
from elt_assets.log import configure_logging, get_logger, mask_secrets
from elt_assets.settings import (
    SECRET_SETTINGS,
    AlertSettings,
    SettingError,
    Settings,
    celery_urls,
    read_secret,
)

if TYPE_CHECKING:
    from elt_assets.contracts.model import Contract

log = get_logger(__name__)


def _contract_parsers(contract: argparse.ArgumentParser) -> None:
    """`elt contract infer` and `elt contract show`."""
    contract_commands = contract.add_subparsers(
        dest="contract_command", required=True, metavar="ACTION"
    )
    infer = contract_commands.add_parser(
        "infer",
        help="print a starting contract inferred from a CSV, CSV.gz or Parquet file",
        description="Read the first rows of FILE (streamed, never the whole file) and print a "
        "contract on stdout that accepts every sampled value: types from the platform's own "
        "casts (when in doubt, text), headers as snake_case names with source_name. Review it, "
        "then save it as <contracts>/<name>.yaml. Exit 1 when the file cannot be read.",
    )
    infer.add_argument("file", metavar="FILE", help="the file to sample")
    infer.add_argument("--name", help="dataset name (default: the file name, sanitised)")
    infer.add_argument(
        "--landing",
        metavar="DIR",
        help="the landing directory FILE lies in: the glob follows where FILE lies in it "
        "(ELT_LANDING_DIR)",
    )
    infer.add_argument(
        "--primary-key",
        # One column per flag: a list (nargs) would swallow FILE when it comes after the flag.
        action="append",
        default=[],
        metavar="COL",
        help="a key column, by header or name (repeat the flag for a key of several columns): "
        "mode upsert (default: append, no key)",
    )
    infer.add_argument(
        "--sample-rows", type=int, default=10_000, metavar="N", help="rows read (default 10000)"
    )
    infer.add_argument("--schema", default="imported", help="target schema (default imported)")
    infer.add_argument("--table", help="target table (default: the dataset name)")
    infer.add_argument(
        "--delimiter",
        help="CSV delimiter (\\t or tab for a tab; default: detected from the first lines)",
    )
    infer.add_argument(
        "--encoding", help="CSV encoding (default utf8, or utf-16 where a byte-order mark says so)"
    )
    infer.add_argument(
        "--no-header",
        dest="header",
        action="store_false",
        help="the CSV file has no header line: its first line is data, columns are named "
        "column_1, column_2, ...",
    )

    show = contract_commands.add_parser(
        "show",
        help="print a dataset's contract; --effective: as its tables now are",
        description="Print the contract of dataset NAME as YAML. With --effective, include the "
        "columns its files added (policy.new_columns: add), read from elt.schema_versions with "
        "ELT_DATABASE_URL (else the embedded server): paste it back into the YAML to make them "
        "the contract's own. The platform never rewrites the YAML.",
    )
    show.add_argument("name", metavar="NAME", help="the dataset")
    show.add_argument("--effective", action="store_true", help="with the columns files added")
    show.add_argument("--contracts", metavar="DIR", help="contracts dir (ELT_CONTRACTS_DIR)")


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
    ingest.add_argument(
        "--landing",
        metavar="DIR|URL",
        help="landing directory or s3://BUCKET/PREFIX (ELT_LANDING_DIR)",
    )
    ingest.add_argument("--contracts", metavar="DIR", help="contracts dir (ELT_CONTRACTS_DIR)")
    ingest.add_argument("--dataset", metavar="NAME", help="only this dataset")
    ingest.add_argument("--json", action="store_true", help="print one JSON document")
    ingest.add_argument(
        "--dry-run", action="store_true", help="parse and validate every file, write nothing"
    )
    ingest.add_argument(
        "--file",
        action="append",
        dest="files",
        metavar="PATH",
        help="only this file (repeatable): its path in the landing zone, as the manifest names "
        "it; loaded even if retention removed its partition",
    )
    ingest.add_argument(
        "--retry-failed",
        action="store_true",
        help="also run again the files whose last attempt failed (after fixing a contract)",
    )
    ingest.add_argument(
        "--reload",
        action="store_true",
        help="load again the files loaded before (still in the landing zone), in the order they "
        "were loaded, then the new ones: to fill a target that was dropped and created again",
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
    psql = db_commands.add_parser(
        "psql",
        help="open psql on the embedded warehouse; every other argument goes to psql",
        usage="elt db psql [--role ROLE] [--database DB] [psql arguments, e.g. -c 'SELECT 1']",
    )
    psql.add_argument(
        "--role", default="elt_owner", choices=["elt_loader", "elt_owner", "dagster", "postgres"]
    )
    psql.add_argument("--database", default="warehouse")
    init = db_commands.add_parser(
        "init",
        help="apply migrations, roles, grants and contract tables",
        description="Apply sql/ migrations, create the roles and grants, and create the tables "
        "of every contract, as ELT_OWNER_DATABASE_URL (else ELT_DATABASE_URL; with --embedded, "
        "on the embedded server). Idempotent.",
    )
    init.add_argument(
        "--embedded",
        action="store_true",
        help="set up the embedded server (started if needed) instead of a configured database",
    )

    check = commands.add_parser(
        "check-defs",
        help="load the Dagster definitions and report broken contracts",
        description="Load the Dagster definitions as the UI would and report broken contracts. "
        "Exit 2 when a contract is broken.",
    )
    check.add_argument("--contracts", metavar="DIR", help="contracts dir (ELT_CONTRACTS_DIR)")
    _contract_parsers(commands.add_parser("contract", help="dataset contracts"))

    quarantine = commands.add_parser("quarantine", help="rows rejected from files")
    quarantine_commands = quarantine.add_subparsers(
        dest="quarantine_command", required=True, metavar="ACTION"
    )
    export = quarantine_commands.add_parser(
        "export",
        help="write quarantined rows as CSV, for the sender of the file",
        description="One CSV line per quarantined row: row_number, column_name, check_name, "
        "reason, then the row's original fields in the contract's column order (a leading file "
        "column without --file). Open rows only unless --all. Reads ELT_DATABASE_URL (else the "
        "embedded server) as the runtime role.",
    )
    export.add_argument("--dataset", required=True, metavar="NAME", help="the dataset")
    export.add_argument("--file", metavar="F", help="only this file (as the manifest names it)")
    export.add_argument(
        "--all",
        dest="include_resolved",
        action="store_true",
        help="also rows resolved by a later run of their file (adds a resolved_at column)",
    )
    export.add_argument(
        "--output", "-o", default="-", metavar="PATH|-", help="where to write (default - stdout)"
    )
    export.add_argument("--contracts", metavar="DIR", help="contracts dir (ELT_CONTRACTS_DIR)")
    _service_parsers(commands)
    return parser


def _service_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The long-running services of a deployment: workers, endpoints, the entry point."""
    worker = commands.add_parser(
        "worker",
        help="a Celery worker that executes the runs Dagster's CeleryRunLauncher sends it",
        description="For the Celery deployment (deploy/celery, README 'Many machines'): takes "
        "runs from ELT_CELERY_BROKER_URL (default: the Dagster database) and executes each in a "
        "process of its own, reporting to the Dagster instance of DAGSTER_HOME. Needs the same "
        "ELT_* settings as the code server (database URLs, landing, contracts).",
    )
    worker.add_argument(
        "--name", default="elt", help="worker name; Celery appends @HOSTNAME (default elt)"
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="runs this worker executes at once (default 1; the warehouse pool still limits "
        "writers across all workers)",
    )
    worker.add_argument(
        "--queue", default="dagster", help="Celery queue to take runs from (default dagster)"
    )
    upload = commands.add_parser(
        "upload-server",
        help="serve the upload endpoint: producers PUT files into the landing zone",
        description="An HTTP endpoint where a producer with a token (ELT_UPLOAD_TOKENS) PUTs a "
        "CSV, CSV.gz or Parquet file of a dataset; it lands whole or not at all, and GET says "
        "whether it loaded (README, Uploads). Binds 127.0.0.1 unless --host says otherwise; "
        "serve it behind a reverse proxy that terminates TLS.",
    )
    upload.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    upload.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    token = commands.add_parser(
        "upload-token",
        help="make an upload token: prints it once, and the ELT_UPLOAD_TOKENS entry to add",
        description="A new random token for one producer. The token is printed once, for the "
        "producer; ELT_UPLOAD_TOKENS keeps only its SHA-256.",
    )
    token.add_argument("name", help="who uses it (letters, digits, . _ -), shown in the logs")
    token.add_argument(
        "--datasets", required=True, help="comma-separated datasets it may write, or *"
    )
    metrics = commands.add_parser(
        "metrics",
        help="serve the platform's metrics for Prometheus (from the manifest, at each scrape)",
        description="An HTTP endpoint (/metrics) with files by dataset and status, rows inserted "
        "/ updated / quarantined, bytes, load durations, the age of the newest load, open "
        "quarantine rows and files waiting, computed from the warehouse at each scrape. Reads "
        "ELT_DATABASE_URL (else the embedded server). Binds 127.0.0.1 unless --host says "
        "otherwise: the numbers name your datasets.",
    )
    metrics.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    metrics.add_argument("--port", type=int, default=9464, help="port (default 9464)")
    execute = commands.add_parser(
        "exec",
        help="run a command with *_FILE secrets resolved into the environment",
        description="For container entry points: checks the settings, turns every "
        "ELT_*_URL_FILE into its ELT_*_URL, then replaces itself with COMMAND.",
    )
    execute.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


def main(argv: Sequence[str] | None = None) -> int:
    # A command is a process that makes many short-lived objects (Dagster's events, the Python
    # side of frames): collecting the youngest after every 50,000 allocations instead of 700 took
    # a 200,000-row delta from 587 collections (0.3-0.6 s) to 29 (0.07 s).
    gc.set_threshold(50_000, 20, 20)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "db_command", None) == "psql":
        # Everything that is not ours goes to psql, in order (`--` first is allowed, not passed).
        args.args = extra[1:] if extra[:1] == ["--"] else extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        code = _dispatch(args, settings)
        sys.stdout.flush()  # a reader gone meets us here (below), not in Python's exit
        return code
    except SettingError as error:
        print(f"elt: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read the output stopped reading (`elt ingest --json | head`): nothing to say,
        # and nothing more to write at exit either. 141 is what a shell reports for SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except EltError as error:  # every error the platform raises on purpose says what to do
        print(f"elt: error: {mask_secrets(str(error))}", file=sys.stderr)
        return 2
    except Exception as error:
        from elt_assets.postgres.errors import describe, is_database_error

        if is_database_error(error):  # what PostgreSQL refused, and the advice for it
            print(f"elt: error: {describe(error)}", file=sys.stderr)
            return 2
        raise
    finally:
        # The process ends next. Python's last garbage collections at exit walk every object
        # the imports made (Dagster alone makes hundreds of thousands): 0.3-0.6 s of every
        # command. Frozen, they are left to the operating system; files and logs are flushed
        # before (logging's exit handler, the standard streams).
        gc.freeze()


def lean_arrow_memory() -> None:
    """Arrow's jemalloc pool for this process and the processes it starts (Dagster's run
    workers, the container's command), unless the user chose one (ARROW_DEFAULT_MEMORY_POOL).
    It hands freed memory back where mimalloc, Arrow's default, keeps it: a 1M-row CSV peaked
    60 MB lower, at the same speed. Builds without jemalloc keep Arrow's default."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
    except pa.ArrowNotImplementedError:
        return
    pa.set_memory_pool(pool)
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in {"dev", "ingest", "worker", "exec"}:  # exec: the image's entry point
        lean_arrow_memory()
    if args.command == "dev":
        from elt_assets.cli.dev import run_dev

        return run_dev(settings.with_samples(), args.host, args.port)
    if args.command == "ingest":
        return _ingest(args, settings.with_directories(args.landing, args.contracts))
    if args.command == "db":
        from elt_assets.cli.db import run_db

        return run_db(args, settings)
    if args.command == "check-defs":
        return _check_defs(settings.with_directories(None, args.contracts))
    if args.command == "contract":
        if args.contract_command == "show":
            return _contract_show(args, settings)
        return _contract_infer(args, settings.with_directories(args.landing, None))
    if args.command == "quarantine":
        return _quarantine_export(args, settings)
    if args.command == "metrics":
        return _metrics(args, settings)
    if args.command == "upload-server":
        return _upload_server(args, settings)
    if args.command == "upload-token":
        return _upload_token(args)
    if args.command == "worker":
        from elt_assets.cli.worker import run_worker

        return run_worker(args.name, args.concurrency, args.queue)
    return _exec(args.argv)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from elt_assets.cli.ingest import print_outcome, run_ingest

    outcome = run_ingest(
        settings, args.dataset, args.dry_run, args.retry_failed, args.files, reload=args.reload
    )
    print_outcome(outcome, args.json)
    return outcome.exit_code


def _check_defs(settings: Settings) -> int:
    """Load the definitions exactly as Dagster does, and resolve every asset graph piece."""
    import warnings

    import dagster as dg

    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions

    contract_set = load_contracts(settings.require_contracts_dir("--contracts"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        definitions = build_definitions(contract_set, alerts=AlertSettings.from_env())
        dg.Definitions.validate_loadable(definitions)
        repository = definitions.get_repository_def()
        jobs = [j for j in repository.get_all_jobs() if not j.name.startswith("__")]
    errors = contract_set.errors
    state = f"{len(errors)} broken contract(s), the rest loads" if errors else "ok"
    print(
        f"{state}: {len(contract_set.contracts)} datasets, {len(jobs)} jobs, "
        f"{len(repository.sensor_defs)} sensors"
    )
    for error in contract_set.errors:
        print(f"broken contract {error}", file=sys.stderr)
    return 2 if contract_set.errors else 0  # a configuration error, as `elt ingest` says it


def _contract_infer(args: argparse.Namespace, settings: Settings) -> int:
    from elt_assets.cli.infer import InferError, infer_contract

    try:
        inferred = infer_contract(
            Path(args.file),
            name=args.name,
            primary_key=args.primary_key,
            sample_rows=args.sample_rows,
            schema=args.schema,
            table=args.table,
            landing_dir=settings.landing_dir,
            delimiter=_delimiter(args.delimiter),
            encoding=args.encoding,
            header=args.header,
        )
    except InferError as error:
        print(f"elt: error: {error}", file=sys.stderr)
        return 2 if error.usage else 1
    if inferred.header_doubt:
        print(f"elt: warning: {args.file}: {inferred.header_doubt}", file=sys.stderr)
    sys.stdout.write(inferred.yaml)
    return 0


def _delimiter(given: str | None) -> str | None:
    return "\t" if given in {"\\t", "tab"} else given


def _contract_show(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from elt_assets.cli.databases import resolve_databases
    from elt_assets.postgres.connection import connect
    from elt_assets.postgres.evolution import evolution, schema_versions

    contract, _ = _dataset_contract(settings, args.contracts, args.name)
    notes: list[str] = []
    if args.effective:
        url = resolve_databases(settings, need_dagster=False).env["ELT_DATABASE_URL"]
        with connect(url, setting="ELT_DATABASE_URL", application_name="elt-show") as connection:
            versions = schema_versions(connection, contract.name)
            state = evolution(connection, contract.name)
        for version in versions:
            notes.append(f"# schema version {version.version}: {version.change} ({version.file})")
        contract = contract.evolved_by(state.added, state.widened)
    document = contract.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    sys.stdout.write("".join(f"{n}\n" for n in notes))
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return 0


def _dataset_contract(
    settings: Settings, directory: str | None, dataset: str
) -> tuple[Contract, Path]:
    """The valid contract of `dataset` in the contracts directory, or a usage error."""
    from elt_assets.contracts.loader import load_contracts

    contracts_dir = settings.with_directories(None, directory).require_contracts_dir("--contracts")
    contract_set = load_contracts(contracts_dir)
    try:
        return contract_set.get(dataset), contracts_dir
    except KeyError:
        broken = [e for e in contract_set.errors if e.dataset == dataset]
        if broken:
            raise _usage_error(
                f"the contract of dataset {dataset!r} is broken: {broken[0]}"
            ) from None
        known = ", ".join(sorted(c.name for c in contract_set.contracts)) or "none"
        raise _usage_error(
            f"no dataset named {dataset!r} in {contracts_dir} (known: {known})"
        ) from None


def _upload_server(args: argparse.Namespace, settings: Settings) -> int:
    from elt_assets.cli.databases import resolve_databases
    from elt_assets.settings import upload_tokens

    try:
        from elt_assets.cli.upload import run_upload_server, upload_service
    except ImportError as error:  # starlette / uvicorn: the `upload` extra
        raise SettingError(
            f"elt upload-server needs {error.name}: pip install 'elt-assets[upload]'"
        ) from None
    if not upload_tokens():
        raise SettingError(
            "ELT_UPLOAD_TOKENS is not set: no producer could upload. Make a token with "
            "`elt upload-token NAME --datasets DATASET` and set the entry it prints."
        )
    databases = resolve_databases(settings, need_dagster=False)
    service = upload_service(settings, databases.env["ELT_DATABASE_URL"])
    try:
        return run_upload_server(service, args.host, args.port)
    except OSError as error:
        raise SettingError(
            f"elt upload-server cannot listen on {args.host}:{args.port} ({error.strerror}): "
            "choose another --port or --host."
        ) from None


def _upload_token(args: argparse.Namespace) -> int:
    from elt_assets.cli.upload import make_token, token_hash
    from elt_assets.settings import TOKEN_ENTRY

    token = make_token()
    entry = f"{args.name}={token_hash(token)}:{args.datasets}"
    if not TOKEN_ENTRY.match(entry):
        raise SettingError(
            "upload-token: NAME is letters, digits, . _ - (up to 64); --datasets is dataset "
            "names separated by commas, or *."
        )
    print(f"token (give it to {args.name}; it is not shown again): {token}")
    print(f"ELT_UPLOAD_TOKENS entry (keep it with the others, separated by ;): {entry}")
    return 0


def _metrics(args: argparse.Namespace, settings: Settings) -> int:
    from elt_assets.cli.databases import resolve_databases
    from elt_assets.cli.metrics import run_metrics

    databases = resolve_databases(settings, need_dagster=False)
    url = databases.env["ELT_DATABASE_URL"]
    try:
        return run_metrics(url, "ELT_DATABASE_URL", args.host, args.port)
    except OSError as error:  # the port is taken, or the address is not this host's
        raise SettingError(
            f"elt metrics cannot listen on {args.host}:{args.port} ({error.strerror}): choose "
            "another --port or --host."
        ) from None
    finally:
        if databases.server is not None and databases.started_server:
            databases.server.stop()


def _quarantine_export(args: argparse.Namespace, settings: Settings) -> int:
    from elt_assets.cli.databases import resolve_databases
    from elt_assets.postgres.connection import connect
    from elt_assets.postgres.inspect import latest_manifest
    from elt_assets.postgres.quarantine import export_quarantine

    contract, _ = _dataset_contract(settings, args.contracts, args.dataset)
    databases = resolve_databases(settings, need_dagster=False)
    try:
        url = databases.env["ELT_DATABASE_URL"]
        with connect(url, setting="ELT_DATABASE_URL", application_name="elt-export") as connection:
            files = [row["file"] for row in latest_manifest(connection, contract.name)]
            file = _manifest_file(args.file, files, settings.landing_dir, contract.name)
            if args.output == "-":
                rows = export_quarantine(
                    connection,
                    contract,
                    sys.stdout,
                    file=file,
                    include_resolved=args.include_resolved,
                )
                where = "stdout"
            else:
                target = Path(args.output)
                partial = target.with_name(target.name + ".part")
                try:
                    with partial.open("w", encoding="utf-8", newline="") as out:
                        rows = export_quarantine(
                            connection,
                            contract,
                            out,
                            file=file,
                            include_resolved=args.include_resolved,
                        )
                    partial.replace(target)
                except OSError as error:
                    raise _usage_error(
                        f"cannot write {target}: {error.strerror or error}"
                    ) from None
                finally:
                    partial.unlink(missing_ok=True)
                where = str(target)
    finally:
        if databases.started_server and databases.server is not None:
            databases.server.stop()
    which = "open and resolved" if args.include_resolved else "open"
    scope = f"file {file}" if file else f"dataset {contract.name}"
    print(
        f"{rows} {'row' if rows == 1 else 'rows'} written to {where} "
        f"({which} quarantine rows of {scope})",
        file=sys.stderr,
    )
    return 0


def _manifest_file(
    given: str | None, files: list[str], landing_dir: Path | None, dataset: str
) -> str | None:
    """The file as the manifest names it: as given, or a path under the landing directory."""
    if given is None or given in files:
        return given
    try:
        relative = (
            Path(given).resolve().relative_to(landing_dir.resolve()).as_posix()
            if landing_dir
            else None
        )
    except ValueError:
        relative = None
    if relative in files:
        return relative
    shown = ", ".join(files[:10]) + (", ..." if len(files) > 10 else "")
    raise _usage_error(
        f"dataset {dataset!r} has no file {given!r}; give the path relative to the landing "
        f"directory, as the manifest records it (files: {shown or 'none loaded yet'})"
    )


def _usage_error(message: str) -> Exception:
    """ingest.UsageError (exit 2), imported only when needed: ingest imports all of Dagster."""
    from elt_assets.cli.ingest import UsageError

    return UsageError(message)


def _exec(argv: list[str]) -> NoReturn:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        raise SettingError("elt exec needs a command: elt exec -- dagster-webserver ...")
    for name in SECRET_SETTINGS:
        value = read_secret(name)
        if value is not None:
            os.environ[name] = value
            os.environ.pop(f"{name}_FILE", None)
    if os.environ.get("ELT_DAGSTER_DATABASE_URL"):  # what deploy/celery/dagster.yaml reads
        broker, backend = celery_urls()
        os.environ.setdefault("ELT_CELERY_BROKER_URL", broker)
        os.environ.setdefault("ELT_CELERY_BACKEND_URL", backend)
    try:
        os.execvp(command[0], command)  # noqa: S606 (replaces this process by design)
    except FileNotFoundError:
        raise SettingError(
            f"elt exec: {command[0]!r} was not found on PATH: install it in this environment or "
            "give its full path."
        ) from None


if __name__ == "__main__":
    raise SystemExit(main())
