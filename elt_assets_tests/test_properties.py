"""Property-based tests: every value of every contract type arrives exactly, or is quarantined.

For each PostgreSQL type a contract supports, hypothesis generates a file of values (edges
included: range limits, NaN and infinities, negative zero, denormals, rounding midpoints, dates
near year 1 and 9999, leap days, clock changes, unicode, empty strings, NUL) written as CSV and as
Parquet with the value's natural Arrow type. Each file goes through the platform's real path
(manifest start, read, cast, validate, COPY into staging with PostgreSQL as the last word,
quarantine, load into the target: the functions the Dagster assets call), and the same values go
through PostgreSQL itself: the CSV bytes through its own `COPY ... (FORMAT csv, HEADER true)`,
the Parquet values as bound parameters into a column of the contract's type. Then, compared as
PostgreSQL prints them:

- a value PostgreSQL accepts is in the target exactly as PostgreSQL stores it, or quarantined
  with a reason naming the column (our casts accept a documented subset of PostgreSQL's
  spellings); a value in the canonical spelling must not be quarantined;
- a value PostgreSQL refuses is quarantined, with a reason naming the column;
- every row is in exactly one of the two.

Every property runs twice: on files in a directory and on objects in an S3 bucket (moto's server),
streamed by the readers as a deployment with an s3:// landing reads them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from elt_assets.contracts.model import Contract
from elt_assets.contracts.types import INTEGER_RANGES
from elt_assets.landing.keys import path_to_key
from elt_assets.landing.objects import ObjectStore
from elt_assets.landing.readers import FileRejected, _QuoteCheck
from elt_assets.landing.zone import Landing, LocalDirectory
from elt_assets.postgres.connection import connect
from elt_assets.postgres.load import FileStart, ManifestKey, load_files, start_files
from elt_assets.postgres.staging import write_staged
from elt_assets.postgres.tables import ensure_dataset_tables
from elt_assets.postgres.templates import render_duplicate_keys
from elt_assets.validation.policy import StageReport
from elt_assets.validation.staged_file import StagedFile
from elt_assets_tests.conftest import S3, TEMPLATE, Server, Warehouse

pytestmark = [pytest.mark.db]

TIMEZONE = "Europe/Berlin"
BERLIN = ZoneInfo(TIMEZONE)
EXAMPLES = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_files = itertools.count()

# A value for one row: what is written (text for CSV, a Python value for Parquet) and whether it
# is in the canonical spelling every correct loader must accept.
Row = tuple[Any, bool]


# -- the platform's path and PostgreSQL's, side by side -------------------------------------------


@dataclass
class Outcome:
    target: dict[int, str | None]  # id -> value as PostgreSQL prints it
    quarantined: dict[int, tuple[str, str, str]]  # row -> (column, check, reason)
    reference: dict[int, str | None]  # id -> PostgreSQL's own value; absent: PostgreSQL refused


class Harness:
    """One database for the module; one dataset (contract, target, reference table) per type."""

    def __init__(self, warehouse: Warehouse, landing: Path, zone: Landing):
        self.warehouse, self.landing, self.zone = warehouse, landing, zone
        self.bucket = zone if isinstance(zone, ObjectStore) else None
        self.contracts: dict[str, Contract] = {}
        # Two connections for the whole module: the runtime's role, and a superuser to inspect.
        self.loader = connect(warehouse.loader_url, setting="test loader")
        self.inspector = psycopg.connect(warehouse.superuser_url, autocommit=True)
        self.inspector.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(TIMEZONE)))

    def close(self) -> None:
        self.loader.close()
        self.inspector.close()

    def contract(
        self, name: str, pg_type: str, checks: str = "{}", timezone: str = TIMEZONE
    ) -> Contract:
        if name not in self.contracts:
            contract = Contract.model_validate(
                {
                    "name": name,
                    "source": {"glob": f"{name}/*", "timezone": timezone},
                    "target": {"schema": "props", "table": name, "mode": "append"},
                    "columns": [
                        {"name": "id", "type": "integer", "nullable": False},
                        {"name": "v", "type": pg_type, "checks": json.loads(checks)},
                    ],
                    "policy": {"max_bad_row_ratio": 1.0},
                }
            )
            (self.landing / name).mkdir()
            self.inspector.execute("CREATE SCHEMA IF NOT EXISTS reference")
            self.inspector.execute(
                sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, v {})").format(
                    sql.Identifier("reference", name), sql.SQL(contract.column("v").type.ddl)
                )
            )
            ensure_dataset_tables(
                self.loader,
                contract,
                lambda: connect(self.warehouse.owner_url, setting="test owner"),
            )
            self.contracts[name] = contract
        return self.contracts[name]

    def ingest(self, contract: Contract, name: str, data: bytes) -> StageReport:
        """The real path of one landed file: manifest, staging (read, cast, validate, COPY,
        quarantine), then the target, as the raw, staged and target assets run it."""
        file = f"{contract.name}/{name}"
        if (bucket := self.bucket) is not None:  # an object in the bucket, read as it streams
            bucket.client.put_object(Bucket=bucket.bucket, Key=bucket.prefix + file, Body=data)
        else:
            (self.landing / file).write_bytes(data)
        source = self.zone.source(file)
        key = ManifestKey(contract.name, file, hashlib.sha256(data).hexdigest())
        run_id = uuid.uuid4().hex
        start = FileStart(key, path_to_key(file), len(data), contract.file_format(file))
        loads = start_files(self.loader, [start], run_id)
        staged = StagedFile(
            contract, source, file, path_to_key(file), key.sha256, len(data), run_id
        )
        staged.load = loads[file]
        report = write_staged(self.loader, staged)
        assert report.violations == [], report.violations
        load_files(self.loader, contract, [key], run_id)
        return report

    def outcome(self, contract: Contract, file: str) -> Outcome:
        connection, path = self.inspector, f"{contract.name}/{file}"
        target = connection.execute(
            sql.SQL("SELECT id, v::text FROM {} WHERE _elt_file = %s").format(
                sql.Identifier("props", contract.name)
            ),
            [path],
        ).fetchall()
        quarantined = connection.execute(
            "SELECT row_number, column_name, check_name, reason FROM elt.quarantine"
            " WHERE dataset = %s AND file = %s AND resolved_at IS NULL",
            [contract.name, path],
        ).fetchall()
        reference = connection.execute(
            sql.SQL("SELECT id, v::text FROM {}").format(sql.Identifier("reference", contract.name))
        ).fetchall()
        return Outcome(
            target=dict(target),
            quarantined={
                row: (column, check, reason) for row, column, check, reason in quarantined
            },
            reference=dict(reference),
        )

    def reference_copy(self, contract: Contract, header: str, lines: list[str]) -> None:
        """PostgreSQL's own COPY of the same CSV records, one by one (a refused one is absent)."""
        table = sql.Identifier("reference", contract.name)
        statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(table)
        connection = self.inspector
        connection.execute(sql.SQL("TRUNCATE {}").format(table))
        zone = sql.SQL("SET LOCAL TimeZone = {}").format(sql.Literal(contract.source.timezone))
        for records in ([*lines], *([line] for line in lines)):  # all at once, else one by one
            try:
                with (
                    connection.transaction(),
                    connection.cursor() as cursor,
                ):
                    cursor.execute(zone)  # local times are read in the contract's zone
                    with cursor.copy(statement) as copy:
                        copy.write((header + "".join(records)).encode())
            except psycopg.Error:
                continue
            if len(records) > 1:
                return

    def reference_insert(self, contract: Contract, values: list[Any]) -> None:
        """PostgreSQL's value for each typed value, bound as a parameter into the typed column."""
        table = sql.Identifier("reference", contract.name)
        connection = self.inspector
        connection.execute(sql.SQL("TRUNCATE {}").format(table))
        for row, value in enumerate(values, start=1):
            try:
                with connection.transaction():
                    connection.execute(
                        sql.SQL("INSERT INTO {} (id, v) VALUES (%s, %s)").format(table),
                        [row, value],
                    )
            except psycopg.Error:
                continue


