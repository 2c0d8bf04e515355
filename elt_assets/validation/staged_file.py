"""A landed file on its way to staging: read, cast and validated batch by batch, lazily.

The staged asset returns a `StagedFile`; the Postgres IO manager iterates its batches while it
COPYs, so the file streams from disk to PostgreSQL in bounded memory. As the batches pass, the
object gathers what the asset reports afterwards: counts, failure counts per check, a sample of
rejected rows, how the header matched. At the end the content hash is compared with the one the
run started from: a file that changed while being read raises `FileChanged`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from elt_assets.contracts.model import EXTRA_PREFIX, REJECTED_COLUMN, Contract
from elt_assets.landing.readers import FileChanged, FileReader, FileRejected, HeaderMapping
from elt_assets.landing.source import Source
from elt_assets.log import get_logger
from elt_assets.validation.batches import BatchValidator, ValidatedBatch
from elt_assets.validation.casts import UncastableColumn
from elt_assets.validation.growth import SchemaGrowth, new_columns
from elt_assets.validation.policy import StageReport

log = get_logger(__name__)
SAMPLE_ROWS = 20
# Most good rows whose integer keys a file keeps to count its repeated keys itself (8 bytes
# each: 32 MB); a bigger file's are counted by PostgreSQL in its staged slice.
KEPT_KEYS = 4_000_000
# A Parquet file's batches are validated in runs of about this many rows: pandera and the casts
# cost per call about what 15,000 rows cost (a 1M-row file: 17 calls instead of 67, 0.85-1.1 s
# less CPU, about 35 MB more at the peak). A CSV file's batches go one by one: casting text
# makes copies of its values, and two batches at once already peaked 30 MB higher.
VALIDATED_TOGETHER_ROWS = {"parquet": 60_000, "csv": 0}


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
    # The load: the id of the manifest row this content's attempt opened (the staging slice's
    # key). None only where nothing is staged (`elt ingest --dry-run`).
    load: int | None = None
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
    # A single integer key's good values so far, while they fit KEPT_KEYS (else None): the
    # staging step counts the file's repeated keys from them (`repeated_keys`).
    _integer_keys: list[pl.Series] | None = field(default_factory=list)
    _integer_key_rows: int = 0
    # The file's column types as read (all String for CSV), known once the first batch is read.
    source_types: dict[str, pl.DataType] | None = None
    # Read and validated already, together with other small files (`read_together`).
    _read: _ReadAlready | None = None
    # Set when this run loads the file into its target right after staging it (the ingest job,
    # a batch): given the staged step's report, whether the file may load (no policy violated,
    # the blocking checks pass). The file may then go straight into the table in the staging
    # transaction (postgres/staging.py `write_staged`).
    load_gate: Callable[[StageReport], bool] | None = None

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

    @property
    def read_already(self) -> bool:
        """Its batches are in memory (read with other small files): nothing is left to read."""
        return self._read is not None

    def batches(
        self, typed_only: Callable[[dict[str, pl.DataType]], frozenset[str]] | None = None
    ) -> Iterator[ValidatedBatch]:
        """The file's batches, validated. `typed_only`: given the file's column types, the
        columns the caller sends typed (whose text only quarantined rows need)."""
        if self._read is not None:
            yield from self._batches_read_already(self._read)
            return
        reader = FileReader(
            self.source, self.file, self.contract, self.batch_rows, self.record_limit
        )
        validator: BatchValidator | None = None
        pending: list[pl.DataFrame] = []  # read, not validated yet
        pending_rows, together = 0, VALIDATED_TOGETHER_ROWS[self.format]
        for raw in reader.batches():
            if validator is None:
                self.header = reader.header
                assert reader.header is not None
                self._check_new_columns(reader.header, raw)
                source_types = self.source_types = dict(raw.schema.items())
                try:
                    validator = BatchValidator(
                        self.contract,
                        reader.header,
                        source_types,
                        typed_only(source_types) if typed_only else frozenset(),
                    )
                except UncastableColumn as error:  # name the file, like every file-level error
                    raise FileRejected(self.file, str(error)) from None
            if raw.height == 0 or REJECTED_COLUMN in raw.columns:  # alone, in its place
                yield from self._validated(validator, pending)
                pending, pending_rows = [], 0
                yield from self._validated(validator, [raw])
                continue
            pending.append(raw)
            pending_rows += raw.height
            if pending_rows >= together:
                yield from self._validated(validator, pending)
                pending, pending_rows = [], 0
        if validator is not None:
            yield from self._validated(validator, pending)
        self.header = reader.header
        self.rows_read = reader.rows_read
        self._check_unchanged(reader.sha256)

    def _validated(
        self, validator: BatchValidator, raws: list[pl.DataFrame]
    ) -> Iterator[ValidatedBatch]:
        """Consecutive batches validated in one pass, then handed out one by one, as read."""
        if not raws:
            return
        results = validator.validate_consecutive(raws)
        raws.clear()  # the caller's list too: nothing but the results keeps the batches now
        while results:
            validated = results.pop(0)  # held by its consumer alone once handed out
            self.note(validated)
            yield validated

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

    def _batches_read_already(self, read: _ReadAlready) -> Iterator[ValidatedBatch]:
        self._read = None  # once: a second pass (restart) reads the file again
        self.header = read.header
        for validated in read.batches:
            self.note(validated)
            yield validated
        self.rows_read = read.rows_read
        self._check_unchanged(read.sha256)

    def _check_unchanged(self, sha256: str | None) -> None:
        if sha256 is not None and sha256 != self.sha256:
            raise FileChanged(
                f"{self.file} changed while it was being read (sha256 {self.sha256[:12]}... at the "
                f"start, {sha256[:12]}... at the end); it will be loaded again once it "
                "stops changing"
            )

    def restart(self) -> None:
        """Forget what a previous pass over the file gathered, before reading it again."""
        self.keys_increasing, self._last_key = True, None
        self._integer_keys, self._integer_key_rows = [], 0
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
        self._keep_integer_keys(batch)
        if not self.keys_increasing or batch.good.height == 0:
            return
        keys = batch.increasing_keys
        if keys is None or (self._last_key is not None and not keys[0] > self._last_key):  # type: ignore[operator]
            self.keys_increasing = False
            return
        self._last_key = keys[1]

    def _keep_integer_keys(self, batch: ValidatedBatch) -> None:
        if self._integer_keys is None:
            return
        keys, rows = batch.integer_keys, batch.good.height
        if rows == 0:  # e.g. a batch the reader rejected whole: no key to keep
            return
        self._integer_key_rows += rows
        if keys is None or self._integer_key_rows > KEPT_KEYS:
            self._integer_keys = None  # counted by PostgreSQL, in the staged slice
            return
        self._integer_keys.append(keys)

    def repeated_keys(self) -> tuple[int, int, list[str]] | None:
        """(keys that occur more than once, their rows, up to 5 of them most repeated first) among
        the good rows of a file whose single key is an integer, counted as the file streamed
        by (what staging_duplicate_keys.sql counts in the slice); None when not counted here."""
        if self._integer_keys is None:
            return None
        if not self._integer_keys:
            return 0, 0, []
        counts = pl.concat(self._integer_keys).value_counts(name="rows")
        repeated = counts.filter(pl.col("rows") > 1).sort(
            ["rows", counts.columns[0]], descending=[True, False]
        )
        examples = [str(key) for key in repeated[counts.columns[0]].head(5).to_list()]
        return repeated.height, int(repeated["rows"].sum()), examples

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


@dataclass(frozen=True)
class _ReadAlready:
    header: HeaderMapping
    batches: list[ValidatedBatch]
    rows_read: int
    sha256: str | None


# Files read together: each at most this big (and one batch), all of them at most GROUP_BYTES,
# so the frames they become stay a small part of the memory a big file's batches may take.
SMALL_FILE_BYTES = 256 << 10
GROUP_BYTES = 16 << 20


def read_together(files: list[StagedFile]) -> None:
    """Read small files of one dataset now and validate those that read alike in one pass
    (BatchValidator.validate_many); their `batches()` then hand out the results. Anything
    unusual (a big file, one that fails to read, rows the reader rejected, a schema that grows)
    leaves the file to be read on its own, as always, where it fails or grows as usual."""
    groups: dict[tuple[object, ...], list[tuple[StagedFile, FileReader, pl.DataFrame]]] = {}
    budget = GROUP_BYTES
    for staged in files:
        if staged.size_bytes > min(SMALL_FILE_BYTES, budget) or staged.contract.policy.evolves:
            continue
        budget -= staged.size_bytes
        reader = FileReader(
            staged.source, staged.file, staged.contract, staged.batch_rows, staged.record_limit
        )
        try:
            raws = list(reader.batches())
        except Exception as error:  # read again on its own, where the error is reported as always
            log.debug("%s is read on its own: %s", staged.file, error)
            continue
        if len(raws) != 1 or REJECTED_COLUMN in raws[0].columns or reader.header is None:
            continue
        header = reader.header
        shape = (
            tuple(header.sources.items()),
            tuple(header.missing),
            tuple(header.extra),
            tuple(raws[0].schema.items()),
        )
        groups.setdefault(shape, []).append((staged, reader, raws[0]))
    for group in groups.values():  # a group of one too: the file is read already
        _validate_group(group)


def _validate_group(group: list[tuple[StagedFile, FileReader, pl.DataFrame]]) -> None:
    first, reader, raw = group[0]
    assert reader.header is not None
    try:
        validator = BatchValidator(first.contract, reader.header, dict(raw.schema.items()))
        results = validator.validate_many([raw for _, _, raw in group])
    except Exception as error:  # e.g. a column that cannot be cast: each file says so on its own
        log.debug("%s and %d more are validated one by one: %s", first.file, len(group) - 1, error)
        return
    for (staged, reader, _), validated in zip(group, results, strict=True):
        assert reader.header is not None
        staged._read = _ReadAlready(reader.header, [validated], reader.rows_read, reader.sha256)
