"""What the file sensor decides on each tick, as a plain function.

For each file matching a dataset's glob:
- seen before with the same size and mtime (and ETag, for an object) and already hashed: nothing
  to do (this is the path of almost every file on almost every tick, and costs one stat);
- new, or changed since the last tick: taken once nothing has written to it for the quiet period
  (its mtime is that old), or on a later tick if its size and mtime have not moved; until then
  remembered (the stable-file rule: a file still being written is never read). A file whose
  quiet period ends within a few seconds is waited for in the tick itself and looked at again,
  instead of waiting for the next tick;
- stable and not hashed yet: hashed (bounded per tick). Content already loaded for this dataset
  from another path is a duplicate, recorded and not loaded; content already sent from this path
  (a touched file) is ignored; anything else becomes a run request.
Files over the per-tick caps (runs, bytes and seconds of hashing) wait for the next tick, so no
tick runs long: hashing an object in a bucket costs one or two requests, and a tick that read
thousands of them would outlast Dagster's sensor timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from elt_assets.landing.files import LandedFile, LandingPathError
from elt_assets.landing.zone import Landing

MAX_HASH_SECONDS = 20.0  # a tick's reading budget (Dagster gives a sensor 60 s by default)


@dataclass(frozen=True)
class Known:
    """The sensor's memory of one file (a row of elt.landing_files)."""

    size_bytes: int
    mtime_ns: int
    sha256: str | None = None
    hashed_size_bytes: int | None = None
    hashed_mtime_ns: int | None = None
    hashed_etag: str | None = None  # an object's ETag when it was hashed (None for a file)


@dataclass(frozen=True)
class Observation:
    """A row to write back to elt.landing_files."""

    file: LandedFile
    sha256: str | None = None
    requested: bool = False


@dataclass
class Decision:
    requests: list[tuple[LandedFile, str]] = field(default_factory=list)
    duplicates: list[tuple[LandedFile, str, str]] = field(default_factory=list)  # + original
    observations: list[Observation] = field(default_factory=list)
    files_seen: int = 0
    waiting: list[str] = field(default_factory=list)  # new or changed: taken once stable
    deferred: int = 0
    busy: list[str] = field(default_factory=list)  # another process is loading them now
    bytes_hashed: int = 0


def discover(
    landing: Landing,
    pattern: str,
    known: Mapping[str, Known],
    loaded_content: Callable[[list[str]], dict[str, str]],
    *,
    max_requests: int,
    max_hash_bytes: int = 4 << 30,
    max_hash_seconds: float | None = None,
    assume_stable: bool = False,
    quiet_seconds: float | None = None,
    wait_seconds: float = 0.0,
    busy: Callable[[list[str]], set[str]] = lambda files: set(),
    listed: list[LandedFile] | None = None,
) -> Decision:
    """Decide this tick's run requests for one dataset.

    `loaded_content(hashes)` returns {sha256: file} for contents this dataset already loaded.
    `busy(files)` returns those another process is loading right now (it holds their lease):
    they are not requested, and are looked at again next tick, hashed anew.
    `assume_stable` skips the stable-file rule (`elt ingest`: files are complete when it runs).
    `quiet_seconds`: a file whose mtime is at least this old is stable at first sight too
    (None: only a file that held still since the last tick is).
    `wait_seconds`: with `quiet_seconds`, how long this tick may wait for files whose quiet
    period ends by then; those that nothing wrote to meanwhile are taken in this tick.
    `listed`: this tick's share of a large zone (default: the whole zone, scanned here).
    """
    decision = Decision()
    stable: list[LandedFile] = []
    unsettled: list[LandedFile] = []  # new or changed, not quiet yet
    quiet_since = None if quiet_seconds is None else time.time_ns() - int(quiet_seconds * 1e9)
    for landed in landing.scan(pattern) if listed is None else listed:
        decision.files_seen += 1
        memory = known.get(landed.relative_path)
        if (
            memory is not None
            and memory.sha256 is not None
            and memory.hashed_size_bytes == landed.size_bytes
            and memory.hashed_mtime_ns == landed.mtime_ns
            and memory.hashed_etag == landed.etag
        ):
            continue
        if (
            assume_stable
            or (quiet_since is not None and landed.mtime_ns <= quiet_since)
            or (
                memory is not None
                and memory.size_bytes == landed.size_bytes
                and memory.mtime_ns == landed.mtime_ns
            )
        ):
            stable.append(landed)
        else:
            unsettled.append(landed)
    if quiet_seconds is not None and wait_seconds > 0 and unsettled:
        settled = _wait_until_quiet(landing, unsettled, quiet_seconds, wait_seconds)
        stable += settled
        now_stable = {landed.relative_path for landed in settled}
        unsettled = [landed for landed in unsettled if landed.relative_path not in now_stable]
    for landed in unsettled:
        decision.observations.append(Observation(landed))
        decision.waiting.append(landed.relative_path)
    deadline = None if max_hash_seconds is None else time.monotonic() + max_hash_seconds
    budget = _Budget(max_requests, max_hash_bytes, deadline)
    hashed = _hash_stable(landing, stable, known, decision, budget)
    taken = busy([landed.relative_path for landed, _ in hashed]) if hashed else set()
    for landed, _ in hashed:
        if landed.relative_path in taken:
            decision.busy.append(landed.relative_path)
            decision.observations.append(Observation(landed))  # no hash: seen again next tick
    hashed = [(landed, sha) for landed, sha in hashed if landed.relative_path not in taken]
    already = loaded_content(sorted({sha for _, sha in hashed})) if hashed else {}
    sent_this_tick: dict[str, str] = {}
    for landed, sha in hashed:
        original = already.get(sha) or sent_this_tick.get(sha)
        if original == landed.relative_path:
            decision.observations.append(Observation(landed, sha))  # loaded before: nothing new
        elif original is not None:
            decision.duplicates.append((landed, sha, original))
            decision.observations.append(Observation(landed, sha))
        else:
            decision.requests.append((landed, sha))
            decision.observations.append(Observation(landed, sha, requested=True))
            sent_this_tick[sha] = landed.relative_path
    return decision


