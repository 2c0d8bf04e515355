"""The sensor's decisions (landing/discovery.py) and the landing-zone file rules (landing/files.py).

Real files in a temporary landing directory; the sensor's memory is an in-memory dict updated the
way `save_decision` updates elt.landing_files, and "already loaded" contents are a small dict.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from elt_assets.landing.discovery import Decision, Known, discover
from elt_assets.landing.files import (
    LandingPathError,
    expand_braces,
    glob_matches,
    resolve_inside,
    scan,
)
from elt_assets.landing.zone import LocalDirectory

pytestmark = [pytest.mark.pure]

_clock = itertools.count(1_700_000_000_000_000_000, 1_000_000_000)


def put(root: Path, relative: str, data: bytes) -> Path:
    """Write a file and give it a fresh mtime (explicit, so two writes never share one)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    touch(path)
    return path


def touch(path: Path) -> None:
    stamp = next(_clock)
    os.utime(path, ns=(stamp, stamp))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Sensor:
    """Calls `discover` tick after tick, keeping its memory like elt.landing_files does."""

    def __init__(self, root: Path, pattern: str = "**/*", loaded: dict[str, str] | None = None):
        self.root = root
        self.pattern = pattern
        self.known: dict[str, Known] = {}
        self.loaded = loaded if loaded is not None else {}  # sha256 -> file already loaded
        self.asked: list[list[str]] = []

    def loaded_content(self, hashes: list[str]) -> dict[str, str]:
        self.asked.append(hashes)
        return {h: self.loaded[h] for h in hashes if h in self.loaded}

    def tick(self, **limits: Any) -> Decision:
        options: dict = {"max_requests": 50, **limits}
        decision = discover(
            LocalDirectory(self.root), self.pattern, self.known, self.loaded_content, **options
        )
        for seen in decision.observations:  # COALESCE semantics of landing_files_save.sql
            before = self.known.get(seen.file.relative_path)
            hashed = seen.sha256 is not None
            self.known[seen.file.relative_path] = Known(
                size_bytes=seen.file.size_bytes,
                mtime_ns=seen.file.mtime_ns,
                sha256=seen.sha256 if hashed else (before.sha256 if before else None),
                hashed_size_bytes=seen.file.size_bytes
                if hashed
                else (before.hashed_size_bytes if before else None),
                hashed_mtime_ns=seen.file.mtime_ns
                if hashed
                else (before.hashed_mtime_ns if before else None),
            )
        return decision


def requested(decision: Decision) -> list[tuple[str, str]]:
    return [(landed.relative_path, digest) for landed, digest in decision.requests]


def test_new_file_waits_one_tick_then_is_requested_with_its_sha256(tmp_path: Path) -> None:
    put(tmp_path, "orders/a.csv", b"id\n1\n")
    sensor = Sensor(tmp_path)
    first = sensor.tick()
    assert requested(first) == []
    assert (first.files_seen, len(first.waiting)) == (1, 1)
    second = sensor.tick()
    assert requested(second) == [("orders/a.csv", sha(b"id\n1\n"))]
    assert len(second.waiting) == 0
    assert second.bytes_hashed == len(b"id\n1\n")


def test_file_that_grows_between_ticks_waits_again(tmp_path: Path) -> None:
    path = put(tmp_path, "a.csv", b"id\n1\n")
    sensor = Sensor(tmp_path)
    sensor.tick()
    with path.open("ab") as handle:  # still being written
        handle.write(b"2\n")
    touch(path)
    growing = sensor.tick()
    assert requested(growing) == []
    assert len(growing.waiting) == 1
    assert requested(sensor.tick()) == [("a.csv", sha(b"id\n1\n2\n"))]


def written_ago(path: Path, seconds: float) -> None:
    """Set the file's mtime to `seconds` before now (negative: in the future, a skewed clock)."""
    stamp = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(stamp, stamp))


