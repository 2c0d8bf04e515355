"""Schema evolution (issue 23): files that add columns, send wider values or drop columns, under
every policy, through `elt ingest` as a user runs it (subprocesses outside the checkout, the
runtime logging in as elt_loader) and compared value by value with what the files say.

The runtime role has no DDL: every change goes through elt.evolve_column, the owner's narrow
SECURITY DEFINER function, whose refusals are tested here as the loader role itself.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
import yaml

from elt_assets.contracts.types import PgType
from elt_assets.postgres.staging import STRAIGHT_INTO_ROWS_BYTES
from elt_assets_tests.conftest import Warehouse
from elt_assets_tests.helpers import (
    contract,
    elt,
    ingest,
    ingest_args,
    land,
    landing_folder,
    user_env,
)

pytestmark = [pytest.mark.db]


def table_types(warehouse: Warehouse, schema: str, table: str) -> list[tuple[str, str]]:
    """(column, type as format_type spells it), in table order."""
    return warehouse.query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [f"{schema}.{table}"],
    )


GROWING = (
    "name: growing\nsource: {glob: 'growing/*.csv'}\n"
    "target: {schema: wild, table: growing, primary_key: [id]}\n"
    "policy: {new_columns: add, max_bad_row_ratio: 0.5}\n"
    "columns:\n  - {name: id, type: bigint, nullable: false}\n  - {name: amount, type: text}\n"
)


def _grown(tmp_path: Path, warehouse: Warehouse) -> Path:
    """The `growing` dataset with a first file loaded (id 1); its landing folder."""
    folder = landing_folder(tmp_path, "growing")
    contract(tmp_path, GROWING)
    (folder / "a.csv").write_text("id,amount\n1,one\n")
    assert ingest(tmp_path, warehouse)["growing/a.csv"]["status"] == "success"
    return folder


def test_new_columns_add_grows_the_table_records_a_version_and_older_files_still_load(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = landing_folder(tmp_path, "growing")
    contract(tmp_path, GROWING)
    (folder / "a.csv").write_text("id,amount\n1,one\n2,two\n")
    assert ingest(tmp_path, warehouse)["growing/a.csv"]["status"] == "success"
    # A producer adds two columns; key 2 comes again with values in them.
    (folder / "b.csv").write_text("id,amount,Coupon Code,qty\n2,two,C2,5\n3,three,,7\n")
    entry = ingest(tmp_path, warehouse)["growing/b.csv"]
    assert entry["status"] == "success", entry
    columns = warehouse.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'wild' AND table_name = 'growing' ORDER BY ordinal_position"
    )
    assert columns == [
        ("id", "bigint"),
        ("amount", "text"),
        ("coupon_code", "text"),
        ("qty", "integer"),
    ]
    assert warehouse.query("SELECT * FROM wild.growing ORDER BY id") == [
        (1, "one", None, None),
        (2, "two", "C2", 5),  # NULL to a value is a change: the row is updated
        (3, "three", None, 7),
    ]
    assert warehouse.query(
        "SELECT version, change, file, added FROM elt.schema_versions WHERE dataset = 'growing'"
    ) == [
        (
            1,
            "+coupon_code text, +qty integer",
            "growing/b.csv",
            [
                {"name": "coupon_code", "type": "text", "source_name": "Coupon Code"},
                {"name": "qty", "type": "integer", "source_name": "qty"},
            ],
        )
    ]
    # A file without the new columns (an older producer) loads: they are NULL for its rows; a
    # value that does not fit the inferred type is a bad row like any other.
    (folder / "c.csv").write_text("id,amount\n4,four\n")
    (folder / "d.csv").write_text("id,qty,amount,Coupon Code\n5,many,five,C5\n6,6,six,\n")
    entries = ingest(tmp_path, warehouse)
    assert entries["growing/c.csv"]["status"] == "success", entries["growing/c.csv"]["error"]
    assert entries["growing/d.csv"]["rows_quarantined"] == 1, entries
    assert warehouse.query("SELECT * FROM wild.growing WHERE id >= 4 ORDER BY id") == [
        (4, "four", None, None),
        (6, "six", None, 6),
    ]
    assert warehouse.value("SELECT count(*) FROM elt.schema_versions") == 1  # nothing new since


def test_a_column_added_by_two_files_at_once_is_added_once(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = _grown(tmp_path, warehouse)
    for name in ("b", "c"):
        (folder / f"{name}.csv").write_text(f"id,amount,extra\n{ord(name)},x,{name}\n")
    user = tmp_path / "user"
    user.mkdir(exist_ok=True)
    processes = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "elt"), *ingest_args(tmp_path)],
            cwd=user,
            env=user_env(warehouse, user),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert warehouse.query("SELECT id, extra FROM wild.growing ORDER BY id") == [
        (1, None),
        (98, "b"),
        (99, "c"),
    ]
    assert warehouse.value("SELECT count(*) FROM elt.schema_versions") == 1


def test_contract_show_effective_prints_the_contract_as_the_table_now_is(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    contract(tmp_path, GROWING)
    table = pa.table({"id": [1, 2], "amount": ["a", "b"], "Born On": [dt.date(2020, 1, 2), None]})
    table = table.append_column("scores", pa.array([[1, 2], None], pa.list_(pa.int64())))
    land(tmp_path, "growing/a.parquet", table)
    (tmp_path / "contracts" / "growing.yaml").write_text(
        GROWING.replace("growing/*.csv", "growing/*.parquet")
    )
    entry = ingest(tmp_path, warehouse)["growing/a.parquet"]
    assert entry["status"] == "success", entry["error"]
    assert warehouse.query("SELECT id, born_on, scores FROM wild.growing ORDER BY id") == [
        (1, dt.date(2020, 1, 2), [1, 2]),
        (2, None, None),
    ]
    contracts = str(tmp_path / "contracts")
    shown = elt(
        tmp_path, warehouse, "contract", "show", "growing", "--effective", "--contracts", contracts
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(
        "# schema version 1: +born_on date, +scores bigint[] (growing/a.parquet)\n"
    )
    document = yaml.safe_load(shown.stdout)
    assert document["columns"][2:] == [
        {"name": "born_on", "type": "date", "source_name": "Born On"},
        {"name": "scores", "type": "bigint[]"},
    ]
    # Pasted back, it is a valid contract that reads the same file.
    (tmp_path / "contracts" / "growing.yaml").write_text(shown.stdout)
    land(tmp_path, "growing/b.parquet", table.slice(1))
    assert ingest(tmp_path, warehouse)["growing/b.parquet"]["status"] == "success"
    plain = elt(tmp_path, warehouse, "contract", "show", "growing", "--contracts", contracts)
    assert yaml.safe_load(plain.stdout) == document  # the YAML now names them itself


SHIFTING = """
name: shifting
source: {glob: 'shifting/*.csv'}
target: {schema: wild, table: shifting, primary_key: [id]}
policy: {schema_drift: tolerant, new_columns: add, type_changes: widen, max_bad_row_ratio: 0.5}
columns:
  - {name: id, type: bigint, nullable: false}
  - {name: qty, type: integer}
  - {name: price, type: "numeric(6,2)"}
  - {name: code, type: "varchar(4)"}
  - {name: day, type: date}
