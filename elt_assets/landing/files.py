"""Listing, resolving and fingerprinting files in the landing zone.

Paths never escape the landing root: a relative path with `..`, or a symlink that resolves outside
the root, is refused. Files that are obviously still being written (`.part`, `.tmp`, names starting
with a dot or `~`) are not listed; the sensor's stable-file rule covers the rest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from elt_assets.errors import TerminalError
from elt_assets.log import get_logger

log = get_logger(__name__)

IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".filepart", ".ready")
HASH_CHUNK_BYTES = 1 << 20


class LandingPathError(TerminalError, ValueError):
    """A path that is not a regular file inside the landing root."""


@dataclass(frozen=True)
class LandedFile:
    """A file as seen by one directory scan."""

    relative_path: str  # POSIX, relative to the landing root
    size_bytes: int
    mtime_ns: int
    etag: str | None = None  # an object's ETag (object storage); None for a local file


def is_in_progress(name: str) -> bool:
    return name.startswith((".", "~")) or name.lower().endswith(IN_PROGRESS_SUFFIXES)


def in_hidden_folder(folders: list[str]) -> bool:
    """Whether a file lies in a folder its writer keeps for itself: a dot folder (a writer's
    .staging/), or one whose name starts with _ as Spark and Hadoop name theirs (a job's
    _temporary/ holds task output that a failed job deletes; Delta Lake's _delta_log/ holds
    checkpoints, not rows)."""
    return any(folder.startswith((".", "_")) for folder in folders)


def resolve_inside(root: Path, relative_path: str, real_root: Path | None = None) -> Path:
    """The absolute path of `relative_path`, refusing anything that leaves `root`.
    `real_root`: root.resolve(), when the caller has it already (a zone resolves its root once:
    resolving it again took half of each call, and a small file's run makes several)."""
    pure = PurePosixPath(relative_path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise LandingPathError(
            f"{relative_path!r} is not a plain path inside the landing directory"
        )
    real_root = real_root or root.resolve()
    candidate = _resolved_below(real_root, pure.parts)
    if not candidate.is_relative_to(real_root):
        raise LandingPathError(
            f"{relative_path!r} resolves to {candidate}, outside the landing directory {real_root} "
            "(a symlink pointing out?); move the file into the landing directory"
        )
    return candidate


def _resolved_below(real_root: Path, parts: tuple[str, ...]) -> Path:
    """The real path of `parts` under a root already resolved: one lstat per part, not per part
    of the whole path (a file's every step took ~9 before); a symlink on the way resolves the
    whole path."""
    path = str(real_root)
    for part in parts:
        path = os.path.join(path, part)
        if os.path.islink(path):
            return Path(real_root, *parts).resolve()
    return Path(path)


def scan(root: Path, pattern: str) -> list[LandedFile]:
    """Regular files under `root` matching the glob `pattern`, sorted by path.

    Hot path of every sensor tick: each directory is resolved once (not each file), and a file
    is resolved on its own only when it is a symlink, so 100k files cost ~one lstat each.
    """
    real_root = str(root.resolve())
    prefix = real_root + os.sep
    real_dirs: dict[str, bool] = {}  # directory -> does it really lie inside the root?
    found: list[LandedFile] = []
    paths = {p: None for each in expand_braces(pattern) for p in Path(real_root).glob(each)}
    for path in paths:
        text = str(path)
        relative = text[len(prefix) :]
        directory, _, name = text.rpartition(os.sep)
        if is_in_progress(name) or in_hidden_folder(relative.split(os.sep)[:-1]):
            continue  # still being written, or inside a writer's own folder
        inside = real_dirs.get(directory)
        if inside is None:
            real_directory = os.path.realpath(directory)
            inside = real_dirs[directory] = real_directory == real_root or (
                real_directory.startswith(prefix)
            )
        if not inside:
            continue  # reached through a symlinked folder that points out of the landing zone
        try:
            info = os.lstat(text)
            if stat.S_ISLNK(info.st_mode):
                if not os.path.realpath(text).startswith(prefix):
                    continue  # a symlink out of the landing zone is never read
                info = os.stat(text)
        except OSError:
            continue  # vanished between listing and stat
        if not stat.S_ISREG(info.st_mode):
            continue
        relative = relative.replace(os.sep, "/")
        if not _is_utf8(relative):
            log.warning(
                "skipping %r: its name is not valid UTF-8; rename the file to load it",
                relative.encode("utf-8", "surrogateescape"),
            )
            continue
        found.append(LandedFile(relative, info.st_size, info.st_mtime_ns))
    found.sort(key=lambda f: f.relative_path)
    return found


def _is_utf8(name: str) -> bool:
    """False for names os.fsdecode could only represent with lone surrogates (raw bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def glob_matches(pattern: str, relative_path: str) -> bool:
    """Whether a POSIX `relative_path` matches the glob `pattern` as pathlib's glob would
    match it: `*`, `?` and `[...]` within one name, `**` for any number of folders, and
    `{a,b}` for either (expand_braces)."""
    parts = relative_path.split("/")
    return any(_match(each.strip("/").split("/"), parts) for each in expand_braces(pattern))


_BRACES = re.compile(r"\{([^{}]*,[^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """The patterns `{a,b}` stands for, as in a shell: `*.{csv,csv.gz}` is `*.csv` and
    `*.csv.gz` (pathlib's glob and fnmatch have no alternatives). Braces without a comma are
    literal."""
    found = _BRACES.search(pattern)
    if found is None:
        return [pattern]
    head, tail = pattern[: found.start()], pattern[found.end() :]
    expanded: list[str] = []
    for choice in found.group(1).split(","):
        for each in expand_braces(head + choice + tail):
            if each not in expanded:
                expanded.append(each)
    return expanded


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        # zero or more folders; a trailing `**` matches folders only, as in pathlib
        return any(_match(rest, parts[skip:]) for skip in range(len(parts) + 1)) if rest else False
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match(rest, parts[1:])