def test_a_file_nothing_wrote_to_for_the_quiet_period_is_taken_at_first_sight(
    tmp_path: Path,
) -> None:
    written_ago(put(tmp_path, "a.csv", b"id\n1\n"), 2.5)
    first = Sensor(tmp_path).tick(quiet_seconds=2)
    assert requested(first) == [("a.csv", sha(b"id\n1\n"))]
    assert first.waiting == []


def test_a_file_written_within_the_quiet_period_waits_until_it_is_quiet_or_held_still(
    tmp_path: Path,
) -> None:
    path = put(tmp_path, "a.csv", b"id\n1\n")
    written_ago(path, 0.5)
    sensor = Sensor(tmp_path)
    assert (requested(sensor.tick(quiet_seconds=2)), sensor.known["a.csv"].sha256) == ([], None)
    with path.open("ab") as handle:  # the writer goes on
        handle.write(b"2\n")
    written_ago(path, 0.1)
    assert requested(sensor.tick(quiet_seconds=2)) == []
    written_ago(path, 3)  # then nothing wrote to it for 3 s: taken, changed since the last look
    assert requested(sensor.tick(quiet_seconds=2)) == [("a.csv", sha(b"id\n1\n2\n"))]

    # A clock ahead of ours (a network share) gives a future mtime: never quiet by age, so the
    # file is taken once it held still from one tick to the next.
    later = put(tmp_path, "b.csv", b"id\n3\n")
    written_ago(later, -60)
    assert [f for f, _ in requested(sensor.tick(quiet_seconds=2))] == []
    assert requested(sensor.tick(quiet_seconds=2)) == [("b.csv", sha(b"id\n3\n"))]


def test_a_tick_waits_for_a_file_whose_quiet_period_ends_soon_and_takes_it(
    tmp_path: Path,
) -> None:
    """A file landed just before a tick is taken by that tick once its quiet period is over (the
    tick waits for it), not a sensor interval later; a file whose quiet period ends beyond the
    tick's wait is left for a later tick without any wait."""
    written_ago(put(tmp_path, "soon.csv", b"id\n1\n"), 0.3)
    sensor = Sensor(tmp_path)
    started = time.monotonic()
    first = sensor.tick(quiet_seconds=1, wait_seconds=5)
    waited = time.monotonic() - started
    assert requested(first) == [("soon.csv", sha(b"id\n1\n"))] and first.waiting == []
    assert 0.5 <= waited < 3, waited  # its quiet period's remaining 0.7 s, not the 5 s allowed

    written_ago(put(tmp_path, "later.csv", b"id\n2\n"), 0)
    started = time.monotonic()
    second = sensor.tick(quiet_seconds=60, wait_seconds=5)
    assert requested(second) == [] and second.waiting == ["later.csv"]
    assert time.monotonic() - started < 1  # 60 s to go: not waited for


def test_a_file_written_to_while_the_tick_waits_for_it_is_left_for_a_later_tick(
    tmp_path: Path,
) -> None:
    path = put(tmp_path, "growing.csv", b"id\n1\n")
    written_ago(path, 0.2)
    sensor = Sensor(tmp_path)

    def write_more() -> None:  # the writer goes on while the tick waits for the file
        time.sleep(0.3)
        with path.open("ab") as handle:
            handle.write(b"2\n")

    writer = threading.Thread(target=write_more)
    writer.start()
    try:
        decision = sensor.tick(quiet_seconds=1, wait_seconds=5)
    finally:
        writer.join()
    assert requested(decision) == [] and decision.waiting == ["growing.csv"]
    assert sensor.known["growing.csv"].sha256 is None  # never read while written to
    written_ago(path, 2)
    assert requested(sensor.tick(quiet_seconds=1)) == [("growing.csv", sha(b"id\n1\n2\n"))]