"""
FIRST = "id,qty,price,code,day\n1,1,1.5,AB,2024-01-01\n"


def _shifting(tmp_path: Path, warehouse: Warehouse, text: str = SHIFTING) -> Path:
    """The `shifting` dataset (contract `text`) with a first file loaded (id 1, all narrow);
    its landing folder."""
    folder = landing_folder(tmp_path, "shifting")
    contract(tmp_path, text)
    (folder / "a.csv").write_text(FIRST)
    assert ingest(tmp_path, warehouse)["shifting/a.csv"]["status"] == "success"
    return folder


def test_a_producer_that_widens_adds_and_drops_columns_is_followed_value_by_value(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = _shifting(tmp_path, warehouse)
    # Every column gets a value wider than its type; one value no type takes is a bad value.
    (folder / "b.csv").write_text(
        "id,qty,price,code,day\n"
        "2,3000000000,12345.678,ABCDEF,2024-01-02 10:30:00\n"
        "3,many,2.00,CD,2024-01-03\n"
    )
    entry = ingest(tmp_path, warehouse)["shifting/b.csv"]
    assert (entry["status"], entry["rows_quarantined"]) == ("success", 1), entry
    widened = [
        ("id", "bigint"),
        ("qty", "bigint"),
        ("price", "numeric(8,3)"),  # 5 digits before the point, 3 after
        ("code", "character varying(6)"),
        ("day", "timestamp without time zone"),
    ]
    assert table_types(warehouse, "wild", "shifting") == widened
    staging = table_types(warehouse, "elt_staging", "shifting")
    assert [c for c in staging if not c[0].startswith("_elt_")] == widened
    assert warehouse.query(
        "SELECT row_number, column_name, reason FROM elt.quarantine WHERE file = 'shifting/b.csv'"
    ) == [(2, "qty", "qty: 'many' is not a whole number in bigint range")]
    # The producer adds a column and stops sending one (tolerant: it is NULL in its rows).
    (folder / "c.csv").write_text(
        "id,qty,price,day,Note\n1,6,1.50,2024-01-01,hello\n4,7,3.25,2024-01-04,\n"
    )
    assert ingest(tmp_path, warehouse)["shifting/c.csv"]["status"] == "success"
    assert warehouse.query("SELECT * FROM wild.shifting ORDER BY id") == [
        (1, 6, Decimal("1.500"), None, dt.datetime(2024, 1, 1), "hello"),
        (2, 3000000000, Decimal("12345.678"), "ABCDEF", dt.datetime(2024, 1, 2, 10, 30), None),
        (4, 7, Decimal("3.250"), None, dt.datetime(2024, 1, 4), None),
    ]
    schemas = warehouse.query("SELECT columns FROM elt.schema_versions ORDER BY version")
    first = [
        {"name": "id", "type": "bigint"},
        {"name": "qty", "type": "bigint"},
        {"name": "price", "type": "numeric(8,3)"},
        {"name": "code", "type": "varchar(6)"},
        {"name": "day", "type": "timestamp"},
    ]
    assert schemas == [(first,), ([*first, {"name": "note", "type": "text"}],)]
    versions = warehouse.query(
        "SELECT version, change, file, added, widened FROM elt.schema_versions ORDER BY version"
    )
    widened_types = {
        "qty": "bigint",
        "price": "numeric(8,3)",
        "code": "varchar(6)",
        "day": "timestamp",
    }
    assert versions == [
        (
            1,
            "qty widened integer -> bigint, price widened numeric(6,2) -> numeric(8,3), "
            "code widened varchar(4) -> varchar(6), day widened date -> timestamp",
            "shifting/b.csv",
            [],
            widened_types,
        ),
        (
            2,
            "+note text",
            "shifting/c.csv",
            [{"name": "note", "type": "text", "source_name": "Note"}],
            widened_types,
        ),
    ]
    # The contract as the table now is, to paste back: the YAML is never rewritten.
    shown = elt(
        tmp_path,
        warehouse,
        "contract",
        "show",
        "shifting",
        "--effective",
        "--contracts",
        str(tmp_path / "contracts"),
    )
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["columns"] == [
        {"name": "id", "type": "bigint", "nullable": False},
        {"name": "qty", "type": "bigint"},
        {"name": "price", "type": "numeric(8,3)"},
        {"name": "code", "type": "varchar(6)"},
        {"name": "day", "type": "timestamp"},
        {"name": "note", "type": "text", "source_name": "Note"},
    ]
    assert "type: integer" in (tmp_path / "contracts" / "shifting.yaml").read_text()


def test_values_that_widen_nothing_stay_bad_values_and_narrow_values_never_narrow(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """Under rescue, the value no wider type takes is rescued; a wide column stays wide when
    later files send only narrow values; a column of the policy keep is never widened."""
    folder = landing_folder(tmp_path, "shifting")
    contract(tmp_path, SHIFTING.replace("max_bad_row_ratio: 0.5", "bad_values: rescue"))
    (folder / "a.csv").write_text("id,qty,price,code,day\n1,3000000000,1.5,AB,2024-01-01\n")
    (folder / "b.csv").write_text("id,qty,price,code,day\n2,many,1,A,2024-01-02\n")
    entries = ingest(tmp_path, warehouse)
    assert [entries[f]["status"] for f in sorted(entries)] == ["success", "success"], entries
    assert warehouse.query("SELECT id, qty, _rescued FROM wild.shifting ORDER BY id") == [
        (1, 3000000000, None),
        (
            2,
            None,
            {
                "qty": {
                    "value": "many",
                    "reason": "qty: 'many' is not a whole number in bigint range",
                }
            },
        ),
    ]
    assert dict(table_types(warehouse, "wild", "shifting"))["qty"] == "bigint"
    assert warehouse.value("SELECT count(*) FROM elt.schema_versions") == 1


def test_parquet_values_wider_than_their_columns_widen_them(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    contract(tmp_path, SHIFTING.replace("shifting/*.csv", "shifting/*.parquet"))
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "qty": pa.array([1, 2**40], pa.int64()),
            "price": pa.array([Decimal("1.25"), Decimal("123456.125")], pa.decimal128(12, 3)),
            "code": ["AB", "ABCDEFGH"],
            "day": pa.array(
                [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2, 23, 59, 59, 5)],
                pa.timestamp("us"),
            ),
        }
    )
    land(tmp_path, "shifting/a.parquet", table)
    entry = ingest(tmp_path, warehouse)["shifting/a.parquet"]
    assert entry["status"] == "success", entry
    assert dict(table_types(warehouse, "wild", "shifting")) == {
        "id": "bigint",
        "qty": "bigint",
        "price": "numeric(9,3)",
        "code": "character varying(8)",
        "day": "timestamp without time zone",
    }
    assert warehouse.query("SELECT * FROM wild.shifting ORDER BY id") == [
        (1, 1, Decimal("1.250"), "AB", dt.datetime(2024, 1, 1)),
        (2, 2**40, Decimal("123456.125"), "ABCDEFGH", dt.datetime(2024, 1, 2, 23, 59, 59, 5)),
    ]


WIDENING_TYPES = [
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "numeric(6,2)",
    "numeric(8,2)",
    "numeric(8,3)",
    "numeric(5,3)",
    "numeric(7,1)",
    "real",
    "double precision",
    "text",
    "varchar(4)",
    "varchar(10)",
    "date",
    "timestamp",
    "timestamptz",
    "boolean",
    "jsonb",
    "integer[]",
]


def test_the_database_and_the_platform_agree_on_what_widens(warehouse: Warehouse) -> None:
    """elt.type_widens guards the runtime's DDL door; PgType.widens_to decides what to ask."""
    kinds = [PgType.parse(text) for text in WIDENING_TYPES]
    pairs = [(a, b) for a in kinds for b in kinds]
    in_database = warehouse.query(
        "SELECT elt.type_widens(narrow, wide) FROM unnest(%s::text[], %s::text[]) "
        "WITH ORDINALITY AS p(narrow, wide, n) ORDER BY n",
        [[a.ddl for a, _ in pairs], [b.ddl for _, b in pairs]],
    )
    disagree = [
        (str(a), str(b), bool(db))
        for (a, b), (db,) in zip(pairs, in_database, strict=True)
        if a.widens_to(b) != bool(db)
    ]
    assert disagree == []
    assert sum(a.widens_to(b) for a, b in pairs) >= 15  # the list holds real widenings


