"""The fidelity promise: a file loaded by the platform equals the same file loaded by PostgreSQL.

A CSV full of hostile values (quoting, line breaks, unicode, spaces, "" versus empty, time zones,
numeric and float edges) goes through the real ingestion job; the same bytes go through
PostgreSQL's own `COPY ... (FORMAT csv, HEADER true)` into an identically typed table in the same
database. Both tables must agree value by value. The values PostgreSQL stored are then written as
a Parquet file with typed columns, loaded into a second dataset, and compared again.

Every value stays inside our documented input subset (ISO dates and timestamps, plain numbers):
the validation deliberately accepts less than PostgreSQL does, never more.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import psycopg
import pytest
from psycopg import sql

from elt_assets.contracts.model import Contract
from elt_assets_tests.conftest import Warehouse, write_contract
from elt_assets_tests.helpers import materialization_metadata, run_file, step_failure

pytestmark = [pytest.mark.db, pytest.mark.dagster]

TIMEZONE = "America/New_York"
COLUMNS = """
      - {name: id, type: integer, nullable: false}
      - {name: small, type: smallint}
      - {name: big, type: bigint}
      - {name: money, type: "numeric(12,2)"}
      - {name: exact, type: numeric}
      - {name: r, type: real}
      - {name: d, type: double precision}
      - {name: flag, type: boolean}
      - {name: note, type: text}
      - {name: label, type: "varchar(20)"}
      - {name: day, type: date}
      - {name: ts, type: timestamp}
      - {name: ts_tz, type: timestamptz}
      - {name: ts_local, type: timestamptz}
      - {name: uid, type: uuid}
      - {name: doc, type: jsonb}
