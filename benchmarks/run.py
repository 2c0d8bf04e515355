"""The benchmark: our file -> table path against the hand-written limit, on one PostgreSQL.

    make bench                                   # 1M rows, every format, every scenario
    .venv/bin/python -m benchmarks.run --rows 10000000 --formats csv --scenarios big --skip-limit

Scenarios:
- big:   one file of --rows rows (initial load into an empty table, then a delta of 10% changed
         and 10% new keys), per format, ours vs the two hand-written limits (benchmarks/limit.py);
- small: --small-files files of --small-rows rows from landing to table through the sensor's run
         requests and the batch job (benchmarks/small_files.py);
- tick:  one sensor tick over --tick-files landed files, most already known (benchmarks/tick.py);
- bucket: the big files again from an S3 bucket (moto's server on loopback, benchmarks/bucket.py)
         beside the local ones, and the tick over --tick-files objects in the bucket;
- dev:   `elt dev` as a user runs it: a file's latency from landing to commit, then a backlog of
         --small-files files (benchmarks/dev.py);
- partitions, workers: see benchmarks/partitions.py and benchmarks/workers.py.

It starts its own embedded PostgreSQL under .elt/bench (--state; the same server settings `elt dev`
applies), prints a table and writes it as Markdown to .elt/bench/results.md. A speed is only
reported for a right answer: after each format, our target table must equal the limit's, row for
row, or the benchmark stops.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg

from benchmarks import limit, statements
from benchmarks.bucket import BenchBucket
from benchmarks.data import COLUMN_NAMES, CONTRACT, BenchFiles, generate
from benchmarks.user_env import USER_BIN, USER_PYTHON

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".elt" / "bench"
FORMATS = ["csv", "csv.gz", "parquet"]
OUR_TABLE = "bench.orders"
LIMIT_TABLE = "bench_limit_target"
DLT_TABLE = "bench_dlt.orders"


@dataclass
class Row:
    scenario: str
    format: str
    rows: int
    size_mb: float
    limit_text: float | None = None
    limit_binary: float | None = None
    ours: float | None = None
    ours_rss_mb: float | None = None
    bucket: float | None = None  # ours, the file read from the bucket
    bucket_rss_mb: float | None = None
    ingest: float | None = None  # `elt ingest` as a user runs it, start-up included
    ingest_rss_mb: float | None = None
    dlt: float | None = None  # dlt's fastest path, as its user runs it (benchmarks/dlt_load.py)
    dlt_rss_mb: float | None = None
    dlt_keyed: float | None = None  # the same, its table's key kept unique (`dlt_load.py --key`)
    dlt_keyed_rss_mb: float | None = None
    # Each round's times, in order (a round's commands run within a minute of each other)
    ingest_rounds: list[float] = field(default_factory=list)
    dlt_rounds: list[float] = field(default_factory=list)
    dlt_keyed_rounds: list[float] = field(default_factory=list)
    # PostgreSQL's share of each round of the command as users run it (benchmarks/statements.py)
    ingest_postgres: list[statements.Share] = field(default_factory=list)
    dlt_postgres: list[statements.Share] = field(default_factory=list)
    dlt_keyed_postgres: list[statements.Share] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def limit(self) -> float | None:
        times = [t for t in (self.limit_text, self.limit_binary) if t is not None]
        return min(times) if times else None

    @property
    def ratio(self) -> float | None:
        return self.ours / self.limit if self.ours and self.limit else None


@dataclass
class Bench:
    env: dict[str, str]
    landing: Path
    contracts: Path
    state: Path
    identical: dict[str, int] = field(default_factory=dict)  # format -> rows equal to the limit's
    identical_dlt: dict[str, int] = field(default_factory=dict)  # the same for dlt's table
    identical_dlt_keyed: dict[str, int] = field(default_factory=dict)  # and dlt's with its key
    bucket: BenchBucket | None = None
    superuser_url: str = ""
    # Times of the commands as users run them, each the median of this many rounds (this VM's
    # speed wanders by a fifth within minutes): `elt ingest` and dlt take turns round by round.
    rounds: int = 1

    @property
    def owner_url(self) -> str:
        return self.env["ELT_OWNER_DATABASE_URL"]

    def checkpoint(self, superuser_url: str) -> None:
        with psycopg.connect(superuser_url, autocommit=True) as connection:
            connection.execute("CHECKPOINT")


def start_server(pg_bin_dir: str | None, state: Path = STATE) -> tuple[dict[str, str], str]:
    from elt_assets.postgres.embedded import EmbeddedServer, default_bin_dir, free_port, provision

    root = state / "postgres"
    shutil.rmtree(root, ignore_errors=True)
    server = EmbeddedServer(
        root=root,
        port=free_port(),
        bin_dir=Path(pg_bin_dir) if pg_bin_dir else default_bin_dir(),
    )
    server.ensure_started()
    env = provision(server)
    import atexit

    atexit.register(server.stop, "fast")
    superuser_url = server.url("postgres", "warehouse")

    def restart() -> None:
        server.stop("fast")
        server.ensure_started()

    statements.enable(superuser_url, restart)  # PostgreSQL's share of each command
    return env, superuser_url


def reset_ours(bench: Bench) -> None:
    """An empty target, staging table and manifest for the benchmark dataset, and a sensor
    that has seen none of its files."""
    from elt_assets.contracts.loader import load_contracts
    from elt_assets.postgres.connection import connect
    from elt_assets.postgres.migrate import initialize

    with connect(bench.owner_url, setting="benchmark owner") as connection:
        contracts = load_contracts(bench.contracts).contracts
        initialize(connection, contracts)
        connection.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        connection.execute("DROP TABLE IF EXISTS elt_staging.bench_orders")
        connection.execute("DELETE FROM elt.ingestion_manifest WHERE dataset = 'bench_orders'")
        connection.execute("DELETE FROM elt.quarantine WHERE dataset = 'bench_orders'")
        connection.execute("DELETE FROM elt.landing_files WHERE dataset = 'bench_orders'")
        initialize(connection, contracts)


def land(bench: Bench, source: Path, name: str) -> str:
    """Hard-link a generated file into the landing zone (no copy); returns its relative path."""
    relative = f"bench_orders/{name}"
    target = bench.landing / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    os.link(source, target)
    return relative


def json_result(argv: list[str], env: dict[str, str], what: str) -> dict[str, object]:
    """Run a benchmark command in its own process; the JSON object of its last such line."""
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result: dict[str, object] = json.loads(lines[-1])
    return result


def run_ours(bench: Bench, relative: str, from_bucket: bool = False) -> dict[str, object]:
    bucket = bench.bucket if from_bucket else None
    landing = bucket.url if bucket else str(bench.landing)
    argv = [str(USER_PYTHON), "-m", "benchmarks.ours", landing, str(bench.contracts), relative]
    env = {**os.environ, **bench.env, **(bucket.env if bucket else {})}
    result = json_result(argv, env, f"our path on {relative}")
    if not result["success"]:
        raise SystemExit(f"our job did not succeed on {relative}: {result}")
    return result


def big(
    bench: Bench, files: BenchFiles, fmt: str, superuser_url: str, with_limit: bool = True
) -> list[Row]:
    rows = []
    for phase in ("initial", "delta"):
        path = files.initial[fmt] if phase == "initial" else files.delta[fmt]
        count = files.rows if phase == "initial" else files.delta_rows
        rows.append(Row(f"{phase} load", fmt, count, path.stat().st_size / 1e6))
    limits = (("text", limit.text_path), ("binary", limit.binary_path)) if with_limit else ()
    for name, path_fn in limits:
        if name == "binary" and not limit.binary_available():
            print("  limit binary: skipped (ADBC is not installed; `make bench` installs it)")
            continue
        limit.reset(bench.owner_url, LIMIT_TABLE)
        for row, path in zip(rows, (files.initial[fmt], files.delta[fmt]), strict=True):
            bench.checkpoint(superuser_url)
            seconds = path_fn(bench.owner_url, LIMIT_TABLE, path)
            setattr(row, f"limit_{name}", seconds)
            print(f"  limit {name:6} {fmt:8} {row.scenario:13} {seconds:7.2f} s", flush=True)
    reset_ours(bench)
    for row, phase, path in zip(
        rows, ("initial", "delta"), (files.initial[fmt], files.delta[fmt]), strict=True
    ):
        relative = land(bench, path, f"{phase}.{fmt}")
        bench.checkpoint(superuser_url)
        result = run_ours(bench, relative)
        row.ours = float(result["seconds"])  # type: ignore[arg-type]
        row.ours_rss_mb = float(result["peak_rss_mb"])  # type: ignore[arg-type]
        print(
            f"  ours         {fmt:8} {row.scenario:13} {row.ours:7.2f} s  "
            f"peak RSS {row.ours_rss_mb:.0f} MB  {json.dumps(result['metadata'])}",
            flush=True,
        )
    if limits:
        bench.identical[fmt] = same_table(bench.owner_url, OUR_TABLE, LIMIT_TABLE)
    as_users_run_it(bench, files, fmt, rows, compare=bool(limits))
    if bench.bucket is not None:
        from_bucket(bench, files, fmt, rows, superuser_url, with_limit)
    return rows


def timed(argv: list[str], env: dict[str, str], name: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a command run as its user runs it (benchmarks/peak.py)."""
    result = json_result([sys.executable, "-m", "benchmarks.peak", "--", *argv], env, name)
    return float(result["seconds"]), float(result["peak_rss_mb"])  # type: ignore[arg-type]


