#!/usr/bin/env python3
"""Set up everything from a fresh clone, then run `elt dev` or the test suite.

Needs only Python 3.11+. It installs a pinned uv into .elt/bootstrap, builds .venv from the
committed uv.lock (never re-resolving), and then runs the requested command inside it:

    python3 scripts/bootstrap.py dev     # the platform: embedded PostgreSQL + Dagster UI
    python3 scripts/bootstrap.py test    # ruff, mypy, dg check defs, pytest
    python3 scripts/bootstrap.py sync    # only build the environment
    python3 scripts/bootstrap.py bench   # the benchmark (benchmarks/run.py), with its extras

`make dev` and `make test` call this script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

UV_VERSION = "0.13.9"
ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_DIR = ROOT / ".elt" / "bootstrap"


def fail(message: str) -> None:
    print(f"bootstrap: {message}", file=sys.stderr)
    raise SystemExit(2)


def bootstrap_uv() -> Path:
    """Return a uv binary of the pinned version, installing it into .elt/bootstrap if needed."""
    uv = BOOTSTRAP_DIR / "bin" / "uv"
    if uv.exists():
        version = subprocess.run([str(uv), "--version"], capture_output=True, text=True).stdout
        if UV_VERSION in version:
            return uv
    print(f"bootstrap: installing uv {UV_VERSION} into {BOOTSTRAP_DIR.relative_to(ROOT)}")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(BOOTSTRAP_DIR)
    except Exception as error:  # ensurepip missing on some distributions
        fail(
            f"could not create a virtual environment ({error}). On Debian/Ubuntu install "
            "python3-venv, or install uv yourself and put it on PATH."
        )
    pip = BOOTSTRAP_DIR / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", f"uv=={UV_VERSION}"], check=True)
    return uv


def sync(uv: Path, groups: tuple[str, ...] = ()) -> None:
    """Build .venv exactly from uv.lock, with the interpreter running this script, with the
    `platform` extra (the UI and the embedded PostgreSQL) that the platform's commands use."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    extra = [arg for group in groups for arg in ("--group", group)]
    # Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (common in sandboxes and CI)
    # every process would otherwise compile Dagster from source again (~2 s per `elt` start).
    command = [str(uv), "sync", "--locked", "--quiet", "--compile-bytecode", "--extra", "platform"]
    command += extra
    subprocess.run(
        [*command, "--python", sys.executable],
        cwd=ROOT,
        env=env,
        check=True,
    )


def sync_user_env(uv: Path) -> Path:
    """The benchmark's user install (benchmarks/user_env.py): .elt/bench/venv from uv.lock with
    the `platform` extra and the `bench` group, without the development group. Returns its
    interpreter."""
    target = ROOT / ".elt" / "bench" / "venv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_PROJECT_ENVIRONMENT": str(target)}
    command = [str(uv), "sync", "--locked", "--quiet", "--compile-bytecode", "--no-dev"]
    command += ["--extra", "platform", "--group", "bench", "--python", sys.executable]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return target / "bin" / "python"


# What depends most on the server's version (DDL and PL/pgSQL, privileges, every value type
# through COPY and the upsert), run again on the oldest PostgreSQL we support. The Dagster-level
# flows (test_pipeline, test_scenarios) pass on 15 too but stay out: make test's time budget.
PG15_TIER = [
    "elt_assets_tests/test_evolution.py",
    "elt_assets_tests/test_roles.py",
    "elt_assets_tests/test_fidelity.py",
]


def pg15_bin_dir() -> Path | None:
    """PostgreSQL 15's binaries from the locked pgserver wheel (dev group), if this platform
    has it."""
    found = sorted(ROOT.glob(".venv/lib/python3*/site-packages/pgserver/pginstall/bin"))
    return found[0] if found and (found[0] / "postgres").exists() else None