@pytest.fixture(scope="module", params=["directory", "bucket"])
def harness(
    request: pytest.FixtureRequest, pg_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """Every property holds for files in a directory and for objects in a bucket (moto's S3)."""
    name = f"elt_props_{os.getpid()}_{request.param}"
    with connect(pg_server.superuser_url, setting="test server") as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER elt_owner").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    landing = tmp_path_factory.mktemp("properties")
    with pytest.MonkeyPatch.context() as patch:
        zone: Landing = LocalDirectory(landing)
        if request.param == "bucket":
            s3: S3 = request.getfixturevalue("s3_server")
            for variable, value in s3.env.items():
                patch.setenv(variable, value)
            s3.client().create_bucket(Bucket=name.replace("_", "-"))
            zone = ObjectStore(f"s3://{name.replace('_', '-')}/properties")
        harness = Harness(Warehouse(pg_server, name), landing, zone)
        try:
            yield harness
        finally:
            harness.close()
        with connect(pg_server.superuser_url, setting="test server") as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def check(outcome: Outcome, rows: list[Row], written: list[Any]) -> None:
    """The promise, row by row (ids are 1..n, so an id is also its row number)."""
    for row, (_, canonical) in enumerate(rows, start=1):
        value = written[row - 1]
        loaded, refused = row in outcome.target, row not in outcome.reference
        quarantined = outcome.quarantined.get(row)
        assert loaded != (quarantined is not None), f"row {row} {value!r}: loaded and quarantined"
        if quarantined is not None:
            column, check_name, reason = quarantined
            # Our reasons start with the column; PostgreSQL's own (check "postgres") name it in
            # column_name, taken from its error context.
            assert column == "v", (value, quarantined)
            assert reason.startswith("v: ") or check_name == "postgres", (value, quarantined)
            assert refused or not canonical, f"{value!r} is valid but quarantined: {reason}"
        else:
            assert not refused, f"{value!r}: PostgreSQL refuses it, yet it was loaded"
            assert outcome.target[row] == outcome.reference[row], (
                f"{value!r}: loaded {outcome.target[row]!r}, PostgreSQL makes it "
                f"{outcome.reference[row]!r}"
            )


# -- CSV -----------------------------------------------------------------------------------------


def csv_field(text: str | None, quote: bool) -> str:
    """None is the unquoted empty field (NULL); anything else may be quoted, some must be."""
    if text is None:
        return ""
    if quote or text == "" or any(c in text for c in ',"\r\n') or text != text.strip(" "):
        return '"' + text.replace('"', '""') + '"'
    return text


@dataclass(frozen=True)
class Case:
    name: str
    pg_type: str
    csv: st.SearchStrategy[Row]
    parquet: st.SearchStrategy[Row] | None = None
    arrow: pa.DataType | None = None
    checks: str = "{}"
    binary: bool = False  # a Parquet file of it goes to staging in COPY's binary format
    csv_binary: bool = False  # so does a CSV file of it (postgres/binary.py `_way_from_text`)
    timezone: str = TIMEZONE  # the contract's, where values without an offset are read


def run_csv(harness: Harness, case: Case, rows: list[Row], quotes: list[bool]) -> None:
    contract = harness.contract(f"csv_{case.name}", case.pg_type, case.checks, case.timezone)
    header = "id,v\n"
    lines = [
        f"{row},{csv_field(text, quote)}\n"
        for row, ((text, _), quote) in enumerate(zip(rows, quotes, strict=True), start=1)
    ]
    file = f"{next(_files)}.csv"
    report = harness.ingest(contract, file, (header + "".join(lines)).encode())
    # A binary COPY PostgreSQL refuses is staged again as csv, isolating the refused rows
    expected = "binary" if case.csv_binary else "csv"
    assert report.copy_format == expected or report.refused_by_postgres, report.copy_format
    harness.reference_copy(contract, header, lines)
    check(harness.outcome(contract, file), rows, [text for text, _ in rows])


def run_parquet(harness: Harness, case: Case, rows: list[Row]) -> None:
    assert case.parquet is not None and case.arrow is not None
    contract = harness.contract(f"pq_{case.name}", case.pg_type, case.checks)
    values = [value for value, _ in rows]
    table = pa.table(
        {
            "id": pa.array(range(1, len(rows) + 1), pa.int32()),
            "v": pa.array(values, case.arrow),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    file = f"{next(_files)}.parquet"
    report = harness.ingest(contract, file, sink.getvalue())
    # A binary COPY PostgreSQL refuses is staged again as csv, isolating the refused rows
    assert report.copy_format == ("binary" if case.binary else "csv") or report.refused_by_postgres
    harness.reference_insert(contract, [reference_value(case, v) for v in values])
    check(harness.outcome(contract, file), rows, values)


def reference_value(case: Case, value: Any) -> Any:
    """How the typed value is handed to PostgreSQL for the reference: as itself, except a float
    for numeric, which is given as its shortest round-trip decimal (what the file holds)."""
    if isinstance(value, float) and case.pg_type.startswith("numeric"):
        return Decimal(repr(value))
    return value


# -- values ----------------------------------------------------------------------------------------

junk = st.text(max_size=8).map(lambda text: (text, False))
spaces = st.sampled_from(["", " ", "  ", "\t", " \t"])


def padded(strategy: st.SearchStrategy[Row]) -> st.SearchStrategy[Row]:
    """PostgreSQL's numeric, boolean and date/time input ignores surrounding whitespace."""
    return st.tuples(strategy, spaces, spaces).map(lambda t: (t[1] + t[0][0] + t[2], t[0][1]))


def integers(kind: str) -> Case:
    low, high = INTEGER_RANGES[kind]
    edges = st.sampled_from([low, high, 0, -1, 1, low - 1, high + 1, high * 10])
    number = st.integers(low - 2, high + 2) | edges
    canonical = number.map(lambda n: (str(n), low <= n <= high))
    spelled = st.tuples(number, st.sampled_from(["+{}", "0{}", "{}.0", "{}e0", "{} 1"])).map(
        lambda t: (t[1].format(t[0]), False)
    )
    typed_edges = st.sampled_from([low, high, max(low - 1, -(2**63)), min(high + 1, 2**63 - 1)])
    typed = (st.integers(-(2**63), 2**63 - 1) | typed_edges).map(lambda n: (n, low <= n <= high))
    rows = padded(canonical) | spelled | junk
    return Case(kind, kind, rows, typed, pa.int64(), binary=True, csv_binary=True)


EXACT = Context(prec=200)  # numeric(38,10) and its neighbours need more than 28 digits


def half_up(value: Decimal, scale: int) -> Decimal:
    """What PostgreSQL stores in numeric(p, scale): rounded half away from zero."""
    return value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=EXACT)


def numerics(precision: int, scale: int) -> Case:
    with localcontext(EXACT):
        return _numerics(precision, scale)


def _numerics(precision: int, scale: int) -> Case:
    limit = Decimal(10) ** (precision - scale)

    def fits(value: Decimal) -> bool:
        """Stored as written: in range, and nothing PostgreSQL would round away (a value it
        would round is a bad row, never silently changed)."""
        if value.is_nan():
            return True
        as_written = value == value.quantize(Decimal(1).scaleb(-scale), context=EXACT)
        return as_written and abs(half_up(value, scale)) < limit

    edge = limit - Decimal(1).scaleb(-scale)
    decimals = (
        st.decimals(min_value=-limit * 2, max_value=limit * 2, places=scale + 2)
        | st.decimals(min_value=-1, max_value=1, places=scale + 3)
        | st.sampled_from(
            [
                edge,
                -edge,
                limit - Decimal(5).scaleb(-scale - 1),  # rounds up to the limit: overflow
                edge + Decimal(4).scaleb(-scale - 1),  # rounds down: fits
                Decimal(5).scaleb(-scale - 1),  # half a unit: rounds away from zero
                Decimal("-0"),
                Decimal("NaN"),
                Decimal("1E+2"),
            ]
        )
    )
    canonical = decimals.map(lambda d: (str(d), fits(d)))
    plain = decimals.filter(lambda d: d.is_finite()).map(lambda d: (f"{d:f}", fits(d)))
    specials = st.sampled_from(["Infinity", "-inf", "nan", "1,5", "1e", ".", "+.5", "5."]).map(
        lambda text: (text, False)
    )
    # decimal128(38, places) with two more places than the column where its 38 digits allow.
    places = min(scale + 2, 38 - (precision - scale) - 1)
    typed = st.decimals(
        min_value=-limit * 2, max_value=limit * 2, places=places, allow_nan=False
    ).map(lambda d: (d, fits(d)))
    return Case(
        f"numeric_{precision}_{scale}",
        f"numeric({precision},{scale})",
        padded(canonical) | padded(plain) | specials | junk,
        typed,
        pa.decimal128(38, places),
        csv_binary=precision <= 18,  # the binary numeric encoder's limit
    )


def typed_numerics(precision: int, scale: int, arrow: pa.DataType) -> Case:
    """Parquet decimals no wider than the column (or integers): sent as numeric in binary."""
    typed: st.SearchStrategy[Row]
    with localcontext(EXACT):
        limit = Decimal(10) ** (precision - scale)
        if pa.types.is_integer(arrow):
            ends = [int(limit) - 1, 1 - int(limit), int(limit), 0, -1, 2**63 - 1, -(2**63)]
            integers = st.integers(-(2**63), 2**63 - 1) | st.sampled_from(ends)
            typed = integers.map(lambda n: (n, abs(n) < limit))
        else:  # decimal128(p, s): every value fits a column with as many digits on each side
            unit = Decimal(1).scaleb(-arrow.scale)
            most = Decimal(10) ** (arrow.precision - arrow.scale) - unit
            edges = [most, -most, Decimal(0), Decimal("-0"), unit, -unit]
            decimals = st.decimals(min_value=-most, max_value=most, places=arrow.scale)
            typed = (decimals | st.sampled_from(edges)).map(lambda d: (d, True))
    source = "int" if pa.types.is_integer(arrow) else "decimal"
    return Case(
        f"numeric_{precision}_{scale}_from_{source}",
        f"numeric({precision},{scale})",
        st.nothing(),
        typed,
        arrow,
        binary=True,
    )


def unconstrained_numeric() -> Case:
    bounded = st.decimals(
        min_value=Decimal("-1E+40"), max_value=Decimal("1E+40"), allow_nan=False
    ) | st.sampled_from([Decimal("1E+100"), Decimal("-1E-100"), Decimal("0.000"), Decimal("-0")])
    canonical = (bounded | st.just(Decimal("NaN"))).map(lambda d: (str(d), True))
    wild = st.decimals(allow_nan=True).map(lambda d: (str(d), False))  # sNaN, 1E+999999999
    return Case(
        "numeric",
        "numeric",
        padded(canonical) | wild | junk,
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: (f, True)),
        pa.float64(),
    )


def floats(kind: str) -> Case:
    single = kind == "real"
    edges = [0.0, -0.0, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308]
    if single:
        edges = [0.0, -0.0, 1.401298464324817e-45, 3.4028234663852886e38, 1.1754943508222875e-38]
    values = st.floats(width=32 if single else 64) | st.sampled_from(edges)
    canonical = values.map(lambda f: (repr(f), True))
    wide = st.floats(allow_nan=False).map(lambda f: (repr(f), not single))
    spelled = st.sampled_from(
        ["Infinity", "-Infinity", "+inf", "NaN", "-nan", "1e400", "-1e-400", "0e-999", "1.5.2"]
    ).map(lambda text: (text, text in {"Infinity", "-Infinity", "+inf", "NaN", "0e-999"}))
    return Case(
        kind.replace(" ", "_"),
        kind,
        padded(canonical) | wide | spelled | junk,
        values.map(lambda f: (f, True)),
        pa.float32() if single else pa.float64(),
        binary=True,
        csv_binary=not single,  # a float4 read through a float64 could be rounded twice
    )


def booleans() -> Case:
    words = ["t", "true", "y", "yes", "on", "1", "f", "false", "n", "no", "off", "0", "of", "tru"]
    spelled = st.tuples(st.sampled_from(words), st.booleans()).map(
        lambda t: (t[0].upper() if t[1] else t[0], True)
    )
    wrong = st.sampled_from(["2", "yess", "o", "-1", "", "t r u e", "ja"]).map(
        lambda text: (text, False)
    )
    return Case(
        "boolean",
        "boolean",
        padded(spelled) | wrong | junk,
        st.booleans().map(lambda b: (b, True)),
        pa.bool_(),
        binary=True,
        csv_binary=True,
    )


def texts(pg_type: str, name: str, limit: int | None) -> Case:
    def fits(text: str) -> bool:
        return "\x00" not in text and (limit is None or len(text.rstrip(" ")) <= limit)

    values = st.text(max_size=12) | st.sampled_from(
        ["", " ", "NULL", "\\N", "e\u0301", "\U0001f469\u200d\U0001f467", "=1+1", "a\r\nb", '""']
    )
    rows = values.map(lambda text: (text, fits(text)))
    return Case(name, pg_type, rows, rows, pa.string(), binary=True, csv_binary=True)


def dates() -> Case:
    days = st.dates() | st.sampled_from(
        [date(1, 1, 1), date(9999, 12, 31), date(2024, 2, 29), date(2000, 2, 29)]
    )
    canonical = days.map(lambda d: (d.isoformat(), True))
    shaped = st.tuples(st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)).map(
        lambda t: (f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}", False)
    )
    return Case(
        "date",
        "date",
        padded(canonical) | shaped | junk,
        days.map(lambda d: (d, True)),
        pa.date32(),
        binary=True,
        csv_binary=True,
    )


