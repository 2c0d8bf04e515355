"""SQL built from contracts: rendered without a connection and read as text."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from psycopg import sql

from elt_assets.contracts.model import Contract
from elt_assets.postgres.templates import (
    render_append,
    render_copy,
    render_create_staging,
    render_create_target,
    render_duplicate_keys,
    render_insert_new,
    render_key_problems,
    render_move_duplicates,
    render_upsert,
    sql_dir,
    staging_table,
)

pytestmark = [pytest.mark.pure]


def contract(**target: Any) -> Contract:
    columns = target.pop(
        "columns",
        [
            {"name": "Order_ID", "type": "bigint", "nullable": True},  # key: NOT NULL anyway
            {"name": "status", "type": "text", "nullable": False},
            {"name": "amount", "type": "numeric(12,2)"},
            {"name": "updated_at", "type": "timestamptz"},
        ],
    )
    return Contract.model_validate(
        {
            "name": "orders",
            "source": {"glob": "orders/*"},
            "target": {"schema": "Sales", "table": "Orders", "primary_key": ["Order_ID"]} | target,
            "columns": columns,
        }
    )


def text(composed: sql.Composable) -> str:
    """The statement as PostgreSQL would receive it (psycopg renders without a connection)."""
    return " ".join(composed.as_string(None).split())


def test_upsert_takes_one_row_per_key_and_quotes_identifiers() -> None:
    statement = text(render_upsert(contract()))
    assert (
        'SELECT DISTINCT ON ("Order_ID") "Order_ID", "status", "amount", "updated_at" '
        'FROM "elt_staging"."orders" WHERE _elt_load = %(load)s '
        'ORDER BY "Order_ID", "_elt_row" DESC' in statement
    )
    assert 'INSERT INTO "Sales"."Orders" AS t ("Order_ID", "status", "amount", "updated_at")' in (
        statement
    )
    assert " Order_ID" not in statement.replace('"Order_ID"', "")  # never unquoted


def test_upsert_of_a_file_without_repeated_keys_goes_in_key_order() -> None:
    statement = text(render_upsert(contract(primary_key=["Order_ID", "status"]), deduplicate=False))
    assert "DISTINCT ON" not in statement
    assert (
        'FROM "elt_staging"."orders" WHERE _elt_load = %(load)s ORDER BY "Order_ID", "status" '
        'ON CONFLICT ("Order_ID", "status") DO UPDATE' in statement
    )


def test_a_first_load_inserts_in_key_order_sorting_only_a_file_out_of_order() -> None:
    statement = text(render_insert_new(contract()))
    assert statement.endswith('WHERE _elt_load = %(load)s ORDER BY "Order_ID"'), statement
    statement = text(render_insert_new(contract(), in_order=True))
    assert statement.endswith("WHERE _elt_load = %(load)s"), statement
    unique = text(render_upsert(contract(), deduplicate=False, in_order=True))
    assert "ORDER BY" not in unique


def test_upsert_updates_only_real_changes() -> None:
    statement = text(render_upsert(contract()))
    assert (
        'ON CONFLICT ("Order_ID") DO UPDATE SET "status" = EXCLUDED."status", '
        '"amount" = EXCLUDED."amount", "updated_at" = EXCLUDED."updated_at" '
        'WHERE (t."status", t."amount", t."updated_at") IS DISTINCT FROM '
        '(EXCLUDED."status", EXCLUDED."amount", EXCLUDED."updated_at") RETURNING' in statement
    )
    assert ">=" not in statement  # no version guard without a version column


def test_upsert_with_one_non_key_column_compares_plain_values() -> None:
    """`(x)` is not a one-element row in PostgreSQL (that needs ROW()); compare the value."""
    columns = [{"name": "id", "type": "int"}, {"name": "label", "type": "text"}]
    statement = text(render_upsert(contract(primary_key=["id"], columns=columns)))
    assert (
        'ON CONFLICT ("id") DO UPDATE SET "label" = EXCLUDED."label" '
        'WHERE t."label" IS DISTINCT FROM EXCLUDED."label" RETURNING' in statement
    )


def test_upsert_with_version_column_keeps_newer_rows() -> None:
    statement = text(render_upsert(contract(version_column="updated_at")))
    # Within the file: highest version first, then the last row.
    assert 'ORDER BY "Order_ID", "updated_at" DESC NULLS LAST, "_elt_row" DESC' in statement
    assert (
        'IS DISTINCT FROM (EXCLUDED."status", EXCLUDED."amount", EXCLUDED."updated_at") '
        'AND (t."updated_at" IS NULL OR EXCLUDED."updated_at" >= t."updated_at") '
        "RETURNING" in statement
    )


def test_upsert_does_nothing_when_every_column_is_in_the_key() -> None:
    columns = [{"name": "a", "type": "int"}, {"name": "B", "type": "date"}]
    statement = text(render_upsert(contract(primary_key=["a", "B"], columns=columns)))
    assert 'SELECT DISTINCT ON ("a", "B") "a", "B"' in statement
    assert 'ON CONFLICT ("a", "B") DO NOTHING RETURNING' in statement
    assert "UPDATE" not in statement


def test_append_inserts_the_file_column() -> None:
    statement = text(render_append(contract(mode="append", primary_key=[])))
    assert statement.endswith(
        'INSERT INTO "Sales"."Orders" ("Order_ID", "status", "amount", "updated_at", _elt_file) '
        'SELECT "Order_ID", "status", "amount", "updated_at", _elt_file '
        'FROM "elt_staging"."orders" WHERE _elt_load = %(load)s ORDER BY _elt_row'
    )


def test_create_staging_is_unlogged_with_load_row_key() -> None:
    statement = text(render_create_staging(contract()))
    assert statement == (
        'CREATE UNLOGGED TABLE "elt_staging"."orders" ( "Order_ID" bigint, "status" text, '
        '"amount" numeric(12,2), "updated_at" timestamp with time zone, '
        '"_elt_file" text NOT NULL, "_elt_row" bigint NOT NULL, "_elt_load" bigint NOT NULL, '
        'PRIMARY KEY ("_elt_load", "_elt_row") )'
    )


def test_create_target_has_not_null_and_primary_key() -> None:
    statement = text(render_create_target(contract()))
    assert statement == (
        'CREATE TABLE "Sales"."Orders" ( "Order_ID" bigint NOT NULL, "status" text NOT NULL, '
        '"amount" numeric(12,2), "updated_at" timestamp with time zone, '
        'PRIMARY KEY ("Order_ID") ) WITH (fillfactor = 90)'
    )
    assert "UNLOGGED" not in statement


def test_create_append_target_has_file_column_and_no_primary_key() -> None:
    statement = text(render_create_target(contract(mode="append", primary_key=[])))
    assert statement == (
        'CREATE TABLE "Sales"."Orders" ( "Order_ID" bigint, "status" text NOT NULL, '
        '"amount" numeric(12,2), "updated_at" timestamp with time zone, '
        '"_elt_file" text NOT NULL )'
    )


def test_copy_names_table_and_columns() -> None:
    statement = text(render_copy(staging_table(contract()), ["Order_ID", "status"]))
    assert statement == 'COPY "elt_staging"."orders" ("Order_ID", "status") FROM STDIN (FORMAT csv)'
    binary = text(render_copy(staging_table(contract()), ["status"], binary=True))
    assert binary == 'COPY "elt_staging"."orders" ("status") FROM STDIN (FORMAT binary)'


def test_duplicate_keys_and_key_problems_group_by_the_key() -> None:
    duplicates = text(render_duplicate_keys(contract(primary_key=["Order_ID", "status"])))
    assert (
        "concat_ws(', ', coalesce(\"Order_ID\"::text, 'NULL'), coalesce(\"status\"::text, "
        "'NULL')) AS example" in duplicates
    )
    assert 'GROUP BY "Order_ID", "status" HAVING count(*) > 1' in duplicates
    problems = text(render_key_problems(contract(primary_key=["Order_ID", "status"])))
    assert 'WHERE "Order_ID" IS NOT NULL AND "status" IS NOT NULL' in problems
    assert 'WHERE "Order_ID" IS NULL OR "status" IS NULL' in problems


def test_move_duplicates_partitions_by_the_unique_columns() -> None:
    statement = text(render_move_duplicates(contract(), ["status", "amount"]))
    assert 'count(*) OVER (PARTITION BY "status", "amount")' in statement
    assert 'AND "status" IS NOT NULL AND "amount" IS NOT NULL' in statement
    assert 'coalesce("m"."status"::text, \'NULL\'), coalesce("m"."amount"::text' in statement


def test_identifier_with_quote_is_escaped() -> None:
    """Identifiers always go through sql.Identifier: a `"` is doubled, never closes the name."""
    assert sql.Identifier('a"b').as_string(None) == '"a""b"'


TEMPLATES = sorted((sql_dir() / "templates").glob("*.sql"))


def test_templates_exist() -> None:
    assert len(TEMPLATES) >= 30
    assert {"upsert.sql", "append_insert.sql", "table_create.sql"} <= {p.name for p in TEMPLATES}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_placeholders_are_named(path: Any) -> None:
    source = path.read_text(encoding="utf-8")
    # Values: only %(name)s parameters; `%%` is a literal percent sign.
    without_literal_percent = source.replace("%%", "")
    stray = re.findall(r"%(?!\([a-z_][a-z0-9_]*\)s)..?", without_literal_percent)
    assert stray == [], f"{path.name}: unnamed or malformed % placeholders {stray}"
    # SQL parts: only {name} placeholders, no positional {}, no f-string expressions or specs.
    for _, field, spec, conversion in string.Formatter().parse(source):
        if field is None:
            continue
        assert field.isidentifier(), f"{path.name}: placeholder {{{field}}}"
        assert not spec and conversion is None, f"{path.name}: {{{field}!{conversion}:{spec}}}"