def ingest_argv(bench: Bench) -> list[str]:
    """`elt ingest` over the benchmark's landing folder, as a user types it."""
    elt = str(USER_BIN / "elt")
    return [
        elt,
        "ingest",
        "--json",
        "--landing",
        str(bench.landing),
        "--contracts",
        str(bench.contracts),
    ]


def dlt_available() -> bool:
    """dlt and its ADBC driver come with the `bench` dependency group (`make bench`)."""
    return all(importlib.util.find_spec(name) for name in ("dlt", "adbc_driver_postgresql"))


def reset_dlt(bench: Bench) -> Path:
    """No dlt table and no pipeline state: dlt's first load is a first load too."""
    with psycopg.connect(bench.owner_url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA IF EXISTS bench_dlt CASCADE")
    pipelines = bench.state / "dlt"
    shutil.rmtree(pipelines, ignore_errors=True)
    return pipelines


def dlt_argv(
    bench: Bench, pipelines: Path, paths: list[Path], per_file: bool = False, keyed: bool = False
) -> list[str]:
    mode = (["--per-file"] if per_file else []) + (["--key"] if keyed else [])
    return [
        str(USER_PYTHON),
        "-m",
        "benchmarks.dlt_load",
        bench.owner_url,
        str(pipelines),
        *mode,
        *(str(p) for p in paths),
    ]


def as_users_run_it(
    bench: Bench, files: BenchFiles, fmt: str, rows: list[Row], compare: bool
) -> None:
    """The same two loads with a fresh process each, start-up included: `elt ingest` on the
    landing folder, and dlt on the file (when the `bench` group installed it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env.update(bench.env)
    phases = ("initial", "delta")
    pairs = list(zip(rows, phases, (files.initial[fmt], files.delta[fmt]), strict=True))
    ours: dict[str, list[tuple[float, float]]] = {phase: [] for phase in phases}
    theirs: dict[bool, dict[str, list[tuple[float, float]]]] = {
        keyed: {phase: [] for phase in phases} for keyed in (False, True)
    }
    with_dlt = dlt_available()
    if not with_dlt:
        print("  dlt: skipped (not installed; `make bench` installs it)")
    for _ in range(bench.rounds):
        reset_ours(bench)
        shutil.rmtree(bench.landing / "bench_orders", ignore_errors=True)
        for row, phase, path in pairs:
            land(bench, path, f"{phase}.{fmt}")
            bench.checkpoint(bench.superuser_url)
            statements.reset(bench.superuser_url)
            ours[phase].append(timed(ingest_argv(bench), env, "elt ingest"))
            row.ingest_postgres.append(statements.share(bench.superuser_url))
            _said("elt ingest", fmt, row, *ours[phase][-1])
        if compare:
            same_table(bench.owner_url, OUR_TABLE, LIMIT_TABLE)
        if not with_dlt:
            continue
        for keyed in (False, True):
            pipelines = reset_dlt(bench)
            tool = "dlt, key" if keyed else "dlt"
            for row, phase, path in pairs:
                bench.checkpoint(bench.superuser_url)
                statements.reset(bench.superuser_url)
                argv = dlt_argv(bench, pipelines, [path], keyed=keyed)
                theirs[keyed][phase].append(timed(argv, env, tool))
                shares = row.dlt_keyed_postgres if keyed else row.dlt_postgres
                shares.append(statements.share(bench.superuser_url))
                _said(tool, fmt, row, *theirs[keyed][phase][-1])
            if keyed:
                _assert_unique_key(bench, DLT_TABLE)
            if compare:
                identical = same_table(bench.owner_url, DLT_TABLE, LIMIT_TABLE)
                (bench.identical_dlt_keyed if keyed else bench.identical_dlt)[fmt] = identical
    for row, phase, _ in pairs:
        row.ingest, row.ingest_rss_mb = _median_run(ours[phase])
        row.ingest_rounds = [seconds for seconds, _ in ours[phase]]
        if with_dlt:
            row.dlt, row.dlt_rss_mb = _median_run(theirs[False][phase])
            row.dlt_keyed, row.dlt_keyed_rss_mb = _median_run(theirs[True][phase])
            row.dlt_rounds = [seconds for seconds, _ in theirs[False][phase]]
            row.dlt_keyed_rounds = [seconds for seconds, _ in theirs[True][phase]]


def _assert_unique_key(bench: Bench, table: str) -> None:
    """dlt's `unique` hint gave its table a unique index on the key (else the comparison with a
    key would be a comparison without one)."""
    query = (
        "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisunique"
        " AND indnkeyatts = 1"
    )
    with psycopg.connect(bench.owner_url) as connection:
        row = connection.execute(query, [table]).fetchone()
    if not row or not row[0]:
        raise RuntimeError(f"dlt's --key run left {table} without a unique index on its key")


def _said(tool: str, fmt: str, row: Row, seconds: float, rss_mb: float) -> None:
    print(
        f"  {tool:12} {fmt:8} {row.scenario:13} {seconds:7.2f} s  peak RSS {rss_mb:.0f} MB",
        flush=True,
    )


def _median_run(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The median time of the rounds, and the highest peak memory any of them reached."""
    return statistics.median(s for s, _ in runs), max(rss for _, rss in runs)


