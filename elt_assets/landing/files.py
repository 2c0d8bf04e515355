"""Listing, resolving and fingerprinting files in the landing zone.

Paths never escape the landing root: a relative path with `..`, or a symlink that resolves outside
the root, is refused. Files that are obviously still being written (`.part`, `.tmp`, names starting
with a dot or `~`) are not listed; the sensor's stable-file rule covers the rest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from elt_assets.log import get_logger

log = get_logger(__name__)

IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".filepart", ".ready")
HASH_CHUNK_BYTES = 1 << 20


class LandingPathError(ValueError):
    """A path that is not a regular file inside the landing root."""


@dataclass(frozen=True)
class LandedFile:
    """A file as seen by one directory scan."""

    relative_path: str  # POSIX, relative to the landing root
    size_bytes: int
    mtime_ns: int


def is_in_progress(name: str) -> bool:
    return name.startswith((".", "~")) or name.lower().endswith(IN_PROGRESS_SUFFIXES)


def resolve_inside(root: Path, relative_path: str) -> Path:
    """The absolute path of `relative_path`, refusing anything that leaves `root`."""
    pure = PurePosixPath(relative_path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise LandingPathError(
            f"{relative_path!r} is not a plain path inside the landing directory"
        )
    real_root = root.resolve()
    candidate = (real_root / pure).resolve()
    if not candidate.is_relative_to(real_root):
        raise LandingPathError(
            f"{relative_path!r} resolves to {candidate}, outside the landing directory {real_root} "
            "(a symlink pointing out?); move the file into the landing directory"
        )
    return candidate


def scan(root: Path, pattern: str) -> list[LandedFile]:
    """Regular files under `root` matching the glob `pattern`, sorted by path."""
    real_root = root.resolve()
    found: list[LandedFile] = []
    for path in real_root.glob(pattern):
        relative_parts = path.relative_to(real_root).parts
        if is_in_progress(path.name) or any(p.startswith(".") for p in relative_parts[:-1]):
            continue  # still being written, or inside a hidden folder (e.g. a writer's .staging/)
        try:
            real = path.resolve()
            if not real.is_relative_to(real_root):
                continue  # a symlink out of the landing zone is never read
            stat = real.stat()
        except OSError:
            continue  # vanished between listing and stat
        if not os.path.isfile(real):
            continue
        relative = path.relative_to(real_root).as_posix()
        if not _is_utf8(relative):
            log.warning(
                "skipping %r: its name is not valid UTF-8; rename the file to load it",
                relative.encode("utf-8", "surrogateescape"),
            )
            continue
        found.append(LandedFile(relative, stat.st_size, stat.st_mtime_ns))
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