def run_tests(uv: Path, pytest_args: list[str]) -> int:
    """The quality gates CI runs, in order from cheapest to slowest."""
    # Validation loads the code location only; an empty instance directory is enough for it.
    home = ROOT / ".elt" / "ci_dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The code location as `elt dev` serves it: the sample datasets.
    samples = {
        "ELT_LANDING_DIR": str(ROOT / "examples" / "landing"),
        "ELT_CONTRACTS_DIR": str(ROOT / "examples" / "contracts"),
    }
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    checker_home = ROOT / ".elt" / "ci_dagster_home_dg"  # not shared with the tests beside it
    checker_home.mkdir(parents=True, exist_ok=True)
    (checker_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for lint in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):  # seconds: first
        code = _run_step(uv, lint, env)
        if code != 0:
            return code
    # The type check and the definitions check need a core each for a minute on a fresh
    # checkout; they run beside the first pytest session, which mostly waits on its servers.
    log_dir = ROOT / ".elt" / "ci_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    beside = {
        "mypy": _start_step(uv, ["mypy"], env, log_dir / "mypy.log"),
        # The definitions load as Dagster's `dg` loads a project ([tool.dg] in pyproject.toml).
        "dg check defs": _start_step(
            uv,
            ["dg", "check", "defs"],
            {**env, **samples, "DAGSTER_HOME": str(checker_home)},
            log_dir / "dg.log",
        ),
    }
    code = _run_tests_in_turn(uv, pytest_args, env)
    for name, (process, log) in beside.items():
        returned = process.wait()
        print(f"\n==> {name} (run beside the tests)\n{log.read_text()}", flush=True)
        if returned != 0:
            print(f"\nFAILED: {name} (exit {returned})", file=sys.stderr)
            code = code or returned
    return code


def _run_tests_in_turn(uv: Path, pytest_args: list[str], env: dict[str, str]) -> int:
    steps: list[tuple[list[str], dict[str, str]]] = [
        (["pytest", *pytest_args, "--ignore=elt_assets_tests/test_faults.py"], {}),
        # The fault tests kill processes and restart servers from a forkserver of their own;
        # in their own pytest process they cannot be disturbed by the threads and state the
        # rest of the suite leaves behind.
        (["pytest", *pytest_args, "elt_assets_tests/test_faults.py"], {}),
    ]
    pg15 = pg15_bin_dir()
    if pg15 is not None:
        on_15 = {"ELT_PG_BIN_DIR": str(pg15), "ELT_TEST_SERVER_MAJOR": "15"}
        steps.append((["pytest", *pytest_args, *PG15_TIER], on_15))
    else:
        print(
            "bootstrap: the PostgreSQL 15 tier is skipped: the pgserver wheel that carries 15 "
            "exists for CPython 3.11 on Linux x86_64 and macOS only",
            file=sys.stderr,
        )
    for step, extra in steps:
        code = _run_step(uv, step, env, extra)
        if code != 0:
            return code
    return 0


def _run_step(
    uv: Path, step: list[str], env: dict[str, str], extra: dict[str, str] | None = None
) -> int:
    """`step` in the foreground; `extra` settings are added to `env` and shown (never a URL)."""
    extra = extra or {}
    shown = " ".join(f"{k}={v}" for k, v in extra.items() if k.startswith("ELT_TEST"))
    print(f"\n==> {shown + ' ' if shown else ''}{' '.join(step)}", flush=True)
    command = [str(uv), "run", "--locked", "--no-sync", *step]
    code = subprocess.run(command, cwd=ROOT, env={**env, **extra}).returncode
    if code != 0:
        print(f"\nFAILED: {' '.join(step)} (exit {code})", file=sys.stderr)
    return code


def _start_step(
    uv: Path, step: list[str], env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """`step` in the background, its output kept in `log` (shown once it is done)."""
    command = [str(uv), "run", "--locked", "--no-sync", *step]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    return process, log


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        fail(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not argv or argv[0] not in {"dev", "test", "sync", "bench"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    uv = Path(shutil.which("uv") or "") if os.environ.get("ELT_USE_SYSTEM_UV") else bootstrap_uv()
    sync(uv, ("bench",) if command == "bench" else ())
    if command == "bench":  # the benchmark also needs the binary-COPY limit's driver (ADBC)
        os.environ["ELT_BENCH_PYTHON"] = str(sync_user_env(uv))
        os.chdir(ROOT)
        bench = [str(uv), "run", "--locked", "--no-sync", "python", "-m", "benchmarks.run"]
        os.execv(str(uv), [*bench, *rest])
    if command == "sync":
        return 0
    if command == "test":
        return run_tests(uv, rest)
    os.chdir(ROOT)
    os.execv(str(uv), [str(uv), "run", "--locked", "--no-sync", "elt", "dev", *rest])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
