#!/usr/bin/env python3
"""Take the README's UI screenshot from a real run of the platform, with headless Chromium.

    .venv/bin/python scripts/screenshot.py [--out docs/ui.png] [--page PATH] [--bad-file]

Starts `elt dev` on private ports with a throwaway state directory, waits until the sample files
are loaded, opens the page in Debian's `chromium` (apt install chromium) and stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_FILES = 5
# Line 3 has nine fields under an eight-column header.
UNREADABLE = (  # line 3 opens a quote that is never closed
    "order_id,customer_id,status,amount,currency,ordered_at,note,updated_at\n"
    "1,2,new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n"
    '2,2,"new,1.00,EUR,2026-11-22 08:00:00,N/A,2026-11-22T09:00:00+01:00\n'
)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(2)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/ui.png", help="first page's file; others get -2, -3")
    parser.add_argument("--page", action="append", help="UI path (repeatable)")
    parser.add_argument(
        "--bad-file",
        action="store_true",
        help="land an orders file with an unreadable line beside the samples (the failure case)",
    )
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian: apt install chromium)")
    state = Path(tempfile.mkdtemp(prefix="elt-screenshot-"))
    landing = ROOT / "examples" / "landing"
    if args.bad_file:  # a copy: the samples stay as they are
        landing = state / "landing"
        shutil.copytree(ROOT / "examples" / "landing", landing)
        (landing / "orders" / "orders_2026-11-22.csv").write_text(UNREADABLE)
    ui_port, pg_port = free_port(), free_port()
    env = {
        **os.environ,
        "ELT_STATE_DIR": str(state),
        "ELT_EMBEDDED_PG_PORT": str(pg_port),
        "ELT_SENSOR_INTERVAL_SECONDS": "3",
        "ELT_LANDING_DIR": str(landing),
        "ELT_CONTRACTS_DIR": str(ROOT / "examples" / "contracts"),
    }
    for name in ("ELT_DATABASE_URL", "ELT_OWNER_DATABASE_URL", "ELT_DAGSTER_DATABASE_URL"):
        env.pop(name, None)
    elt = Path(sys.executable).parent / "elt"
    dev = subprocess.Popen(
        [str(elt), "dev", "--port", str(ui_port)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{ui_port}"
        wait_for("the UI", lambda: urllib.request.urlopen(url, timeout=5).status == 200, 240)

        def loaded() -> bool:
            password = (state / "postgres" / "secrets" / "elt_owner").read_text().strip()
            with psycopg.connect(
                host="127.0.0.1",
                port=pg_port,
                user="elt_owner",
                password=password,
                dbname="warehouse",
            ) as connection:
                row = connection.execute(
                    "SELECT count(*) FILTER (WHERE status = 'success'),"
                    " count(*) FILTER (WHERE status = 'failed') FROM elt.ingestion_manifest"
                ).fetchone()
            return bool(row and row[0] >= SAMPLE_FILES and row[1] >= int(args.bad_file))

        wait_for("the sample files to load", loaded, 300)
        for index, page in enumerate(args.page or ["/asset-groups"]):
            out = (ROOT / args.out).resolve()
            if index:
                out = out.with_name(f"{out.stem}-{index + 1}{out.suffix}")
            shoot(chromium, state, f"{url}{page}", out)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            dev.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(dev.pid, signal.SIGKILL)
        shutil.rmtree(state, ignore_errors=True)
    return 0


def shoot(chromium: str, state: Path, url: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={state / 'chromium'}",
            "--window-size=1600,1000",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        timeout=180,
        capture_output=True,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