"""


def contract_yaml(name: str, schema: str, mode: str = "upsert") -> str:
    return f"""
    name: {name}
    source: {{glob: "{name}/*", timezone: {TIMEZONE}}}
    target: {{schema: {schema}, table: hostile, primary_key: [id], mode: {mode}}}
    columns:
    {COLUMNS}
    policy: {{max_bad_row_ratio: 0}}
    """


# Raw CSV fields, written exactly as they appear in the file (quotes included).
# ts_tz values carry an offset; ts_local values have none and are read in TIMEZONE.
ROWS: list[list[str]] = [
    [
        "1",
        " -32768 ",
        "9223372036854775807",
        "1.010",  # a zero beyond the scale: stored as 1.01 (a value it would round is a bad row)
        "123456789012345678901234567890.123456789012345",
        "3.4028235e38",  # float4 max as PostgreSQL prints it
        "1.7976931348623157e308",
        "yes",
        '"a,b ""quoted"" c"',
        '"x,y"',
        "2024-02-29",
        "2024-01-01T10:00",
        "2024-01-01 10:00:00Z",
        "2024-01-01 10:00",
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        '"{""k"": ""v,w"", ""n"": [1, 2.50, null]}"',
    ],
    [
        "2",
        "+32767",
        "-9223372036854775808",
        "-1.050",
        "-0.000000000000000000001",
        "1e-45",  # a float4 denormal
        "4.9e-324",  # a float8 denormal
        "OFF",
        '"line1\r\nline2\nline3"',
        '"a\nb"',
        "0001-01-01",
        "2024-01-01 10:00:00.123456",
        "2024-06-01T10:00:00+02",
        "2024-07-01 10:00:00",  # summer time
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12}",
        '"{""s"": ""multi\\nline"", ""b"": 1, ""a"": 2}"',
    ],
    [
        "3",
        "0",
        "0",
        "9999999999.99",
        "1.50",  # unconstrained numeric keeps its scale
        "-0",
        "-0",
        " t ",
        "emoji 😀👍🏽 RTL שלום عربي combining e\u0301 A\u030a",
        '"Ünïcödé ✓ 😀"',
        "9999-12-31",
        "2024-01-01",
        "2024-06-01 10:00:00+05:30",
        "2024-11-03 01:30:00",  # happens twice in New York: PostgreSQL takes standard time
        "a0eebc999c0b4ef8bb6d6bb9bd380a13",
        '"{""名"": ""值"", ""e"": ""\\ud83d\\ude00"", ""a"": 1, ""a"": 2}"',
    ],
    [
        "4",
        "1",
        "1",
        "  12.340 ",
        "1e5",
        "NaN",
        "NaN",
        "0",
        "  lead and trail  ",
        '"  quoted pad  "',
        " 2024-01-01 ",
        "2024-01-01 23:59:59.1234567",  # PostgreSQL rounds to microseconds
        "2024-06-01 10:00:00-0330",
        "2024-03-10 03:30:00",  # just after the spring-forward gap
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14",
        "null",  # JSON null, not SQL NULL
    ],
    ["5", "", "", "", "", "", "", "", '""', '""', "", "", "", "", "", ""],
    [
        "6",
        "-1",
        "-1",
        "0.12",
        "NaN",
        "0.1",
        "0.1",
        "TRUE",
        "NULL",  # text, not a null marker
        "\\N",
        "2000-01-01",
        "1999-12-31 23:59:59",
        "2024-06-01 10:00:00 +01:00",
        "2024-01-01",  # local midnight
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15",
        '"""a string, with comma"""',
    ],
    [
        "7",
        "2",
        "3",
        "-9999999999.99",
        "0.1234567890123456789",
        "-Infinity",
        "Infinity",
        "n",
        '"tab\there"',
        '"12345678901234567890   "',  # excess trailing spaces: PostgreSQL cuts them silently
        "1970-01-01",
        "1970-01-01T00:00:00",
        "2024-01-01T00:00:00.5z",
        "2024-11-03 00:59:59",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a16",
        '"[1, ""two"", {""three"": 3.0}, [], {}]"',
    ],
    [
        "8",
        '"42"',
        '"43"',
        '"1.10"',
        '"2.500"',
        '"1.5"',
        '"2.5"',
        '"f"',
        "x",
        "y",
        '"2024-01-02"',
        '"2024-01-02 03:04:05"',
        '"2024-01-02 03:04:05+00"',
        '"2024-01-02 03:04:05"',
        '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a17"',
        '"{}"',
    ],
]
HEADER = "id,small,big,money,exact,r,d,flag,note,label,day,ts,ts_tz,ts_local,uid,doc"


def hostile_csv() -> bytes:
    assert all(len(row) == len(HEADER.split(",")) for row in ROWS)
    return (HEADER + "\n" + "".join(",".join(row) + "\n" for row in ROWS)).encode()


def rows_as_json(warehouse: Warehouse, schema: str, contract: Contract) -> list[str]:
    """Each row as row_to_json text, ordered by id, rendered in one fixed session time zone."""
    columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in contract.columns)
    query = sql.SQL("SELECT row_to_json(t)::text FROM (SELECT {} FROM {} ORDER BY id) t").format(
        columns, sql.Identifier(schema, "hostile")
    )
    with psycopg.connect(warehouse.superuser_url, autocommit=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        return [row[0] for row in connection.execute(query)]


def load_with_postgres_copy(warehouse: Warehouse, contract: Contract, data: bytes) -> None:
    """PostgreSQL's own CSV loader, into reference.hostile with the contract's column types."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type.ddl))
        for c in contract.columns
    )
    with psycopg.connect(warehouse.superuser_url) as connection:
        connection.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(TIMEZONE)))
        connection.execute("CREATE SCHEMA reference")
        connection.execute(
            sql.SQL("CREATE TABLE reference.hostile ({}, PRIMARY KEY (id))").format(columns)
        )
        with (
            connection.cursor() as cursor,
            cursor.copy("COPY reference.hostile FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            copy.write(data)


def reference_as_parquet(warehouse: Warehouse, path: Path) -> None:
    """The values PostgreSQL stored, as a Parquet file with typed columns.

    numeric(12,2) travels as Float64 (its values print back exactly); the unconstrained numeric has
    45 digits, beyond any polars decimal, so it travels as text, as such files carry it. jsonb and
    uuid are text in Parquet; jsonb is read as text to keep JSON null apart from SQL NULL.
    """
    local = ZoneInfo(TIMEZONE)
    with psycopg.connect(warehouse.superuser_url, autocommit=True) as connection:
        connection.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(TIMEZONE)))
        rows = connection.execute(
            "SELECT id, small, big, money::float8, exact::text, r, d, flag, note, label, day, ts,"
            " ts_tz, ts_local, uid::text, doc::text FROM reference.hostile ORDER BY id"
        ).fetchall()
    records = [list(row) for row in rows]
    for record in records:
        if record[13] is not None:  # wall-clock time in the contract's zone, without offset
            record[13] = record[13].astimezone(local).replace(tzinfo=None)
    schema = {
        "id": pl.Int32,
        "small": pl.Int16,
        "big": pl.Int64,
        "money": pl.Float64,
        "exact": pl.String,
        "r": pl.Float32,
        "d": pl.Float64,
        "flag": pl.Boolean,
        "note": pl.String,
        "label": pl.String,
        "day": pl.Date,
        "ts": pl.Datetime("us"),
        "ts_tz": pl.Datetime("us", "UTC"),
        "ts_local": pl.Datetime("us"),
        "uid": pl.String,
        "doc": pl.String,
    }
    frame = pl.DataFrame(records, schema=schema, orient="row")
    frame.write_parquet(path)


