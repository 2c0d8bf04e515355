"""Hostile inputs: random CSV bytes through the real staging and target code, random contracts
through the loader, and absurd files (huge line, huge header, gzip bomb, alias bomb) bounded.

The CSV examples go through exactly the functions a batch run calls for each file
(orchestration/steps.py: describe_raw, start_raw, prepare_staged, stage_file, load_target), without
a Dagster run per example. Either the file loads, and then rows read = rows staged + rows
quarantined and its rows in the target are exactly its staged rows; or it fails with a Dagster
Failure naming the file, and then nothing of it is in the target and its manifest row is not
`success`. No other exception may escape.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elt_assets.contracts.loader import MAX_YAML_VALUES, _load_yaml, load_contracts
from elt_assets.contracts.model import Contract
from elt_assets.landing.keys import path_to_key
from elt_assets.landing.readers import MAX_COLUMNS, MAX_ROW_BYTES
from elt_assets.orchestration import steps
from elt_assets.orchestration.resources import landing_resource
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import Settings
from elt_assets_tests.conftest import Warehouse, write_contract

CONTRACT = """
    name: fz
    source: {glob: "fz/*", format: csv}
    target: {schema: fuzz, table: fz, mode: append}
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: label, type: text, checks: {unique: true}}
      - {name: n, type: integer, checks: {ge: 0}}
    policy: {max_bad_row_ratio: 1.0}
