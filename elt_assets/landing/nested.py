"""Parquet's nested values (LIST, STRUCT, MAP) as the text PostgreSQL reads for their column.

A jsonb column gets JSON written from the file's own types: struct fields and map entries in
the file's order (jsonb then orders keys its own way), numbers as written (decimals keep their
scale, floats their shortest exact form), dates and times as ISO 8601 strings, bytes as a
"\\x0a1b" string. An array column (integer[], text[], ...) gets PostgreSQL's array literal,
whose elements are then cast like any value of the element type (validation/arrays.py).

Nothing is dropped or changed on the way: a map with a key twice (jsonb keeps one value per key)
or a nested list for a one-dimensional array refuses the file, naming the row and the column. A
number JSON cannot hold (NaN, Infinity) is written as its token, which PostgreSQL refuses as JSON:
that row goes to the quarantine with its value, the rest of the file loads.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow as pa

from elt_assets.contracts.types import PgType
from elt_assets.errors import TerminalError

Encode = Callable[[Any], str]


class NestedValueError(TerminalError, ValueError):
    """A nested value that cannot become its column's text exactly (the message says why);
    `index` is its row in the column when known."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


def is_nested(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_nested(arrow_type))


def as_text(values: pa.Array, target: PgType) -> pa.Array:
    """The column's values as text for `target` (jsonb or an array type); raises
    NestedValueError for the first value that cannot be written exactly."""
    values = _in_microseconds(values)
    encode = _json(values.type) if target.kind == "jsonb" else _array_literal(values.type)
    try:
        python_values = values.to_pylist()
    except (ValueError, OverflowError):
        raise NestedValueError(
            "a date or timestamp outside the years 1-9999 inside a nested value, which the "
            "platform cannot write as text"
        ) from None
    texts: list[str | None] = []
    for index, value in enumerate(python_values):
        try:
            texts.append(None if value is None else encode(value))
        except NestedValueError as error:
            raise NestedValueError(str(error), index) from None
    return pa.array(texts, pa.string())


def unsupported(arrow_type: pa.DataType, target: PgType) -> str | None:
    """Why a column of `arrow_type` can never become `target`, or None."""
    if target.kind == "jsonb":
        names = _duplicate_field(arrow_type)
        if names:
            return f"its structs have the field {names!r} twice; JSON keeps one"
    else:
        element = _list_element(arrow_type)
        if element is None:
            return f"it holds {arrow_type} values, not lists; declare it jsonb"
        if is_nested(element):
            return f"its lists hold {element} values; declare it jsonb"
    try:
        _json(arrow_type) if target.kind == "jsonb" else _array_literal(arrow_type)
    except NestedValueError as error:
        return f"it holds {error}"
    return None


# -- the file's values in microseconds ---------------------------------------------------------


def _in_microseconds(values: pa.Array) -> pa.Array:
    """Nanosecond timestamps and times as microseconds, PostgreSQL's resolution (refusing a value
    that would lose its nanoseconds), so that every value has a Python form."""
    wanted = _microsecond_type(values.type)
    if wanted == values.type:
        return values
    try:
        return values.cast(wanted)  # a safe cast: fails rather than truncate
    except pa.ArrowInvalid:
        raise NestedValueError(
            "a timestamp or time with nanoseconds, which PostgreSQL cannot hold (microseconds)"
        ) from None


def _microsecond_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        return pa.timestamp("us", arrow_type.tz)
    if pa.types.is_time64(arrow_type) and arrow_type.unit == "ns":
        return pa.time64("us")
    if pa.types.is_map(arrow_type):
        key, item = arrow_type.key_field, arrow_type.item_field
        return pa.map_(
            key.with_type(_microsecond_type(key.type)),
            item.with_type(_microsecond_type(item.type)),
        )
    if pa.types.is_struct(arrow_type):
        fields = [f.with_type(_microsecond_type(f.type)) for f in arrow_type]
        return pa.struct(fields)
    element = _list_element(arrow_type)
    if element is not None:
        inner = arrow_type.value_field.with_type(_microsecond_type(element))
        if pa.types.is_fixed_size_list(arrow_type):
            return pa.list_(inner, arrow_type.list_size)
        return pa.large_list(inner) if pa.types.is_large_list(arrow_type) else pa.list_(inner)
    return arrow_type


def _list_element(arrow_type: pa.DataType) -> pa.DataType | None:
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if any(is_list(arrow_type) for is_list in lists):
        return arrow_type.value_type
    return None


def _duplicate_field(arrow_type: pa.DataType) -> str | None:
    """A struct field name found twice in one struct anywhere in the type."""
    if pa.types.is_struct(arrow_type):
        names = [f.name for f in arrow_type]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            return twice
        children = [f.type for f in arrow_type]
    elif pa.types.is_map(arrow_type):
        children = [arrow_type.key_type, arrow_type.item_type]
    else:
        element = _list_element(arrow_type)
        children = [element] if element is not None else []
    return next((name for child in children if (name := _duplicate_field(child))), None)


