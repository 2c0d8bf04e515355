"""Which facts become alerts, and what each alert says.

An alert is one event: a file failed (bad file, broken policy or blocking check, terminal
database error), a file's runs were interrupted so often it is no longer retried, a loaded file
quarantined many rows, a run failed before it could record its file, or a dataset is not fresh.
Its `key` names the event, not the moment: the same content failing twice, or a restarted daemon
seeing the same failure again, gives the same key, and the outbox sends a key once per channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

FILE_FAILED = "file_failed"
INTERRUPTED = "interrupted"
QUARANTINE = "quarantine"
RUN_FAILED = "run_failed"
NOT_FRESH = "not_fresh"


@dataclass(frozen=True)
class Alert:
    """One event, as every channel tells it."""

    kind: str
    dataset: str
    title: str
    reason: str
    key: str
    file: str | None = None
    sha256: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    run_id: str | None = None
    run_url: str | None = None
    occurred_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def fields(self) -> dict[str, Any]:
        """The alert as JSON-able fields (the outbox keeps them; the json format sends them)."""
        return {**asdict(self), "counts": dict(self.counts)}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Alert:
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    def facts(self) -> list[tuple[str, str]]:
        """(label, value) pairs shown under the title by every channel."""
        shown = [("Dataset", self.dataset)]
        if self.file:
            shown.append(("File", self.file))
        shown += [
            (label.replace("_", " ").capitalize(), f"{n:,}") for label, n in self.counts.items()
        ]
        if self.sha256:
            shown.append(("Content sha256", self.sha256))
        if self.run_id:
            shown.append(("Run", self.run_id))
        return shown

    def text(self) -> str:
        """The alert as plain text: the e-mail's body, and every webhook's fallback text."""
        lines = [self.title, "", self.reason, ""]
        lines += [f"{label}: {value}" for label, value in self.facts()]
        if self.run_url:
            lines += ["", f"Open the run: {self.run_url}"]
        return "\n".join(lines)


@dataclass(frozen=True)
class FileFacts:
    """A file's newest manifest row, as the alerts read it."""

    dataset: str
    file: str
    sha256: str
    status: str
    error: str | None
    interruptions: int
    run_id: str | None
    rows_read: int | None
    rows_quarantined: int | None
    rows_inserted: int | None
    rows_updated: int | None

    def counts(self) -> dict[str, int]:
        named = {
            "rows_read": self.rows_read,
            "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated,
            "rows_quarantined": self.rows_quarantined,
        }
        return {name: int(n) for name, n in named.items() if n is not None}


def run_url(ui_url: str, run_id: str | None) -> str | None:
    return f"{ui_url}/runs/{run_id}" if run_id else None


def file_alerts(
    facts: FileFacts, *, quarantine_rows: int, max_interruptions: int, ui_url: str
) -> list[Alert]:
    """The alert a file's manifest row calls for, if any."""
    common: dict[str, Any] = {
        "dataset": facts.dataset,
        "file": facts.file,
        "sha256": facts.sha256,
        "counts": facts.counts(),
        "run_id": facts.run_id,
        "run_url": run_url(ui_url, facts.run_id),
    }
    where = f"{facts.dataset} / {facts.file}"
    if facts.status == "failed" and facts.interruptions >= max_interruptions:
        return [
            Alert(
                kind=INTERRUPTED,
                title=f"File interrupted {facts.interruptions} times, no longer retried: {where}",
                reason=facts.error or "its runs ended without finishing it",
                key=f"{INTERRUPTED}/{facts.dataset}/{facts.sha256}",
                **common,
            )
        ]
    if facts.status == "failed":
        return [
            Alert(
                kind=FILE_FAILED,
                title=f"File failed: {where}",
                reason=facts.error or "the file failed (no reason was recorded)",
                key=f"{FILE_FAILED}/{facts.dataset}/{facts.sha256}",
                **common,
            )
        ]
    quarantined = facts.rows_quarantined or 0
    if facts.status == "success" and quarantined >= quarantine_rows:
        return [
            Alert(
                kind=QUARANTINE,
                title=f"{quarantined:,} rows quarantined: {where}",
                reason=f"The file loaded, but {quarantined:,} of its {facts.rows_read or 0:,} rows "
                f"were quarantined (the alert threshold is {quarantine_rows:,}). They are in "
                "elt.quarantine with their reasons; fix them at the source and land the file "
                "again.",
                key=f"{QUARANTINE}/{facts.dataset}/{facts.sha256}",
                **common,
            )
        ]
    return []


def run_failed_alert(
    dataset: str, files: list[str], sha256: str | None, run_id: str, message: str, ui_url: str
) -> Alert:
    """A run failed before it recorded any of its files (the warehouse did not answer, the code
    could not load, ...): nothing in the manifest says so, only the run."""
    what = files[0] if len(files) == 1 else f"{len(files)} files"
    return Alert(
        kind=RUN_FAILED,
        dataset=dataset,
        title=f"Run failed before loading: {dataset} / {what}",
        reason=message,
        key=f"{RUN_FAILED}/{dataset}/{sha256 or run_id}",
        file=files[0] if len(files) == 1 else None,
        sha256=sha256,
        counts={"files": len(files)} if len(files) > 1 else {},
        run_id=run_id,
        run_url=run_url(ui_url, run_id),
    )


def not_fresh_alert(
    dataset: str, newest_success: datetime, age_seconds: float, freshness_hours: float
) -> Alert:
    """The dataset's newest load is older than its contract's `freshness_hours`: once per
    stale spell (the key is the newest load; a new load starts a new spell)."""
    return Alert(
        kind=NOT_FRESH,
        dataset=dataset,
        title=f"Dataset not fresh: {dataset}",
        reason=f"Its newest file was loaded {age_seconds / 3600:.1f} hours ago "
        f"({newest_success.isoformat(timespec='seconds')}); its contract expects one within "
        f"{freshness_hours:g} hours (freshness_hours). Is the producer sending files, and does "
        "the sensor run?",
        key=f"{NOT_FRESH}/{dataset}/{newest_success.isoformat()}",
    )