def test_unchanged_file_costs_nothing_on_later_ticks(tmp_path: Path) -> None:
    put(tmp_path, "a.csv", b"id\n1\n")
    sensor = Sensor(tmp_path)
    sensor.tick()
    sensor.tick()
    later = sensor.tick()
    assert requested(later) == [] and later.observations == []
    assert (later.files_seen, later.bytes_hashed, len(later.waiting)) == (1, 0, 0)


def test_touched_file_with_same_content_is_not_requested_again(tmp_path: Path) -> None:
    path = put(tmp_path, "a.csv", b"id\n1\n")
    sensor = Sensor(tmp_path)
    sensor.tick()
    assert len(sensor.tick().requests) == 1
    touch(path)  # new mtime, same bytes
    assert len(sensor.tick().waiting) == 1
    rehashed = sensor.tick()
    assert requested(rehashed) == [] and rehashed.duplicates == []
    assert rehashed.bytes_hashed == path.stat().st_size  # it was hashed, and found unchanged
    settled = sensor.tick()
    assert settled.observations == [] and settled.bytes_hashed == 0


def test_changed_content_at_the_same_path_is_requested_again(tmp_path: Path) -> None:
    sensor = Sensor(tmp_path)
    put(tmp_path, "a.csv", b"id\n1\n")
    sensor.tick()
    assert requested(sensor.tick()) == [("a.csv", sha(b"id\n1\n"))]
    put(tmp_path, "a.csv", b"id\n9\n")  # same size, other bytes
    assert requested(sensor.tick()) == []
    assert requested(sensor.tick()) == [("a.csv", sha(b"id\n9\n"))]


def test_content_loaded_from_another_path_is_a_duplicate_not_a_request(tmp_path: Path) -> None:
    data = b"id\n1\n"
    put(tmp_path, "copy/b.csv", data)
    sensor = Sensor(tmp_path, loaded={sha(data): "orig/a.csv"})
    sensor.tick()
    decision = sensor.tick()
    assert requested(decision) == []
    assert [(f.relative_path, h, o) for f, h, o in decision.duplicates] == [
        ("copy/b.csv", sha(data), "orig/a.csv")
    ]
    assert sensor.asked[-1] == [sha(data)]
    assert sensor.known["copy/b.csv"].sha256 == sha(data)  # remembered: never decided again
    assert sensor.tick().duplicates == []


def test_content_already_loaded_from_the_same_path_is_neither_request_nor_duplicate(
    tmp_path: Path,
) -> None:
    """The sensor's memory was lost but the manifest says this file was loaded: nothing to do."""
    data = b"id\n1\n"
    put(tmp_path, "a.csv", data)
    sensor = Sensor(tmp_path, loaded={sha(data): "a.csv"})
    sensor.tick()
    decision = sensor.tick()
    assert decision.requests == [] and decision.duplicates == []
    assert sensor.known["a.csv"].sha256 == sha(data)


def test_two_identical_new_files_in_one_tick_give_one_request_and_one_duplicate(
    tmp_path: Path,
) -> None:
    data = b"id\n1\n"
    put(tmp_path, "z_first.csv", data)  # older mtime: hashed first, so it is the original
    put(tmp_path, "a_second.csv", data)
    sensor = Sensor(tmp_path)
    sensor.tick()
    decision = sensor.tick()
    assert requested(decision) == [("z_first.csv", sha(data))]
    assert [(f.relative_path, o) for f, _, o in decision.duplicates] == [
        ("a_second.csv", "z_first.csv")
    ]


def test_max_requests_defers_the_rest_to_later_ticks_oldest_first(tmp_path: Path) -> None:
    names = [f"f{i}.csv" for i in range(5)]
    for i, name in enumerate(names):
        put(tmp_path, name, f"id\n{i}\n".encode())
    sensor = Sensor(tmp_path)
    sensor.tick(max_requests=2)
    ticks = [sensor.tick(max_requests=2) for _ in range(4)]
    assert [[p for p, _ in requested(t)] for t in ticks] == [
        ["f0.csv", "f1.csv"],
        ["f2.csv", "f3.csv"],
        ["f4.csv"],
        [],
    ]
    assert [t.deferred for t in ticks] == [3, 1, 0, 0]


