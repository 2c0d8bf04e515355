"""File-level policy: which counts fail a file, and the sentences users read about it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from elt_assets.contracts.model import Contract
from elt_assets.validation.policy import FileCounts, HeaderReport, StageReport, policy_violations

pytestmark = [pytest.mark.pure]


def contract(
    policy: dict[str, Any] | None = None, row_count: dict[str, int] | None = None
) -> Contract:
    return Contract.model_validate(
        {
            "name": "orders",
            "source": {"glob": "orders/*"},
            "target": {"schema": "sales", "table": "orders", "primary_key": ["id"]},
            "columns": [{"name": "id", "type": "bigint"}, {"name": "status", "type": "text"}],
            "policy": policy or {},
            "checks": {"row_count": row_count} if row_count else {},
        }
    )


def counts(read: int, quarantined: int = 0, **more: Any) -> FileCounts:
    return FileCounts(
        rows_read=read, rows_staged=read - quarantined, rows_quarantined=quarantined, **more
    )


def test_clean_file_passes() -> None:
    assert policy_violations(contract(), counts(100)) == []


def test_empty_file_passes_without_dividing_by_zero() -> None:
    assert policy_violations(contract(), counts(0)) == []


def test_bad_rows_fail_rejects_a_single_bad_row() -> None:
    strict = contract({"bad_rows": "fail", "max_bad_row_ratio": 0.5})
    assert policy_violations(strict, counts(1000, 1)) == [
        "1 of 1000 rows failed validation and the contract says bad_rows: fail "
        "(see elt.quarantine for each row and reason)"
    ]
    assert policy_violations(strict, counts(1000, 0)) == []


def test_bad_row_ratio_at_the_limit_passes() -> None:
    # 1 of 100 is exactly the default max_bad_row_ratio 0.01.
    assert policy_violations(contract(), counts(100, 1)) == []
    assert policy_violations(contract({"max_bad_row_ratio": 0.05}), counts(20, 1)) == []


def test_bad_row_ratio_below_the_limit_passes() -> None:
    assert policy_violations(contract({"max_bad_row_ratio": 0.05}), counts(100, 4)) == []


def test_bad_row_ratio_above_the_limit_fails_with_both_percentages() -> None:
    assert policy_violations(contract(), counts(100, 2)) == [
        "2 of 100 rows (2.00%) failed validation, more than max_bad_row_ratio 1.00% allows "
        "(see elt.quarantine)"
    ]
    assert policy_violations(contract({"max_bad_row_ratio": 0.0}), counts(3, 1)) == [
        "1 of 3 rows (33.33%) failed validation, more than max_bad_row_ratio 0.00% allows "
        "(see elt.quarantine)"
    ]


def test_all_rows_bad_with_ratio_one_passes() -> None:
    """max_bad_row_ratio 1.0 accepts a file whose rows all went to the quarantine."""
    assert policy_violations(contract({"max_bad_row_ratio": 1.0}), counts(5, 5)) == []


def test_duplicate_keys_fail_names_count_rows_and_examples() -> None:
    duplicates = {
        "duplicate_keys": 7,
        "duplicate_key_rows": 15,
        "duplicate_key_examples": ["1", "2", "3", "4", "5", "6"],
    }
    failing = contract({"duplicate_keys": "fail"})
    assert policy_violations(failing, counts(100, **duplicates)) == [
        "7 primary keys occur more than once (15 rows; e.g. 1, 2, 3, 4, 5) and the contract "
        "says duplicate_keys: fail"
    ]
    # `last` keeps the last row of each key: no violation.
    assert policy_violations(contract({"duplicate_keys": "last"}), counts(100, **duplicates)) == []


def test_row_count_min_and_max() -> None:
    bounded = contract(row_count={"min": 10, "max": 20})
    assert policy_violations(bounded, counts(9)) == [
        "the file has 9 rows, fewer than row_count.min 10"
    ]
    assert policy_violations(bounded, counts(21)) == [
        "the file has 21 rows, more than row_count.max 20"
    ]
    assert policy_violations(bounded, counts(10)) == []
    assert policy_violations(bounded, counts(20)) == []
    assert policy_violations(contract(row_count={"min": 1}), counts(0)) == [
        "the file has 0 rows, fewer than row_count.min 1"
    ]


def test_row_count_counts_rows_read_including_bad_ones() -> None:
    bounded = contract({"max_bad_row_ratio": 1.0}, row_count={"min": 10})
    assert policy_violations(bounded, counts(10, 5)) == []


def test_unaccounted_rows_are_reported() -> None:
    lost = FileCounts(rows_read=10, rows_staged=7, rows_quarantined=2)
    assert policy_violations(contract(), lost) == [
        "10 rows read but 7 staged and 2 quarantined: rows are unaccounted for "
        "(please report this)",
        "2 of 10 rows (20.00%) failed validation, more than max_bad_row_ratio 1.00% allows "
        "(see elt.quarantine)",
    ]


def test_every_violation_is_listed_in_order() -> None:
    strict = contract({"bad_rows": "fail", "duplicate_keys": "fail"}, row_count={"max": 3})
    problems = policy_violations(
        strict,
        counts(4, 1, duplicate_keys=1, duplicate_key_rows=2, duplicate_key_examples=["9"]),
    )
    assert problems == [
        "1 of 4 rows failed validation and the contract says bad_rows: fail "
        "(see elt.quarantine for each row and reason)",
        "1 primary key occurs more than once (2 rows; e.g. 9) and the contract says "
        "duplicate_keys: fail",
        "the file has 4 rows, more than row_count.max 3",
    ]


@pytest.mark.parametrize("with_header", [True, False])
def test_stage_report_json_is_what_asdict_gives_and_reads_back(with_header: bool) -> None:
    report = StageReport(
        counts=counts(10, 2, duplicate_keys=1, duplicate_key_rows=2, duplicate_key_examples=["7"]),
        violations=["2 bad rows"],
        refused_by_postgres=1,
        duplicates_moved=3,
        seconds={"copy": 0.5},
        failure_counts={"status.isin": 2},
        sample=[{"row_number": 4, "reason": "status: 'x' is not allowed"}],
        header=HeaderReport({"id": "ID"}, ["status"], ["extra"]) if with_header else None,
        schema_change="added note",
    )
    document = report.to_json()
    assert document == dataclasses.asdict(report)
    document["counts"]["duplicate_key_examples"].append("8")  # a copy, not the report's own
    document["sample"][0]["row_number"] = 5
    assert report.counts.duplicate_key_examples == ["7"]
    assert report.sample[0]["row_number"] == 4
    assert StageReport.from_json(json.loads(json.dumps(report.to_json()))) == report