"""
COLUMNS = "id, label, n"

# -- (a) random CSV bytes through the real staging and target path ---------------------------------

HEADERS = [
    b"id,label,n\n",
    b"n,label,id\r\n",
    b"\xef\xbb\xbfid,label,n\n",
    b'"id","label","n"\n',
    b"id,label\n",  # strict drift: a missing column
    b"id,label,n,extra\n",  # and an extra one
    b"id,id,n\n",
    b"id;label;n\n",
    b"",
]
FIELDS = [
    b"1", b"42", b"-7", b"0", b"", b"x", b"abc", b'"a,b"', b'"q""q"', b'"line\nbreak"', b'""',
    b"\xc3\xa9t\xc3\xa9", b"NaN", b"1.5", b"99999999999999999999", b"2147483648", b" 3 ", b"\\N",
]  # fmt: skip
FRAGMENTS = [
    *FIELDS, b",", b'"', b"\n", b"\r\n", b"\r", b"\x00", b"\xff", b"\xc3", b";", b"\t", b" ",
]  # fmt: skip

rows = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4).map(b",".join)
structured = st.tuples(
    st.sampled_from(HEADERS),
    st.lists(rows, max_size=8),
    st.sampled_from([b"\n", b"\r\n", b""]),
).map(lambda parts: parts[0] + b"\n".join(parts[1]) + parts[2])
noise = st.tuples(st.sampled_from(HEADERS), st.lists(st.sampled_from(FRAGMENTS), max_size=60)).map(
    lambda parts: parts[0] + b"".join(parts[1])
)
csv_bytes = st.one_of(structured, structured, noise, st.binary(max_size=120))


def gzipped(data: bytes, cut: int | None) -> bytes:
    compressed = gzip.compress(data, mtime=0)
    return compressed[:cut] if cut is not None else compressed


landed_bytes = st.one_of(
    csv_bytes,
    st.tuples(csv_bytes, st.none() | st.integers(1, 40)).map(lambda p: gzipped(*p)),
)


class Pipeline:
    """One file at a time through the functions the batch job runs (no Dagster run)."""

    def __init__(self, contract: Contract, landing: Path, warehouse: Warehouse):
        self.contract, self.landing, self.warehouse = contract, landing, warehouse
        self.zone = landing_resource(Settings.from_env())
        self.postgres = PostgresResource.from_env()
        self.numbers = itertools.count()

    def load(self, data: bytes) -> tuple[str, dg.Failure | None]:
        file = f"fz/f{next(self.numbers):04d}.csv"
        (self.landing / file).write_bytes(data)
        key, run_id = path_to_key(file), f"fuzz-{file}"
        try:
            raw = steps.describe_raw(self.contract, self.zone.zone(), file)
            steps.start_raw(self.postgres, self.contract, raw, key, run_id)
            staged_file = steps.prepare_staged(self.contract, self.zone, self.postgres, key, run_id)
            report = steps.stage_file(self.postgres, staged_file)
            failure = steps.violation_failure(file, report)
            if failure is not None:
                raise failure
            slice_ = steps.staged_slice(self.postgres, self.contract.name, file)
            steps.load_target(
                self.contract, self.postgres, self.zone.zone(), slice_, run_id, lambda: None
            )
        except dg.Failure as failure:
            return file, failure
        return file, None

    def rows(self, table: str, file: str) -> Counter[tuple[Any, ...]]:
        found = self.warehouse.query(f"SELECT {COLUMNS} FROM {table} WHERE _elt_file = %s", [file])
        return Counter(found)


@pytest.fixture
def pipeline(warehouse: Warehouse, landing: Path, contracts_dir: Path) -> Iterator[Pipeline]:
    (landing / "fz").mkdir()
    pipeline = Pipeline(write_contract(contracts_dir, CONTRACT), landing, warehouse)
    yield pipeline
    pipeline.postgres.close()  # its pool and the session holding the files' leases


@pytest.mark.db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=landed_bytes)
def test_random_csv_bytes_load_exactly_or_fail_cleanly(pipeline: Pipeline, data: bytes) -> None:
    file, failure = pipeline.load(data)
    manifest = pipeline.warehouse.query(
        "SELECT status, rows_read, rows_staged, rows_quarantined FROM elt.ingestion_manifest"
        " WHERE file = %s",
        [file],
    )
    target = pipeline.rows("fuzz.fz", file)
    if failure is not None:
        assert file in (failure.description or ""), failure.description
        assert target == Counter()
        assert [status for status, *_ in manifest] in ([], ["failed"])
        return
    ((status, read, staged, quarantined),) = manifest
    assert status == "success"
    assert read == staged + quarantined
    open_quarantine = pipeline.warehouse.value(
        "SELECT count(*) FROM elt.quarantine WHERE file = %s AND resolved_at IS NULL", [file]
    )
    assert open_quarantine == quarantined
    assert sum(target.values()) == staged
    assert target == pipeline.rows("elt_staging.fz", file)


# -- (b) the contract loader --------------------------------------------------------------------

BASE = textwrap.dedent(
    """\
    name: orders
    description: Orders.
    source: {glob: "orders/*.csv", csv: {delimiter: ",", null_values: [NA]}}
    target: {schema: sales, table: orders, primary_key: [order_id]}
    columns:
      - {name: order_id, type: bigint}
      - name: amount
        type: numeric(12,2)
        checks: {ge: 0, isin: [1, 2]}
      - {name: status, type: text, checks: {regex: "^[a-z]+$"}}
    policy: {bad_rows: quarantine, max_bad_row_ratio: 0.5}
    checks: {unique: [[status, amount]]}
    """
)
TOP_LEVEL = {"name", "description", "source", "target", "columns", "policy", "checks"}
TOP_LEVEL |= {"freshness_hours"}
YAML_PIECES = [
    ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!python/object:os.system ",
    "|", ">", "#", "'", '"', "\n", "  ", "\t", "%", "@", "`", "\x00", "é", "? ", "<<: *a",
    "name", "type", "bigint", "columns", "1e400", "~", "null", "yes", "---\n", "...\n",
]  # fmt: skip

mutation = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "duplicate_line"]),
    st.integers(0, len(BASE)),
    st.integers(0, 12),
    st.lists(st.sampled_from(YAML_PIECES), min_size=1, max_size=4).map("".join),
)


def mutate(text: str, change: tuple[str, int, int, str]) -> str:
    kind, at, length, piece = change
    at = min(at, len(text))
    if kind == "insert":
        return text[:at] + piece + text[at:]
    if kind == "delete":
        return text[:at] + text[at + length :]
    if kind == "replace":
        return text[:at] + piece + text[at + length :]
    lines = text.splitlines(keepends=True)
    index = at % len(lines)
    return "".join(lines[: index + 1] + lines[index:])


def names_a_key_or_a_place(message: str, document_keys: set[str]) -> bool:
    """An error says where: a YAML line and column, or the key path it is about."""
    if re.match(r"^invalid YAML at (line \d+, column \d+: )?\S", message):
        return True
    if message in {"not UTF-8 text", "invalid YAML: nested too deeply"}:
        return True
    if message.startswith("must be a YAML mapping with keys name, source, target, columns"):
        return True
    keys = TOP_LEVEL | document_keys | {"(top level)"}
    return any(message.startswith((f"{k}:", f"{k}.", f"{k}[")) for k in keys)


@pytest.mark.pure
@settings(max_examples=150, deadline=None)
@given(changes=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_contracts_load_or_give_an_error_naming_the_file_and_key(
    tmp_path_factory: pytest.TempPathFactory, changes: list[tuple[str, int, int, str]]
) -> None:
    directory = tmp_path_factory.mktemp("mutated")
    text = BASE
    for change in changes:
        text = mutate(text, change)
    (directory / "mutated.yaml").write_text(text, encoding="utf-8")
    other = BASE.replace("orders", "other")
    (directory / "a_valid.yaml").write_text(other, encoding="utf-8")
    loaded = load_contracts(directory)  # never raises
    assert "other" in [c.name for c in loaded.contracts]  # a broken file never hides another
    if len(loaded.contracts) == 2:
        assert loaded.errors == []
        return
    (error,) = loaded.errors
    assert error.path.name == "mutated.yaml"
    assert str(error).startswith("mutated.yaml: ")
    try:  # the keys as the loader reads them (libyaml, which takes e.g. a tab inside a key)
        document = _load_yaml(text, unique_keys=False)
    except (yaml.YAMLError, RecursionError):
        document = None
    keys = {str(k) for k in document} if isinstance(document, dict) else set()
    assert names_a_key_or_a_place(error.message, keys), error.message
    assert "Traceback" not in error.message


LAUGHS = "\n".join(
    f"        - &{a} [{', '.join([f'*{b}'] * 9)}]" for b, a in itertools.pairwise("abcdefghi")
)
ALIAS_BOMB = f"""\
name: lol
source: {{glob: "lol/*.csv"}}
target: {{schema: lol, table: lol}}
columns:
  - name: label
    type: text
    checks:
      isin:
        - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
{textwrap.dedent(LAUGHS).replace("- &", "        - &")}
"""


@pytest.mark.pure
def test_an_alias_bomb_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    assert ALIAS_BOMB.count("*h") == 9  # nine levels of nine: 9**9 values once expanded
    (tmp_path / "lol.yaml").write_text(ALIAS_BOMB, encoding="utf-8")
    loaded = load_contracts(tmp_path)
    assert loaded.contracts == []
    (error,) = loaded.errors
    assert re.fullmatch(
        r"lol\.yaml: invalid YAML at line \d+, column \d+: with its aliases expanded the "
        rf"document holds more than {MAX_YAML_VALUES} values \(an alias bomb\?\); a contract "
        r"needs far fewer, write it out plainly",
        str(error),
    ), str(error)


@pytest.mark.pure
def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("checks: {ge: 0, isin: [1, 2]}", "checks: {ge: 0, isin: &l [1, *l]}")
    (tmp_path / "loop.yaml").write_text(text, encoding="utf-8")
    (error,) = load_contracts(tmp_path).errors
    # Where the anchor of the looping list is written.
    (line,) = [n for n, content in enumerate(text.splitlines(), 1) if "&l" in content]
    column = text.splitlines()[line - 1].index("&l") + 1
    assert str(error) == (
        f"loop.yaml: invalid YAML at line {line}, column {column}: an alias refers to a value "
        "that contains it (a recursive alias)"
    )


@pytest.mark.pure
def test_ordinary_aliases_still_work(tmp_path: Path) -> None:
    text = BASE.replace(
        "checks: {ge: 0, isin: [1, 2]}", "checks: &money {ge: 0, isin: &allowed [1, 2]}"
    ).replace('checks: {regex: "^[a-z]+$"}', "checks: {isin: *allowed}")
    (tmp_path / "aliases.yaml").write_text(text, encoding="utf-8")
    loaded = load_contracts(tmp_path)
    assert loaded.errors == []
    (contract,) = loaded.contracts
    assert contract.column("status").checks.isin == [1, 2]


# -- absurd files: bounded time and memory, a clear error ----------------------------------------

PROBE = """
import os, sys
from pathlib import Path
from elt_assets.contracts.loader import parse_contract
from elt_assets.landing.readers import FileReader, FileRejected
contract = parse_contract(Path(sys.argv[1]))
path = Path(sys.argv[2])
try:
    rows = sum(batch.height for batch in FileReader(path, path.name, contract).batches())
    print(f"read {rows} rows")