def test_max_hash_bytes_defers_the_rest_but_always_hashes_one_file(tmp_path: Path) -> None:
    for i in range(3):
        put(tmp_path, f"f{i}.csv", bytes([65 + i]) * 100)
    sensor = Sensor(tmp_path)
    sensor.tick()
    first = sensor.tick(max_hash_bytes=150)  # 0 < 150: hash; 100 < 150: hash; 200: stop
    assert [p for p, _ in requested(first)] == ["f0.csv", "f1.csv"]
    assert (first.deferred, first.bytes_hashed) == (1, 200)
    tiny = sensor.tick(max_hash_bytes=10)  # a file larger than the budget still gets through
    assert [p for p, _ in requested(tiny)] == ["f2.csv"]
    assert tiny.deferred == 0


def test_a_spent_reading_time_defers_the_rest_but_always_hashes_one_file(tmp_path: Path) -> None:
    for i in range(3):
        put(tmp_path, f"f{i}.csv", bytes([65 + i]) * 100)
    sensor = Sensor(tmp_path)
    sensor.tick()
    # No time at all: each tick still reads one file, so a slow store is worked through.
    ticks = [sensor.tick(max_hash_seconds=0) for _ in range(4)]
    assert [[p for p, _ in requested(t)] for t in ticks] == [["f0.csv"], ["f1.csv"], ["f2.csv"], []]
    assert [t.deferred for t in ticks] == [2, 1, 0, 0]
    for i in range(3, 6):
        put(tmp_path, f"f{i}.csv", bytes([65 + i]) * 100)
    sensor.tick()
    plenty = sensor.tick(max_hash_seconds=60)
    assert [p for p, _ in requested(plenty)] == ["f3.csv", "f4.csv", "f5.csv"]
    assert plenty.deferred == 0


def test_in_progress_names_are_never_listed(tmp_path: Path) -> None:
    for name in (
        "a.csv.part",
        "b.csv.tmp",
        "c.CSV.PARTIAL",
        "d.csv.crdownload",
        ".hidden.csv",
        "~lock.csv",
        "sub/.e.csv",
        ".staging/f.csv",
        # Spark's task output before its job commits (a failed job deletes it), Delta Lake's log
        "orders/_temporary/0/_temporary/attempt_1/part-00000.csv",
        "sales/_delta_log/00000000000000000010.checkpoint.parquet",
    ):
        put(tmp_path, name, b"x")
    put(tmp_path, "real.csv", b"x")
    put(tmp_path, "orders/_part.csv", b"x")  # only a folder of the writer's own is passed over
    assert [f.relative_path for f in scan(tmp_path, "**/*")] == ["orders/_part.csv", "real.csv"]
    sensor = Sensor(tmp_path)
    assert sensor.tick().files_seen == 2


def test_symlinks_out_of_the_landing_root_are_never_listed(tmp_path: Path) -> None:
    root, outside = tmp_path / "landing", tmp_path / "outside"
    put(outside, "secret.csv", b"secret")
    put(root, "inside.csv", b"ok")
    (root / "escape.csv").symlink_to(outside / "secret.csv")
    (root / "escaped_dir").symlink_to(outside, target_is_directory=True)
    (root / "alias.csv").symlink_to(root / "inside.csv")  # inside the root: allowed
    listed = [f.relative_path for f in scan(root, "**/*")]
    assert listed == ["alias.csv", "inside.csv"]
    sensor = Sensor(root)
    assert sensor.tick().files_seen == 2
    decision = sensor.tick()  # the alias has the same bytes as inside.csv: one of them loads
    assert requested(decision) == [("alias.csv", sha(b"ok"))]
    assert [(f.relative_path, o) for f, _, o in decision.duplicates] == [
        ("inside.csv", "alias.csv")
    ]
    assert "escape.csv" not in sensor.known and "escaped_dir/secret.csv" not in sensor.known


