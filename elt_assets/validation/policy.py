"""The contract's file-level policy: given a file's counts, does the file pass?

Pure functions, so the rules are tested without a database and read in one place:
- `bad_rows: fail` rejects a file with any bad row;
- otherwise the share of bad rows may not exceed `max_bad_row_ratio`;
- `duplicate_keys: fail` rejects a file that repeats a primary key;
- the dataset's `row_count` bounds apply to the rows read.
A file that fails policy keeps its good rows in staging and its bad rows in the quarantine (nothing
is lost), and the target is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from elt_assets.contracts.model import Contract


@dataclass
class FileCounts:
    rows_read: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    rows_rescued: int = 0  # staged rows with values in the rescue column
    duplicate_keys: int = 0  # distinct keys that occur more than once
    duplicate_key_rows: int = 0
    duplicate_key_examples: list[str] = field(default_factory=list)
    # Every key greater than the one before it, in the file's order: the load need not sort.
    keys_in_order: bool = False


@dataclass
class HeaderReport:
    """How the file's header met the contract (landing/readers.py `HeaderMapping`)."""

    sources: dict[str, str]  # contract column -> column in the file
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


@dataclass
class StageReport:
    """What the staged step did to one file. The staging IO manager records it in the file's
    manifest row (`to_json`); the staged asset reads it back (`from_json`) for its checks."""

    counts: FileCounts
    violations: list[str]
    refused_by_postgres: int = 0
    duplicates_moved: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    failure_counts: dict[str, int] = field(default_factory=dict)  # quarantined rows per check
    sample: list[dict[str, object]] = field(default_factory=list)  # the first quarantined rows
    header: HeaderReport | None = None
    schema_change: str | None = None  # the columns this file added (policy.new_columns: add)
    copy_format: str = "csv"  # how its rows went to staging: csv, or binary (typed Parquet)
    # The staged step loaded the target itself, in its transaction, which also recorded the
    # file as loaded: a first load into the empty table or a big appended file by COPY (no
    # staging slice), a big upserted file a part at a time as another connection staged it.
    straight_to_target: bool = False

    def to_json(self) -> dict[str, Any]:
        """What dataclasses.asdict gives, built directly: asdict deep-copies every value, which
        cost a small file more than its manifest write."""
        header = self.header
        return {
            "counts": {
                **vars(self.counts),
                "duplicate_key_examples": list(self.counts.duplicate_key_examples),
            },
            "violations": list(self.violations),
            "refused_by_postgres": self.refused_by_postgres,
            "duplicates_moved": self.duplicates_moved,
            "seconds": dict(self.seconds),
            "failure_counts": dict(self.failure_counts),
            "sample": [dict(row) for row in self.sample],
            "header": None
            if header is None
            else {
                "sources": dict(header.sources),
                "missing": list(header.missing),
                "extra": list(header.extra),
            },
            "schema_change": self.schema_change,
            "copy_format": self.copy_format,
            "straight_to_target": self.straight_to_target,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> StageReport:
        header = document.get("header")
        return cls(
            counts=FileCounts(**document["counts"]),
            violations=list(document["violations"]),
            refused_by_postgres=int(document.get("refused_by_postgres", 0)),
            duplicates_moved=int(document.get("duplicates_moved", 0)),
            seconds=dict(document.get("seconds", {})),
            failure_counts=dict(document.get("failure_counts", {})),
            sample=list(document.get("sample", [])),
            header=HeaderReport(**header) if header is not None else None,
            schema_change=document.get("schema_change"),
            copy_format=document.get("copy_format", "csv"),
            straight_to_target=bool(document.get("straight_to_target", False)),
        )


def policy_violations(
    contract: Contract, counts: FileCounts, *, quarantine_written: bool = True
) -> list[str]:
    """Why the file fails its contract's policy; empty when it passes. `quarantine_written`:
    whether the rejected rows are in elt.quarantine to look at (not after a dry run)."""
    policy = contract.policy
    see = " (see elt.quarantine)" if quarantine_written else ""
    see_each = " (see elt.quarantine for each row and reason)" if quarantine_written else ""
    problems: list[str] = []
    accounted = counts.rows_staged + counts.rows_quarantined
    if counts.rows_read != accounted:
        problems.append(
            f"{counts.rows_read} rows read but {counts.rows_staged} staged and "
            f"{counts.rows_quarantined} quarantined: rows are unaccounted for (please report this)"
        )
    bad, read = counts.rows_quarantined, counts.rows_read
    if bad and policy.bad_rows == "fail":
        problems.append(
            f"{bad} of {read} rows failed validation and the contract says bad_rows: fail{see_each}"
        )
    elif read and bad / read > policy.max_bad_row_ratio:
        problems.append(
            f"{bad} of {read} rows ({bad / read:.2%}) failed validation, more than "
            f"max_bad_row_ratio {policy.max_bad_row_ratio:.2%} allows{see}"
        )
    if counts.duplicate_keys and policy.duplicate_keys == "fail":
        examples = ", ".join(counts.duplicate_key_examples[:5])
        problems.append(
            f"{counts.duplicate_keys} primary "
            f"{'keys occur' if counts.duplicate_keys > 1 else 'key occurs'} more than once "
            f"({counts.duplicate_key_rows} rows; e.g. {examples}) and the contract says "
            "duplicate_keys: fail"
        )
    bounds = contract.checks.row_count
    if bounds is not None:
        if bounds.min is not None and read < bounds.min:
            problems.append(f"the file has {read} rows, fewer than row_count.min {bounds.min}")
        if bounds.max is not None and read > bounds.max:
            problems.append(f"the file has {read} rows, more than row_count.max {bounds.max}")
    return problems
