"""Where files land, behind one small interface: list, stat, read, archive.

Every step, the sensor and `elt ingest` reach landed files only through a `Landing`, so a second
kind of landing zone (object storage) is one more class here, not a branch in every caller.
`LocalDirectory` is a directory on this machine's filesystem.

Files are named by their POSIX path relative to the zone's root (the partition key's source,
landing/keys.py). A name that would leave the root is refused.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from elt_assets.errors import TerminalError
from elt_assets.landing.archive import archive_file
from elt_assets.landing.files import LandedFile, resolve_inside, scan, sha256_of
from elt_assets.landing.source import LocalSource, Source


class LandingUnreachable(TerminalError):
    """The landing zone cannot be listed or read as configured; the message names it."""


class Receiver(ABC):
    """A file arriving in pieces: `write` each, then `commit` (it appears whole, at once) or
    `abort` (nothing of it stays)."""

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...


class _FileReceiver(Receiver):
    """A hidden file beside the target (the scan skips dot names), renamed over it on commit:
    one atomic rename on the same filesystem."""

    def __init__(self, target: Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.upload")
        self._file = self.partial.open("xb")

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.target)

    def abort(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)


class Landing(ABC):
    """A landing zone: the files of one root, read-only except for archiving loaded files."""

    # Whether a file is complete as soon as it can be listed (an object store publishes an
    # object only once its upload finished); a directory shows files while they are written.
    complete_when_listed: bool = False

    @abstractmethod
    def describe(self) -> str:
        """Where the zone is, for messages and metadata (no secrets)."""

    @abstractmethod
    def location(self, file: str) -> str:
        """The file's full name as users know it (a path, a URL), for metadata and messages."""

    @abstractmethod
    def check(self) -> None:
        """Raise a clear error naming the zone now if it cannot be read (before any work)."""

    @abstractmethod
    def scan(self, pattern: str) -> list[LandedFile]:
        """The complete-looking files matching the glob `pattern`, sorted by name."""

    def scan_from(
        self, pattern: str, start_after: str | None, limit: int
    ) -> tuple[list[LandedFile], str | None]:
        """One tick's share of a large zone: the files after `start_after` (a name), listing at
        most about `limit` entries; and where the next share starts (None: the end was reached).
        A zone that is cheap to read whole returns everything."""
        return self.scan(pattern), None

    @abstractmethod
    def stat(self, file: str) -> LandedFile | None:
        """The file's size and mtime now; None when it is not there."""

    def receive(self, file: str) -> Receiver:
        """A new file (or new content of one) being written into the zone: nothing of it is
        visible under `file` until `commit` (the upload endpoint; the sensor never sees half a
        file)."""
        raise LandingUnreachable(f"{self.describe()}: this landing zone takes no uploads")

    def relative(self, given: str) -> str:
        """A file named by a user (`elt ingest --file`) as the zone names it: relative to its
        root. The zone's own full name of it (a path, a URL) is accepted too."""
        return given.removeprefix("./")

    @abstractmethod
    def sha256(self, file: str) -> str:
        """The file's content hash (OSError when it is unreadable or gone)."""

    @abstractmethod
    def source(self, file: str) -> Source:
        """The file's bytes for the readers (streamed, re-readable from the start)."""

    @property
    @abstractmethod
    def archives(self) -> bool:
        """Whether loaded files move out of the zone (`archive`)."""

    @abstractmethod
    def archive(self, file: str, sha256: str) -> str:
        """Move a loaded file (still holding `sha256`) out of the zone; where it went. Raises
        landing.archive.NotArchived, with the reason, when it stays."""

    @abstractmethod
    def archived_copy(self, file: str) -> str | None:
        """Where an earlier load archived this file, if it did (for messages)."""


class LocalDirectory(Landing):
    """A directory on this machine; with `archive_dir`, loaded files move there (same
    filesystem, checked by settings.check_archive_dir before anything runs)."""

    def __init__(self, root: Path, archive_dir: Path | None = None):
        self.root, self.archive_dir = root, archive_dir
        self._real_root: Path | None = None

    def _path(self, file: str) -> Path:
        """The file's real path inside the root (resolve_inside), the root resolved once."""
        if self._real_root is None:
            self._real_root = self.root.resolve()
        return resolve_inside(self.root, file, self._real_root)

    def describe(self) -> str:
        return str(self.root)

    def receive(self, file: str) -> Receiver:
        return _FileReceiver(self._path(file))

    def relative(self, given: str) -> str:
        path = Path(given).expanduser()
        if path.is_absolute() and path.resolve().is_relative_to(self.root.resolve()):
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        return super().relative(given)

    def location(self, file: str) -> str:
        return str(self._path(file))

    def check(self) -> None:
        if not self.root.is_dir():
            raise LandingUnreachable(
                f"{self.root}: the landing directory does not exist (or is not a directory); "
                "create it or point the landing setting at the right one"
            )

    def scan(self, pattern: str) -> list[LandedFile]:
        return scan(self.root, pattern)

    def stat(self, file: str) -> LandedFile | None:
        path = self._path(file)
        if not path.is_file():
            return None
        info = path.stat()
        return LandedFile(file, info.st_size, info.st_mtime_ns)

    def sha256(self, file: str) -> str:
        return sha256_of(self._path(file))

    def source(self, file: str) -> Source:
        return LocalSource(self._path(file))

    @property
    def archives(self) -> bool:
        return self.archive_dir is not None

    def archive(self, file: str, sha256: str) -> str:
        assert self.archive_dir is not None, "archive() needs an archive directory"
        return str(archive_file(self.root, self.archive_dir, file, sha256))

    def archived_copy(self, file: str) -> str | None:
        if self.archive_dir is None:
            return None
        copy = self.archive_dir / file
        return str(copy) if copy.is_file() else None
