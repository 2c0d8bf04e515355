"""COPY in PostgreSQL's binary format, for Parquet files whose typed values need no text.

Sending a Parquet file's integers, floats, dates and timestamps as text makes both sides work:
we spell every value, PostgreSQL parses it back (about 40% of its COPY time). In the binary format
each value goes as PostgreSQL stores it. Only pairs of file type and column type whose binary value
is exactly what the text path would load take it (`binary_plan`); a file with any other column
(uuid, jsonb, arrays, numeric wider than 18 digits, a naive timestamp for timestamptz, ...) is
sent as text, as before. The encoding is vectorised with Arrow's compute functions: no Python loop
over rows.

Each row: the field count (int16), then per field its length (int32, -1 for NULL) and its bytes,
all big-endian. A stream starts with SIGNATURE and ends with TRAILER.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from elt_assets.contracts.model import FILE_COLUMN, LOAD_COLUMN, ROW_COLUMN, Contract
from elt_assets.contracts.types import INTEGER_RANGES, PgType

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # no flags, no extension
TRAILER = struct.pack(">h", -1)
_NULL = pa.scalar(struct.pack(">i", -1), pa.binary())  # the length of NULL, which has no bytes
_EMPTY = pa.scalar(b"", pa.binary())
_DAYS_1970_TO_2000 = 10_957  # PostgreSQL counts days and microseconds from 2000-01-01
_MICROSECONDS_1970_TO_2000 = _DAYS_1970_TO_2000 * 86_400 * 1_000_000
_NUMERIC_MAX_PRECISION = 18  # digits an int64 holds: the unscaled value is computed in int64
_NUMERIC_NEGATIVE = 0x4000
_NUMERIC_NAN = 0xC000
_FIXED_ZONES = {"UTC", "Etc/UTC"}  # zones whose time never changes: a local time is UTC


@dataclass(frozen=True)
class BinaryPlan:
    """How each staged column is sent: `typed` columns from the validated typed value, the others
    (text, varchar, numeric) from the text the text path would send."""

    columns: list[str]  # the COPY's columns, in order
    kinds: dict[str, PgType]
    typed: set[str]

    def laid_out(self, columns: list[str]) -> BinaryPlan:
        """The plan for a COPY of these of its columns, in this order (a target table has no
        row number, and a file column only in append mode)."""
        unknown = set(columns) - set(self.kinds)
        assert not unknown, f"no binary plan for {sorted(unknown)}"
        return BinaryPlan(list(columns), self.kinds, self.typed)


def binary_plan(contract: Contract, sources: dict[str, pl.DataType]) -> BinaryPlan | None:
    """The plan for a file whose every column can go in binary exactly, else None (text)."""
    if contract.policy.rescues:
        return None  # the rescue column is jsonb, assembled as text
    kinds: dict[str, PgType] = {}
    typed: set[str] = set()
    for column in contract.columns:
        source = sources.get(column.name, pl.String())
        way = _way(column.type, source, contract.source.timezone)
        if way is None:
            return None
        kinds[column.name] = column.type
        if way == "typed":
            typed.add(column.name)
    if not typed:
        return None  # texts only (every CSV file): nothing to gain
    kinds[ROW_COLUMN], kinds[FILE_COLUMN] = PgType("bigint"), PgType("text")
    kinds[LOAD_COLUMN] = PgType("bigint")
    typed |= {ROW_COLUMN, LOAD_COLUMN}
    names = [ROW_COLUMN, *[c.name for c in contract.columns], FILE_COLUMN, LOAD_COLUMN]
    return BinaryPlan(names, kinds, typed)


def _way(kind: PgType, source: pl.DataType, timezone: str) -> str | None:
    """How a column goes in binary: from its typed value ("typed"), from its text ("text"), or
    not at all (None) where the binary value could differ from what the text path loads."""
    k = kind.kind
    if k in {"text", "varchar"}:
        return "text"
    if source == pl.String:
        return _way_from_text(kind, timezone)
    if source == pl.Binary or source.is_nested():
        return None
    if k in INTEGER_RANGES and source.is_integer():
        return "typed"
    if k == "double precision" and (source.is_float() or source.is_integer()):
        return "typed"  # the text path sends the float64's shortest spelling: the same double
    if k == "real" and source == pl.Float32:
        return "typed"  # a float64 would be rounded twice by the text path: text
    if (k == "boolean" and source == pl.Boolean) or (k == "date" and source == pl.Date):
        return "typed"
    if k == "timestamp" and isinstance(source, pl.Datetime):
        return "typed"
    if k == "timestamptz" and isinstance(source, pl.Datetime) and source.time_zone:
        return "typed"  # a naive one is read in the contract's zone by PostgreSQL: text
    if k == "numeric" and kind.precision is not None:
        narrow = isinstance(source, pl.Decimal) and source.scale <= (kind.scale or 0)
        if kind.precision <= _NUMERIC_MAX_PRECISION and (narrow or source.is_integer()):
            return "text"  # the decimal as written, in base 10000
    return None


def _way_from_text(kind: PgType, timezone: str) -> str | None:
    """How a column read as text (every CSV column) goes in binary: the value our cast read, for
    the types whose cast reads every spelling it accepts as PostgreSQL would (casts.py; the
    property tests hold the two to it, edge spellings included), or the numeric's text; else not
    at all. Not real: a float4 read through a float64 could round twice. Not timestamptz read in a
    zone with clock changes: polars' time zone rules and PostgreSQL's may differ (far future
    years, rules changed since one was built), so PostgreSQL reads those."""
    k = kind.kind
    if k in INTEGER_RANGES or k in {"double precision", "boolean", "date", "timestamp"}:
        return "typed"
    if k == "timestamptz" and timezone in _FIXED_ZONES:
        return "typed"
    if k == "numeric" and kind.precision is not None and kind.precision <= _NUMERIC_MAX_PRECISION:
        return "text"
    return None


def encode_binary(frame: pl.DataFrame, plan: BinaryPlan) -> memoryview:
    """The frame's rows in COPY's binary format (no signature or trailer).

    Each column gives its fields' length and bytes as arrays (or one scalar where every value
    has the same); one join puts every row's parts end to end. A NULL value's bytes are an empty
    part, filled in before the join: its default null handling then never applies, and it was
    faster than its null replacement in most rounds measured (docs/performance.md, session 25)."""
    table = frame.select(plan.columns).to_arrow()
    parts: list[pa.Array | pa.Scalar] = [_bytes(struct.pack(">h", len(plan.columns)))]
    for name in plan.columns:
        values = table.column(name).combine_chunks()
        if name == FILE_COLUMN and _constant(values):  # the file's name, on every row
            parts.extend(_constant_text(values[0].as_py()))
            continue
        parts.extend(_field(values, plan.kinds[name]))
    if not table.num_rows:
        return memoryview(b"")
    rows = pc.binary_join_element_wise(*[_filled(part) for part in parts], _EMPTY)
    _, offsets, data = rows.buffers()  # the rows' bytes lie end to end, from offset to offset
    start, end = (struct.unpack_from("<i", offsets, 4 * i)[0] for i in (0, len(rows)))
    return memoryview(data)[start:end]


def _filled(part: pa.Array | pa.Scalar) -> pa.Array | pa.Scalar:
    """The part with empty bytes where it has NULLs (a NULL value's bytes: none)."""
    if isinstance(part, pa.Array) and part.null_count:
        return part.fill_null(_EMPTY)
    return part


def _constant(values: pa.Array) -> bool:
    """Whether every value is the same text (not NULL)."""
    if not len(values) or values.null_count:
        return False
    return bool(pc.all(pc.equal(values, values[0])).as_py())


def _constant_text(text: str) -> list[pa.Array | pa.Scalar]:
    data = text.encode()
    return [_bytes(struct.pack(">i", len(data))), _bytes(data)]


def _bytes(value: bytes) -> pa.Scalar:
    return pa.scalar(value, pa.binary())


def _field(values: pa.Array, kind: PgType) -> list[pa.Array | pa.Scalar]:
    """The length of each value and its bytes (NULL where the value is: length -1, no bytes)."""
    if kind.kind in INTEGER_RANGES:
        length, data = _fixed(values, values.type.byte_width)
    elif kind.kind in _FIXED:
        arrow_type, width = _FIXED[kind.kind]
        length, data = _fixed(values.cast(arrow_type), width)
    elif kind.kind == "date":
        days = pc.subtract(values.cast(pa.int32()), pa.scalar(_DAYS_1970_TO_2000, pa.int32()))
        length, data = _fixed(days, 4)
    elif kind.kind in {"timestamp", "timestamptz"}:
        micros = values.cast(pa.timestamp("us", values.type.tz)).view(pa.int64())
        length, data = _fixed(pc.subtract(micros, pa.scalar(_MICROSECONDS_1970_TO_2000)), 8)
    elif kind.kind == "numeric":
        length, data = _numeric(values, kind)
    else:  # text, varchar
        data = [values.cast(pa.binary())]
        length = _big_endian(pc.binary_length(data[0]).cast(pa.int32()), 4)
    if values.null_count:
        length = pc.if_else(pc.is_valid(values), length, _NULL)
    return [length, *data]


_FIXED = {
    "double precision": (pa.float64(), 8),
    "real": (pa.float32(), 4),
    "boolean": (pa.uint8(), 1),
}


def _fixed(values: pa.Array, width: int) -> tuple[pa.Scalar, list[pa.Array]]:
    return _bytes(struct.pack(">i", width)), [_big_endian(values, width)]


def _big_endian(values: pa.Array, width: int) -> pa.Array:
    """Fixed-width numbers (little-endian in memory) as their big-endian bytes."""
    return pc.binary_reverse(values.view(pa.binary(width)).cast(pa.binary()))


def _numeric(texts: pa.Array, kind: PgType) -> tuple[pa.Scalar, list[pa.Array]]:
    """numeric(p, s) from its decimal text: a header (digit count, weight of the first digit,
    sign, display scale s) and the base-10000 digits the column may hold, as int16s, packed
    four to an int64. Trailing zero digits pad the last four; PostgreSQL strips leading and
    trailing zero digits itself."""
    assert kind.precision is not None
    scale = kind.scale or 0
    fraction_digits = -(-scale // 4)  # groups of four decimal digits after the point
    whole_digits = -(-(kind.precision - scale) // 4)
    packs = -(-(whole_digits + fraction_digits) // 4)
    unit = pa.scalar(10**scale, pa.int64())
    texts = texts.cast(pa.large_string())
    nan = _nan(texts)
    if nan is not None:  # NaN (a CSV's text; numeric(p, s) holds it): zero digits, NaN's sign
        texts = pc.if_else(nan, pa.scalar("0", pa.large_string()), texts)
    # A decimal64's storage is its unscaled value as an int64: 12.34 in numeric(p, 2) is 1234.
    unscaled = pc.cast(texts, pa.decimal64(_NUMERIC_MAX_PRECISION, scale)).view(pa.int64())
    magnitude = pc.abs(unscaled)
    whole = pc.divide(magnitude, unit)
    fraction = pc.multiply(
        pc.subtract(magnitude, pc.multiply(whole, unit)),
        pa.scalar(10 ** (4 * fraction_digits - scale), pa.int64()),
    )
    digits = [*_base_10000(whole, whole_digits), *_base_10000(fraction, fraction_digits)]
    digits += [None] * (4 * packs - len(digits))
    weight = (whole_digits - 1) & 0xFFFF  # an int16: -1 when every digit is after the point
    header = (4 * packs) << 48 | weight << 32 | scale
    negative = pc.multiply(
        pc.less(unscaled, pa.scalar(0, pa.int64())).cast(pa.int64()),
        pa.scalar(_NUMERIC_NEGATIVE << 16, pa.int64()),
    )
    if nan is not None:
        negative = pc.if_else(nan, pa.scalar(_NUMERIC_NAN << 16, pa.int64()), negative)
    data = [_big_endian(pc.add(negative, pa.scalar(header, pa.int64())), 8)]
    for first in range(0, 4 * packs, 4):
        data.append(_big_endian(_pack(digits[first : first + 4]), 8))
    return _bytes(struct.pack(">i", 8 + 8 * packs)), data


def _nan(texts: pa.Array) -> pa.Array | None:
    """Which texts spell NaN (in any case), or None when no text ends in its last letter (two
    quick scans spare the lower-casing of every text in the common case)."""
    if not (pc.any(pc.ends_with(texts, "n")).as_py() or pc.any(pc.ends_with(texts, "N")).as_py()):
        return None
    return pc.fill_null(pc.equal(pc.utf8_lower(texts), "nan"), False)


def _pack(digits: list[pa.Array | None]) -> pa.Array:
    """Four base-10000 digits (None: zero) as one int64 whose big-endian bytes are theirs."""
    packed: pa.Array | None = None
    for place, digit in enumerate(digits):
        if digit is None:
            continue
        shifted = pc.multiply(digit, pa.scalar(1 << (16 * (3 - place)), pa.int64()))
        packed = shifted if packed is None else pc.add(packed, shifted)
    assert packed is not None  # the first digit of a pack is never padding
    return packed


def _base_10000(number: pa.Array, count: int) -> list[pa.Array]:
    """`count` base-10000 digits of non-negative int64s, the most significant first."""
    digits: list[pa.Array] = []
    base = pa.scalar(10_000, pa.int64())
    for _ in range(count):
        rest = pc.divide(number, base)
        digits.append(pc.subtract(number, pc.multiply(rest, base)))
        number = rest
    return digits[::-1]
