"""A landed file on its way to staging: read, cast and validated batch by batch, lazily.

The staged asset returns a `StagedFile`; the Postgres IO manager iterates its batches while it
COPYs, so the file streams from disk to PostgreSQL in bounded memory. As the batches pass, the
object gathers what the asset reports afterwards: counts, failure counts per check, a sample of
rejected rows, how the header matched. At the end the content hash is compared with the one the
run started from: a file that changed while being read raises `FileChanged`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from elt_assets.contracts.model import EXTRA_PREFIX, Contract
from elt_assets.landing.readers import FileChanged, FileReader, FileRejected, HeaderMapping
from elt_assets.landing.source import Source
from elt_assets.validation.batches import BatchValidator, ValidatedBatch
from elt_assets.validation.casts import UncastableColumn
from elt_assets.validation.growth import SchemaGrowth, new_columns

SAMPLE_ROWS = 20


@dataclass
class StagedFile:
    contract: Contract
    source: Path | Source  # the file's bytes (a local path, or what the landing zone streams)
    file: str  # relative to the landing root
    partition_key: str
    sha256: str  # content hash taken when the run started (raw asset)
    size_bytes: int
    run_id: str
    batch_rows: int = 15_000
    record_limit: int | None = None  # the longest CSV record; None: the reader's default
    rows_read: int = 0
    rows_rejected: int = 0
    rows_rescued: int = 0
    failure_counts: Counter[str] = field(default_factory=Counter)
    sample: list[dict[str, object]] = field(default_factory=list)
    header: HeaderMapping | None = None
    schema_change: str | None = None  # how this file grew the tables (added, widened), if any
    # True while every staged key so far is greater than the one before (single-column keys).
    keys_increasing: bool = True
    _last_key: object = None

    @property
    def dataset(self) -> str:
        return self.contract.name

    @property
    def format(self) -> str:
        return self.contract.file_format(self.file)

    @property
    def headers(self) -> dict[str, str]:
        """Contract column -> the header it was read from (for raw_record keys)."""
        sources = self.header.sources if self.header else {}
        return {c.name: sources.get(c.name, c.header) for c in self.contract.columns}

    def batches(self) -> Iterator[ValidatedBatch]:
        reader = FileReader(
            self.source, self.file, self.contract, self.batch_rows, self.record_limit
        )
        validator: BatchValidator | None = None
        for raw in reader.batches():
            if validator is None:
                self.header = reader.header
                assert reader.header is not None
                self._check_new_columns(reader.header, raw)
                source_types = dict(raw.schema.items())
                try:
                    validator = BatchValidator(self.contract, reader.header, source_types)
                except UncastableColumn as error:  # name the file, like every file-level error
                    raise FileRejected(self.file, str(error)) from None
            validated = validator.validate(raw)
            self.note(validated)
            yield validated
        self.header = reader.header
        self.rows_read = reader.rows_read
        if reader.sha256 is not None and reader.sha256 != self.sha256:
            raise FileChanged(
                f"{self.file} changed while it was being read (sha256 {self.sha256[:12]}... at the "
                f"start, {reader.sha256[:12]}... at the end); it will be loaded again once it "
                "stops changing"
            )

    def _check_new_columns(self, header: HeaderMapping, first: pl.DataFrame) -> None:
        """Under policy.new_columns: add, a file with columns the contract lacks raises
        SchemaGrowth before any row is written: the columns, typed from its first rows."""
        if self.contract.policy.extra_columns != "add" or not header.extra:
            return
        sample = [
            first[f"{EXTRA_PREFIX}{index}"]
            if f"{EXTRA_PREFIX}{index}" in first.columns
            else pl.Series(dtype=pl.String)
            for index in range(len(header.extra))
        ]
        raise SchemaGrowth(new_columns(self.contract, header.extra, sample, self.file), {})

    def restart(self) -> None:
        """Forget what a previous pass over the file gathered, before reading it again."""
        self.keys_increasing, self._last_key = True, None
        self.rows_read = self.rows_rejected = self.rows_rescued = 0
        self.failure_counts = Counter()
        self.sample = []

    def note(self, batch: ValidatedBatch) -> None:
        """Count a batch's rejections and keep the first few as a sample for the UI."""
        self.rows_rejected += batch.quarantined.height
        self.rows_rescued += batch.rows_rescued
        self.failure_counts.update(batch.failure_counts)
        self._note_keys(batch)
        room = SAMPLE_ROWS - len(self.sample)
        if room > 0 and batch.quarantined.height:
            self.sample.extend(
                batch.quarantined.head(room)
                .select("row_number", "column_name", "check_name", "reason")
                .to_dicts()
            )

    def _note_keys(self, batch: ValidatedBatch) -> None:
        if not self.keys_increasing or batch.good.height == 0:
            return
        keys = batch.increasing_keys
        if keys is None or (self._last_key is not None and not keys[0] > self._last_key):  # type: ignore[operator]
            self.keys_increasing = False
            return
        self._last_key = keys[1]

    def note_refused(self, refused: pl.DataFrame) -> None:
        """Rows PostgreSQL itself refused during COPY (already in quarantine form)."""
        self.rows_rejected += refused.height
        for check in refused["check_name"].to_list():
            self.failure_counts[f"postgres.{check}"] += 1
        room = SAMPLE_ROWS - len(self.sample)
        if room > 0:
            self.sample.extend(
                refused.head(room)
                .select("row_number", "column_name", "check_name", "reason")
                .to_dicts()
            )
