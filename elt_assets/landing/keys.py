"""Partition keys from landing paths: readable, unique, reversible, and safe for Dagster.

A key is the file's path relative to the landing root, with a few characters percent-encoded:
`%` itself (so decoding is exact), `,` (breaks backfill selections in the UI), `|` and brackets
(partition-selection syntax), control characters (Dagster rejects them), any `.` that would
complete a `...` run (Dagster's range separator), and the raw bytes of a file name that is not
UTF-8 (os.fsdecode's lone surrogates, which Dagster cannot store). Everything else, unicode and
spaces included, stays as written, so the key reads like the path.
"""

from __future__ import annotations

import re

_ALWAYS_ENCODED = set("%,|[]")
_ENCODED = re.compile(r"%([0-9A-F]{2})")


def _encode_char(char: str) -> str:
    # surrogateescape: a file name that is not UTF-8 comes from os.fsdecode with its raw bytes as
    # lone surrogates (U+DC80..U+DCFF), which Dagster cannot store; they become %XX of the byte.
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogateescape"))


def _is_raw_byte(char: str) -> bool:
    return "\udc80" <= char <= "\udcff"


def path_to_key(relative_path: str) -> str:
    """The partition key of a landing file, from its POSIX path relative to the landing root."""
    if not relative_path or relative_path.startswith("/"):
        raise ValueError(f"expected a relative path, got {relative_path!r}")
    out: list[str] = []
    for char in relative_path:
        if char in _ALWAYS_ENCODED or ord(char) < 0x20 or ord(char) == 0x7F or _is_raw_byte(char):
            out.append(_encode_char(char))
        elif char == "." and len(out) >= 2 and out[-1] == "." and out[-2] == ".":
            out.append("%2E")
        else:
            out.append(char)
    return "".join(out)


def key_to_path(key: str) -> str:
    """The relative path a partition key was made from (the exact inverse of `path_to_key`)."""
    raw = bytearray()
    position = 0
    for match in _ENCODED.finditer(key):
        raw += key[position : match.start()].encode("utf-8")
        raw.append(int(match[1], 16))
        position = match.end()
    raw += key[position:].encode("utf-8")
    return raw.decode("utf-8", "surrogateescape")