def test_csv_and_parquet_load_exactly_like_postgresql_copy(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    contract = write_contract(contracts_dir, contract_yaml("hostile", "fidelity"))
    parquet_contract = write_contract(contracts_dir, contract_yaml("hostile_pq", "fidelity_pq"))
    data = hostile_csv()
    (landing / "hostile").mkdir()
    (landing / "hostile" / "hostile.csv").write_bytes(data)
    load_with_postgres_copy(warehouse, contract, data)
    expected = rows_as_json(warehouse, "reference", contract)
    assert len(expected) == len(ROWS)

    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "hostile", "hostile/hostile.csv", instance)
        assert result.success, step_failure(result)
        assert rows_as_json(warehouse, "fidelity", contract) == expected

        (landing / "hostile_pq").mkdir()
        reference_as_parquet(warehouse, landing / "hostile_pq" / "hostile.parquet")
        result = run_file(contracts_dir, "hostile_pq", "hostile_pq/hostile.parquet", instance)
        assert result.success, step_failure(result)
        assert rows_as_json(warehouse, "fidelity_pq", parquet_contract) == expected

        # A history table (its merge compares and copies every value) keeps them the same.
        history = write_contract(
            contracts_dir, contract_yaml("hostile_history", "fidelity_history", "history")
        )
        (landing / "hostile_history").mkdir()
        (landing / "hostile_history" / "hostile.csv").write_bytes(data)
        result = run_file(contracts_dir, "hostile_history", "hostile_history/hostile.csv", instance)
        assert result.success, step_failure(result)
        assert rows_as_json(warehouse, "fidelity_history", history) == expected
        # Loaded again, every value compares equal to itself: no new version of any row.
        result = run_file(contracts_dir, "hostile_history", "hostile_history/hostile.csv", instance)
        assert result.success, step_failure(result)
        assert warehouse.value("SELECT count(*) FROM fidelity_history.hostile") == len(ROWS)

    assert warehouse.value("SELECT count(*) FROM elt.quarantine") == 0
    # A few values spelled out, so a shared misreading by both loaders cannot pass unnoticed.
    first, second, third = (json.loads(row) for row in expected[:3])
    assert first["note"] == 'a,b "quoted" c' and first["money"] == 1.01
    assert first["ts_local"] == "2024-01-01T15:00:00+00:00"
    assert second["note"] == "line1\r\nline2\nline3" and second["r"] == 1e-45
    assert third["ts_local"] == "2024-11-03T06:30:00+00:00"  # 01:30 EST, not EDT
    assert third["exact"] == 1.50 and third["doc"] == {"a": 2, "e": "😀", "名": "值"}
    fifth = json.loads(expected[4])
    assert (fifth["note"], fifth["label"], fifth["small"], fifth["doc"]) == ("", "", None, None)


