"""The dataset contract: what users write in contracts/<dataset>.yaml, as typed, validated objects.

Pydantic does the structural validation (unknown keys, wrong types); the validators below add the
rules that need the whole contract (primary key columns exist, checks fit their column's type).
"""

from __future__ import annotations

import codecs
import re
import warnings
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.functional_serializers import PlainSerializer
from pydantic.functional_validators import AfterValidator, BeforeValidator

from elt_assets.contracts.types import PgType

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DATASET_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# What Dagster accepts for an asset's group, owners and tags (checked here, so a contract that
# breaks them is one broken contract, not a code location that fails to load).
GROUP_NAME = re.compile(r"^[A-Za-z0-9_]+$")
OWNER = re.compile(r"^(team:[A-Za-z0-9_]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
TAG_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
RESERVED_PREFIX = "_elt_"
# The platform's own columns, beside a contract's: the file a staged row came from, and its
# 1-based data row in that file (kept in staging and the quarantine, for messages and lineage).
FILE_COLUMN = RESERVED_PREFIX + "file"
# A history table's (target.mode: history) own columns: when each version of a row starts and
# ends (NULL: the current one), and whether it is current (generated from the end).
VALID_FROM = RESERVED_PREFIX + "valid_from"
VALID_TO = RESERVED_PREFIX + "valid_to"
CURRENT = RESERVED_PREFIX + "current"
ROW_COLUMN = RESERVED_PREFIX + "row"
# A staged row's load: the manifest row (elt.ingestion_manifest.id) of the file's content it came
# from. Staging is keyed by it and the row, so each new slice goes at the end of the key's index,
# which only grows (a 200k-row file into a 1M-row staging table: 0.2-0.3 s less than a
# file-name key that sorts before the slices already there).
LOAD_COLUMN = RESERVED_PREFIX + "load"
# A batch of rows the reader itself rejected (ragged CSV records) carries these two instead of
# the contract's columns: why, and the record's fields as raw_record JSON for the quarantine.
REJECTED_COLUMN = RESERVED_PREFIX + "rejected"
RAW_RECORD_COLUMN = RESERVED_PREFIX + "raw_record"
# Columns the contract does not name, kept for the rescue column: _elt_extra_0, _elt_extra_1, ...
# in the order of HeaderMapping.extra.
EXTRA_PREFIX = RESERVED_PREFIX + "extra_"
# "raw" and "staged" would collide with the raw/<dataset>_files and staged/<dataset>_staging keys.
PLATFORM_SCHEMAS = {"elt", "elt_staging", "public", "information_schema", "raw", "staged"}


def check_group(value: str | None) -> str | None:
    if value is not None and not GROUP_NAME.match(value):
        raise ValueError(f"group {value!r}: use letters, digits and _ only")
    return value


def check_owners(value: list[str]) -> list[str]:
    for owner in value:
        if not OWNER.match(owner):
            raise ValueError(f"owner {owner!r}: an owner is an e-mail address or team:name")
    return value


def check_tags(value: dict[str, str]) -> dict[str, str]:
    for key, tag in value.items():
        if not TAG_KEY.match(key):
            raise ValueError(f"tag {key!r}: letters, digits, _ . - (at most 63), one / prefix")
        if not TAG_VALUE.match(tag):
            raise ValueError(f"tag {key}: {tag!r}: letters, digits, _ . - (at most 63)")
    return value


# The same checks wherever Dagster names are written: in a contract, in the component's YAML.
GroupName = Annotated[str | None, AfterValidator(check_group)]
Owners = Annotated[list[str], AfterValidator(check_owners)]
Tags = Annotated[dict[str, str], AfterValidator(check_tags)]


def check_identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a valid identifier (letters, digits, _; not a digit first)"
        )
    if len(value.encode()) > 63:
        raise ValueError(f"{value!r} is longer than PostgreSQL's 63-byte identifier limit")
    return value


Identifier = Annotated[str, AfterValidator(check_identifier)]


def _parse_type(value: Any) -> PgType:
    if isinstance(value, PgType):
        return value
    if not isinstance(value, str):
        raise ValueError("the column type must be a string such as bigint or numeric(12,2)")
    return PgType.parse(value)


ColumnType = Annotated[
    PgType, BeforeValidator(_parse_type), PlainSerializer(str, return_type=str)  # as spelled
]
CheckBound = int | float | date | datetime | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CsvOptions(Strict):
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf8"
    header: bool = True
    null_values: list[str] = Field(default_factory=list)

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1 or value in "\r\n":
            raise ValueError("must be exactly one character, not a line break")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf8, latin-1, cp1252)") from None