def test_the_loader_has_no_ddl_but_the_narrow_evolution_function(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """As elt_loader itself: no ALTER of its own; elt.evolve_column adds and widens columns of a
    dataset's own tables only, with names and types it checks, and never narrows."""
    _grown(tmp_path, warehouse)
    warehouse.query("CREATE TABLE wild.bystander (id bigint, amount text)")  # owner's, not ours

    def as_loader(statement: str, *params: object) -> object:
        with psycopg.connect(warehouse.loader_url, autocommit=True) as loader:
            row = loader.execute(statement, params).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None

    def evolve(table: str, column: str, kind: str, dataset: str = "growing") -> object:
        return as_loader(
            "SELECT elt.evolve_column(%s, 'wild', %s, %s, %s)", dataset, table, column, kind
        )

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_loader("ALTER TABLE wild.growing ADD COLUMN x integer")
    assert evolve("growing", "x", "integer") is True
    assert evolve("growing", "x", "integer") is False  # there already
    assert evolve("growing", "x", "bigint") is True  # widened
    assert evolve("growing", "x", "integer") is False  # already wider: never narrowed
    assert dict(table_types(warehouse, "wild", "growing"))["x"] == "bigint"
    assert dict(table_types(warehouse, "elt_staging", "growing"))["x"] == "bigint"
    refusals = {
        "narrow text to a number": ("growing", "amount", "integer", "datatype_mismatch"),
        "a table that is not the dataset's": ("bystander", "y", "text", "insufficient_privilege"),
        "a type off the list": (
            "growing",
            "y",
            "integer; DROP TABLE wild.growing",
            "invalid_parameter_value",
        ),
        "a quoted name": ("growing", 'y"; DROP TABLE x; --', "text", "invalid_name"),
        "the platform's own columns": ("growing", "_elt_file", "text", "invalid_name"),
    }
    for what, (table, column, kind, code) in refusals.items():
        with pytest.raises(psycopg.Error) as refused:
            evolve(table, column, kind)
        assert refused.value.sqlstate == psycopg.errors.lookup(code.upper()).sqlstate, what
    with pytest.raises(psycopg.errors.UndefinedTable):  # no such dataset
        evolve("growing", "y", "text", dataset="nothing")
    # Only the runtime may call it: not the reader, not PUBLIC.
    with psycopg.connect(warehouse.superuser_url, autocommit=True) as admin:
        admin.execute("SET ROLE elt_reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute("SELECT elt.evolve_column('growing', 'wild', 'growing', 'z', 'text')")
    assert "y" not in dict(table_types(warehouse, "wild", "growing"))


def test_a_dry_run_says_how_the_schema_would_grow_and_changes_nothing(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = landing_folder(tmp_path, "shifting")
    contract(tmp_path, SHIFTING)
    (folder / "a.csv").write_text("id,qty,price,code,day,extra\n1,3000000000,1.5,AB,2024-01-01,x\n")
    result = elt(tmp_path, warehouse, *ingest_args(tmp_path, "--dry-run"))
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)["files"]
    assert entry["status"] == "would_load", entry
    assert entry["schema_change"] == "+extra text, qty -> bigint"
    assert warehouse.value("SELECT to_regclass('wild.shifting')") is None
    assert warehouse.value("SELECT count(*) FROM elt.schema_versions") == 0


def test_files_loaded_in_one_batch_run_grow_the_schema_in_turn(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """ELT_BATCH_THRESHOLD=0: the files go through one batch run, as a backlog does."""
    folder = landing_folder(tmp_path, "shifting")
    contract(tmp_path, SHIFTING)
    (folder / "a.csv").write_text("id,qty,price,code,day\n1,1,1.5,AB,2024-01-01\n")
    (folder / "b.csv").write_text("id,qty,price,code,day,extra\n2,2,2.5,CD,2024-01-02,x\n")
    (folder / "c.csv").write_text("id,qty,price,code,day,extra\n3,3000000000,3,EF,2024-01-03,\n")
    entries = ingest(tmp_path, warehouse, settings={"ELT_BATCH_THRESHOLD": "0"})
    assert {e["status"] for e in entries.values()} == {"success"}, entries
    assert warehouse.query("SELECT id, qty, extra FROM wild.shifting ORDER BY id") == [
        (1, 1, None),
        (2, 2, "x"),
        (3, 3000000000, None),
    ]
    assert warehouse.query("SELECT change, file FROM elt.schema_versions ORDER BY version") == [
        ("+extra text", "shifting/b.csv"),
        ("qty widened integer -> bigint", "shifting/c.csv"),
    ]


def test_a_policy_that_starts_rescuing_keeps_the_slices_of_files_not_loaded_yet(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """The rescue column is added to the staging table, which is never rebuilt under the slices
    of files staged but not yet loaded."""
    folder = _shifting(tmp_path, warehouse)
    pending = (
        "INSERT INTO elt_staging.shifting (_elt_row, _elt_file, _elt_load, id) "
        "VALUES (1, 'p.csv', 0, 9)"
    )
    warehouse.query(pending)  # a file of another run: staged, not loaded yet
    contract(tmp_path, SHIFTING.replace("type_changes: widen, ", "bad_values: rescue, "))
    (folder / "b.csv").write_text("id,qty,price,code,day\n2,many,1,A,2024-01-02\n")
    assert ingest(tmp_path, warehouse)["shifting/b.csv"]["status"] == "success"
    assert warehouse.value("SELECT count(*) FROM elt_staging.shifting WHERE _elt_file = 'p.csv'")
    assert warehouse.value("SELECT _rescued->'qty'->>'value' FROM wild.shifting WHERE id = 2") == (
        "many"
    )


def test_an_append_table_grows_like_an_upsert_table(tmp_path: Path, warehouse: Warehouse) -> None:
    folder = _shifting(tmp_path, warehouse, SHIFTING.replace("primary_key: [id]", "mode: append"))
    (folder / "b.csv").write_text("id,qty,price,code,day,extra\n1,3000000000,1.5,AB,2024-01-01,x\n")
    assert ingest(tmp_path, warehouse)["shifting/b.csv"]["status"] == "success"
    assert warehouse.query("SELECT id, qty, extra, _elt_file FROM wild.shifting ORDER BY 4") == [
        (1, 1, None, "shifting/a.csv"),
        (1, 3000000000, "x", "shifting/b.csv"),
    ]


def test_a_wide_value_deep_in_a_big_file_widens_the_column_and_the_whole_file_loads_once(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """The widening value is in the third batch: the first two were already sent to COPY when
    it is found; that transaction is rolled back, the column widened, the file read again."""
    folder = landing_folder(tmp_path, "shifting")
    contract(tmp_path, SHIFTING)
    lines = [f"{n},{n},1.5,AB,2024-01-01" for n in range(1, 2501)]
    lines[2400] = "2401,3000000000,1.5,AB,2024-01-01"
    (folder / "big.csv").write_text("id,qty,price,code,day\n" + "\n".join(lines) + "\n")
    entry = ingest(tmp_path, warehouse, settings={"ELT_BATCH_ROWS": "1000"})["shifting/big.csv"]
    assert (entry["status"], entry["rows_inserted"]) == ("success", 2500), entry
    assert warehouse.query("SELECT count(*), count(DISTINCT id), max(qty) FROM wild.shifting") == [
        (2500, 2500, 3000000000)
    ]
    # A first load: straight into the empty table, so the rolled-back COPY left nothing behind
    # anywhere, and no staging slice is kept.
    assert warehouse.value("SELECT count(*) FROM elt_staging.shifting") == 0
    assert (
        warehouse.value("SELECT stage_report ->> 'straight_to_target' FROM elt.ingestion_manifest")
        == "true"
    )
    assert warehouse.value("SELECT count(*) FROM elt.quarantine") == 0


def test_a_big_file_into_a_table_with_rows_grows_it_and_loads_once_straight(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A big file into a table that has rows is upserted a part at a time as it is staged; a
    value that widens a column deep in it rolls the upserts back, the column is widened, the
    file read again (the parts staged so far replaced) and loaded once."""
    folder = _shifting(tmp_path, warehouse)
    lines = [f"{n},{n},1.5,AB,2024-01-01" for n in range(1, 50_001)]
    lines[40_000] = "40001,3000000000,1.5,AB,2024-01-01"
    (folder / "big.csv").write_text("id,qty,price,code,day\n" + "\n".join(lines) + "\n")
    assert (folder / "big.csv").stat().st_size >= STRAIGHT_INTO_ROWS_BYTES
    entry = ingest(tmp_path, warehouse, settings={"ELT_BATCH_ROWS": "5000"})["shifting/big.csv"]
    assert (entry["status"], entry["rows_inserted"], entry["rows_updated"]) == (
        "success",
        49_999,
        0,  # id 1 has the same values in both files: unchanged
    ), entry
    assert warehouse.query("SELECT count(*), count(DISTINCT id), max(qty) FROM wild.shifting") == [
        (50_000, 50_000, 3_000_000_000)
    ]
    # The slice is kept, once: the parts the first reading committed are gone.
    slice_rows = "SELECT count(*), count(DISTINCT _elt_row) FROM elt_staging.shifting"
    assert warehouse.query(slice_rows) == [(50_000, 50_000)]
    straight = "SELECT stage_report ->> 'straight_to_target' FROM elt.ingestion_manifest"
    assert warehouse.query(straight + " ORDER BY id") == [("true",), ("true",)]
    assert table_types(warehouse, "wild", "shifting")[1] == ("qty", "bigint")