SAFETY_NET = """
    name: docs
    source: {glob: "docs/*"}
    target: {schema: archive, table: docs, primary_key: [id]}
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: doc, type: jsonb}
    policy: {max_bad_row_ratio: 0.5}
"""


def test_value_postgresql_refuses_is_quarantined_by_the_copy_fallback(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    write_contract(contracts_dir, SAFETY_NET)
    (landing / "docs").mkdir()
    (landing / "docs" / "d.csv").write_bytes(b'id,doc\n1,"{""a"": 1}"\n2,"{""a"":"\n3,[1]\n4,\n')
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "docs", "docs/d.csv", instance)
    assert result.success, step_failure(result)
    assert warehouse.query("SELECT id, doc::text FROM archive.docs ORDER BY id") == [
        (1, '{"a": 1}'),
        (3, "[1]"),
        (4, None),
    ]
    [(row, column, check, reason, failures, raw)] = warehouse.query(
        "SELECT row_number, column_name, check_name, reason, failures, raw_record"
        " FROM elt.quarantine WHERE dataset = 'docs'"
    )
    assert (row, column, check) == (2, "doc", "postgres")
    assert reason.startswith("PostgreSQL error 22P02: invalid input syntax for type json")
    assert failures == [{"column": "doc", "check": "postgres", "reason": reason}]
    assert raw == {"id": "2", "doc": '{"a":'}
    manifest = warehouse.query(
        "SELECT status, rows_read, rows_staged, rows_quarantined FROM elt.ingestion_manifest"
    )
    assert manifest == [("success", 4, 3, 1)]
    staged = materialization_metadata(result, "staged/docs_staging")
    assert staged["rows_refused_by_postgres"] == 1


TYPED = """
    name: typed
    source: {glob: "typed/*"}
    target: {schema: typed, table: rows, primary_key: [id]}
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: qty, type: smallint, checks: {ge: 0}}
      - {name: amount, type: "numeric(10,2)"}
      - {name: at, type: timestamptz}
      - {name: wall, type: timestamp}
      - {name: day, type: date}
      - {name: note, type: text}
      - {name: flag, type: boolean}
      - {name: w, type: double precision}
      - {name: r, type: real}
    policy: {max_bad_row_ratio: 0.01}
"""


def typed_frame(rows: int) -> pl.DataFrame:
    """Typed Parquet columns of every kind the binary COPY sends, NULLs and edges among them."""
    ids = list(range(1, rows + 1))
    return pl.DataFrame(
        {
            "id": pl.Series(ids, dtype=pl.Int32),
            "qty": pl.Series([i % 300 if i % 7 else None for i in ids], dtype=pl.Int16),
            "amount": pl.Series(
                [f"{(-1) ** i * i * 1234.57 % 99_999_999:.2f}" if i % 5 else None for i in ids]
            ).cast(pl.Decimal(10, 2)),
            "at": pl.Series(
                [datetime(1, 1, 1, tzinfo=UTC)]
                + [
                    datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i * 3_607, microseconds=i)
                    for i in ids[1:]
                ]
            ),
            "wall": pl.Series(
                [datetime(9999, 12, 31, 23, 59, 59, 999_999)]
                + [datetime(1999, 12, 31) + timedelta(hours=i, microseconds=7 * i) for i in ids[1:]]
            ),
            "day": pl.Series(
                [date(1, 1, 1)] + [date(2000, 1, 1) + timedelta(days=i - 500) for i in ids[1:]]
            ),
            "note": [None if i % 11 == 0 else "" if i % 13 == 0 else f"café 🎁 #{i}" for i in ids],
            "flag": [None if i % 3 == 0 else i % 2 == 0 for i in ids],
            "w": [
                None if i == 3 else -0.0 if i == 4 else i / 7 * 1e-300 if i % 2 else i * 1e300
                for i in ids
            ],
            "r": pl.Series([None if i == 5 else i / 3 for i in ids], dtype=pl.Float32),
        }
    )


