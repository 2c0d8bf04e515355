"""A landed file's bytes, as the readers take them: a stream from the start, or random access.

The readers never ask where a file is: a local file opens from disk, an object in a bucket
streams over HTTP (landing/objects.py). Every `open()` starts again at the first byte, so a
reader may look at a file more than once (the gzip magic, the header line, a diagnosis).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa


class Source(ABC):
    """One landed file's content."""

    @property
    @abstractmethod
    def size(self) -> int:
        """The file's size in bytes."""

    @abstractmethod
    def open(self) -> io.BufferedIOBase:
        """A new stream of the bytes, from the first (close it after use)."""

    def open_seekable(self) -> io.BufferedIOBase:
        """A new random-access handle (Parquet reads its footer first)."""
        return self.open()

    def first_bytes(self, count: int) -> bytes:
        """The first `count` bytes (fewer for a shorter file), read on their own."""
        with self.open() as stream:
            return stream.read(count)


class LocalSource(Source):
    """A file on this machine's disk."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def open(self) -> io.BufferedIOBase:
        return self.path.open("rb")

    def __repr__(self) -> str:
        return f"LocalSource({str(self.path)!r})"


# What a file's first bytes say it is, where that is not plain text.
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"PK\x03\x04": "zip",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PAR1": "Parquet",
    b"PARE": "encrypted Parquet",
    b"\xff\xfe": "UTF-16 text",  # a byte-order mark, little-endian
    b"\xfe\xff": "UTF-16 text",  # big-endian
}


def kind_of(source: Source) -> str | None:
    """The container its first bytes announce (gzip, bzip2, zip, xz, zstd, Parquet, encrypted
    Parquet, UTF-16 text by its byte-order mark); None for anything else, which the CSV reader
    then reads as text in the contract's encoding."""
    start = source.first_bytes(6)
    return next((kind for magic, kind in _MAGIC.items() if start.startswith(magic)), None)


# What a CSV file may be compressed with (zip is an archive of files, not one stream: refused).
COMPRESSIONS = ("gzip", "bzip2", "xz", "zstd")
DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, pa.ArrowException)


def compression_of(source: Source) -> str | None:
    """The compression of a CSV file by its first bytes (one of COMPRESSIONS), or None."""
    kind = kind_of(source)
    return kind if kind in COMPRESSIONS else None


def decompressing(compression: str | None, raw: BinaryIO) -> BinaryIO:
    """`raw` decompressed (`raw` itself without a compression). Errors of bad data are among
    DECOMPRESSION_ERRORS."""
    if compression is None:
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "bzip2":
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]
    # The standard library has no zstd before Python 3.14; pyarrow's codec does it.
    stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd")
    return stream


def as_source(value: Path | Source) -> Source:
    return value if isinstance(value, Source) else LocalSource(Path(value))
