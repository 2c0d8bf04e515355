"""Contracts: column types, the YAML loader, and errors that name the file and the key."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from elt_assets.contracts import loader
from elt_assets.contracts.loader import ContractSet, load_contracts, parse_contract
from elt_assets.contracts.model import Contract
from elt_assets.contracts.types import KNOWN_TYPES, PgType, TypeSpellingError

pytestmark = [pytest.mark.pure]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "contracts"

BASE = """
name: orders
source: {glob: "orders/*.csv"}
target: {schema: sales, table: orders, primary_key: [order_id]}
columns:
  - {name: order_id, type: bigint}
  - {name: status, type: text}
"""


def write(directory: Path, file: str, text: str) -> Path:
    path = directory / file
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def load_one(tmp_path: Path, text: str, file: str = "broken.yaml") -> str:
    """Load a directory holding only `text` and return its one error as users read it."""
    write(tmp_path, file, text)
    loaded = load_contracts(tmp_path)
    assert loaded.contracts == []
    assert len(loaded.errors) == 1, loaded.errors
    return str(loaded.errors[0])


# --- PgType ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "kind", "ddl", "text"),
    [
        ("smallint", "smallint", "smallint", "smallint"),
        ("int2", "smallint", "smallint", "smallint"),
        ("integer", "integer", "integer", "integer"),
        ("int", "integer", "integer", "integer"),
        ("int4", "integer", "integer", "integer"),
        ("bigint", "bigint", "bigint", "bigint"),
        ("int8", "bigint", "bigint", "bigint"),
        ("numeric", "numeric", "numeric", "numeric"),
        ("decimal", "numeric", "numeric", "numeric"),
        ("numeric(12,2)", "numeric", "numeric(12,2)", "numeric(12,2)"),
        ("NUMERIC ( 12 , 2 )", "numeric", "numeric(12,2)", "numeric(12,2)"),
        ("decimal(7)", "numeric", "numeric(7,0)", "numeric(7,0)"),
        ("numeric(1000,1000)", "numeric", "numeric(1000,1000)", "numeric(1000,1000)"),
        ("real", "real", "real", "real"),
        ("float4", "real", "real", "real"),
        ("double precision", "double precision", "double precision", "double precision"),
        ("double   precision", "double precision", "double precision", "double precision"),
        ("float8", "double precision", "double precision", "double precision"),
        ("double", "double precision", "double precision", "double precision"),
        ("boolean", "boolean", "boolean", "boolean"),
        ("bool", "boolean", "boolean", "boolean"),
        ("text", "text", "text", "text"),
        ("Text", "text", "text", "text"),
        ("varchar(3)", "varchar", "character varying(3)", "varchar(3)"),
        ("character varying(10)", "varchar", "character varying(10)", "varchar(10)"),
        ("varchar(10485760)", "varchar", "character varying(10485760)", "varchar(10485760)"),
        ("date", "date", "date", "date"),
        ("timestamp", "timestamp", "timestamp without time zone", "timestamp"),
        (
            "timestamp without time zone",
            "timestamp",
            "timestamp without time zone",
            "timestamp",
        ),
        ("timestamptz", "timestamptz", "timestamp with time zone", "timestamptz"),
        ("timestamp with time zone", "timestamptz", "timestamp with time zone", "timestamptz"),
        ("uuid", "uuid", "uuid", "uuid"),
        ("jsonb", "jsonb", "jsonb", "jsonb"),
    ],
)
def test_pgtype_parses_every_type_and_alias(spelling: str, kind: str, ddl: str, text: str) -> None:
    parsed = PgType.parse(spelling)
    assert parsed.kind == kind
    assert parsed.ddl == ddl
    assert str(parsed) == text
    assert PgType.parse(str(parsed)) == parsed  # the short spelling parses back to itself


def test_pgtype_polars_dtypes_and_traits() -> None:
    assert PgType.parse("int2").polars_dtype == pl.Int16()
    assert PgType.parse("timestamptz").polars_dtype == pl.Datetime("us", "UTC")
    assert PgType.parse("numeric(12,2)").polars_dtype == pl.Float64()
    assert PgType.parse("varchar(3)").is_textual
    assert not PgType.parse("uuid").is_textual
    assert PgType.parse("date").is_orderable
    assert not PgType.parse("boolean").is_orderable
    assert PgType.parse("bigint").is_integer
    assert not PgType.parse("numeric").is_integer


def test_array_types_are_one_dimensional_arrays_of_any_column_type() -> None:
    for spelling, ddl in [
        ("int[]", "integer[]"),
        ("numeric(10, 2) []", "numeric(10,2)[]"),
        ("varchar(5)[]", "character varying(5)[]"),
        ("timestamp with time zone[]", "timestamp with time zone[]"),
    ]:
        parsed = PgType.parse(spelling)
        assert parsed.kind == "array" and parsed.ddl == ddl
        assert PgType.parse(str(parsed)) == parsed  # what infer writes reads back the same
        assert parsed.polars_dtype == pl.String() and not parsed.is_orderable
    with pytest.raises(TypeSpellingError, match="arrays of arrays are not supported"):
        PgType.parse("int[][]")
    with pytest.raises(TypeSpellingError, match="unknown column type 'money'"):
        PgType.parse("money[]")


@pytest.mark.parametrize("spelling", ["strng", "money", "int16", "json", "", "x; drop"])
def test_pgtype_unknown_type_lists_known_types(spelling: str) -> None:
    with pytest.raises(TypeSpellingError) as caught:
        PgType.parse(spelling)
    assert f"unknown column type {spelling!r}" in str(caught.value)
    assert KNOWN_TYPES in str(caught.value)
    assert "numeric(p,s)" in str(caught.value) and "varchar(n)" in str(caught.value)


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        ("varchar", "write varchar(n) with 1 <= n <= 10485760"),
        ("varchar(0)", "write varchar(n) with 1 <= n <= 10485760"),
        ("varchar(10485761)", "write varchar(n) with 1 <= n <= 10485760"),
        ("varchar(3,2)", "write varchar(n) with 1 <= n <= 10485760"),
        ("numeric(0)", "numeric needs 1 <= p <= 1000 and 0 <= s <= p"),
        ("numeric(1001)", "numeric needs 1 <= p <= 1000 and 0 <= s <= p"),
        ("numeric(5,6)", "numeric needs 1 <= p <= 1000 and 0 <= s <= p"),
        ("numeric(1,2,3)", "write numeric(p) or numeric(p,s)"),
        ("integer(4)", "type integer takes no arguments"),
        ("text(10)", "type text takes no arguments"),
        ("varchar(1 0)", "write whole numbers separated by commas"),
        ("numeric(1 2, 3)", "write whole numbers separated by commas"),
    ],
)
def test_pgtype_bad_arguments_say_how_to_write_them(spelling: str, message: str) -> None:
    with pytest.raises(TypeSpellingError) as caught:
        PgType.parse(spelling)
    assert str(caught.value) == f"{spelling!r}: {message}"


# --- loading ---------------------------------------------------------------------------------


def test_shipped_examples_all_load() -> None:
    loaded = load_contracts(EXAMPLES)
    assert loaded.errors == []
    assert sorted(c.name for c in loaded.contracts) == ["customers", "events", "orders"]
    assert loaded.sources["orders"] == EXAMPLES / "orders.yaml"
    orders = loaded.get("orders")
    assert orders.target.version_column == "updated_at"
    assert orders.column("amount").type == PgType("numeric", precision=12, scale=2)


def test_valid_contract_parses_with_defaults(tmp_path: Path) -> None:
    contract = parse_contract(write(tmp_path, "orders.yaml", BASE))
    assert contract.name == "orders"
    assert contract.target.schema_ == "sales"
    assert contract.target.mode == "upsert"
    assert contract.policy.bad_rows == "quarantine"
    assert contract.policy.max_bad_row_ratio == 0.01
    assert contract.policy.duplicate_keys == "last"
    assert contract.source.timezone == "UTC"
    assert contract.source.csv.encoding == "utf8"
    assert contract.source.csv.delimiter == ","


def test_encoding_spelling_is_normalised(tmp_path: Path) -> None:
    text = BASE.replace('glob: "orders/*.csv"', 'glob: "orders/*.csv", csv: {encoding: LATIN1}')
    contract = parse_contract(write(tmp_path, "orders.yaml", text))
    assert contract.source.csv.encoding == "iso8859-1"  # codecs' canonical name


def test_primary_key_columns_are_required_even_when_nullable(tmp_path: Path) -> None:
    contract = parse_contract(
        write(
            tmp_path, "orders.yaml", BASE.replace("type: bigint}", "type: bigint, nullable: true}")
        )
    )
    order_id, status = contract.columns
    assert order_id.nullable is True
    assert contract.is_required(order_id)
    assert not contract.is_required(status)


CHECKS_TEXT = "{name: status, type: text}"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            ("table: orders", "tabel: orders"),
            "target.tabel: unknown key (check the spelling; see README 'Contract reference')",
            id="unknown-key",
        ),
        pytest.param(
            (CHECKS_TEXT, "{name: status, type: text, nullable: maybe}"),
            "columns[1].nullable: Input should be a valid boolean",
            id="wrong-value-type",
        ),
        pytest.param(
            ("name: status", "name: 1status"),
            "columns[1].name: '1status' is not a valid identifier "
            "(letters, digits, _; not a digit first)",
            id="invalid-identifier",
        ),
        pytest.param(
            ("table: orders", "table: order-lines"),
            "target.table: 'order-lines' is not a valid identifier",
            id="invalid-table-identifier",
        ),
        pytest.param(
            ("name: status", "name: " + "s" * 64),
            f"columns[1].name: {'s' * 64!r} is longer than PostgreSQL's 63-byte identifier limit",
            id="identifier-over-63-bytes",
        ),
        pytest.param(
            ("type: text", "type: strng"),
            "columns[1].type: unknown column type 'strng' (known: smallint",
            id="unknown-column-type",
        ),
        pytest.param(
            ("primary_key: [order_id]", "primary_key: [id]"),
            "target.primary_key: 'id' is not one of the columns",
            id="primary-key-not-a-column",
        ),
        pytest.param(
            (", primary_key: [order_id]", ""),
            "target.primary_key is required when target.mode is upsert",
            id="upsert-without-primary-key",
        ),
        pytest.param(
            ("primary_key: [order_id]", "primary_key: [order_id], version_column: status"),
            "target.version_column must be a number, date or timestamp column",
            id="version-column-not-orderable",
        ),
        pytest.param(
            ("primary_key: [order_id]", "primary_key: [order_id], version_column: order_id"),
            "target.version_column cannot be part of the primary key",
            id="version-column-in-key",
        ),
        pytest.param(
            ("type: bigint}", "type: bigint, checks: {regex: '^1'}}"),
            "columns[0]: checks ['regex'] need a text or varchar column, not bigint",
            id="regex-on-bigint",
        ),
        pytest.param(
            (CHECKS_TEXT, "{name: status, type: text, checks: {ge: 1}}"),
            "columns[1]: checks ['ge'] need a numeric, date or timestamp column, not text",
            id="ge-on-text",
        ),
        pytest.param(
            (CHECKS_TEXT, "{name: status, type: text, checks: {regex: '(['}}"),
            "columns[1].checks.regex: invalid regular expression: unterminated character set",
            id="invalid-regex",
        ),
        pytest.param(
            (CHECKS_TEXT, "{name: status, type: text, checks: {regex: 'a{4294967296}'}}"),
            "columns[1].checks.regex: invalid regular expression: the repetition number is too",
            id="regex-repetition-overflow",
        ),
        pytest.param(
            ('glob: "orders/*.csv"', 'glob: "orders/*.csv", timezone: Mars/Olympus'),
            "source.timezone: unknown time zone 'Mars/Olympus' (e.g. UTC, Europe/Berlin)",
            id="unknown-time-zone",
        ),
        pytest.param(
            ('glob: "orders/*.csv"', 'glob: "orders/*.csv", timezone: America'),
            "source.timezone: unknown time zone 'America' (e.g. UTC, Europe/Berlin)",
            id="time-zone-folder",
        ),
        pytest.param(
            ('glob: "orders/*.csv"', 'glob: "orders/*.csv", csv: {encoding: klingon}'),
            "source.csv.encoding: unknown encoding 'klingon' (e.g. utf8, latin-1, cp1252)",
            id="unknown-encoding",
        ),
        pytest.param(
            ("schema: sales", "schema: elt"),
            "target.schema: schema 'elt' is reserved; choose a schema of your own",
            id="reserved-schema",
        ),
        pytest.param(
            ("name: orders", "name: Orders"),
            "name: 'Orders': use lowercase letters, digits and _, at most 50 characters",
            id="dataset-name-uppercase",
        ),
        pytest.param(
            ("name: status", "name: _elt_file"),
            "columns[1].name: names starting with _elt_ are reserved for the platform",
            id="reserved-column-prefix",
        ),
    ],
)
def test_broken_contract_error_names_file_and_key(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in BASE
    message = load_one(tmp_path, BASE.replace(old, new, 1))
    assert message.startswith("broken.yaml: ")
    assert expected in message


@pytest.mark.parametrize("schema", ["elt", "elt_staging", "raw", "staged", "public", "PUBLIC"])
def test_platform_schemas_are_reserved(tmp_path: Path, schema: str) -> None:
    message = load_one(tmp_path, BASE.replace("schema: sales", f"schema: {schema}"))
    assert f"target.schema: schema {schema!r} is reserved" in message


def test_pg_schemas_are_reserved(tmp_path: Path) -> None:
    message = load_one(tmp_path, BASE.replace("schema: sales", "schema: pg_catalog"))
    assert "target.schema: schema 'pg_catalog' is reserved" in message


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    message = load_one(tmp_path, BASE.replace('source: {glob: "orders/*.csv"}\n', ""))
    assert message == "broken.yaml: source: required key is missing"


def test_duplicate_yaml_key_names_key_and_line(tmp_path: Path) -> None:
    text = BASE.lstrip() + "name: again\n"  # line 7
    message = load_one(tmp_path, text)
    assert message == "broken.yaml: invalid YAML at line 7, column 1: key 'name' appears twice"


def test_duplicate_nested_yaml_key_names_line(tmp_path: Path) -> None:
    text = BASE.replace("{name: status, type: text}", "{name: status, type: text, type: int}")
    message = load_one(tmp_path, text)
    assert "invalid YAML at line 6, column 32: key 'type' appears twice" in message


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    message = load_one(tmp_path, BASE.replace("columns:", "columns: [\n"))
    assert message.startswith("broken.yaml: invalid YAML at line 6, column 3: ")
    assert "expected the node content" in message


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "{[a]: 1}\n", "? {a: 1}\n: 2\n"])
def test_list_or_mapping_as_yaml_key_is_an_error_not_a_crash(tmp_path: Path, text: str) -> None:
    message = load_one(tmp_path, text)
    assert message.startswith("broken.yaml: invalid YAML at line 1, column ")
    assert "a key must be a plain value, not a list or mapping" in message


def test_deeply_nested_yaml_is_an_error_not_a_crash(tmp_path: Path) -> None:
    message = load_one(tmp_path, "[" * 1000 + "]" * 1000 + "\n")
    assert message == "broken.yaml: invalid YAML: nested too deeply"


@pytest.mark.parametrize(
    "text",
    ["- " * 400_000 + "a\n", "[" * 400_000 + "]" * 400_000 + "\n"],
    ids=["block", "flow"],
)
def test_a_contract_nested_deeper_than_libyaml_takes_is_an_error_not_a_crash(
    tmp_path: Path, text: str
) -> None:
    """libyaml (which reads contracts when PyYAML has it) nests by recursion in C without a
    limit: 400,000 levels crash a process. Loaded in a process of its own, so that a crash
    fails this test rather than ending the session."""
    write(tmp_path, "deep.yaml", text)
    script = "import sys, pathlib; from elt_assets.contracts.loader import load_contracts\n"
    script += "print(load_contracts(pathlib.Path(sys.argv[1])).errors[0])"
    argv = [sys.executable, "-c", script, str(tmp_path)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "deep.yaml: invalid YAML: nested too deeply"


def test_a_tab_inside_a_key_is_read_as_yaml_says_and_named_as_an_unknown_key(
    tmp_path: Path,
) -> None:
    """YAML allows a tab between the words of a plain scalar; PyYAML's own scanner refuses it,
    libyaml (which reads contracts) takes it: the key is then simply unknown, and named."""
    message = load_one(tmp_path, BASE.lstrip() + "d\tescription: x\n")
    assert message == (
        "broken.yaml: d\tescription: unknown key (check the spelling; see README "
        "'Contract reference')"
    )


def test_libyaml_reads_the_example_contracts_into_the_values_pyyaml_reads() -> None:
    assert loader._FastUniqueKeyLoader is not None  # PyYAML's wheels carry libyaml
    for path in sorted(EXAMPLES.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert loader._nesting_bound(text) <= loader.MAX_FAST_NESTING, path.name  # read fast
        fast = loader._construct(loader._FastUniqueKeyLoader, text)
        assert fast == yaml.load(text, Loader=yaml.SafeLoader), path.name


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "", "42\n"])
def test_document_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    message = load_one(tmp_path, text)
    assert message == (
        "broken.yaml: must be a YAML mapping with keys name, source, target, columns"
    )


def test_not_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "latin.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    loaded = load_contracts(tmp_path)
    assert [str(e) for e in loaded.errors] == ["latin.yaml: not UTF-8 text"]


def test_same_dataset_name_in_two_files_loads_neither(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yml", BASE.replace("table: orders", "table: orders_copy"))
    write(
        tmp_path,
        "c.yaml",
        BASE.replace("name: orders", "name: other").replace("table: orders", "table: other"),
    )
    loaded = load_contracts(tmp_path)
    assert [c.name for c in loaded.contracts] == ["other"]  # the others still load
    assert loaded.sources == {"other": tmp_path / "c.yaml"}
    why = "which one is meant is unknown, so none of them loads: rename the dataset"
    assert [str(e) for e in loaded.errors] == [
        f"a.yaml: dataset name 'orders' is also claimed by b.yml; {why} (or change the target) "
        "in all but one",
        f"b.yml: dataset name 'orders' is also claimed by a.yaml; {why} (or change the target) "
        "in all but one",
    ]
    assert [e.dataset for e in loaded.errors] == ["orders", "orders"]


def test_two_contracts_with_the_same_target_table(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    # Same table, spelled with other case: PostgreSQL would fold both to sales.orders.
    other = BASE.replace("name: orders", "name: orders_b").replace(
        "schema: sales, table: orders", "schema: Sales, table: ORDERS"
    )
    write(tmp_path, "b.yaml", other)
    loaded = load_contracts(tmp_path)
    assert loaded.contracts == []
    assert [(e.path.name, e.dataset) for e in loaded.errors] == [
        ("a.yaml", "orders"),
        ("b.yaml", "orders_b"),
    ]
    assert str(loaded.errors[1]).startswith(
        "b.yaml: target table 'sales.orders' is also claimed by a.yaml; "
    )


def test_one_broken_file_never_hides_the_valid_ones(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a_broken.yaml",
        BASE.replace("name: orders", "name: broken").replace("type: text", "type: strng"),
    )
    write(tmp_path, "b_orders.yaml", BASE)
    write(tmp_path, "c_crash.yaml", "? [a]\n: 1\n")
    write(tmp_path, "notes.txt", "not a contract")
    loaded = load_contracts(tmp_path)
    assert isinstance(loaded, ContractSet)
    assert [c.name for c in loaded.contracts] == ["orders"]
    assert [e.path.name for e in loaded.errors] == ["a_broken.yaml", "c_crash.yaml"]
    assert loaded.errors[0].dataset == "broken"  # the name is still read from the broken file
    assert loaded.errors[1].dataset is None


# --- property: anything YAML can hold is a Contract or a ValueError --------------------------

INTERESTING_STRINGS = [
    "orders", "sales", "order_id", "bigint", "text", "numeric(12,2)", "varchar(0)", "strng",
    "upsert", "append", "csv", "parquet", "UTC", "America", "Europe/Berlin", "../x", "/abs",
    "utf8", "klingon", "(", "a{4294967296}", "^[A-Z]{3}$", "elt", "pg_x", "_elt_row", "", " ",
    "fail", "last", "quarantine", "2026-01-01", "s" * 64,
]  # fmt: skip
KEYS = [
    "name", "description", "source", "target", "columns", "policy", "checks", "glob", "format",
    "csv", "timezone", "delimiter", "quote", "encoding", "header", "null_values", "schema",
    "table", "mode", "primary_key", "version_column", "type", "nullable", "source_name", "ge",
    "lt", "isin", "regex", "min_length", "max_length", "unique", "bad_rows", "max_bad_row_ratio",
    "duplicate_keys", "row_count", "min", "max", "freshness_hours",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(INTERESTING_STRINGS)
)
yaml_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def base_document() -> dict[str, Any]:
    return yaml.safe_load(BASE)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _paths(child, (*prefix, index))
    return paths


BASE_PATHS = _paths(base_document())


def assert_contract_or_value_error(path: Path, document: Any) -> None:
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    try:
        result = parse_contract(path)
    except ValueError as error:
        assert str(error).strip()
    else:
        assert isinstance(result, Contract)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contracts") / "fuzz.yaml"


@settings(max_examples=150, deadline=None)
@given(document=yaml_values)
def test_any_yaml_document_is_a_contract_or_a_value_error(scratch: Path, document: Any) -> None:
    assert_contract_or_value_error(scratch, document)


@settings(max_examples=200, deadline=None)
@given(where=st.sampled_from(BASE_PATHS), value=yaml_values, extra=st.sampled_from(KEYS))
def test_any_change_to_a_valid_contract_is_a_contract_or_a_value_error(
    scratch: Path, where: tuple[Any, ...], value: Any, extra: str
) -> None:
    """Replace one part of a valid contract (or add a key beside it) with arbitrary YAML."""
    document = base_document()
    parent = document
    for part in where[:-1]:
        parent = parent[part]
    parent[where[-1]] = value
    if isinstance(parent, dict):
        parent.setdefault(extra, value)
    assert_contract_or_value_error(scratch, document)


def test_the_rescue_policy_adds_its_column_to_the_tables_and_it_is_named_safely(
    tmp_path: Path,
) -> None:
    plain = Contract.model_validate(yaml.safe_load(BASE))
    assert [c.name for c in plain.table_columns] == ["order_id", "status"]
    assert plain.policy.extra_columns == "fail"
    rescuing = yaml.safe_load(BASE)
    rescuing["policy"] = {"bad_values": "rescue"}
    contract = Contract.model_validate(rescuing)
    assert [(c.name, str(c.type)) for c in contract.table_columns][-1] == ("_rescued", "jsonb")
    assert contract.policy.extra_columns == "fail"  # bad values only: new columns still fail
    tolerant = yaml.safe_load(BASE)
    tolerant["policy"] = {"schema_drift": "tolerant"}
    assert Contract.model_validate(tolerant).policy.extra_columns == "ignore"
    said = load_one(tmp_path, BASE + "policy: {new_columns: rescue, rescue_column: status}\n")
    assert "policy.rescue_column: 'status' is also a column" in said
    said = load_one(tmp_path, BASE + "policy: {new_columns: rescue, rescue_column: _elt_x}\n")
    assert "names starting with _elt_ are reserved" in said
    said = load_one(tmp_path, BASE + "policy: {new_columns: drop}\n")
    assert "new_columns" in said and "'fail', 'ignore', 'add' or 'rescue'" in said


def _wide_contract(columns: int, policy: str = "") -> str:
    lines = [f"  - {{name: c{n}, type: integer}}" for n in range(columns)]
    return (
        "name: wide\nsource: {glob: 'wide/*.csv'}\n"
        "target: {schema: sales, table: wide, mode: append}\n"
        f"{policy}columns:\n" + "\n".join(lines) + "\n"
    )


def test_a_contract_with_more_columns_than_a_table_can_hold_is_refused_saying_what_to_do(
    tmp_path: Path,
) -> None:
    """PostgreSQL's 1,600 columns, less the staging table's 3: 1,597, the rescue column counted
    (found as `tables can have at most 1600 columns` when the staging table was created)."""
    write(tmp_path, "wide.yaml", _wide_contract(1597))
    assert [c.name for c in load_contracts(tmp_path).contracts] == ["wide"]
    message = load_one(tmp_path, _wide_contract(1598), "wide.yaml")
    assert message.startswith(
        "wide.yaml: columns: 1,598 columns, and a PostgreSQL table holds at most 1,600, 1,597 of "
        "them for a dataset's own"
    ), message
    assert "keep the columns you need" in message
    rescued = "policy: {new_columns: rescue}\n"
    message = load_one(tmp_path, _wide_contract(1597, rescued), "wide.yaml")
    assert "columns: 1,598 columns" in message