def test_a_typed_parquet_file_goes_in_binary_across_batches_and_its_quarantine(
    warehouse: Warehouse, landing: Path, contracts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three batches, one bad row in two of them (each ends a COPY, the next starts anew): every
    good value is in the table as written in the file, the bad rows are in the quarantine."""
    monkeypatch.setenv("ELT_BATCH_ROWS", "1000")
    write_contract(contracts_dir, TYPED)
    frame = typed_frame(2_500).with_columns(
        pl.when(pl.col("id").is_in([1_500, 2_200])).then(-1).otherwise(pl.col("qty")).alias("qty")
    )
    (landing / "typed").mkdir()
    frame.write_parquet(landing / "typed" / "t.parquet")
    with dg.instance_for_test() as instance:
        result = run_file(contracts_dir, "typed", "typed/t.parquet", instance)
    assert result.success, step_failure(result)
    staged = materialization_metadata(result, "staged/typed_staging")
    assert (staged["copy_format"], staged["rows_staged"], staged["rows_quarantined"]) == (
        "binary",
        2_498,
        2,
    )
    # The value is quoted as the file holds it, though the typed columns' text is never made
    # for the rows that go in binary.
    assert warehouse.query("SELECT row_number, reason FROM elt.quarantine ORDER BY 1") == [
        (1_500, "qty: '-1' must be >= 0"),
        (2_200, "qty: '-1' must be >= 0"),
    ]
    names = ", ".join(frame.columns).replace(", r", ", r::float8")  # the float4, exactly
    loaded = warehouse.query(f"SELECT {names} FROM typed.rows ORDER BY id")
    good = frame.filter(~pl.col("id").is_in([1_500, 2_200]))
    expected = [
        (*row[:2], None if row[2] is None else Decimal(str(row[2])), *row[3:])
        for row in good.with_columns(pl.col("amount").cast(pl.String)).iter_rows()
    ]
    assert len(loaded) == len(expected) == 2_498
    for got, want in zip(loaded, expected, strict=True):
        assert got == want, (got, want)


def test_a_row_postgresql_refuses_in_binary_is_isolated_by_the_csv_fallback(
    warehouse: Warehouse, landing: Path, contracts_dir: Path
) -> None:
    """Whatever PostgreSQL refuses in the binary COPY (here a trigger of the database's own
    raising a data exception, as a rule the contract does not know would), the file is staged
    again as csv, isolating the row with PostgreSQL's reason; the other rows load."""
    write_contract(contracts_dir, TYPED)
    (landing / "typed").mkdir()
    typed_frame(3).write_parquet(landing / "typed" / "first.parquet")
    frame = typed_frame(200).with_columns(
        pl.when(pl.col("id") == 9).then(pl.lit("refuse me")).otherwise("note").alias("note")
    )
    frame.write_parquet(landing / "typed" / "t.parquet")
    with dg.instance_for_test() as instance:
        assert run_file(contracts_dir, "typed", "typed/first.parquet", instance).success
        warehouse.query(
            "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.note = 'refuse me' THEN RAISE EXCEPTION 'refused by rule'"
            " USING ERRCODE = '22000'; END IF; RETURN NEW; END $$"
        )
        warehouse.query(
            "CREATE TRIGGER refuse BEFORE INSERT ON elt_staging.typed"
            " FOR EACH ROW EXECUTE FUNCTION public.refuse()"
        )
        result = run_file(contracts_dir, "typed", "typed/t.parquet", instance)
    assert result.success, step_failure(result)
    staged = materialization_metadata(result, "staged/typed_staging")
    assert (staged["copy_format"], staged["rows_refused_by_postgres"]) == ("csv", 1)
    [(row, check, reason)] = warehouse.query(
        "SELECT row_number, check_name, reason FROM elt.quarantine"
    )
    assert (row, check) == (9, "postgres") and "refused by rule" in reason
    assert warehouse.value("SELECT count(*) FROM typed.rows") == 199  # ids 1 to 200 but 9