def spelled_datetime(moment: datetime, separator: str, precision: str) -> str:
    return moment.isoformat(sep=separator, timespec=precision)


precisions = st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds"])
separators = st.sampled_from([" ", "T"])
# Around Berlin's 2024 clock changes, where a local time is skipped or happens twice.
near_changes = st.tuples(
    st.sampled_from([datetime(2024, 3, 31, 1, 0), datetime(2024, 10, 27, 1, 0)]),
    st.integers(0, 4 * 60),
).map(lambda t: t[0] + timedelta(minutes=t[1]))
moments = (
    st.datetimes()
    | near_changes
    | st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)])
)


# Spellings PostgreSQL reads in its own way: a fraction beyond microseconds rounded (through a
# double, carrying into the second), a leap second, hour 24, offsets up to 15:59.
EDGE_TIMES = [
    "2026-01-01 10:00:00.1234567",
    "2026-01-01 10:00:00.1234565",
    "2026-01-01 10:00:00.0000015",
    "2026-01-01 23:59:59.9999995",
    "2026-01-01 23:59:59.99999949",
    "2026-01-01 10:00:00.123456789123",
    "9999-12-31 23:59:59.9999999",
    "2026-01-01 23:59:60",
    "2026-01-01 23:59:60.5",
    "2026-01-01 23:59:60.0000004",
    "2026-01-01 24:00:00",
    "2026-01-01T10:00:00.",
]
EDGE_OFFSETS = ["+00", "Z", "+15:59", "+16:00", "-15", "+0530", "-05:60", "+1", " +02"]
edge_times = st.sampled_from(EDGE_TIMES).map(lambda text: (text, False))
edge_zoned = st.tuples(st.sampled_from(EDGE_TIMES), st.sampled_from(EDGE_OFFSETS)).map(
    lambda t: (t[0] + t[1], False)
)


