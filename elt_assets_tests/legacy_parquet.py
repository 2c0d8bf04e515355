"""A Parquet file with the list layouts older writers used and pyarrow no longer writes.

parquet-mr (and Spark, Hive, Impala with it) wrote a list as a LIST group around a *repeated
element* (the "2-level" layout), and some writers a bare repeated field with no LIST annotation;
pyarrow writes only the 3-level layout. So this module writes such a file by hand: uncompressed
PLAIN pages, levels as RLE runs, and the footer in Thrift's compact protocol (the format's own
spec: parquet-format's parquet.thrift), just enough of it for one row group.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

_I32, _I64, _BINARY, _LIST, _STRUCT = 5, 6, 8, 9, 12


class _Compact:
    """Thrift's compact protocol: what a Parquet footer and page header need of it."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._last_field = [0]

    def varint(self, number: int) -> None:
        while True:
            byte, number = number & 0x7F, number >> 7
            self.out.append(byte | (0x80 if number else 0))
            if not number:
                return

    def zigzag(self, number: int) -> None:
        self.varint((number << 1) ^ (number >> 63))

    def field(self, field_id: int, kind: int) -> None:
        delta = field_id - self._last_field[-1]
        assert 0 < delta <= 15, "fields in increasing order, close together"
        self.out.append(delta << 4 | kind)
        self._last_field[-1] = field_id

    def integer(self, field_id: int, value: int, kind: int = _I32) -> None:
        self.field(field_id, kind)
        self.zigzag(value)

    def text(self, field_id: int, value: str) -> None:
        self.field(field_id, _BINARY)
        self.varint(len(value.encode()))
        self.out += value.encode()

    def struct(self, field_id: int | None, fields: Callable[[_Compact], None]) -> None:
        if field_id is not None:
            self.field(field_id, _STRUCT)
        self._last_field.append(0)
        fields(self)
        self.out.append(0)  # end of the struct
        self._last_field.pop()

    def list(
        self, field_id: int, kind: int, items: list[Any], item: Callable[[_Compact, Any], None]
    ) -> None:
        self.field(field_id, _LIST)
        assert len(items) < 15
        self.out.append(len(items) << 4 | kind)
        for each in items:
            item(self, each)


def _levels(levels: list[int]) -> bytes:
    """Repetition or definition levels: one RLE run per value, behind their 4-byte length."""
    body = b"".join(bytes([2, level]) for level in levels)  # run length 1 (varint 1 << 1)
    return struct.pack("<i", len(body)) + body


def _page(values: bytes, count: int, repetition: list[int], definition: list[int]) -> bytes:
    """A data page (v1, PLAIN, uncompressed) with its header."""
    data = (_levels(repetition) if repetition else b"") + (
        _levels(definition) if definition else b""
    )
    data += values

    def data_page_header(c: _Compact) -> None:
        c.integer(1, count)
        c.integer(2, 0)  # PLAIN
        c.integer(3, 3)  # definition levels: RLE
        c.integer(4, 3)  # repetition levels: RLE

    def page_header(c: _Compact) -> None:
        c.integer(1, 0)  # DATA_PAGE
        c.integer(2, len(data))
        c.integer(3, len(data))
        c.struct(5, data_page_header)

    header = _Compact()
    header.struct(None, page_header)
    return bytes(header.out) + data


def legacy_lists() -> bytes:
    """Three rows: id int64, `tags` a LIST group around a repeated int32 (2-level), `numbers` a
    repeated int32 without annotation:
    (1, [1, 2], [7]), (2, None, []), (3, [], [8, 9])."""
    int32, int64 = 1, 2
    chunks = [  # (physical type, page, values with their levels, path)
        (int64, _page(struct.pack("<3q", 1, 2, 3), 3, [], []), 3, ["id"]),
        (
            int32,
            _page(struct.pack("<2i", 1, 2), 4, [0, 1, 0, 0], [2, 2, 0, 1]),
            4,
            ["tags", "array"],
        ),
        (int32, _page(struct.pack("<3i", 7, 8, 9), 4, [0, 0, 0, 1], [1, 0, 1, 1]), 4, ["numbers"]),
    ]
    out = bytearray(b"PAR1")
    placed = []
    for kind, page, count, path in chunks:
        placed.append((kind, len(out), len(page), count, path))
        out += page
    required, optional, repeated, list_annotation = 0, 1, 2, 3
    schema: list[dict[int, int | str]] = [
        {4: "schema", 5: 3},
        {1: int64, 3: required, 4: "id"},
        {3: optional, 4: "tags", 5: 1, 6: list_annotation},
        {1: int32, 3: repeated, 4: "array"},  # not a group: the element itself (2-level)
        {1: int32, 3: repeated, 4: "numbers"},  # no LIST annotation at all
    ]

    def element(c: _Compact, fields: dict[int, int | str]) -> None:
        def write(c: _Compact) -> None:
            for field_id, value in sorted(fields.items()):
                if isinstance(value, str):
                    c.text(field_id, value)
                else:
                    c.integer(field_id, value)

        c.struct(None, write)

    def column(c: _Compact, chunk: tuple[int, int, int, int, list[str]]) -> None:
        kind, offset, size, count, path = chunk

        def metadata(c: _Compact) -> None:
            c.integer(1, kind)
            c.list(2, _I32, [0, 3], lambda c, encoding: c.zigzag(encoding))  # PLAIN, RLE
            c.list(3, _BINARY, path, _binary)
            c.integer(4, 0)  # UNCOMPRESSED
            c.integer(5, count, _I64)
            c.integer(6, size, _I64)
            c.integer(7, size, _I64)
            c.integer(9, offset, _I64)

        def write(c: _Compact) -> None:
            c.integer(2, offset, _I64)
            c.struct(3, metadata)

        c.struct(None, write)

    def row_group(c: _Compact, _: object) -> None:
        def write(c: _Compact) -> None:
            c.list(1, _STRUCT, placed, column)
            c.integer(2, sum(p[2] for p in placed), _I64)
            c.integer(3, 3, _I64)

        c.struct(None, write)

    def file_metadata(c: _Compact) -> None:
        c.integer(1, 1)  # version
        c.list(2, _STRUCT, schema, element)
        c.integer(3, 3, _I64)  # rows
        c.list(4, _STRUCT, [None], row_group)

    footer = _Compact()
    footer.struct(None, file_metadata)
    out += footer.out + struct.pack("<i", len(footer.out)) + b"PAR1"
    return bytes(out)


def _binary(c: _Compact, value: str) -> None:
    c.varint(len(value.encode()))
    c.out += value.encode()