def test_resolve_inside_refuses_paths_that_leave_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "landing", tmp_path / "outside"
    put(outside, "secret.csv", b"secret")
    put(root, "dir/ok.csv", b"ok")
    (root / "escape.csv").symlink_to(outside / "secret.csv")
    assert resolve_inside(root, "dir/ok.csv") == (root / "dir/ok.csv").resolve()
    for bad in ("../outside/secret.csv", "dir/../../outside/secret.csv", "/etc/passwd", ""):
        with pytest.raises(LandingPathError, match="not a plain path inside"):
            resolve_inside(root, bad)
    with pytest.raises(LandingPathError, match="outside the landing directory") as error:
        resolve_inside(root, "escape.csv")
    assert str((outside / "secret.csv").resolve()) in str(error.value)


def test_double_star_glob_finds_nested_folders_only_under_its_prefix(tmp_path: Path) -> None:
    for name in (
        "events/top.csv",
        "events/2026/11/21/deep.csv",
        "events/2026/notes.txt",
        "other/2026/x.csv",
    ):
        put(tmp_path, name, name.encode())
    assert [f.relative_path for f in scan(tmp_path, "events/**/*.csv")] == [
        "events/2026/11/21/deep.csv",
        "events/top.csv",
    ]
    sensor = Sensor(tmp_path, pattern="events/**/*.csv")
    sensor.tick()
    assert sorted(p for p, _ in requested(sensor.tick())) == [
        "events/2026/11/21/deep.csv",
        "events/top.csv",
    ]


def test_assume_stable_takes_new_files_at_once(tmp_path: Path) -> None:
    put(tmp_path, "a.csv", b"id\n1\n")
    sensor = Sensor(tmp_path)
    decision = sensor.tick(assume_stable=True)
    assert requested(decision) == [("a.csv", sha(b"id\n1\n"))]
    assert len(decision.waiting) == 0
    assert requested(sensor.tick(assume_stable=True)) == []


def test_a_file_another_process_is_loading_is_left_and_looked_at_again(tmp_path: Path) -> None:
    put(tmp_path, "a.csv", b"id\n1\n")
    put(tmp_path, "b.csv", b"id\n2\n")
    sensor = Sensor(tmp_path)
    held = sensor.tick(assume_stable=True, busy=lambda files: {"a.csv"} & set(files))
    assert requested(held) == [("b.csv", sha(b"id\n2\n"))]
    assert held.busy == ["a.csv"]
    # Not remembered as hashed: once its lease is free, the next tick takes it.
    assert requested(sensor.tick(assume_stable=True)) == [("a.csv", sha(b"id\n1\n"))]


def test_braces_in_a_glob_take_either_alternative_on_a_directory_and_in_a_bucket(
    tmp_path: Path,
) -> None:
    for name in ("o/a.csv", "o/b.csv.gz", "o/c.csv.bz2", "o/d.parquet", "o/{x}.csv"):
        put(tmp_path, name, name.encode())
    pattern = "o/*.{csv,csv.gz}"
    assert [f.relative_path for f in scan(tmp_path, pattern)] == [
        "o/a.csv",
        "o/b.csv.gz",
        "o/{x}.csv",
    ]
    # The matcher the bucket listing uses says the same of each key.
    keys = ["o/a.csv", "o/b.csv.gz", "o/c.csv.bz2", "o/d.parquet", "o/{x}.csv", "p/a.csv"]
    assert [k for k in keys if glob_matches(pattern, k)] == ["o/a.csv", "o/b.csv.gz", "o/{x}.csv"]
    assert expand_braces("{a,b}/*.{csv,parquet}") == [
        "a/*.csv",
        "a/*.parquet",
        "b/*.csv",
        "b/*.parquet",
    ]
    assert expand_braces("o/{x}.csv") == ["o/{x}.csv"]  # no comma: literal braces