# -- scalars -----------------------------------------------------------------------------------


def _float32_text(value: float) -> str:
    """The shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612)."""
    for digits in range(6, 10):
        text = f"{value:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == value:
            return text
    return repr(value)


def _number_text(arrow_type: pa.DataType) -> Callable[[Any], str]:
    if pa.types.is_float32(arrow_type) or pa.types.is_float16(arrow_type):
        return _float32_text
    if pa.types.is_floating(arrow_type):
        return repr
    return str  # integers and decimals (Decimal keeps its scale: 1.50)


def _is_number(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)) or bool(
        pa.types.is_decimal(arrow_type)
    )


def _scalar_text(arrow_type: pa.DataType) -> Encode:
    """A scalar value as PostgreSQL reads it for its type (as in a CSV field)."""
    if pa.types.is_boolean(arrow_type):
        return lambda value: "true" if value else "false"
    if _is_number(arrow_type):
        number = _number_text(arrow_type)

        def number_or_special(value: Any) -> str:
            if isinstance(value, float) and not math.isfinite(value):
                return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return number(value)

        return number_or_special
    if _any_of(arrow_type, _BINARIES):
        return lambda value: "\\x" + value.hex()
    if pa.types.is_timestamp(arrow_type):
        return _timestamp_text
    if pa.types.is_date(arrow_type) or pa.types.is_time(arrow_type):
        return lambda value: value.isoformat()
    if _any_of(arrow_type, _TEXTS):
        return str
    raise NestedValueError(f"{arrow_type} values, which the platform does not load")


_BINARIES = (
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_binary_view,
    pa.types.is_fixed_size_binary,
)
_TEXTS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_null)


def _any_of(arrow_type: pa.DataType, tests: tuple[Callable[[pa.DataType], bool], ...]) -> bool:
    return any(test(arrow_type) for test in tests)


def _timestamp_text(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")  # with its offset if it has one


# -- JSON ----------------------------------------------------------------------------------------


def _json(arrow_type: pa.DataType) -> Encode:
    """An encoder of one (non-null) value of `arrow_type` as JSON text."""
    if pa.types.is_struct(arrow_type):
        fields = [(f.name, _json_string(f.name), _json(f.type)) for f in arrow_type]

        def encode_struct(value: dict[str, Any]) -> str:
            parts = (f"{key}:{_or_null(encode, value[name])}" for name, key, encode in fields)
            return "{" + ",".join(parts) + "}"

        return encode_struct
    if pa.types.is_map(arrow_type):
        key_text, item = _scalar_text(arrow_type.key_type), _json(arrow_type.item_type)

        def encode_map(entries: list[tuple[Any, Any]]) -> str:
            keys = [key_text(key) for key, _ in entries]
            if len(set(keys)) < len(keys):
                twice = next(k for k in keys if keys.count(k) > 1)
                raise NestedValueError(
                    f"a map with the key {twice!r} twice; jsonb keeps one value per key, so the "
                    "map cannot be kept exactly: ask the sender for distinct keys"
                )
            parts = (
                f"{_json_string(k)}:{_or_null(item, v)}"
                for k, (_, v) in zip(keys, entries, strict=True)
            )
            return "{" + ",".join(parts) + "}"

        return encode_map
    element = _list_element(arrow_type)
    if element is not None:
        encode_element = _json(element)
        return lambda value: "[" + ",".join(_or_null(encode_element, v) for v in value) + "]"
    if pa.types.is_boolean(arrow_type) or _is_number(arrow_type):  # JSON spells them alike
        scalar = _scalar_text(arrow_type)

        def encode_number(value: Any) -> str:
            # NaN and Infinity have no JSON form. Written as their tokens, the row's JSON is
            # refused by PostgreSQL, so that row (not the file) is quarantined with the value
            # visible in its raw record, as a CSV's invalid JSON is.
            return scalar(value)

        return encode_number
    if pa.types.is_timestamp(arrow_type):  # as PostgreSQL's to_jsonb writes one
        return lambda value: json.dumps(value.isoformat())
    text = _scalar_text(arrow_type)
    return lambda value: _json_string(text(value))


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _or_null(encode: Encode, value: Any) -> str:
    return "null" if value is None else encode(value)


# -- array literals ----------------------------------------------------------------------------


def _array_literal(arrow_type: pa.DataType) -> Encode:
    """An encoder of one (non-null) list as PostgreSQL's array literal, every element quoted."""
    element = _list_element(arrow_type)
    assert element is not None and not is_nested(element)
    text = _scalar_text(element)

    def quoted(value: Any) -> str:
        if value is None:
            return "NULL"
        return '"' + text(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return lambda value: "{" + ",".join(quoted(v) for v in value) + "}"
