"""The benchmark runs end to end on tiny files, and refuses to report a speed for a wrong table.

`make bench` measures; this only keeps the benchmark working: every scenario (the bucket's
included, on moto's S3 server), our path against the hand-written limit (text COPY here: the
binary limit needs the `bench` dependency group), and the check that our table equals the
limit's, row for row.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import dlt_available, same_table
from elt_assets_tests.conftest import Warehouse

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow]


def test_the_benchmark_runs_every_scenario_and_checks_our_table_against_the_limit(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    if os.environ.get("ELT_PG_BIN_DIR"):
        env["ELT_PG_BIN_DIR"] = os.environ["ELT_PG_BIN_DIR"]
    arguments = ["--rows", "2000", "--formats", "csv,parquet", "--small-files", "3"]
    arguments += ["--small-rows", "10", "--tick-files", "50", "--state", str(tmp_path)]
    # One partition count and one file landed alone: the same code as more of them (make
    # test's budget); two rounds, for the medians and the ratios by round.
    arguments += ["--dev-alone", "1", "--rounds", "2", "--partition-counts", "20"]
    # Every scenario but `workers`, whose deployment harness (benchmarks/cluster.py) the
    # many-machines tests run: make test's budget.
    arguments += ["--scenarios", "big,bucket,small,tick,partitions,dev"]
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = (tmp_path / "results.md").read_text()
    loads = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in report.splitlines()
        if line.startswith(("| initial", "| delta"))
    ]
    in_process = [cells for cells in loads if len(cells) == 13]
    assert len(in_process) == 4, report
    for cells in in_process:
        assert cells[4].endswith(" s") and cells[6].endswith(" s"), cells  # limit and ours timed
        assert cells[10].endswith(" MB"), cells
        assert cells[11].endswith(" s") and cells[12].endswith(" MB"), cells  # from the bucket
    as_users = [cells for cells in loads if len(cells) == 11]  # `elt ingest` in its own process
    assert [cells[:2] for cells in as_users] == [cells[:2] for cells in in_process], report
    for cells in as_users:
        assert cells[2].endswith(" s") and cells[5].endswith(" s"), cells  # limit, elt ingest
        for dlt, versus in ((3, 6), (4, 7)):  # dlt as its docs advise, and with a key
            if dlt_available():  # dlt beside us: with the `bench` dependency group
                assert cells[dlt].endswith(" s") and cells[versus].startswith("**"), cells
            else:
                assert cells[dlt] == "-" and cells[versus] == "-", cells
        assert cells[10].endswith(" MB"), cells
    if dlt_available():  # each round's ratio beside the medians' (2 rounds, 2 formats, 2 loads)
        pattern = r"^- (initial|delta) load, (csv|parquet): [0-9.]+, [0-9.]+ \(dlt, key: "
        by_round = re.findall(pattern, report, re.M)
        assert len(by_round) == 4, report
    assert "equals the limit's, every row and column: csv (2,200 rows), parquet (2,200 rows)" in (
        report
    )
    assert "**3 small files**" in report and "all loaded" in report, report
    assert "tables identical: 30 rows" in report, report  # elt ingest beside the loop
    assert "each time the median of 2 rounds" in report, report
    assert "| 3 x 10 | " in report, report
    assert "| nothing new |" in report, report
    assert "**Sensor ticks over 150 objects in a bucket**" in report, report
    assert "| 100 new objects (requested as soon as listed) | 1 |" in report, report
    assert "| one at a time | 1 | - | - |" in report, report  # `elt dev`, a file landed alone
    assert "| all at once | 3 |" in report, report
    # partitions: added, materialised, ticked over, queried through the UI's API, backfilled
    assert "| 20 | 20 | " in report, report


def test_a_table_that_differs_from_the_limit_stops_the_benchmark(warehouse: Warehouse) -> None:
    warehouse.query("CREATE TABLE ours_t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v")
    warehouse.query("CREATE TABLE limit_t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v")
    columns = ("column1", "column2")
    assert same_table(warehouse.superuser_url, "ours_t", "limit_t", columns) == 2
    warehouse.query("UPDATE ours_t SET column2 = 'B' WHERE column1 = 2")
    with pytest.raises(SystemExit, match="1 of the limit's rows missing, 1 extra"):
        same_table(warehouse.superuser_url, "ours_t", "limit_t", columns)
    warehouse.query("UPDATE ours_t SET column2 = 'b' WHERE column1 = 2")
    warehouse.query("INSERT INTO ours_t VALUES (2, 'b')")  # a repeated row is a difference too
    with pytest.raises(SystemExit, match="rows 3 and 2, 0 of the limit's rows missing, 1 extra"):
        same_table(warehouse.superuser_url, "ours_t", "limit_t", columns)
