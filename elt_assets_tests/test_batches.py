"""Splitting a batch into rows to stage and rows to quarantine, with every reason."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elt_assets.contracts.model import Contract
from elt_assets.landing.readers import HeaderMapping
from elt_assets.validation.batches import QUARANTINE_COLUMNS, BatchValidator, ValidatedBatch
from elt_assets.validation.schema import build_schema

pytestmark = [pytest.mark.pure]


def make_contract(columns: list[dict[str, Any]], primary_key: list[str] | None = None) -> Contract:
    return Contract.model_validate(
        {
            "name": "orders",
            "source": {"glob": "orders/*"},
            "target": {
                "schema": "shop",
                "table": "orders",
                "mode": "upsert" if primary_key else "append",
                "primary_key": primary_key or [],
            },
            "columns": columns,
        }
    )


def validate(
    contract: Contract, rows: dict[str, list[str | None]], sources: dict[str, str] | None = None
) -> ValidatedBatch:
    """Validate CSV-like text columns (named after the contract columns) as one batch."""
    height = len(next(iter(rows.values())))
    batch = pl.DataFrame(
        {"_elt_row": list(range(1, height + 1)), **rows},
        schema={"_elt_row": pl.Int64, **dict.fromkeys(rows, pl.String)},
    )
    header = HeaderMapping(sources or {c.name: c.header for c in contract.columns})
    return BatchValidator(contract, header, {}).validate(batch)


ORDERS = make_contract(
    [
        {"name": "order_id", "type": "bigint", "source_name": "Order ID"},
        {"name": "qty", "type": "integer", "checks": {"ge": 0, "lt": 100}},
        {"name": "status", "type": "text", "checks": {"isin": ["new", "paid"]}},
        {"name": "code", "type": "varchar(5)", "checks": {"regex": "^[A-Z]+$"}},
        {"name": "note", "type": "text", "nullable": False},
    ],
    primary_key=["order_id"],
)


def test_good_rows_come_back_as_text_in_contract_order() -> None:
    result = validate(
        ORDERS,
        {
            "note": ["  keep  ", ""],
            "code": ["AB", "XYZ"],
            "status": ["new", "paid"],
            "qty": [" 7 ", "0"],
            "order_id": ["1", "+2"],
        },
    )
    assert result.good.columns == ["_elt_row", "order_id", "qty", "status", "code", "note"]
    assert result.good.schema["qty"] == pl.String
    assert result.good.rows() == [
        (1, "1", "7", "new", "AB", "  keep  "),  # non-text trimmed, text untouched
        (2, "+2", "0", "paid", "XYZ", ""),  # an empty string is a value, not a NULL
    ]
    assert result.quarantined.height == 0 and result.failure_counts == {}
    assert result.rows_read == 2
    assert result.quarantined.columns == QUARANTINE_COLUMNS


def test_a_row_carries_every_failure_and_its_original_text() -> None:
    result = validate(
        ORDERS,
        {
            "order_id": ["1", "x"],
            "qty": ["5", "-1"],
            "status": ["new", "lost"],
            "code": ["AB", "ab"],
            "note": ["ok", None],
        },
    )
    assert result.good["_elt_row"].to_list() == [1]
    [record] = result.quarantined.to_dicts()
    assert record["row_number"] == 2
    failures = json.loads(record["failures"])
    assert failures == [
        {
            "column": "order_id",
            "check": "type:bigint",
            "reason": "order_id: 'x' is not a whole number in bigint range",
        },
        {"column": "qty", "check": "ge", "reason": "qty: '-1' must be >= 0"},
        {
            "column": "status",
            "check": "isin",
            "reason": "status: 'lost' must be one of ['new', 'paid']",
        },
        {
            "column": "code",
            "check": "regex",
            "reason": "code: 'ab' must match the pattern '^[A-Z]+$'",
        },
        {"column": "note", "check": "not_null", "reason": "note: NULL is required but empty"},
    ]
    assert (record["column_name"], record["check_name"]) == ("order_id", "type:bigint")
    assert record["reason"] == "order_id: 'x' is not a whole number in bigint range (+4 more)"
    # keyed by the file's headers, with the text as it was in the file
    assert json.loads(record["raw_record"]) == {
        "Order ID": "x",
        "qty": "-1",
        "status": "lost",
        "code": "ab",
        "note": None,
    }
    assert result.failure_counts == {
        "order_id.type:bigint": 1,
        "qty.ge": 1,
        "status.isin": 1,
        "code.regex": 1,
        "note.not_null": 1,
    }


def test_type_failures_are_listed_before_check_failures() -> None:
    """A cast failure is the root problem; checks on other columns follow, in column order."""
    result = validate(
        ORDERS,
        {
            "order_id": ["1"],
            "qty": ["100"],
            "status": ["new"],
            "code": ["ABCDEF"],
            "note": ["x"],
        },
    )
    [record] = result.quarantined.to_dicts()
    assert [(f["column"], f["check"]) for f in json.loads(record["failures"])] == [
        ("code", "type:varchar(5)"),
        ("qty", "lt"),
    ]
    assert (record["column_name"], record["check_name"]) == ("code", "type:varchar(5)")
    assert record["reason"] == "code: 'ABCDEF' is not at most 5 characters long (+1 more)"


def test_a_value_that_fails_its_cast_is_not_reported_again_by_its_checks() -> None:
    result = validate(
        ORDERS,
        {"order_id": ["1"], "qty": ["abc"], "status": ["new"], "code": ["A"], "note": ["x"]},
    )
    [record] = result.quarantined.to_dicts()
    assert record["reason"] == "qty: 'abc' is not a whole number in integer range"
    assert len(json.loads(record["failures"])) == 1


def test_failure_counts_add_up_per_column_and_check() -> None:
    result = validate(
        ORDERS,
        {
            "order_id": ["1", "2", "3", "4"],
            "qty": ["-1", "-2", "1", "1000"],
            "status": ["new", "gone", "gone", "paid"],
            "code": ["A", "A", "A", "A"],
            "note": ["x", "x", "x", "x"],
        },
    )
    assert result.failure_counts == {"qty.ge": 2, "status.isin": 2, "qty.lt": 1}
    assert result.quarantined["row_number"].to_list() == [1, 2, 3, 4]
    assert result.good.height == 0


def test_primary_key_null_is_not_null_even_when_the_contract_says_nullable() -> None:
    result = validate(
        ORDERS,
        {"order_id": [None], "qty": ["1"], "status": ["new"], "code": ["A"], "note": ["x"]},
    )
    [record] = result.quarantined.to_dicts()
    assert (record["column_name"], record["check_name"]) == ("order_id", "not_null")
    assert record["reason"] == "order_id: NULL is required but empty"


def test_nullable_columns_accept_null_and_empty_text_is_not_null() -> None:
    result = validate(
        ORDERS,
        {"order_id": ["1"], "qty": [None], "status": [None], "code": [None], "note": [""]},
    )
    assert result.good.rows() == [(1, "1", None, None, None, "")]


def one_column(type_: str, checks: dict[str, Any], values: list[str | None]) -> ValidatedBatch:
    contract = make_contract([{"name": "v", "type": type_, "checks": checks}])
    return validate(contract, {"v": values})


@pytest.mark.parametrize(
    ("type_", "checks", "values", "failing", "check", "reason"),
    [
        ("integer", {"ge": 0}, ["0", "-1"], [2], "ge", "v: '-1' must be >= 0"),
        ("numeric(6,2)", {"gt": 0}, ["0.01", "0.00"], [2], "gt", "v: '0.00' must be > 0"),
        ("real", {"le": 1.5}, ["1.5", "1.6"], [2], "le", "v: '1.6' must be <= 1.5"),
        ("bigint", {"lt": 10}, ["9", "10"], [2], "lt", "v: '10' must be < 10"),
        (
            "date",
            {"ge": "2024-01-01"},
            ["2024-01-01", "2023-12-31"],
            [2],
            "ge",
            "v: '2023-12-31' must be >= 2024-01-01",
        ),
        (
            "timestamptz",
            {"lt": "2024-01-01T00:00:00+00:00"},
            ["2023-12-31 23:59:59Z", "2024-01-01 01:00:00+01"],
            [2],
            "lt",
            "v: '2024-01-01 01:00:00+01' must be < 2024-01-01T00:00:00+00:00",
        ),
        ("text", {"isin": ["a", "b"]}, ["a", "c"], [2], "isin", "v: 'c' must be one of ['a', 'b']"),
        ("integer", {"isin": [1, 2]}, ["2", "3"], [2], "isin", "v: '3' must be one of [1, 2]"),
        ("text", {"notin": ["x"]}, ["y", "x"], [2], "notin", "v: 'x' must not be one of ['x']"),
        (
            "text",
            {"regex": "^[0-9]{3}$"},
            ["123", "12a"],
            [2],
            "regex",
            "v: '12a' must match the pattern '^[0-9]{3}$'",
        ),
        (
            "varchar(10)",
            {"min_length": 2},
            ["ab", "a"],
            [2],
            "min_length",
            "v: 'a' must be at least 2 characters long",
        ),
        (
            "text",
            {"max_length": 2},
            ["ab", "abc"],
            [2],
            "max_length",
            "v: 'abc' must be at most 2 characters long",
        ),
    ],
)
def test_each_check_reports_the_contracts_check_name(
    type_: str,
    checks: dict[str, Any],
    values: list[str],
    failing: list[int],
    check: str,
    reason: str,
) -> None:
    result = one_column(type_, checks, values)
    assert result.quarantined["row_number"].to_list() == failing
    [record] = result.quarantined.to_dicts()
    assert (record["column_name"], record["check_name"], record["reason"]) == ("v", check, reason)
    assert result.failure_counts == {f"v.{check}": 1}
    assert result.good["_elt_row"].to_list() == [1]


def test_checks_skip_null_values() -> None:
    result = one_column("integer", {"ge": 0, "isin": [1]}, [None])
    assert result.quarantined.height == 0 and result.good.height == 1


TIMESTAMP_SPELLINGS = [
    "2024-05-01 10:00:00+02:00",  # the fast spelling
    "2024-05-01 10:00:00.123456-03:30",
    "2024-05-01 10:00:00.1+00:00",
    "2024-05-01 10:00:00.1234567+00:00",  # 7 digits: not the fast spelling
    "2024-02-30 10:00:00+01:00",  # fast shape, impossible date
    "2024-05-01 24:00:00+00:00",
    "2024-05-01 10:00:61+00:00",
    "2024-05-01 10:00:00+15:00",
    "2024-05-01T10:00:00Z",
    "2024-05-01 10:00",
    "2024-05-01",
    " 2024-05-01 10:00:00+02:00 ",
    "2024-05-01 10:00:00 +0200",
    "2024-03-31 02:30:00",  # a local time in the DST gap of Europe/Berlin
    "2024-10-27 02:30:00.25",  # an ambiguous local time
    "2024-05-01 10:00:00",
    "2024-02-30 10:00:00",
    "10:00 2024-05-01",
    "",
    None,
]


@pytest.mark.parametrize("kind", ["timestamptz", "timestamp"])
def test_fast_timestamp_cast_agrees_with_the_full_cast(kind: str) -> None:
    """The one-strptime fast path settles only values the general rules give the same result."""
    base = make_contract([{"name": "at", "type": kind}])
    source = base.source.model_copy(update={"timezone": "Europe/Berlin"})
    contract = base.model_copy(update={"source": source})
    header = HeaderMapping({"at": "at"})
    batch = pl.DataFrame(
        {"_elt_row": list(range(1, len(TIMESTAMP_SPELLINGS) + 1)), "at": TIMESTAMP_SPELLINGS},
        schema={"_elt_row": pl.Int64, "at": pl.String},
    )
    validator = BatchValidator(contract, header, {"at": pl.String()})
    assert validator.casts["at"].fast is not None
    two_phase = validator._cast(batch, ["at"])
    full = batch.select(validator._cast_exprs(["at"]))
    settled_by_fast = batch.select(validator.casts["at"].fast.alias("v"))["v"].is_not_null().sum()
    assert settled_by_fast >= 3  # the fast path did take the common spellings of each kind
    assert two_phase.equals(full)
    failed_rows = full.filter(pl.col("__failed_at"))["_elt_row"].to_list()
    quarantined = validator.validate(batch).quarantined
    assert quarantined["row_number"].to_list() == failed_rows
    assert all(reason.startswith("at: '") for reason in quarantined["reason"].to_list())


FILE_VALUES = st.lists(
    st.fixed_dictionaries(
        {
            "order_id": st.sampled_from(["1", "2", "3", "x", None]),
            "qty": st.sampled_from(["0", "5", "99", "100", "-1", "many", None]),
            "status": st.sampled_from(["new", "paid", "lost", None]),
            "code": st.sampled_from(["AB", "ABCDEF", "ab", None]),
            "note": st.sampled_from(["n", None]),
        }
    ),
    min_size=1,  # the reader never hands out an empty batch
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(FILE_VALUES, min_size=1, max_size=5))
def test_files_validated_together_give_each_what_it_gets_alone(
    files: list[list[dict[str, str | None]]],
) -> None:
    """validate_many (a backlog of small files in one pass) is validate, file by file."""
    header = HeaderMapping({c.name: c.header for c in ORDERS.columns})
    validator = BatchValidator(ORDERS, header, {})
    batches = [
        pl.DataFrame(
            [{"_elt_row": n, **row} for n, row in enumerate(rows, start=1)],
            schema={
                "_elt_row": pl.Int64,
                **dict.fromkeys(["order_id", "qty", "status", "code", "note"], pl.String),
            },
        )
        for rows in files
    ]
    together = validator.validate_many(batches)
    for batch, shared in zip(batches, together, strict=True):
        alone = validator.validate(batch)
        assert shared.good.equals(alone.good)
        assert shared.quarantined.equals(alone.quarantined)
        assert (shared.rows_read, shared.failure_counts, shared.increasing_keys) == (
            alone.rows_read,
            alone.failure_counts,
            alone.increasing_keys,
        )


TYPED_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "order_id": st.sampled_from([1, 2, 3, 7, None]),
            "qty": st.sampled_from([0, 5, 99, 100, -1, 2**40, None]),  # 2^40: no integer
            "status": st.sampled_from(["new", "paid", "lost", None]),
            "code": st.sampled_from(["AB", "ABCDEF", "ab", None]),
            "note": st.sampled_from(["n", None]),
        }
    ),
    min_size=1,  # the reader never hands out an empty batch
    max_size=6,
)
TYPED_SOURCE = {
    "order_id": pl.Int64(),
    "qty": pl.Int64(),
    "status": pl.String(),
    "code": pl.String(),
    "note": pl.String(),
}


@settings(max_examples=80, deadline=None)
@given(st.lists(TYPED_ROWS, min_size=1, max_size=5), st.booleans())
def test_consecutive_batches_validated_together_give_each_what_it_gets_alone(
    batches_rows: list[list[dict[str, Any]]], sent_typed: bool
) -> None:
    """validate_consecutive (a Parquet file's batches in one pass) is validate, batch by batch,
    whether or not the typed columns' text is left out (a binary COPY sends their values)."""
    header = HeaderMapping({c.name: c.header for c in ORDERS.columns})
    typed_only = frozenset({"order_id", "qty"}) if sent_typed else frozenset()
    validator = BatchValidator(ORDERS, header, dict(TYPED_SOURCE), typed_only)
    batches, row = [], 0
    for rows in batches_rows:  # one file: rows numbered on from batch to batch
        numbered = [{"_elt_row": row + n, **values} for n, values in enumerate(rows, start=1)]
        row += len(rows)
        batches.append(pl.DataFrame(numbered, schema={"_elt_row": pl.Int64, **TYPED_SOURCE}))
    together = validator.validate_consecutive(batches)
    assert len(together) == len(batches)
    for batch, shared in zip(batches, together, strict=True):
        alone = validator.validate(batch)
        assert shared.good.equals(alone.good)
        assert shared.quarantined.equals(alone.quarantined)
        assert (shared.typed is None) == (alone.typed is None) == (not sent_typed)
        if shared.typed is not None and alone.typed is not None:
            assert shared.typed.equals(alone.typed)
        assert (shared.rows_read, shared.failure_counts, shared.increasing_keys) == (
            alone.rows_read,
            alone.failure_counts,
            alone.increasing_keys,
        )


# Values as a CSV spells them, with the edges of each type: NaN and infinities, bounds, bad text.
PROOF_VALUES = {
    "integer": ["0", "5", "-1", "99", "100", "2147483647", "x", "", None],
    "double precision": ["0", "1.5", "-0", "NaN", "inf", "-inf", "1e308", "100", "x", None],
    "numeric(8,2)": ["0", "1.50", "-1", "99.99", "100", "x", None],
    "date": ["2024-01-01", "2023-12-31", "2024-06-30", "2024-02-30", None],
    "timestamptz": ["2024-01-01 00:00:00+00:00", "2023-12-31 23:59:59+00:00", "x", None],
    "text": ["new", "paid", "lost", "", None],
}
UNREADABLE = {"x", "2024-02-30"}
PROOF_BOUNDS = {
    "integer": [-1, 0, 5, 100],
    "double precision": [-1, 0, 1.5, 100],
    "numeric(8,2)": [-1, 0, 1.5, 100],
    "date": ["2024-01-01", "2024-06-30"],
    "timestamptz": ["2024-01-01T00:00:00+00:00"],
}


@st.composite
def proof_cases(draw: st.DrawFn) -> tuple[Contract, dict[str, list[str | None]]]:
    """A contract of one to three columns of these types, each maybe required and with some
    checks, and a batch of rows for it."""
    types = draw(st.lists(st.sampled_from(list(PROOF_VALUES)), min_size=1, max_size=3))
    columns, batch = [], {}
    rows = draw(st.integers(1, 6))
    for number, type_ in enumerate(types):
        values = PROOF_VALUES[type_]
        checks: dict[str, Any] = {}
        for name in draw(st.sets(st.sampled_from(["ge", "gt", "le", "lt", "isin", "notin"]))):
            if name in {"isin", "notin"}:
                if type_ in {"integer", "text"}:
                    pool = [v for v in values if v] if type_ == "text" else [0, 5, 99]
                    checks[name] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
            elif type_ in PROOF_BOUNDS:
                checks[name] = draw(st.sampled_from(PROOF_BOUNDS[type_]))
        required = draw(st.booleans())
        name = f"c{number}"
        columns.append({"name": name, "type": type_, "nullable": not required, "checks": checks})
        # Often nothing unreadable, so that the checks, nulls and NaN decide the batch.
        pool = values if draw(st.booleans()) else [v for v in values if v not in UNREADABLE]
        batch[name] = draw(st.lists(st.sampled_from(pool), min_size=rows, max_size=rows))
    return make_contract(columns), batch


@settings(max_examples=300, deadline=None)
@given(proof_cases())
def test_a_batch_the_clean_proof_lets_past_pandera_is_one_pandera_passes(
    case: tuple[Contract, dict[str, list[str | None]]],
) -> None:
    """The clean proof (validation/schema.py) never changes a batch's outcome: with it and with
    pandera alone, the same rows are good and the same are quarantined, for the same reasons."""
    contract, rows = case
    height = len(rows["c0"])
    batch = pl.DataFrame(
        {"_elt_row": list(range(1, height + 1)), **rows},
        schema={"_elt_row": pl.Int64, **dict.fromkeys(rows, pl.String)},
    )
    header = HeaderMapping({c.name: c.header for c in contract.columns})
    proved = BatchValidator(contract, header, {})
    assert proved.schema.clean is not None
    alone = BatchValidator(contract, header, {})
    alone.schema = dataclasses.replace(alone.schema, clean=None)
    with_proof, pandera_only = proved.validate(batch), alone.validate(batch)
    assert with_proof.good.equals(pandera_only.good)
    assert with_proof.quarantined.equals(pandera_only.quarantined)
    assert with_proof.failure_counts == pandera_only.failure_counts


def test_the_clean_proof_holds_for_a_clean_batch_only_and_not_for_a_pattern_check() -> None:
    """It answers for the batches that break nothing, so those skip pandera's ~10 ms; a batch
    with a failure, and any contract with a check that is not one comparison, go to pandera."""
    contract = make_contract(
        [
            {"name": "qty", "type": "integer", "nullable": False, "checks": {"ge": 0}},
            {"name": "price", "type": "double precision", "nullable": False},
            {"name": "status", "type": "text", "checks": {"isin": ["new", "paid"]}},
        ]
    )
    clean = build_schema(contract).clean
    assert clean is not None
    good = pl.DataFrame(
        {"qty": [0, 5], "price": [1.5, 2.0], "status": ["new", None]},
        schema={"qty": pl.Int32, "price": pl.Float64, "status": pl.String},
    )
    assert clean.holds(good)
    assert not clean.holds(good.with_columns(pl.Series("qty", [-1, 5], pl.Int32)))
    assert not clean.holds(good.with_columns(pl.Series("price", [float("nan"), 2.0])))
    assert not clean.holds(good.with_columns(pl.Series("status", ["lost", None])))
    assert not clean.holds(good.with_columns(pl.col("qty").cast(pl.Int64)))  # another dtype
    with_pattern = make_contract([{"name": "code", "type": "text", "checks": {"regex": "^A"}}])
    assert build_schema(with_pattern).clean is None
