"""`elt db ...`: manage the embedded PostgreSQL, and set up any warehouse with `elt db init`."""

from __future__ import annotations

import argparse
import os
import sys

from elt_assets.cli.databases import (
    Databases,
    embedded_server,
    initialize_warehouse,
    resolve_databases,
)
from elt_assets.contracts.loader import ContractSet, load_contracts
from elt_assets.log import MASK
from elt_assets.postgres.embedded import EmbeddedServer, provision
from elt_assets.settings import SettingError, Settings, database_url


def run_db(args: argparse.Namespace, settings: Settings) -> int:
    server = embedded_server(settings)
    action = args.db_command
    if action == "start":
        started = server.ensure_started()
        provision(server)
        print(
            f"embedded PostgreSQL {'started' if started else 'already running'} on "
            f"127.0.0.1:{server.port} (data in {server.data_dir})"
        )
        return 0
    if action == "stop":
        print("stopped" if server.stop() else "not running")
        return 0
    if action == "status":
        return _status(server)
    if action == "url":
        if server.running_pid() is None:
            print("the embedded server is not running: `elt db start`", file=sys.stderr)
            return 1
        url = server.url(args.role, args.database)
        if not args.with_password:
            url = url.replace(f":{server.password(args.role)}@", f":{MASK}@")
            # The masked password still names where the real one is kept.
            print(f"# password in {server.secrets_dir / args.role}", file=sys.stderr)
        print(url)
        return 0
    if action == "psql":
        if server.running_pid() is None:
            print("the embedded server is not running: `elt db start`", file=sys.stderr)
            return 1
        env = {**os.environ, "PGPASSWORD": server.password(args.role)}  # never on the command line
        command = [
            str(server.bin_dir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            args.role,
            "-d",
            args.database,
            *args.args,
        ]
        os.execve(command[0], command, env)  # noqa: S606
    return _init(settings, embedded=args.embedded)


def _status(server: EmbeddedServer) -> int:
    pid = server.running_pid()
    has_binaries = (server.bin_dir / "postgres").exists()
    state = f"running (pid {pid}, port {server.running_port()})" if pid else "stopped"
    print(f"embedded PostgreSQL: {state}")
    created = "" if server.initialized() else " (not created yet)"
    binaries = "" if has_binaries else " (no postgres binary here!)"
    print(f"data directory:      {server.data_dir}{created}")
    print(f"binaries:            {server.bin_dir}{binaries}")
    print(f"log:                 {server.log_file}")
    return 0 if pid else 3


def _init(settings: Settings, *, embedded: bool) -> int:
    # Without contracts: the platform's own tables (a dataset's appear on its first load).
    contract_set = (
        load_contracts(settings.require_contracts_dir())
        if settings.contracts_dir is not None
        else ContractSet()
    )
    owner = database_url("ELT_OWNER_DATABASE_URL")
    if embedded:
        databases = resolve_databases(settings, need_dagster=False, embedded_only=True)
    elif owner is not None and database_url("ELT_DATABASE_URL") is None:
        databases = Databases({"ELT_OWNER_DATABASE_URL": owner})  # set-up needs only the owner
    elif owner is None and database_url("ELT_DATABASE_URL") is None:
        # Never a silent new cluster in the working directory when a database was meant.
        raise SettingError(
            "elt db init: no database to set up: set ELT_OWNER_DATABASE_URL (or "
            "ELT_DATABASE_URL) to it, or pass --embedded for the embedded server"
        )
    else:
        databases = resolve_databases(settings, need_dagster=False)
    try:
        report = initialize_warehouse(databases, contract_set.contracts)
    finally:
        if databases.started_server and databases.server is not None:
            databases.server.stop()
    print(f"migrations applied: {', '.join(report.applied) or 'none (up to date)'}")
    if report.single_role:
        print(f"roles: single-role mode ({report.single_role}; see the SECURITY line above)")
    else:
        print(f"roles created: {'yes' if report.created_roles else 'no (already there)'}")
    if report.adopted:
        print(f"handed to elt_owner: {', '.join(report.adopted)}")
    print(f"dataset tables ready: {', '.join(report.datasets) or 'none'}")
    for error in contract_set.errors:
        print(f"broken contract {error}", file=sys.stderr)
    for name, problem in report.unfit.items():
        print(f"dataset {name} not ready: {problem}", file=sys.stderr)
    return 2 if contract_set.errors or report.unfit else 0