class Source(Strict):
    glob: str
    format: Literal["csv", "parquet"] | None = None
    csv: CsvOptions = Field(default_factory=CsvOptions)
    timezone: str = "UTC"

    @field_validator("glob")
    @classmethod
    def _relative_glob(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/") or not value.strip():
            raise ValueError("must be a non-empty pattern relative to the landing directory")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Berlin)") from None
        return value


class History(Strict):
    """`target.mode: history`: how a history (SCD2) table follows its files."""

    # A key missing from a file is closed at the file's time: each file is a full snapshot.
    close_missing: bool = False


class Target(Strict):
    schema_: Identifier = Field(alias="schema")
    table: Identifier
    mode: Literal["upsert", "append", "history"] = "upsert"
    primary_key: list[Identifier] = Field(default_factory=list)
    version_column: Identifier | None = None
    history: History = Field(default_factory=History)

    @field_validator("schema_")
    @classmethod
    def _not_platform_schema(cls, value: str) -> str:
        if value.lower() in PLATFORM_SCHEMAS or value.lower().startswith("pg_"):
            raise ValueError(f"schema {value!r} is reserved; choose a schema of your own")
        return value


class ColumnChecks(Strict):
    ge: CheckBound | None = None
    gt: CheckBound | None = None
    le: CheckBound | None = None
    lt: CheckBound | None = None
    isin: list[Any] | None = None
    notin: list[Any] | None = None
    regex: str | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=0)
    unique: bool = False

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                with warnings.catch_warnings():
                    # Python's hint about its own future syntax ("possible nested set" for `[[`)
                    # says nothing about the pattern, which polars' regex engine matches.
                    warnings.simplefilter("ignore", FutureWarning)
                    re.compile(value)
            except (re.error, OverflowError, RecursionError) as error:  # a{4294967296}, ((((...
                raise ValueError(f"invalid regular expression: {error}") from None
        return value


class Column(Strict):
    name: Identifier
    type: ColumnType
    nullable: bool = True
    source_name: str | None = None  # header in the file, when it differs from `name`
    description: str | None = None
    checks: ColumnChecks = Field(default_factory=ColumnChecks)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower().startswith(RESERVED_PREFIX):
            raise ValueError(f"names starting with {RESERVED_PREFIX} are reserved for the platform")
        return value

    @model_validator(mode="after")
    def _checks_fit_type(self) -> Column:
        checks, kind = self.checks, self.type
        bounds = [n for n in ("ge", "gt", "le", "lt") if getattr(checks, n) is not None]
        if bounds and not kind.is_orderable:
            raise ValueError(
                f"checks {bounds} need a numeric, date or timestamp column, not {kind}"
            )
        lengths = [
            n for n in ("regex", "min_length", "max_length") if getattr(checks, n) is not None
        ]
        if lengths and not kind.is_textual:
            raise ValueError(f"checks {lengths} need a text or varchar column, not {kind}")
        return self

    @property
    def header(self) -> str:
        """The header this column is read from."""
        return self.source_name if self.source_name is not None else self.name


class Policy(Strict):
    schema_drift: Literal["strict", "tolerant"] = "strict"
    bad_rows: Literal["quarantine", "fail"] = "quarantine"
    max_bad_row_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    duplicate_keys: Literal["last", "fail"] = "last"
    # Schema evolution. A column the contract does not name: fail the file, ignore it, add it to
    # the tables (postgres/evolution.py), or keep its values in the rescue column (default: fail
    # under strict, ignore under tolerant). A value that
    # does not fit its (nullable) column: quarantine the row, or load the row with NULL there and
    # the value, with the reason, in the rescue column.
    new_columns: Literal["fail", "ignore", "add", "rescue"] | None = None
    bad_values: Literal["quarantine", "rescue"] = "quarantine"
    rescue_column: Identifier = "_rescued"
    # A value wider than its column (a bigint in an integer column, more digits than numeric(p,s),
    # a longer text than varchar(n), a timestamp in a date column): the column keeps its type and
    # the value is a bad value (bad_values decides), or the column is widened to hold it, along
    # an allow-list (contracts/types.py `widens_to`). Never narrowed.
    type_changes: Literal["keep", "widen"] = "keep"

    @property
    def extra_columns(self) -> Literal["fail", "ignore", "add", "rescue"]:
        """What happens to a column the contract does not name."""
        if self.new_columns is not None:
            return self.new_columns
        return "ignore" if self.schema_drift == "tolerant" else "fail"

    @property
    def rescues(self) -> bool:
        return self.extra_columns == "rescue" or self.bad_values == "rescue"

    @property
    def evolves(self) -> bool:
        """Whether the dataset's files may change its tables (add or widen columns)."""
        return self.extra_columns == "add" or self.type_changes == "widen"


