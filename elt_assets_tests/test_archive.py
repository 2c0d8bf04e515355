"""Archive-after-success (ELT_ARCHIVE_DIR), with the real job, sensor and `elt ingest` code.

Off by default: a landing file is never moved or changed. On: a file whose load committed is
renamed to the same relative path under the archive; failed and quarantine-only files stay; a
taken name keeps both files; a move that fails after the commit leaves a successful run with the
reason in its metadata; a bad archive setting stops everything before any work.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from elt_assets.cli.ingest import run_ingest
from elt_assets.landing.archive import NotArchived, archive_file
from elt_assets.landing.keys import path_to_key
from elt_assets.orchestration.batch import batch_run_config
from elt_assets.orchestration.resources import build_resources
from elt_assets.settings import SettingError, Settings
from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import (
    QUIET,
    definitions,
    materialization_metadata,
    run_file,
    step_failure,
)

pytestmark = [pytest.mark.db, pytest.mark.dagster]

CONTRACT = """
    name: items
    source: {glob: "items/**/*.csv"}
    target: {schema: shop, table: items, primary_key: [id]}
    columns:
      - {name: id, type: bigint}
      - {name: label, type: text}
"""
GOOD = b"id,label\n1,one\n2,two\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def land(landing: Path, relative: str, data: bytes) -> Path:
    path = landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    monkeypatch.setenv("ELT_ARCHIVE_DIR", str(root))
    return root


@pytest.fixture
def items(warehouse: Warehouse, landing: Path, contracts_dir: Path) -> Path:
    write_contract(contracts_dir, CONTRACT)
    return contracts_dir


def manifest(warehouse: Warehouse) -> list[tuple[str, str]]:
    return warehouse.query("SELECT file, status FROM elt.ingestion_manifest ORDER BY file")


def test_without_the_setting_a_loaded_file_stays_untouched(
    items: Path, landing: Path, warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    path = land(landing, "items/a.csv", GOOD)
    before = path.stat()
    result = run_file(items, "items", "items/a.csv", instance)
    assert result.success, step_failure(result)
    assert path.read_bytes() == GOOD
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    metadata = materialization_metadata(result, "shop/items")
    assert "archived_to" not in metadata and "not_archived" not in metadata


def test_loaded_file_moves_to_the_same_relative_path_in_the_archive(
    items: Path, landing: Path, archive: Path, warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    path = land(landing, "items/2026/11/a.csv", GOOD)
    inode = path.stat().st_ino
    result = run_file(items, "items", "items/2026/11/a.csv", instance)
    assert result.success, step_failure(result)
    assert not path.exists()
    moved = archive / "items/2026/11/a.csv"
    assert moved.read_bytes() == GOOD
    assert moved.stat().st_ino == inode  # renamed, not copied
    assert materialization_metadata(result, "shop/items")["archived_to"] == str(moved)
    assert warehouse.query("SELECT id, label FROM shop.items ORDER BY id") == [
        (1, "one"),
        (2, "two"),
    ]
    assert manifest(warehouse) == [("items/2026/11/a.csv", "success")]


def test_failed_file_is_never_moved(
    items: Path, landing: Path, archive: Path, warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    ragged = b'id,label\n1,one\n2,"two\n'  # a quote never closed: unreadable
    path = land(landing, "items/bad.csv", ragged)
    result = run_file(items, "items", "items/bad.csv", instance)
    assert not result.success
    assert "items/bad.csv, line 3" in step_failure(result)
    assert path.read_bytes() == ragged
    assert files_under(archive) == {}
    assert manifest(warehouse) == [("items/bad.csv", "failed")]


def test_file_whose_every_row_was_quarantined_stays(
    warehouse: Warehouse,
    landing: Path,
    contracts_dir: Path,
    archive: Path,
    instance: dg.DagsterInstance,
) -> None:
    write_contract(contracts_dir, CONTRACT + "    policy: {max_bad_row_ratio: 1.0}\n")
    data = b"id,label\nnot-a-number,x\nalso-bad,y\n"
    path = land(landing, "items/all-bad.csv", data)
    result = run_file(contracts_dir, "items", "items/all-bad.csv", instance)
    assert result.success, step_failure(result)  # the policy accepts it: loaded, zero rows
    assert path.read_bytes() == data
    assert files_under(archive) == {}
    reason = materialization_metadata(result, "shop/items")["not_archived"]
    assert "every row of it (2) is in elt.quarantine" in reason
    assert warehouse.value("SELECT count(*) FROM shop.items") == 0


def test_a_name_taken_in_the_archive_keeps_both_files(
    items: Path, landing: Path, archive: Path, warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    older = b"id,label\n9,older\n"
    land(archive, "items/a.csv", older)
    land(landing, "items/a.csv", GOOD)
    result = run_file(items, "items", "items/a.csv", instance)
    assert result.success, step_failure(result)
    suffixed = f"items/a.{sha(GOOD)[:12]}.csv"
    assert files_under(archive) == {"items/a.csv": older, suffixed: GOOD}
    assert materialization_metadata(result, "shop/items")["archived_to"] == str(archive / suffixed)
    assert not (landing / "items/a.csv").exists()


def test_a_move_that_fails_after_the_commit_leaves_a_loaded_file_and_a_successful_run(
    items: Path,
    landing: Path,
    archive: Path,
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (archive / "items").write_text("a file where the archive needs a folder")
    path = land(landing, "items/a.csv", GOOD)
    with caplog.at_level(logging.WARNING, logger="elt_assets"):
        result = run_file(items, "items", "items/a.csv", instance)
    assert result.success, step_failure(result)
    assert manifest(warehouse) == [("items/a.csv", "success")]
    assert warehouse.value("SELECT count(*) FROM shop.items") == 2
    assert path.read_bytes() == GOOD  # still there, unchanged
    reason = materialization_metadata(result, "shop/items")["not_archived"]
    assert reason.startswith(f"could not move items/a.csv into ELT_ARCHIVE_DIR ({archive}): ")
    assert "File exists" in reason and "stays in the landing directory" in reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"items/a.csv is loaded but was not archived: {reason}" in warnings


def test_archive_inside_the_landing_directory_refuses_the_run_before_any_work(
    items: Path,
    landing: Path,
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside = landing / "archive"
    inside.mkdir()
    monkeypatch.setenv("ELT_ARCHIVE_DIR", str(inside))
    path = land(landing, "items/a.csv", GOOD)
    result = run_file(items, "items", "items/a.csv", instance)
    assert not result.success
    message = step_failure(result)
    assert f"ELT_ARCHIVE_DIR ({inside}) is inside ELT_LANDING_DIR ({landing})" in message
    assert manifest(warehouse) == []  # the raw step refused before opening the manifest row
    assert path.read_bytes() == GOOD


def _other_filesystem(than: Path) -> Path | None:
    device = os.stat(than).st_dev
    for candidate in (Path("/dev/shm"), Path("/run/user") / str(os.getuid()), Path("/run")):
        usable = candidate.is_dir() and os.access(candidate, os.W_OK)
        if usable and os.stat(candidate).st_dev != device:
            return candidate
    return None


def test_archive_on_another_filesystem_is_refused_naming_the_setting(tmp_path: Path) -> None:
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no writable directory on another filesystem on this machine")
    landing = tmp_path / "landing"
    landing.mkdir()
    archive = Path(os.path.realpath(other)) / f"elt-archive-{os.getpid()}"
    archive.mkdir(exist_ok=True)
    try:
        env = {"ELT_LANDING_DIR": str(landing), "ELT_ARCHIVE_DIR": str(archive)}
        settings = Settings.from_env({**env, "ELT_CONTRACTS_DIR": str(tmp_path)})
        with pytest.raises(SettingError) as caught:
            settings.require_landing_dir()
    finally:
        archive.rmdir()
    assert str(caught.value).startswith(
        f"ELT_ARCHIVE_DIR ({archive}) is on another filesystem than ELT_LANDING_DIR ({landing})"
    )


def test_missing_archive_directory_is_refused_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "no-archive"
    env = {
        "ELT_LANDING_DIR": str(tmp_path),
        "ELT_CONTRACTS_DIR": str(tmp_path),
        "ELT_ARCHIVE_DIR": str(missing),
    }
    with pytest.raises(SettingError, match=rf"^ELT_ARCHIVE_DIR points to {missing}, which is not"):
        Settings.from_env(env).require_landing_dir()
    assert Settings.from_env({**env, "ELT_ARCHIVE_DIR": " "}).archive_dir is None


def test_a_file_that_changed_after_its_load_or_is_a_symlink_stays(tmp_path: Path) -> None:
    landing, archive = tmp_path / "landing", tmp_path / "archive"
    archive.mkdir()
    path = land(landing, "items/a.csv", b"id,label\n1,new content\n")
    with pytest.raises(NotArchived, match=r"^items/a\.csv changed after it was loaded"):
        archive_file(landing, archive, "items/a.csv", sha(GOOD))  # GOOD was what loaded
    (landing / "items/link.csv").symlink_to(path)
    with pytest.raises(NotArchived, match=r"^items/link\.csv is a symbolic link"):
        archive_file(landing, archive, "items/link.csv", sha(path.read_bytes()))
    assert files_under(archive) == {} and path.exists()


def test_the_same_name_archived_three_times_keeps_all_three(tmp_path: Path) -> None:
    landing, archive = tmp_path / "landing", tmp_path / "archive"
    archive.mkdir()
    for _ in range(3):
        land(landing, "items/a.csv.gz", GOOD)
        archive_file(landing, archive, "items/a.csv.gz", sha(GOOD))
    prefix = sha(GOOD)[:12]
    assert set(files_under(archive)) == {
        "items/a.csv.gz",
        f"items/a.{prefix}.csv.gz",
        f"items/a.{prefix}-2.csv.gz",
    }


def test_sensor_takes_an_archived_file_as_done_and_a_new_file_of_that_name_as_new(
    items: Path, landing: Path, archive: Path, warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    sensor = definitions(items).resolve_sensor_def("items_files")

    def tick() -> dg.SensorResult:
        resources = build_resources(Settings.from_env())
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    land(landing, "items/a.csv", GOOD)
    tick()
    (request,) = tick().run_requests or []
    assert request.run_key == f"items/a.csv@{sha(GOOD)}"
    result = run_file(items, "items", "items/a.csv", instance)
    assert result.success, step_failure(result)
    assert (archive / "items/a.csv").exists()
    for _ in range(2):  # the file is gone from the landing zone: nothing to do, nothing broken
        quiet = tick()
        assert quiet.run_requests == []
    assert manifest(warehouse) == [("items/a.csv", "success")]

    newer = b"id,label\n1,one\n2,two updated\n"
    land(landing, "items/a.csv", newer)
    tick()
    (again,) = tick().run_requests or []
    assert again.run_key == f"items/a.csv@{sha(newer)}"


def test_batch_run_archives_the_files_it_loaded_and_keeps_the_one_that_failed(
    items: Path, landing: Path, archive: Path, warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    land(landing, "items/good.csv", GOOD)
    land(landing, "items/bad.csv", b"id,label\n3,x,extra\n")
    keys = [path_to_key("items/good.csv"), path_to_key("items/bad.csv")]
    job = definitions(items).resolve_job_def("ingest_items_batch")
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={**QUIET, **batch_run_config("items", keys)},
    )
    assert not result.success  # one file failed, the other loaded
    assert files_under(archive) == {"items/good.csv": GOOD}
    assert files_under(landing) == {"items/bad.csv": b"id,label\n3,x,extra\n"}
    assert manifest(warehouse) == [("items/bad.csv", "failed"), ("items/good.csv", "success")]


def test_elt_ingest_still_reports_the_files_it_archived(
    items: Path, landing: Path, archive: Path, warehouse: Warehouse
) -> None:
    land(landing, "items/a.csv", GOOD)
    outcome = run_ingest(Settings.from_env(), None, dry_run=False)
    assert [(f["file"], f["status"], f["rows_inserted"]) for f in outcome.files] == [
        ("items/a.csv", "success", 2)
    ]
    assert outcome.exit_code == 0
    assert files_under(archive) == {"items/a.csv": GOOD}