def from_bucket(
    bench: Bench,
    files: BenchFiles,
    fmt: str,
    rows: list[Row],
    superuser_url: str,
    with_limit: bool,
) -> None:
    """The same two loads again, each file uploaded to the bucket and read from there."""
    assert bench.bucket is not None
    reset_ours(bench)
    for row, phase, path in zip(
        rows, ("initial", "delta"), (files.initial[fmt], files.delta[fmt]), strict=True
    ):
        relative = f"bench_orders/{phase}.{fmt}"
        bench.bucket.upload(path, relative)
        bench.checkpoint(superuser_url)
        result = run_ours(bench, relative, from_bucket=True)
        row.bucket = float(result["seconds"])  # type: ignore[arg-type]
        row.bucket_rss_mb = float(result["peak_rss_mb"])  # type: ignore[arg-type]
        print(
            f"  ours, bucket {fmt:8} {row.scenario:13} {row.bucket:7.2f} s  "
            f"peak RSS {row.bucket_rss_mb:.0f} MB",
            flush=True,
        )
    if with_limit:
        same_table(bench.owner_url, OUR_TABLE, LIMIT_TABLE)


def same_table(url: str, ours: str, limit_table: str, columns: Sequence[str] = COLUMN_NAMES) -> int:
    """Rows of our target after initial + delta, checked equal to the limit's (every column,
    repeated rows included); stops the benchmark otherwise."""
    names = ", ".join(columns)
    with psycopg.connect(url) as connection:

        def count(query: str) -> int:
            row = connection.execute(query).fetchone()
            return int(row[0]) if row else 0

        ours_rows, limit_rows = (count(f"SELECT count(*) FROM {t}") for t in (ours, limit_table))
        missing, extra = (
            count(
                f"SELECT count(*) FROM (SELECT {names} FROM {a} EXCEPT ALL "
                f"SELECT {names} FROM {b}) AS d"
            )
            for a, b in ((limit_table, ours), (ours, limit_table))
        )
    if missing or extra or ours_rows != limit_rows:
        raise SystemExit(
            f"our table {ours} differs from the limit's {limit_table}: rows {ours_rows} and "
            f"{limit_rows}, {missing} of the limit's rows missing, {extra} extra"
        )
    return ours_rows