class RowCountBounds(Strict):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class DatasetChecks(Strict):
    row_count: RowCountBounds | None = None
    unique: list[list[Identifier]] = Field(default_factory=list)


# PostgreSQL's limit of a table's columns, less the platform's own in the staging table (the
# file, the load, the row); the rescue column, when there is one, counts as a column.
POSTGRES_MAX_COLUMNS = 1600
MAX_TABLE_COLUMNS = POSTGRES_MAX_COLUMNS - 3


# Validation context of a contract that only reads a file (elt contract infer's sample), never a
# table: it may have more columns than a table can.
READS_ONLY = "reads_only"


def too_many_columns(count: int) -> str:
    return (
        f"columns: {count:,} columns, and a PostgreSQL table holds at most "
        f"{POSTGRES_MAX_COLUMNS:,}, {MAX_TABLE_COLUMNS:,} of them for a dataset's own (the "
        "platform adds 3 to its staging table): keep the columns you need; with `policy: "
        "{schema_drift: tolerant}` the file's other columns are ignored"
    )


EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def check_emails(value: list[str] | None) -> list[str] | None:
    for address in value or []:
        if not EMAIL.match(address):
            raise ValueError(f"e-mail address {address!r} is not one address like ops@example.com")
    return value


class DatasetAlerts(Strict):
    """Where this dataset's alerts go, instead of the platform's channels (ELT_ALERT_*): its
    owners. The webhook's URL is a secret, so the contract names the environment variable (or
    its `_FILE` variant) that holds it, never the URL."""

    email_to: Annotated[list[str] | None, AfterValidator(check_emails)] = None
    webhook_url_env: str | None = None
    webhook_format: Literal["json", "slack", "teams"] | None = None
    # A loaded file with at least this many quarantined rows is alerted (ELT_ALERT_QUARANTINE_ROWS).
    quarantine_rows: int | None = Field(default=None, ge=1)

    @field_validator("webhook_url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(
                "webhook_url_env must name an environment variable, e.g. SALES_WEBHOOK_URL, that "
                "holds the webhook's URL (the value is not shown: a URL here would be a secret, "
                "which stays out of the contract)"
            )
        return value