def timestamps() -> Case:
    canonical = st.tuples(moments, separators, precisions).map(
        lambda t: (spelled_datetime(*t), True)
    )
    return Case(
        "timestamp",
        "timestamp",
        padded(canonical) | edge_times | junk,
        moments.map(lambda m: (m, True)),
        pa.timestamp("us"),
        binary=True,
        csv_binary=True,
    )


def is_skipped(local: datetime, zone: ZoneInfo = BERLIN) -> bool:
    """A wall-clock time that never happens in the zone (Berlin's spring-forward gap)."""
    there = local.replace(tzinfo=zone)
    try:
        return there.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local
    except OverflowError:  # around year 1 or 9999: no clock changes there
        return False


offsets = st.sampled_from([0, 60, -60, 345, -570, 840, -720, 330]).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def timestamptz(timezone: str = TIMEZONE) -> Case:
    """In Berlin (clock changes: a CSV goes as text) or in UTC (in binary)."""
    zone = ZoneInfo(timezone)
    aware = st.tuples(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        offsets,
        separators,
        precisions,
    ).map(lambda t: (spelled_datetime(t[0].replace(tzinfo=t[1]), t[2], t[3]), True))
    local = st.tuples(moments, separators, precisions).map(
        lambda t: (spelled_datetime(*t), not is_skipped(t[0], zone))
    )
    zulu = st.datetimes().map(lambda m: (m.isoformat(sep=" ") + "Z", True))
    typed = st.datetimes(min_value=datetime(1, 1, 2), timezones=st.just(UTC)).map(
        lambda m: (m, True)
    )
    utc = timezone == "UTC"
    return Case(
        "timestamptz_utc" if utc else "timestamptz",
        "timestamptz",
        padded(aware) | padded(local) | zulu | edge_times | edge_zoned | junk,
        typed,
        pa.timestamp("us", tz="UTC"),
        binary=True,
        csv_binary=utc,
        timezone=timezone,
    )