def seconds_cell(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "-"


def same_as_limit(whose: str, identical: dict[str, int]) -> list[str]:
    """The sentence saying which formats' tables were compared with the limit's, and found equal."""
    if not identical:
        return []
    checked = ", ".join(f"{fmt} ({n:,} rows)" for fmt, n in identical.items())
    return ["", f"{whose} equals the limit's, every row and column: {checked}."]


def as_users_table(rows: list[Row], bench: Bench) -> list[str]:
    """The loads again, each tool as its user runs it: a fresh process, start-up included; dlt
    as its documentation advises for speed, and again with a unique key on its table."""
    timed_rows = [r for r in rows if r.ingest is not None]
    if not timed_rows:
        return []
    lines = [
        "",
        "As a user runs it (a fresh process per load, start-up included; `elt ingest --json "
        "--landing --contracts`, and dlt's fastest path, benchmarks/dlt_load.py, whose table "
        'has no key; "dlt, key": the same with a unique key on its table, as ours keeps'
        f"{_rounds_said(bench.rounds)}):",
        "",
        "| scenario | format | best limit | dlt | dlt, key | `elt ingest` | `elt ingest` / dlt | "
        "`elt ingest` / dlt, key | `elt ingest` / limit | dlt peak RSS | `elt ingest` peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in timed_rows:
        assert r.ingest is not None
        versus_dlt = f"**{r.ingest / r.dlt:.2f}**" if r.dlt else "-"
        versus_keyed = f"**{r.ingest / r.dlt_keyed:.2f}**" if r.dlt_keyed else "-"
        versus_limit = f"{r.ingest / r.limit:.2f}" if r.limit else "-"
        dlt_rss = f"{r.dlt_rss_mb:.0f} MB" if r.dlt_rss_mb else "-"
        lines.append(
            f"| {r.scenario} | {r.format} | {seconds_cell(r.limit)} | {seconds_cell(r.dlt)} | "
            f"{seconds_cell(r.dlt_keyed)} | {seconds_cell(r.ingest)} | {versus_dlt} | "
            f"{versus_keyed} | {versus_limit} | {dlt_rss} | {r.ingest_rss_mb:.0f} MB |"
        )
    return (
        lines
        + by_round(timed_rows)
        + same_as_limit("dlt's table", bench.identical_dlt)
        + same_as_limit("dlt's table with its key", bench.identical_dlt_keyed)
    )


def by_round(rows: list[Row]) -> list[str]:
    """Each round's `elt ingest` / dlt: the two commands of a round run within a minute, so their
    ratio is steadier than the ratio of medians when this VM's speed wanders between rounds."""
    lines = []
    for r in rows:
        if len(r.ingest_rounds) < 2 or len(r.dlt_rounds) != len(r.ingest_rounds):
            continue
        ratios = [ours / theirs for ours, theirs in zip(r.ingest_rounds, r.dlt_rounds, strict=True)]
        keyed = [
            ours / theirs for ours, theirs in zip(r.ingest_rounds, r.dlt_keyed_rounds, strict=True)
        ]
        lines.append(f"- {r.scenario}, {r.format}: {_ratios(ratios)} (dlt, key: {_ratios(keyed)})")
    if not lines:
        return []
    return ["", "Round by round, `elt ingest` / dlt:", "", *lines]


def _ratios(ratios: list[float]) -> str:
    return ", ".join(f"{ratio:.2f}" for ratio in ratios)


def postgres_share_table(rows: list[Row]) -> list[str]:
    """Where each command's time went: PostgreSQL's COPY, its writes, all its statements, and
    the rest (start-up, reading, Python); medians of the rounds."""
    lines = [
        "",
        "PostgreSQL's share of each command as users run it (pg_stat_statements, medians of the "
        "rounds): its COPY statements (waiting for the client's data included), its writes (the "
        "upsert, dlt's MERGE), all its statements, and the rest of the command (start-up, "
        "reading, Python):",
        "",
        "| scenario | format | command | its time | COPY | writes | all statements | the rest |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for tool, seconds, shares in (
            ("`elt ingest`", r.ingest, r.ingest_postgres),
            ("dlt", r.dlt, r.dlt_postgres),
            ("dlt, key", r.dlt_keyed, r.dlt_keyed_postgres),
        ):
            if seconds is None or not shares:
                continue
            copy, writes, total = (
                statistics.median(getattr(share, part) for share in shares)
                for part in ("copy", "writes", "total")
            )
            lines.append(
                f"| {r.scenario} | {r.format} | {tool} | {seconds:.2f} s | {copy:.2f} s | "
                f"{writes:.2f} s | {total:.2f} s | {seconds - total:.2f} s |"
            )
    return lines if len(lines) > 5 else []


def _rounds_said(rounds: int) -> str:
    if rounds == 1:
        return ""
    return f"; each time the median of {rounds} rounds, the tools taking turns"


def markdown(rows: list[Row], extra: list[str], bench: Bench) -> str:
    lines = [
        f"Measured {date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, embedded PostgreSQL (benchmarks/run.py).",
        "",
        "| scenario | format | rows | MB | limit: text COPY | limit: binary COPY | ours | "
        "ours / limit | ours rows/s | ours MB/s | ours peak RSS | ours, from a bucket | "
        "its peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    s = seconds_cell
    for r in rows:
        rate = f"{r.rows / r.ours:,.0f}" if r.ours else "-"
        mbps = f"{r.size_mb / r.ours:.1f}" if r.ours else "-"
        ratio = f"**{r.ratio:.2f}**" if r.ratio else "-"
        rss = f"{r.ours_rss_mb:.0f} MB" if r.ours_rss_mb else "-"
        bucket_rss = f"{r.bucket_rss_mb:.0f} MB" if r.bucket_rss_mb else "-"
        lines.append(
            f"| {r.scenario} | {r.format} | {r.rows:,} | {r.size_mb:.0f} | {s(r.limit_text)} | "
            f"{s(r.limit_binary)} | {s(r.ours)} | {ratio} | {rate} | {mbps} | {rss} | "
            f"{s(r.bucket)} | {bucket_rss} |"
        )
    lines += same_as_limit("Our target table", bench.identical)
    lines += as_users_table(rows, bench)
    lines += postgres_share_table(rows)
    return "\n".join([*lines, "", *extra]) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--scenarios", default="big,bucket,small,tick,partitions,dev,workers")
    parser.add_argument("--small-files", type=int, default=1000)
    parser.add_argument("--small-rows", type=int, default=1000)
    parser.add_argument("--tick-files", type=int, default=100_000)
    parser.add_argument(
        "--dev-alone", type=int, default=5, help="files the dev scenario lands one at a time"
    )
    parser.add_argument(
        "--partition-counts",
        default="10000,100000",
        help="partitions of one dataset the partitions scenario measures at",
    )
    parser.add_argument(
        "--workers-quick",
        action="store_true",
        help="the workers scenario with one worker and the backlog-taking sensor only",
    )
    parser.add_argument(
        "--skip-limit",
        action="store_true",
        help="measure only our path (e.g. memory at 10M rows)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of the commands as users run them (elt ingest, dlt, the loop), taking "
        "turns; each time reported is the median",
    )
    parser.add_argument("--pg-bin-dir", default=os.environ.get("ELT_PG_BIN_DIR"))
    parser.add_argument("--state", type=Path, default=STATE, help="server, data and results")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    scenarios = set(args.scenarios.split(","))

    state: Path = args.state
    state.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env, superuser_url = start_server(args.pg_bin_dir, state)
    landing, contracts = state / "landing", state / "contracts"
    for directory in (landing, contracts):  # nothing left from an earlier run
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    (contracts / "bench_orders.yaml").write_text(CONTRACT)
    bench = Bench(env, landing, contracts, state, superuser_url=superuser_url, rounds=args.rounds)
    reset_ours(bench)  # the platform's tables, whichever scenarios run
    if "bucket" in scenarios:
        from benchmarks.bucket import start_bucket

        bench.bucket = start_bucket()
    rows: list[Row] = []
    extra: list[str] = []
    if "big" in scenarios:
        print(f"generating {args.rows:,} rows ...", flush=True)
        files = generate(state / "data", args.rows)
        for fmt in args.formats.split(","):
            rows += big(bench, files, fmt, superuser_url, with_limit=not args.skip_limit)
    if "small" in scenarios:
        from benchmarks.small_files import small_files_scenario

        extra.append(small_files_scenario(bench, args.small_files, args.small_rows))
    if "tick" in scenarios:
        from benchmarks.tick import tick_scenario

        extra.append(tick_scenario(bench, args.tick_files))
    if "tick" in scenarios and bench.bucket is not None:
        from benchmarks.tick import bucket_tick_scenario

        extra.append(bucket_tick_scenario(bench, args.tick_files))
    if "partitions" in scenarios:
        from benchmarks.partitions import partitions_scenario

        counts = [int(n) for n in args.partition_counts.split(",")]
        extra.append(partitions_scenario(bench, counts, superuser_url))
    if "dev" in scenarios:
        from benchmarks.dev import dev_scenario

        extra.append(
            dev_scenario(bench, args.small_files, args.small_rows, superuser_url, args.dev_alone)
        )
    if "workers" in scenarios:
        from benchmarks.bucket import start_bucket
        from benchmarks.workers import RUNS, TAKES_ALL, workers_scenario

        bucket = bench.bucket or start_bucket()
        runs = [(TAKES_ALL, 1)] if args.workers_quick else RUNS
        extra.append(
            workers_scenario(bench, bucket, args.small_files, args.small_rows, superuser_url, runs)
        )
    report = markdown(rows, extra, bench)
    (state / "results.md").write_text(report)
    print()
    print(report)
    print(f"(benchmark took {time.perf_counter() - started:.0f} s; table in {state}/results.md)")


if __name__ == "__main__":
    main()