class Contract(Strict):
    """One dataset: where its files land, how to read them, and the table they become."""

    name: str
    description: str | None = None
    source: Source
    target: Target
    columns: list[Column] = Field(min_length=1)
    policy: Policy = Field(default_factory=Policy)
    checks: DatasetChecks = Field(default_factory=DatasetChecks)
    freshness_hours: float | None = Field(default=None, gt=0)
    # How the dataset's assets show in Dagster: group (default: the dataset's name), owners
    # (e-mail addresses or team:name), tags (key: value).
    group: GroupName = None
    owners: Owners = Field(default_factory=list)
    tags: Tags = Field(default_factory=dict)
    alerts: DatasetAlerts = Field(default_factory=DatasetAlerts)
    # The contract as the dataset's files evolved it (postgres/evolution.py): the YAML's own
    # contract, and the columns its files added (optional in a file even under strict drift,
    # since files from before them do not have them).
    _declared: Contract | None = PrivateAttr(default=None)
    _added: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def declared(self) -> Contract:
        """The contract as its YAML says, before its files evolved it."""
        return self._declared if self._declared is not None else self

    @property
    def evolved(self) -> bool:
        return self._declared is not None

    @property
    def added_columns(self) -> frozenset[str]:
        return self._added

    @property
    def widened_columns(self) -> dict[str, str]:
        """Columns of the YAML whose type the files widened: name -> the YAML's type."""
        declared = {c.name: c.type for c in self.declared.columns}
        return {
            c.name: str(declared[c.name])
            for c in self.columns
            if c.name in declared and c.type != declared[c.name]
        }

    def evolved_by(self, added: list[Column], widened: dict[str, PgType]) -> Contract:
        """The YAML's contract as its files evolved it: columns widened where a file needed it
        (a YAML that says as wide or wider since is the YAML's), then the columns they added."""
        base = self.declared
        columns = [
            c.model_copy(update={"type": widened[c.name]})
            if c.name in widened and c.type.widens_to(widened[c.name])
            else c
            for c in base.columns
        ]
        known = {c.name for c in base.columns}
        extra = [c for c in added if c.name not in known]
        if columns == base.columns and not extra:
            return base
        copy = base.model_copy(update={"columns": [*columns, *extra]})
        copy._declared, copy._added = base, frozenset(c.name for c in extra)
        return copy

    @property
    def group_name(self) -> str:
        return self.group or self.name

    @field_validator("name")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not DATASET_NAME.match(value) or len(value) > 50:
            raise ValueError(
                f"{value!r}: use lowercase letters, digits and _, at most 50 characters"
            )
        return value

    @model_validator(mode="after")
    def _column_rules(self, info: ValidationInfo) -> Contract:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"columns: {duplicates} appear more than once")
        headers = [c.header.strip().casefold() for c in self.columns]
        if len(set(headers)) != len(headers):
            raise ValueError("columns: two columns read the same header")
        reads_only = bool(info.context and info.context.get(READS_ONLY))
        if len(self.table_columns) > MAX_TABLE_COLUMNS and not reads_only:
            raise ValueError(too_many_columns(len(self.table_columns)))
        for group in self.checks.unique:
            for column in group:
                if column not in names:
                    raise ValueError(f"checks.unique: {column!r} is not one of the columns")
        return self

    @model_validator(mode="after")
    def _target_rules(self) -> Contract:
        known = {c.name for c in self.columns}
        target = self.target
        for key in target.primary_key:
            if key not in known:
                raise ValueError(f"target.primary_key: {key!r} is not one of the columns")
        if len(set(target.primary_key)) != len(target.primary_key):
            raise ValueError("target.primary_key: a column is listed twice")
        if target.mode in ("upsert", "history") and not target.primary_key:
            raise ValueError(f"target.primary_key is required when target.mode is {target.mode}")
        if target.history.close_missing and target.mode != "history":
            raise ValueError("target.history applies to target.mode: history only")
        version = target.version_column
        if version is not None:
            if version not in known:
                raise ValueError(f"target.version_column: {version!r} is not a column")
            if not self.column(version).type.is_orderable:
                raise ValueError("target.version_column must be a number, date or timestamp column")
            if version in target.primary_key:
                raise ValueError("target.version_column cannot be part of the primary key")
            if target.mode == "history" and self.column(version).nullable:
                raise ValueError(
                    "target.version_column of a history table must be `nullable: false`: its "
                    "value is when a row's version starts"
                )
        return self

    @model_validator(mode="after")
    def _rescue_rules(self) -> Contract:
        rescue = self.policy.rescue_column
        if self.policy.rescues and rescue in {c.name for c in self.columns}:
            raise ValueError(
                f"policy.rescue_column: {rescue!r} is also a column; name the rescue column "
                "something else"
            )
        if rescue.lower().startswith(RESERVED_PREFIX):
            raise ValueError(
                f"policy.rescue_column: names starting with {RESERVED_PREFIX} are "
                "reserved for the platform"
            )
        return self

    @property
    def table_columns(self) -> list[Column]:
        """The columns of the dataset's tables: the contract's, then the rescue column (jsonb)
        when the policy rescues anything."""
        if not self.policy.rescues:
            return list(self.columns)
        rescue = Column(
            name=self.policy.rescue_column,
            type=PgType("jsonb"),
            description="What the typed columns could not take, as the file had it: "
            "{column: {value, reason}} (policy.new_columns / bad_values: rescue)",
        )
        return [*self.columns, rescue]

    @property
    def row_key(self) -> list[str]:
        """The columns one row of a file is identified by: the primary key, and in a history
        table with a version column the version too (a file may bring several versions)."""
        key = list(self.target.primary_key)
        if self.target.mode == "history" and self.target.version_column:
            key.append(self.target.version_column)
        return key

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def is_required(self, column: Column) -> bool:
        """Primary-key columns are never nullable, whatever the contract says."""
        return not column.nullable or column.name in self.target.primary_key

    def file_format(self, relative_path: str) -> Literal["csv", "parquet"]:
        """The contract's format, else the file's extension (.csv.gz is csv)."""
        if self.source.format is not None:
            return self.source.format
        lower = relative_path.lower()
        if lower.endswith((".parquet", ".pq")):
            return "parquet"
        return "csv"