except FileRejected as error:
    print(f"rejected: {error}")
# The peak of this process's own memory. Not the parent's rusage of the child: Linux carries the
# high-water mark of the address space the child had before exec (the parent's, shared by
# posix_spawn) into it, so a big pytest process would make every child look big.
try:
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])
except OSError:  # no /proc (macOS): ru_maxrss is in bytes there
    import resource
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(f"peak_kb {peak_kb}")
sys.stdout.flush()
# Skip interpreter finalisation: pyarrow's read-ahead thread may still be inside a Python read
# of the abandoned file, and finalising then aborts the process (reported; not what this
# measures).
os._exit(0)
"""
MEMORY_LIMIT_MB = 600  # far below the gigabytes the inputs would take if read whole


def run_child(tmp_path: Path, name: str, write: Any) -> tuple[str, int]:
    """Read a file with the real reader in a fresh process: (its output, its peak RSS in MB)."""
    contract = tmp_path / "fz.yaml"
    contract.write_text(textwrap.dedent(CONTRACT), encoding="utf-8")
    path = tmp_path / name
    with path.open("wb") as handle:
        write(handle)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", PROBE, str(contract), str(path)],
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdout.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
            ],
        )
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err.read_text()
    output, peak = out.read_text().strip().rsplit("\n", 1)
    return output, int(peak.removeprefix("peak_kb ")) // 1024


@pytest.mark.slow
def test_a_64_mb_line_without_a_line_break_is_refused_without_reading_it_whole(
    tmp_path: Path,
) -> None:
    def write(handle: Any) -> None:
        handle.write(b"id,label,n\n1,")
        block = b"x" * (1 << 20)
        for _ in range(64):
            handle.write(block)

    output, peak_mb = run_child(tmp_path, "long.csv", write)
    assert output == (
        f"rejected: long.csv, line 2: a single record is larger than {MAX_ROW_BYTES} bytes (a "
        "line without a line break that long); if the file is right, raise ELT_MAX_RECORD_BYTES"
    )
    assert peak_mb < MEMORY_LIMIT_MB


@pytest.mark.slow
def test_a_header_of_100k_columns_is_refused(tmp_path: Path) -> None:
    def write(handle: Any) -> None:
        handle.write(b",".join(b"c%d" % i for i in range(100_000)) + b"\n1\n")

    output, peak_mb = run_child(tmp_path, "wide.csv", write)
    assert output == (
        f"rejected: wide.csv: the header has 100000 columns; at most {MAX_COLUMNS} are read"
    )
    assert peak_mb < MEMORY_LIMIT_MB


@pytest.mark.slow
@pytest.mark.parametrize("with_header", [False, True], ids=["bomb", "header-then-bomb"])
def test_a_gzip_bomb_is_refused_without_expanding_it(tmp_path: Path, with_header: bool) -> None:
    """2 MB of gzip that expands to 2 GiB of NUL bytes, without a line break."""

    member = gzip.compress(bytes(16 << 20), compresslevel=9, mtime=0)  # 16 MiB of NUL, ~16 kB

    def write(handle: Any) -> None:
        # A gzip file may hold many members, read as one stream: 128 x 16 MiB = 2 GiB.
        if with_header:
            handle.write(gzip.compress(b"id,label,n\n", mtime=0))
        for _ in range(128):
            handle.write(member)

    output, peak_mb = run_child(tmp_path, "bomb.csv.gz", write)
    assert (tmp_path / "bomb.csv.gz").stat().st_size < 4 << 20
    if with_header:
        assert output == (
            f"rejected: bomb.csv.gz, line 2: a single record is larger than {MAX_ROW_BYTES} "
            "bytes (a line without a line break that long); if the file is right, raise "
            "ELT_MAX_RECORD_BYTES"
        )
    else:
        assert output.startswith(
            f"rejected: bomb.csv.gz: the header line is longer than {MAX_ROW_BYTES} bytes"
        )
    assert peak_mb < MEMORY_LIMIT_MB