# Margin past a file's quiet instant before it is looked at again (timers wake a little early
# or late; a file's mtime is exact).
_QUIET_MARGIN_SECONDS = 0.05


def _wait_until_quiet(
    landing: Landing, unsettled: list[LandedFile], quiet_seconds: float, wait_seconds: float
) -> list[LandedFile]:
    """Wait (at most `wait_seconds`) until the files whose quiet period ends by then are quiet,
    then look at them again: those with the same size and mtime are stable, as they are now.

    A file landed just before a tick would otherwise wait a whole sensor interval for the next
    one; this way it waits only out its quiet period (under `elt dev`, up to 5 s less latency).
    A file written to during the wait stays unsettled, for the next tick."""
    quiet_ns = int(quiet_seconds * 1e9)
    now = time.time_ns()
    soon = [f for f in unsettled if f.mtime_ns + quiet_ns - now <= wait_seconds * 1e9]
    if not soon:
        return []
    until = max(f.mtime_ns for f in soon) + quiet_ns
    time.sleep(max(0.0, (until - time.time_ns()) / 1e9) + _QUIET_MARGIN_SECONDS)
    quiet_since = time.time_ns() - quiet_ns
    settled = []
    for landed in soon:
        try:
            again = landing.stat(landed.relative_path)
        except (OSError, LandingPathError):
            continue  # vanished or moved out: the next scan decides
        if again == landed and again.mtime_ns <= quiet_since:
            settled.append(again)
    return settled


@dataclass(frozen=True)
class _Budget:
    """What one tick may spend on hashing: requests, bytes read, and a deadline."""

    requests: int
    bytes: int
    deadline: float | None  # time.monotonic(); None: no limit

    def spent(self, hashed: int, bytes_read: int, reads: int) -> bool:
        """Whether to stop; never before the first read, so every tick makes progress."""
        return (
            hashed >= self.requests
            or bytes_read >= self.bytes
            or (reads > 0 and self.deadline is not None and time.monotonic() >= self.deadline)
        )


def _hash_stable(
    landing: Landing,
    stable: list[LandedFile],
    known: Mapping[str, Known],
    decision: Decision,
    budget: _Budget,
) -> list[tuple[LandedFile, str]]:
    """Hash stable files, oldest first, within this tick's budget."""
    hashed: list[tuple[LandedFile, str]] = []
    reads = 0
    for landed in sorted(stable, key=lambda f: (f.mtime_ns, f.relative_path)):
        if budget.spent(len(hashed), decision.bytes_hashed, reads):
            decision.deferred += 1
            continue
        reads += 1
        try:
            sha = landing.sha256(landed.relative_path)
        except (OSError, LandingPathError):
            continue  # vanished or moved out: the next scan decides
        decision.bytes_hashed += landed.size_bytes
        memory = known.get(landed.relative_path)
        if memory is not None and memory.sha256 == sha:
            decision.observations.append(Observation(landed, sha))  # touched, same content
            continue
        hashed.append((landed, sha))
    return hashed
