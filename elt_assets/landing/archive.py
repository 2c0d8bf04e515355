"""Archive-after-success (ELT_ARCHIVE_DIR): a loaded file leaves the landing zone, atomically.

Off by default: landing files are never modified or removed. With ELT_ARCHIVE_DIR set, the target
step moves a file once its load has committed with `success`, with one `os.rename` to the same
relative path under the archive (same filesystem, checked at start: `check_archive_dir`). The
file is moved only if it still holds the content that was loaded (a file replaced during the run
stays, and its new content is loaded by the next tick). A name already taken in the archive keeps
both files: the newcomer gets the first 12 hex digits of its sha256 before its extension
(`a.csv` -> `a.3f2c9e0b1d4a.csv`). A file whose every row went to quarantine is not moved: it
stays for a corrected copy or a retry. Anything that stops the move is reported, never raised: the
load has already committed.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from elt_assets.errors import TerminalError
from elt_assets.landing.files import LandingPathError, resolve_inside, sha256_of

SUFFIX_DIGITS = 12
_DOUBLE_EXTENSIONS = tuple(
    f".{kind}.{codec}" for kind in ("csv", "tsv", "txt") for codec in ("gz", "bz2", "xz", "zst")
)


class NotArchived(TerminalError):
    """The file stays in the landing directory; the message says why."""


def split_extension(name: str) -> tuple[str, str]:
    lowered = name.lower()
    for extension in _DOUBLE_EXTENSIONS:
        if lowered.endswith(extension) and len(name) > len(extension):
            return name[: -len(extension)], name[-len(extension) :]
    stem, dot, extension = name.rpartition(".")
    return (stem, dot + extension) if stem else (name, "")


def archive_name(destination: Path, sha256: str) -> Path:
    """`destination`, or when taken, the same name with the sha256 prefix (then a counter)."""
    if not os.path.lexists(destination):
        return destination
    stem, extension = split_extension(destination.name)
    candidate = destination.with_name(f"{stem}.{sha256[:SUFFIX_DIGITS]}{extension}")
    number = 2
    while os.path.lexists(candidate):
        candidate = destination.with_name(f"{stem}.{sha256[:SUFFIX_DIGITS]}-{number}{extension}")
        number += 1
    return candidate


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def archive_file(landing_root: Path, archive_root: Path, file: str, sha256: str) -> Path:
    """Move the landed `file` (relative path) with content `sha256` into the archive.

    Returns where it is now; raises NotArchived (file left in place) with the reason.
    """
    try:
        resolve_inside(landing_root, file)  # never anything outside the landing directory
    except LandingPathError as error:
        raise NotArchived(str(error)) from None
    source = landing_root.resolve() / PurePosixPath(file)
    try:
        if source.is_symlink():
            raise NotArchived(f"{file} is a symbolic link; only regular files are archived")
        before = source.stat()
        content = sha256_of(source)
        if content != sha256 or _identity(source.stat()) != _identity(before):
            raise NotArchived(
                f"{file} changed after it was loaded (its new content is loaded by the next "
                "sensor tick); left in place"
            )
        if not archive_root.is_dir():
            raise NotArchived(
                f"ELT_ARCHIVE_DIR ({archive_root}) is no longer a directory; {file} stays in the "
                "landing directory"
            )
        destination = archive_name(archive_root / PurePosixPath(file), sha256)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, destination)
    except OSError as error:
        raise NotArchived(
            f"could not move {file} into ELT_ARCHIVE_DIR ({archive_root}): "
            f"{error.strerror or error}; it stays in the landing directory"
        ) from None
    try:
        if _identity(destination.stat()) != _identity(before):
            # Swapped between the check and the rename: not the content that was loaded.
            if not os.path.lexists(source):
                os.rename(destination, source)
                raise NotArchived(f"{file} was replaced while it was being archived; left in place")
            raise NotArchived(
                f"{file} was replaced while it was being archived and a newer file took its place: "
                f"{destination} holds content that was not loaded; move it back to load it"
            )
    except OSError as error:
        raise NotArchived(f"{file}: could not check the archived copy ({error.strerror})") from None
    return destination
