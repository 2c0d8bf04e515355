"""PostgreSQL column types a contract may use, parsed from their SQL spelling.

A `PgType` is the single source for a column's DDL, its polars dtype (what validation works on),
and which checks make sense for it. Its `ddl` is rendered from the parsed parts, never from the
user's text, so it is safe to place into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import polars as pl

from elt_assets.errors import TerminalError

Kind = Literal[
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "boolean",
    "text",
    "varchar",
    "date",
    "timestamp",
    "timestamptz",
    "uuid",
    "jsonb",
    "bytea",
    "array",  # a one-dimensional PostgreSQL array of `element`: integer[], text[], ...
]

_ALIASES: dict[str, Kind] = {
    "smallint": "smallint",
    "int2": "smallint",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "bigint",
    "int8": "bigint",
    "numeric": "numeric",
    "decimal": "numeric",
    "real": "real",
    "float4": "real",
    "double precision": "double precision",
    "float8": "double precision",
    "double": "double precision",
    "boolean": "boolean",
    "bool": "boolean",
    "text": "text",
    "varchar": "varchar",
    "character varying": "varchar",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz",
    "timestamp with time zone": "timestamptz",
    "uuid": "uuid",
    "jsonb": "jsonb",
    "bytea": "bytea",
}

INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}

_TYPE = re.compile(r"^(?P<name>[a-z][a-z0-9 ]*?)\s*(?:\(\s*(?P<args>[0-9 ,]*)\s*\))?$")

KNOWN_TYPES = (
    "smallint, integer, bigint, numeric(p,s), real, double precision, boolean, text, "
    "varchar(n), date, timestamp, timestamptz, uuid, jsonb, bytea, and an array of any of "
    "them: integer[], text[], ..."
)


class TypeSpellingError(TerminalError, ValueError):
    """The text is not a column type we support."""


@dataclass(frozen=True)
class PgType:
    kind: Kind
    precision: int | None = None  # numeric(p, s)
    scale: int | None = None
    length: int | None = None  # varchar(n)
    element: PgType | None = None  # array: the type of its elements

    @classmethod
    def parse(cls, text: str) -> PgType:
        spelled = " ".join(str(text).strip().lower().split())
        if spelled.endswith("[]"):
            element = cls.parse(spelled[:-2])
            if element.kind == "array":  # PostgreSQL ignores the number of [] anyway
                raise TypeSpellingError(
                    f"{text!r}: arrays of arrays are not supported; write one [] (or use jsonb)"
                )
            return cls("array", element=element)
        match = _TYPE.match(spelled)
        kind = _ALIASES.get(match["name"]) if match else None
        if match is None or kind is None:
            raise TypeSpellingError(f"unknown column type {text!r} (known: {KNOWN_TYPES})")
        args = [a.strip() for a in (match["args"] or "").split(",") if a.strip()]
        if not all(a.isdigit() for a in args):  # "varchar(1 0)": int() would fail obscurely
            raise TypeSpellingError(f"{text!r}: write whole numbers separated by commas")
        if kind == "numeric":
            return cls._numeric(text, args)
        if kind == "varchar":
            if len(args) != 1 or not 1 <= int(args[0]) <= 10_485_760:
                raise TypeSpellingError(f"{text!r}: write varchar(n) with 1 <= n <= 10485760")
            return cls(kind, length=int(args[0]))
        if args:
            raise TypeSpellingError(f"{text!r}: type {kind} takes no arguments")
        return cls(kind)

    @classmethod
    def _numeric(cls, text: str, args: list[str]) -> PgType:
        if not args:
            return cls("numeric")
        if len(args) > 2:
            raise TypeSpellingError(f"{text!r}: write numeric(p) or numeric(p,s)")
        precision, scale = int(args[0]), int(args[1]) if len(args) == 2 else 0
        if not 1 <= precision <= 1000 or not 0 <= scale <= precision:
            raise TypeSpellingError(f"{text!r}: numeric needs 1 <= p <= 1000 and 0 <= s <= p")
        return cls("numeric", precision=precision, scale=scale)

    @classmethod
    def array_of(cls, element: PgType) -> PgType:
        return cls("array", element=element)

    @property
    def ddl(self) -> str:
        """The type as PostgreSQL spells it in CREATE TABLE and format_type()."""
        if self.element is not None:
            return f"{self.element.ddl}[]"
        if self.kind == "numeric" and self.precision is not None:
            return f"numeric({self.precision},{self.scale})"
        if self.kind == "varchar":
            return f"character varying({self.length})"
        if self.kind == "timestamp":
            return "timestamp without time zone"
        if self.kind == "timestamptz":
            return "timestamp with time zone"
        return self.kind

    def __str__(self) -> str:
        if self.element is not None:
            return f"{self.element}[]"
        if self.kind == "numeric" and self.precision is not None:
            return f"numeric({self.precision},{self.scale})"
        if self.kind == "varchar":
            return f"varchar({self.length})"
        return self.kind

    @property
    def polars_dtype(self) -> pl.DataType:
        """The polars dtype values are validated in (numeric goes through Float64 for checks)."""
        mapping: dict[str, pl.DataType] = {
            "smallint": pl.Int16(),
            "integer": pl.Int32(),
            "bigint": pl.Int64(),
            "numeric": pl.Float64(),
            "real": pl.Float32(),
            "double precision": pl.Float64(),
            "boolean": pl.Boolean(),
            "text": pl.String(),
            "varchar": pl.String(),
            "date": pl.Date(),
            "timestamp": pl.Datetime("us"),
            "timestamptz": pl.Datetime("us", "UTC"),
            "uuid": pl.String(),
            "jsonb": pl.String(),
            "bytea": pl.String(),  # PostgreSQL's hex form, \x0a1b...
            "array": pl.String(),  # PostgreSQL's array literal, {1,2,NULL}
        }
        return mapping[self.kind]

    @property
    def is_textual(self) -> bool:
        return self.kind in {"text", "varchar"}

    @property
    def is_orderable(self) -> bool:
        """Types on which ge/gt/le/lt checks and a version column make sense."""
        return self.kind in {
            "smallint",
            "integer",
            "bigint",
            "numeric",
            "real",
            "double precision",
            "date",
            "timestamp",
            "timestamptz",
        }

    @property
    def is_integer(self) -> bool:
        return self.kind in INTEGER_RANGES

    def widens_to(self, wide: PgType) -> bool:
        """Whether a column of this type may become `wide` without any value it holds changing
        (policy.type_changes: widen). The database's own elt.type_widens, which guards the
        runtime's one DDL door, says the same (a test holds them together)."""
        if self.kind in _WIDER_KINDS:
            return wide.kind in _WIDER_KINDS[self.kind] and wide.precision is None
        if self.kind == "varchar":
            assert self.length is not None
            return wide.kind == "text" or (
                wide.kind == "varchar" and wide.length is not None and wide.length > self.length
            )
        if self.kind == "numeric" and self.precision is not None:
            if wide.kind != "numeric" or wide == self:
                return False
            if wide.precision is None:
                return True
            scale, wide_scale = self.scale or 0, wide.scale or 0
            return wide_scale >= scale and wide.precision - wide_scale >= self.precision - scale
        return False


# Types that widen to other kinds (integers to unconstrained numeric only: numeric(p,s) would
# bound them again).
_WIDER_KINDS: dict[str, set[str]] = {
    "smallint": {"integer", "bigint", "numeric"},
    "integer": {"bigint", "numeric"},
    "bigint": {"numeric"},
    "real": {"double precision"},
    "date": {"timestamp"},
}
