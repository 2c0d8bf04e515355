"""The one reviewed way SQL is built: templates from sql/, identifiers through psycopg.sql.

`template(name)` loads `sql/templates/<name>.sql`. `render(name, **parts)` fills its `{name}`
placeholders with `psycopg.sql` objects (Identifier, Composed); values stay `%(name)s` parameters
bound at execution. The `render_*` functions build the statements that depend on a contract; they
are pure (no connection) and tested as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from psycopg import sql

from elt_assets.contracts.model import (
    CURRENT,
    FILE_COLUMN,
    LOAD_COLUMN,
    ROW_COLUMN,
    VALID_FROM,
    VALID_TO,
    Contract,
)
from elt_assets.contracts.types import PgType

STAGING_SCHEMA = "elt_staging"


def sql_dir() -> Path:
    """sql/ beside the package in a checkout, or inside it when installed as a wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "sql", package / "_sql"):
        if (candidate / "templates").is_dir():
            return candidate
    raise FileNotFoundError(f"the sql/ directory is missing next to {package}")


@cache
def template(name: str) -> sql.SQL:
    text = (sql_dir() / "templates" / f"{name}.sql").read_text(encoding="utf-8")
    # Reviewed files of this repository, never user input: this is the one place a string
    # becomes SQL.
    return sql.SQL(text.strip().rstrip(";"))


def script(relative_path: str) -> sql.SQL:
    """A whole SQL file (migrations, roles, grants), run without parameters."""
    text = (sql_dir() / relative_path).read_text(encoding="utf-8")
    return sql.SQL(text)


def render(template_name: str, /, **parts: sql.Composable) -> sql.Composed:
    return template(template_name).format(**parts)