def local_timestamptz() -> Case:
    """Naive Parquet timestamps into timestamptz: read in the contract's time zone."""
    typed = moments.map(lambda m: (m, not is_skipped(m)))
    return Case("timestamptz_local", "timestamptz", junk, typed, pa.timestamp("us"))


def uuids() -> Case:
    forms: list[Callable[[uuid.UUID], str]] = [
        str,
        lambda u: str(u).upper(),
        lambda u: u.hex,
        lambda u: "{" + str(u) + "}",
    ]
    spelled = st.tuples(st.uuids(), st.sampled_from(forms)).map(lambda t: (t[1](t[0]), True))
    broken = st.tuples(st.uuids(), st.sampled_from([" {} ", "{}\t", "{{{}", "{}0", "x{}"])).map(
        lambda t: (t[1].format(t[0]), False)
    )
    return Case("uuid", "uuid", spelled | broken | junk, spelled, pa.string())


def byteas() -> Case:
    """Bytes: in CSV in PostgreSQL's hex form (its escape form is not accepted: a strict subset),
    in Parquet as binary."""
    data = st.binary(max_size=12)
    spelled = data.map(lambda b: ("\\x" + b.hex(), True)) | data.map(
        lambda b: ("\\x" + b.hex().upper(), True)
    )
    broken = st.sampled_from(["\\x0", "\\x0g", " \\x00", "\\x00 ", "\\X00", "abc", "\\"])
    return Case(
        "bytea",
        "bytea",
        spelled | broken.map(lambda text: (text, False)) | junk,
        data.map(lambda b: (b, True)),
        pa.binary(),
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


def jsons() -> Case:
    documents = st.tuples(json_values, st.booleans(), spaces).map(
        lambda t: json.dumps(t[0], ensure_ascii=t[1]) + t[2]
    )
    rows = documents.map(lambda text: (text, "\\u0000" not in text and "\x00" not in text))
    # A form feed or vertical tab is whitespace to PostgreSQL's numbers, not to JSON: refused.
    fed = st.tuples(documents, st.sampled_from(["\x0c", "\x0b"])).map(
        lambda t: (t[1] + t[0], False)
    )
    return Case("jsonb", "jsonb", rows | fed | junk, rows, pa.string())


CASES = [
    integers("smallint"),
    integers("integer"),
    integers("bigint"),
    numerics(12, 2),
    numerics(38, 10),
    numerics(5, 0),
    unconstrained_numeric(),
    floats("real"),
    floats("double precision"),
    booleans(),
    texts("text", "text", None),
    texts("varchar(5)", "varchar", 5),
    dates(),
    timestamps(),
    timestamptz(),
    timestamptz("UTC"),
    uuids(),
    jsons(),
    byteas(),
]
PARQUET_CASES = [
    *[case for case in CASES if case.parquet is not None and case.name != "timestamptz_utc"],
    local_timestamptz(),
    typed_numerics(12, 2, pa.decimal128(12, 2)),
    typed_numerics(18, 5, pa.decimal128(16, 3)),
    typed_numerics(6, 0, pa.decimal128(6, 0)),
    typed_numerics(18, 0, pa.int64()),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@EXAMPLES
@given(data=st.data())
def test_csv_values_arrive_exactly_or_are_quarantined(
    harness: Harness, case: Case, data: st.DataObject
) -> None:
    rows = data.draw(st.lists(case.csv | st.just((None, True)), min_size=1, max_size=8))
    quotes = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    run_csv(harness, case, rows, quotes)


# Every spelling at once, in one file: what a CSV sends in binary is the value our cast read, so
# each spelling PostgreSQL reads its own way must be read the same, or quarantined.
EDGES = {
    "timestamp": EDGE_TIMES,
    "timestamptz": [*EDGE_TIMES, *[t + o for t in EDGE_TIMES for o in EDGE_OFFSETS]],
    "timestamptz_utc": [*EDGE_TIMES, *[t + o for t in EDGE_TIMES for o in EDGE_OFFSETS]],
    "numeric_12_2": [
        *["+5", ".5", "5.", "1.500", "1e2", "-0", "1.5E+1", "007.10", "-.5", "0.005e2", "NaN"],
        *["nan", " 3.14 ", "9999999999.99", "9999999999.995", "1.005", "0e-999", "-0.00"],
    ],
    "double_precision": [
        *["0.1", "1e-320", "5e-324", "1.7976931348623157e308", "1e309", "Infinity", "-inf"],
        *["NaN", "-nan", "-0", "0.30000000000000004", ".5", "5.", "1E+2", "9007199254740993"],
        *["2.2250738585072011e-308", "1e-400", "0e-999"],
    ],
    "integer": ["+1", "-0", "007", " 12 ", "2147483647", "2147483648", "1_000", "0x1F", "1e3"],
    "boolean": ["t", "TRUE", "yes", "On", "of", "0", " y ", "tru"],
    "date": ["0001-01-01", "9999-12-31", "2024-02-29", "2023-02-29", " 2026-01-01 ", "0000-01-01"],
}
EDGE_CASES = [case for case in CASES if case.name in EDGES]


@pytest.mark.parametrize("case", EDGE_CASES, ids=[case.name for case in EDGE_CASES])
def test_csv_spellings_at_the_edges_arrive_exactly_or_are_quarantined(
    harness: Harness, case: Case
) -> None:
    rows: list[Row] = [(text, False) for text in EDGES[case.name]]
    run_csv(harness, case, rows, [False] * len(rows))


@pytest.mark.parametrize("case", PARQUET_CASES, ids=[case.name for case in PARQUET_CASES])
@EXAMPLES
@given(data=st.data())
def test_parquet_values_arrive_exactly_or_are_quarantined(
    harness: Harness, case: Case, data: st.DataObject
) -> None:
    assert case.parquet is not None
    rows = data.draw(st.lists(case.parquet | st.just((None, True)), min_size=1, max_size=8))
    run_parquet(harness, case, rows)


BOUND = 100_000_000_000_000_000  # 1e17: numeric(38,10) has 28 digits before the point, float64 17


def near(bound: int) -> st.SearchStrategy[Decimal]:
    """Values within a few units of the 10th decimal place (and a little beyond) of `bound`."""
    return st.tuples(st.integers(-3, 3), st.integers(8, 13), st.sampled_from([1, 4, 5, 6, 9])).map(
        lambda t: Decimal(bound) + Decimal(t[0] * t[2]).scaleb(-t[1])
    )


@EXAMPLES
@given(
    values=st.lists(
        near(BOUND) | near(0) | st.decimals(min_value=-1, max_value=2 * BOUND, places=10),
        min_size=1,
        max_size=8,
    ),
    parquet=st.booleans(),
)
def test_numeric_checks_decide_on_the_value_postgresql_stores(
    harness: Harness, values: list[Decimal], parquet: bool
) -> None:
    """ge/le on numeric(38,10) next to their bounds: float64 cannot tell 1e17 + 1e-10 from 1e17,
    so the decision is the exact one. A value with more than 10 places is a bad row: PostgreSQL
    would round it."""
    checks = json.dumps({"ge": 0, "le": BOUND})
    contract = harness.contract(
        "checked_pq" if parquet else "checked_csv", "numeric(38,10)", checks
    )
    with localcontext(EXACT):
        texts = [f"{value:f}" for value in values]
        if parquet:
            table = pa.table(
                {
                    "id": pa.array(range(1, len(values) + 1), pa.int32()),
                    "v": pa.array(values, pa.decimal128(38, 13)),
                }
            )
            sink = io.BytesIO()
            pq.write_table(table, sink)
            file, data = f"{next(_files)}.parquet", sink.getvalue()
        else:
            body = "".join(f"{row},{text}\n" for row, text in enumerate(texts, start=1))
            file, data = f"{next(_files)}.csv", f"id,v\n{body}".encode()
        harness.ingest(contract, file, data)
        outcome = harness.outcome(contract, file)
        for row, value in enumerate(values, start=1):
            stored = half_up(value, 10)
            if stored != value:  # PostgreSQL would round it: a bad row, never changed
                quarantined = outcome.quarantined.get(row, ("", "", ""))
                assert quarantined[1] == "type:numeric(38,10)", (value, outcome)
            elif stored > BOUND:
                assert outcome.quarantined.get(row, ("", "", ""))[1] == "le", (value, outcome)
            elif stored < 0:
                assert outcome.quarantined.get(row, ("", "", ""))[1] == "ge", (value, outcome)
            else:
                assert row not in outcome.quarantined, (value, outcome.quarantined[row])
                shown = f"{stored.copy_abs() if stored == 0 else stored:f}"  # no -0 in numeric
                assert outcome.target[row] == shown, (value, outcome.target[row])


# -- the quote check of the CSV reader, chunk by chunk -------------------------------------------


def first_stray_quote(data: bytes) -> int | None:
    """The line of the first quote that neither opens nor closes a field, the slow way."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    quotes = 0
    for position, byte in enumerate(data):
        if byte != ord('"'):
            continue
        before = data[position - 1] if position else ord("\n")
        after = data[position + 1] if position + 1 < len(data) else ord("\n")
        touching = before if quotes % 2 == 0 else after  # an opening quote looks back
        if touching not in b',\n\r"':
            return data[:position].count(b"\n") + 1
        quotes += 1
    return None


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(
    data=st.binary(max_size=40).map(lambda b: bytes(b'a,"\n\r'[x % 5] for x in b)),
    bom=st.booleans(),
    chunk=st.integers(1, 7),
    few_quotes=st.sampled_from([-1, 2, 1 << 20]),
)
def test_the_stray_quote_check_finds_the_same_line_whatever_the_chunks(
    data: bytes, bom: bool, chunk: int, few_quotes: int
) -> None:
    """The reader feeds the check 1 MiB at a time: a quote at a chunk's edge must be judged by
    the byte on the other side, and the line it reports must not depend on the chunking, nor on
    whether a chunk's quotes are judged vectorised (-1), one by one (1 << 20) or each way by
    turns (2)."""
    if bom:
        data = b"\xef\xbb\xbf" + data
    check = _QuoteCheck("f.csv", b'"', b",")
    check.FEW_QUOTES = few_quotes
    try:
        for start in range(0, len(data), chunk):
            check.feed(data[start : start + chunk])
    except FileRejected as error:
        assert error.line == first_stray_quote(data), error
    else:
        assert first_stray_quote(data) is None


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    keys=st.lists(
        st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.integers(0, 30), max_size=120
    ),
    bad=st.sets(st.integers(min_value=0, max_value=119), max_size=5),
    batch_rows=st.integers(min_value=1, max_value=50),
    parquet=st.booleans(),
)
def test_repeated_keys_counted_while_reading_are_postgresqls_count_of_the_slice(
    harness: Harness, keys: list[int], bad: set[int], batch_rows: int, parquet: bool
) -> None:
    """A file's repeated integer keys, counted by the reader as its batches go by (so the
    staged step need not ask PostgreSQL), are what PostgreSQL counts in the staged slice: how
    many keys, their rows, and the most repeated ones (a quarantined row's key not counted)."""
    contract = Contract.model_validate(
        {
            "name": "repeats",
            "source": {"glob": "repeats/*"},
            "target": {"schema": "props", "table": "repeats", "primary_key": ["id"]},
            "columns": [
                {"name": "id", "type": "bigint", "nullable": False},
                {"name": "v", "type": "integer"},
            ],
            "policy": {"max_bad_row_ratio": 1.0},
        }
    )
    if "repeats" not in harness.contracts:
        (harness.landing / "repeats").mkdir()
        ensure_dataset_tables(
            harness.loader,
            contract,
            lambda: connect(harness.warehouse.owner_url, setting="test owner"),
        )
        harness.contracts["repeats"] = contract
    values = [None if n in bad else n for n in range(len(keys))]  # NULL v: fine; "x": bad
    name = f"f{next(_files)}.{'parquet' if parquet else 'csv'}"
    if parquet:
        sink = io.BytesIO()
        table = pa.table({"id": pa.array(keys, pa.int64()), "v": pa.array(values, pa.int64())})
        pq.write_table(table, sink)
        data = sink.getvalue()
        bad_rows: set[int] = set()  # every v is an integer here: no row is bad
    else:
        lines = [f"{k},{'x' if n in bad else n}\n" for n, k in enumerate(keys)]
        data = ("id,v\n" + "".join(lines)).encode()
        bad_rows = {n for n in bad if n < len(keys)}
    file = f"repeats/{name}"
    if (bucket := harness.bucket) is not None:
        bucket.client.put_object(Bucket=bucket.bucket, Key=bucket.prefix + file, Body=data)
    else:
        (harness.landing / file).write_bytes(data)
    key = ManifestKey("repeats", file, hashlib.sha256(data).hexdigest())
    run_id = uuid.uuid4().hex
    start = FileStart(key, path_to_key(file), len(data), "csv")
    loads = start_files(harness.loader, [start], run_id)
    staged = StagedFile(
        contract,
        harness.zone.source(file),
        file,
        path_to_key(file),
        key.sha256,
        len(data),
        run_id,
        batch_rows=batch_rows,
        load=loads[file],
    )
    report = write_staged(harness.loader, staged)
    counts = report.counts
    assert counts.rows_staged == len(keys) - len(bad_rows)
    row = harness.inspector.execute(
        render_duplicate_keys(contract), {"load": loads[file]}
    ).fetchone()
    assert row is not None
    expected_keys, expected_rows, examples = int(row[0]), int(row[1]), list(row[2] or [])
    if counts.keys_in_order:  # in order: no repeat, nothing asked
        assert expected_keys == 0
        return
    assert (counts.duplicate_keys, counts.duplicate_key_rows) == (expected_keys, expected_rows)
    # The reader's own count, which the report took (PostgreSQL was not asked).
    reader = (counts.duplicate_keys, counts.duplicate_key_rows, counts.duplicate_key_examples)
    assert staged.repeated_keys() == reader
    good = [k for n, k in enumerate(keys) if n not in bad_rows]
    occurrences = {k: good.count(k) for k in set(good)}
    # PostgreSQL orders equally repeated examples as it happens to; the counts must agree.
    assert sorted(occurrences[int(k)] for k in counts.duplicate_key_examples) == sorted(
        occurrences[int(k)] for k in examples
    )
    top = sorted((-n, k) for k, n in occurrences.items() if n > 1)[:5]
    assert counts.duplicate_key_examples == [str(k) for _, k in top]