def identifiers(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def staging_table(contract: Contract) -> sql.Identifier:
    return sql.Identifier(STAGING_SCHEMA, contract.name)


def target_table(contract: Contract) -> sql.Identifier:
    return sql.Identifier(contract.target.schema_, contract.target.table)


def type_sql(ddl: str) -> sql.SQL:
    # PgType.ddl is rendered from parsed, validated parts (never the user's text).
    return sql.SQL(ddl)


def _column_definitions(contract: Contract, *, for_target: bool) -> list[sql.Composable]:
    definitions: list[sql.Composable] = []
    for column in contract.table_columns:
        not_null = for_target and contract.is_required(column)
        definitions.append(
            sql.SQL("{} {}{}").format(
                sql.Identifier(column.name),
                type_sql(column.type.ddl),
                sql.SQL(" NOT NULL") if not_null else sql.SQL(""),
            )
        )
    return definitions


def staging_columns(contract: Contract) -> list[str]:
    """The columns a file's slice is COPYed into, in order: its row numbers, the contract's
    columns, the file and the load (its manifest row)."""
    return [ROW_COLUMN, *[c.name for c in contract.table_columns], FILE_COLUMN, LOAD_COLUMN]


def render_create_staging(contract: Contract) -> sql.Composed:
    """UNLOGGED: staging is rebuilt from the landed file whenever needed, so skip the WAL.
    Keyed by load and row: a new slice's load is the newest, so its rows go at the key's end."""
    definitions = [
        *_column_definitions(contract, for_target=False),
        sql.SQL("{} text NOT NULL").format(sql.Identifier(FILE_COLUMN)),
        sql.SQL("{} bigint NOT NULL").format(sql.Identifier(ROW_COLUMN)),
        sql.SQL("{} bigint NOT NULL").format(sql.Identifier(LOAD_COLUMN)),
        sql.SQL("PRIMARY KEY ({}, {})").format(
            sql.Identifier(LOAD_COLUMN), sql.Identifier(ROW_COLUMN)
        ),
    ]
    return render(
        "table_create",
        unlogged=sql.SQL("UNLOGGED"),
        table=staging_table(contract),
        definitions=sql.SQL(",\n    ").join(definitions),
        storage=sql.SQL(""),
    )


def history_type(contract: Contract) -> str:
    """The type of a history table's validity columns: the version column's, else the load
    time's (timestamptz)."""
    version = contract.target.version_column
    return contract.column(version).type.ddl if version else PgType("timestamptz").ddl


def render_create_target(contract: Contract) -> sql.Composed:
    definitions = _column_definitions(contract, for_target=True)
    key = list(contract.target.primary_key)
    if contract.target.mode == "append":
        definitions.append(sql.SQL("{} text NOT NULL").format(sql.Identifier(FILE_COLUMN)))
    if contract.target.mode == "history":
        validity = type_sql(history_type(contract))
        definitions += [
            sql.SQL("{} {} NOT NULL").format(sql.Identifier(VALID_FROM), validity),
            sql.SQL("{} {}").format(sql.Identifier(VALID_TO), validity),
            sql.SQL("{} boolean GENERATED ALWAYS AS ({} IS NULL) STORED").format(
                sql.Identifier(CURRENT), sql.Identifier(VALID_TO)
            ),
        ]
        key.append(VALID_FROM)
    if key:
        definitions.append(sql.SQL("PRIMARY KEY ({})").format(identifiers(key)))
    return render(
        "table_create",
        unlogged=sql.SQL(""),
        table=target_table(contract),
        definitions=sql.SQL(",\n    ").join(definitions),
        storage=_target_storage(contract),
    )


# Room left in each page of an upserted table: an update whose new version fits in its page and
# changes no indexed column is a HOT update (no new index entry). Measured on a 200,000-row
# delta (half updates) into 1M rows, before loads went in key order: 1.25-1.36 s instead of
# 1.53-1.77 s, 25% fewer WAL records; the first load is as fast, the table about 10% larger.
UPSERT_FILLFACTOR = 90


def _target_storage(contract: Contract) -> sql.Composable:
    """Storage parameters of a new target table: upserts update rows in place, so their pages
    keep room for the new versions; appended and history tables only grow (a history table's
    closing update changes its indexed current flag, which HOT cannot take)."""
    if contract.target.mode != "upsert":
        return sql.SQL("")
    return sql.SQL(" WITH (fillfactor = {})").format(sql.Literal(UPSERT_FILLFACTOR))


def render_copy(
    table: sql.Identifier, columns: Sequence[str], *, binary: bool = False
) -> sql.Composed:
    """COPY FROM STDIN in csv (copy.encode_csv) or binary format (binary.encode_binary)."""
    copy_format = sql.SQL("binary" if binary else "csv")
    return render("copy_from_stdin", table=table, columns=identifiers(columns), format=copy_format)


def render_upsert(
    contract: Contract,
    *,
    deduplicate: bool = True,
    in_order: bool = False,
    part: bool = False,
) -> sql.Composed:
    """INSERT ... ON CONFLICT of one file's slice, skipping no-op updates and older versions.

    deduplicate=False when the staged step found no repeated key in the file: the slice then goes
    in without DISTINCT ON, sorted by key unless `in_order` (the file had its keys in order).
    `part`: only the slice's rows after `after_row` up to `last_row` (a big file upserted a part
    at a time as its staged step commits the parts: postgres/staging.py); no repeated key then.
    """
    if part and deduplicate:
        raise ValueError("a part of a slice is upserted only when no key repeats in the file")
    key = contract.target.primary_key
    columns = [c.name for c in contract.table_columns]
    others = [c for c in columns if c not in key]
    version = contract.target.version_column
    order = [sql.SQL("{} DESC NULLS LAST").format(sql.Identifier(version))] if version else []
    order.append(sql.SQL("{} DESC").format(sql.Identifier(ROW_COLUMN)))
    if others:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in others
        )
        changed: sql.Composable = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in others),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in others),
        )
        if len(others) == 1:  # a one-element row constructor needs ROW()
            changed = sql.SQL("t.{} IS DISTINCT FROM EXCLUDED.{}").format(
                sql.Identifier(others[0]), sql.Identifier(others[0])
            )
        condition: sql.Composable = changed
        if version:
            condition = sql.SQL("{} AND (t.{} IS NULL OR EXCLUDED.{} >= t.{})").format(
                changed, *[sql.Identifier(version)] * 3
            )
        action: sql.Composable = sql.SQL("UPDATE SET {} WHERE {}").format(assignments, condition)
    else:
        action = sql.SQL("NOTHING")
    return render(
        "upsert" if deduplicate else "upsert_unique",
        key=identifiers(key),
        columns=identifiers(columns),
        staging=staging_table(contract),
        target=target_table(contract),
        order_within_key=sql.SQL(", ").join(order),
        conflict_action=action,
        key_order=_key_order(contract, in_order),
        part=sql.SQL("AND {row} > %(after_row)s AND {row} <= %(last_row)s").format(
            row=sql.Identifier(ROW_COLUMN)
        )
        if part
        else sql.SQL(""),
    )


def _key_order(contract: Contract, in_order: bool) -> sql.Composable:
    """ORDER BY the key, unless the slice is in key order already (sorting a big one in order
    would cost a sort on disk for nothing)."""
    if in_order:
        return sql.SQL("")
    return sql.SQL("ORDER BY {}").format(identifiers(contract.target.primary_key))


def _listed(names: Sequence[str], alias: str) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(alias, n) for n in names)


def contract_type(contract: Contract, name: str) -> str:
    return next(c.type.ddl for c in contract.table_columns if c.name == name)


def render_history_merge(contract: Contract) -> sql.Composed:
    """One file's slice merged into a history table (templates/history_merge.sql)."""
    key = contract.target.primary_key
    version = contract.target.version_column
    columns = [c.name for c in contract.table_columns]
    others = [c for c in columns if c not in key]
    # Two versions have equal values when everything but the version itself is equal.
    compared = [c for c in others if c != version]
    differs: sql.Composable = (
        sql.SQL("({}) IS DISTINCT FROM ({})").format(_listed(compared, "e"), _listed(compared, "s"))
        if compared
        else sql.SQL("false")
    )
    merged = sql.SQL(", ").join(
        sql.SQL("CASE WHEN s._elt_vf IS NULL THEN {} ELSE {} END AS {}").format(
            sql.Identifier("e", c), sql.Identifier("s", c), sql.Identifier(c)
        )
        for c in others
    )
    return render(
        "history_merge",
        key=identifiers(key),
        columns=identifiers(columns),
        valid_from=sql.Identifier(version) if version else sql.SQL("now()"),
        staging=staging_table(contract),
        target=target_table(contract),
        t_columns=_listed(columns, "t"),
        t_key=_listed(key, "t"),
        e_key=_listed(key, "e"),
        s_key=_listed(key, "s"),
        f_key=_listed(key, "f"),
        g_key=_listed(key, "g"),
        null_others=sql.SQL(", ").join(
            sql.SQL("NULL::{} AS {}").format(
                type_sql(contract_type(contract, c)), sql.Identifier(c)
            )
            for c in others
        ),
        s_others=_listed(others, "s"),
        f_columns=_listed(columns, "f"),
        merged_others=merged,
        e_differs_from_s=differs,
        compared=identifiers(compared) if compared else sql.SQL("1"),
        assign_others=sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("f", c)) for c in others
        ),
        snapshot_at=sql.SQL("(SELECT max(_elt_vf) FROM source)") if version else sql.SQL("now()"),
    )


def render_insert_new(contract: Contract, *, in_order: bool = False) -> sql.Composed:
    """A plain INSERT of one file's slice in key order, for a first load into an empty target."""
    return render(
        "insert_new",
        target=target_table(contract),
        staging=staging_table(contract),
        columns=identifiers(c.name for c in contract.table_columns),
        key_order=_key_order(contract, in_order),
    )


def render_append(contract: Contract) -> sql.Composed:
    return render(
        "append_insert",
        target=target_table(contract),
        staging=staging_table(contract),
        columns=identifiers(c.name for c in contract.table_columns),
    )


def _as_text(names: Sequence[str], alias: str | None = None) -> sql.Composable:
    """An expression showing the values of `names` as text, e.g. (a, b) -> 'x, 7'."""
    parts = [
        sql.SQL("coalesce({}::text, 'NULL')").format(
            sql.Identifier(alias, n) if alias else sql.Identifier(n)
        )
        for n in names
    ]
    return sql.SQL("concat_ws(', ', {})").format(sql.SQL(", ").join(parts))


def render_move_duplicates(contract: Contract, columns: Sequence[str]) -> sql.Composed:
    """Move rows whose `columns` values repeat within the file from staging to the quarantine."""
    return render(
        "quarantine_duplicates",
        staging=staging_table(contract),
        columns=identifiers(columns),
        all_not_null=sql.SQL(" AND ").join(
            sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns
        ),
        values_text=sql.SQL("quote_literal({})").format(_as_text(columns, alias="m")),
    )


def render_duplicate_keys(contract: Contract) -> sql.Composed:
    """Keys repeated within one file's staged slice."""
    key = contract.row_key
    return render(
        "staging_duplicate_keys",
        staging=staging_table(contract),
        key=identifiers(key),
        key_text=_as_text(key),
    )


def render_key_problems(contract: Contract) -> sql.Composed:
    key = contract.target.primary_key
    if contract.target.mode == "history":
        key = [*key, VALID_FROM]  # a history table holds each key once per version
    return render(
        "key_problems",
        target=target_table(contract),
        key=identifiers(key),
        all_not_null=sql.SQL(" AND ").join(
            sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in key
        ),
        any_null=sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in key),
    )
