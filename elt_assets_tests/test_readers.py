"""Reading landed files: CSV with PostgreSQL's meaning, gzip, Parquet, and clear rejections.

Every test writes a real file into tmp_path and reads it with the real `FileReader`. Where a limit
would need a huge input (a 16 MiB record, 4096 columns, a 1 GiB gzip floor) the module constant is
lowered instead: that changes a limit, not the code that enforces it.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elt_assets.contracts.model import Contract, Policy
from elt_assets.landing import readers
from elt_assets.landing.readers import FileReader, FileRejected, map_header

pytestmark = [pytest.mark.pure]


@pytest.fixture(autouse=True, params=["read whole", "streamed"])
def csv_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test reads its CSV both ways: a small file read whole first, and streamed through
    pyarrow's read-ahead thread as a big file is."""
    if request.param == "streamed":
        monkeypatch.setattr(readers, "WHOLE_READ_BYTES", -1)
    return str(request.param)


def make_contract(
    columns: list[dict[str, Any]] | None = None,
    csv: dict[str, Any] | None = None,
    drift: str = "strict",
    primary_key: list[str] | None = None,
    bad_rows: str = "quarantine",
) -> Contract:
    return Contract.model_validate(
        {
            "name": "things",
            "source": {"glob": "things/*", "csv": csv or {}},
            "target": {
                "schema": "shop",
                "table": "things",
                "mode": "upsert" if primary_key else "append",
                "primary_key": primary_key or [],
            },
            "columns": columns or [{"name": "a", "type": "text"}, {"name": "b", "type": "text"}],
            "policy": {"schema_drift": drift, "bad_rows": bad_rows},
        }
    )


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_frames(
    tmp_path: Path, data: bytes, contract: Contract | None = None, name: str = "f.csv", **kw: Any
) -> tuple[FileReader, list[pl.DataFrame]]:
    path = write(tmp_path, name, data)
    reader = FileReader(path, name, contract or make_contract(), **kw)
    with reader:
        frames = list(reader.batches())
    return reader, frames


def read_rows(tmp_path: Path, data: bytes, contract: Contract | None = None, **kw: Any) -> list:
    _, frames = read_frames(tmp_path, data, contract, **kw)
    return pl.concat(frames).rows() if frames else []


def rejection(
    tmp_path: Path, data: bytes, contract: Contract | None = None, name: str = "f.csv"
) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        read_frames(tmp_path, data, contract, name=name)
    assert caught.value.file == name
    return caught.value


# -- CSV values keep PostgreSQL's CSV meaning --------------------------------------------------


def test_unquoted_empty_is_null_and_quoted_empty_is_empty_string(tmp_path: Path) -> None:
    assert read_rows(tmp_path, b'a,b\n,""\n"",\n') == [(1, None, ""), (2, "", None)]


def test_quoted_delimiters_doubled_quotes_and_line_breaks_are_kept_exactly(tmp_path: Path) -> None:
    data = b'a,b\n"x,y","he said ""hi"""\n"l1\nl2","c1\r\nc2"\n'
    assert read_rows(tmp_path, data) == [
        (1, "x,y", 'he said "hi"'),
        (2, "l1\nl2", "c1\r\nc2"),
    ]


def test_crlf_line_endings_are_not_part_of_values(tmp_path: Path) -> None:
    assert read_rows(tmp_path, b"a,b\r\n1,2\r\n3,\r\n") == [(1, "1", "2"), (2, "3", None)]


def test_unicode_and_surrounding_spaces_are_preserved(tmp_path: Path) -> None:
    text = "a,b\n  padded  ,é😀 שלום e\u0301\n"
    assert read_rows(tmp_path, text.encode()) == [(1, "  padded  ", "é😀 שלום e\u0301")]


def test_contract_null_values_become_null_but_quoted_ones_stay_text(tmp_path: Path) -> None:
    contract = make_contract(csv={"null_values": ["NA", "\\N"]})
    rows = read_rows(tmp_path, b'a,b\nNA,\\N\n"NA",x\n', contract)
    assert rows == [(1, None, None), (2, "NA", "x")]


def test_custom_delimiter_and_quote(tmp_path: Path) -> None:
    contract = make_contract(csv={"delimiter": ";", "quote": "'"})
    rows = read_rows(tmp_path, b"a;b\n'x;y';'it''s'\n1;\"2\"\n", contract)
    assert rows == [(1, "x;y", "it's"), (2, "1", '"2"')]


def test_without_header_columns_are_taken_by_position(tmp_path: Path) -> None:
    contract = make_contract(csv={"header": False})
    assert read_rows(tmp_path, b"1,2\n3,4\n", contract) == [(1, "1", "2"), (2, "3", "4")]


def test_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    assert read_rows(tmp_path, b"\xef\xbb\xbfa,b\n1,2\n") == [(1, "1", "2")]


def test_gzip_is_decompressed_also_when_the_name_says_csv(tmp_path: Path) -> None:
    data = gzip.compress(b"a,b\n1,\xc3\xa9\n")
    _, frames = read_frames(tmp_path, data, name="f.csv.gz")
    assert frames[0].rows() == [(1, "1", "é")]
    _, frames = read_frames(tmp_path, data, name="plain.csv")  # detected by its magic bytes
    assert frames[0].rows() == [(1, "1", "é")]


def test_latin1_file_with_declared_encoding(tmp_path: Path) -> None:
    contract = make_contract(csv={"encoding": "latin-1"})
    rows = read_rows(tmp_path, "a,b\ncafé,Müller\n".encode("latin-1"), contract)
    assert rows == [(1, "café", "Müller")]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    reader, frames = read_frames(tmp_path, b"a,b\n")
    assert sum(f.height for f in frames) == 0
    assert reader.rows_read == 0
    assert reader.sha256 == hashlib.sha256(b"a,b\n").hexdigest()


def test_zero_byte_file_is_rejected(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"")
    assert "empty (0 bytes)" in error.problem


def test_column_order_in_the_file_does_not_matter(tmp_path: Path) -> None:
    reader, frames = read_frames(tmp_path, b"b,a\n1,2\n")
    assert frames[0].columns == ["_elt_row", "a", "b"]
    assert frames[0].rows() == [(1, "2", "1")]
    assert reader.header is not None and reader.header.sources == {"a": "a", "b": "b"}


# -- broken CSV: rejected, naming the physical line ---------------------------------------------


FAILING = make_contract(bad_rows="fail")  # a ragged row fails the file, not only its row


def test_row_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"a,b\n1,2\n3,4\n5,6,7\n", FAILING)
    assert error.line == 4
    assert "expected 2 fields" in error.problem and "found 3" in error.problem
    assert str(error).startswith("f.csv, line 4: ")


def test_row_with_too_few_fields_names_its_line(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"a,b\n1,2\n3\n", FAILING)
    assert error.line == 3
    assert "found 1" in error.problem


def test_ragged_row_line_counts_quoted_line_breaks_before_it(tmp_path: Path) -> None:
    # Records 1 and 2 span lines 2-4 and 5-6; the ragged record starts on physical line 7.
    data = b'a,b\n"x\n\ny",1\n2,"p\r\nq"\n1,2,3\n'
    error = rejection(tmp_path, data, FAILING)
    assert error.line == 7


def test_ragged_rows_are_handed_on_as_rejected_rows_and_the_rest_numbered_around_them(
    tmp_path: Path,
) -> None:
    data = b'a,b\n"x\n\ny",1\n2\n3,4\n5,6,7\n8,9\n'
    reader, frames = read_frames(tmp_path, data)
    rejected = [f for f in frames if "_elt_rejected" in f.columns]
    good = pl.concat([f for f in frames if "_elt_rejected" not in f.columns])
    assert len(rejected) == 1 and rejected[0].rows() == [
        (
            2,
            "line 5: 1 field(s) where the header has 2 (a ragged row: an unquoted delimiter or a "
            "missing value?)",
            '{"a": "2"}',
        ),
        (
            4,
            "line 7: 3 field(s) where the header has 2 (a ragged row: an unquoted delimiter or a "
            "missing value?)",
            '{"a": "5", "b": "6", "field_3": "7"}',
        ),
    ]
    assert good.rows() == [(1, "x\n\ny", "1"), (3, "3", "4"), (5, "8", "9")]
    assert reader.rows_read == 5
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


def test_unterminated_quote_names_the_line_where_the_field_starts(tmp_path: Path) -> None:
    error = rejection(tmp_path, b'a,b\n1,2\n3,"abc\n4,5\n')
    assert error.line == 3
    assert "never closed" in error.problem


def test_unterminated_quote_at_end_of_file(tmp_path: Path) -> None:
    error = rejection(tmp_path, b'a,b\n1,"x\ny"\n3,"abc')
    assert error.line == 4
    assert "unterminated quote" in error.problem


def test_invalid_utf8_names_the_line_and_the_setting(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"a,b\n1,2\n3,caf\xe9\n")
    assert error.line == 3
    assert "not valid utf" in error.problem and "source.csv.encoding" in error.problem


def test_invalid_utf8_in_the_header(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"a,\xff\n1,2\n")
    assert error.line == 1
    assert "source.csv.encoding" in error.problem


def test_truncated_gzip_is_rejected(tmp_path: Path) -> None:
    whole = gzip.compress(b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(500)))
    error = rejection(tmp_path, whole[: len(whole) // 2], name="f.csv.gz")
    assert "corrupt or truncated" in error.problem


def test_truncated_gzip_after_the_header_block_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a header read that stops early, the truncation is found while streaming the data."""
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 256)
    whole = gzip.compress(b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * 7) for i in range(3000)))
    error = rejection(tmp_path, whole[: len(whole) - 100], name="f.csv.gz")
    assert "corrupt or truncated" in error.problem
    assert "end-of-stream" in error.problem


def test_corrupt_gzip_is_rejected(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"\x1f\x8b" + b"not deflate data" * 4, name="f.csv.gz")
    assert "corrupt or truncated" in error.problem


def test_gzip_with_wrong_checksum_is_rejected(tmp_path: Path) -> None:
    damaged = bytearray(gzip.compress(b"a,b\n1,2\n"))
    damaged[-6] ^= 0xFF  # inside the CRC32 trailer
    error = rejection(tmp_path, bytes(damaged), name="f.csv.gz")
    assert "corrupt or truncated" in error.problem and "CRC" in error.problem


# -- header and schema drift ---------------------------------------------------------------------


def test_strict_drift_missing_column_rejects_at_line_1(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"a\n1\n")
    assert error.line == 1
    assert "missing columns ['b']" in error.problem and "schema_drift" in error.problem


def test_strict_drift_extra_column_rejects_at_line_1(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"a,b,c\n1,2,3\n")
    assert error.line == 1
    assert "unexpected columns ['c']" in error.problem


def test_strict_drift_does_not_trim_or_fold_names(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"A,b \n1,2\n")
    assert "missing columns ['a', 'b']" in error.problem
    assert "unexpected columns ['A', 'b ']" in error.problem


def test_tolerant_drift_trims_casefolds_ignores_extra_and_fills_missing(tmp_path: Path) -> None:
    contract = make_contract(
        columns=[
            {"name": "id", "type": "bigint", "nullable": False},
            {"name": "Name", "type": "text"},
            {"name": "note", "type": "text"},
        ],
        drift="tolerant",
    )
    reader, frames = read_frames(tmp_path, b" ID ,extra,NAME\n1,zzz,Ann\n", contract)
    assert frames[0].columns == ["_elt_row", "id", "Name", "note"]
    assert frames[0].rows() == [(1, "1", "Ann", None)]
    assert reader.header is not None
    assert reader.header.sources == {"id": " ID ", "Name": "NAME"}
    assert (reader.header.missing, reader.header.extra) == (["note"], ["extra"])


def test_tolerant_drift_still_rejects_a_missing_required_column(tmp_path: Path) -> None:
    contract = make_contract(
        columns=[{"name": "id", "type": "bigint"}, {"name": "note", "type": "text"}],
        drift="tolerant",
        primary_key=["id"],  # a key column is required even though nullable is not set
    )
    error = rejection(tmp_path, b"note\nx\n", contract)
    assert error.line == 1 and "required columns ['id']" in error.problem


def test_duplicate_header_is_rejected(tmp_path: Path) -> None:
    error = rejection(tmp_path, b"a,b,a\n1,2,3\n")
    assert error.line == 1 and "column 'a' twice" in error.problem


def test_duplicate_header_after_folding_in_tolerant_mode() -> None:
    contract = make_contract(drift="tolerant")
    with pytest.raises(FileRejected, match="twice"):
        map_header(contract, ["a", " A", "b"], "f.csv")


def test_map_header_keeps_source_names() -> None:
    contract = make_contract(
        columns=[{"name": "order_id", "type": "bigint", "source_name": "Order ID"}]
    )
    assert map_header(contract, ["Order ID"], "f.csv").sources == {"order_id": "Order ID"}


# -- limits ---------------------------------------------------------------------------------------


def test_record_larger_than_the_limit_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 256)
    error = rejection(tmp_path, b'a,b\n1,2\n3,"' + b"x\n" * 400 + b'"\n5,6\n')
    assert "a single record is larger than 256 bytes" in error.problem


def test_header_longer_than_the_limit_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 256)
    error = rejection(tmp_path, b"a," + b"b" * 1000 + b"\n1,2\n")
    assert "header line is longer than 256 bytes" in error.problem


def test_too_many_columns_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "MAX_COLUMNS", 3)
    error = rejection(tmp_path, b"a,b,c,d\n1,2,3,4\n")
    assert "4 columns; at most 3" in error.problem


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz"])
def test_decompression_bomb_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    monkeypatch.setattr(readers, "GZIP_FLOOR_BYTES", 10_000)
    compress = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[compression]
    compressed = compress(b"a,b\n" + b"1,2\n" * 100_000)  # 400 kB from a few hundred bytes
    limit = len(compressed) * readers.GZIP_RATIO_LIMIT
    assert limit < 400_004
    error = rejection(tmp_path, compressed, name="f.csv.gz")
    assert f"{compression} expands beyond {limit} bytes" in error.problem
    assert "a likely decompression bomb" in error.problem


def test_well_compressed_file_under_the_floor_is_read(tmp_path: Path) -> None:
    """The ratio alone never rejects: below the floor a 1000x ratio is fine."""
    reader, frames = read_frames(
        tmp_path, gzip.compress(b"a,b\n" + b"1,2\n" * 50_000), name="f.csv.gz"
    )
    assert sum(f.height for f in frames) == 50_000 == reader.rows_read


# -- hashing and batching ------------------------------------------------------------------------


def test_sha256_covers_the_raw_bytes_of_a_plain_file(tmp_path: Path) -> None:
    data = b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(100))
    reader, _ = read_frames(tmp_path, data)
    assert reader.sha256 == hashlib.sha256(data).hexdigest()
    assert reader.bytes_read == len(data)


def test_sha256_covers_the_compressed_bytes_of_a_gzip_file(tmp_path: Path) -> None:
    data = gzip.compress(b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(100)))
    reader, _ = read_frames(tmp_path, data, name="f.csv.gz")
    assert reader.sha256 == hashlib.sha256(data).hexdigest()
    assert reader.bytes_read == len(data)


def test_small_batch_rows_give_several_batches_with_continuous_row_numbers(
    tmp_path: Path,
) -> None:
    data = b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(10))
    reader, frames = read_frames(tmp_path, data, batch_rows=3)
    assert [f["_elt_row"].to_list() for f in frames] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    assert pl.concat(frames)["a"].to_list() == [str(i) for i in range(10)]
    assert reader.rows_read == 10


def test_row_numbers_continue_across_parser_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 64)  # pyarrow's block size: many blocks
    data = b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(200))
    _, frames = read_frames(tmp_path, data, batch_rows=50)
    # Parser blocks do not divide 50: their leftover rows join the next batch, no small batches.
    assert [f.height for f in frames] == [50, 50, 50, 50]
    assert pl.concat(frames)["_elt_row"].to_list() == list(range(1, 201))
    assert pl.concat(frames)["a"].to_list() == [str(i) for i in range(200)]


def test_wide_rows_end_a_batch_at_the_byte_bound_before_the_row_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays flat for wide rows: a batch ends at MAX_BATCH_BYTES of data."""
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 4096)  # parser blocks of ~4 KB
    monkeypatch.setattr(readers, "MAX_BATCH_BYTES", 16_384)
    wide = b"x" * 1000
    data = b"a,b\n" + b"".join(b"%d,%s\n" % (i, wide) for i in range(100))
    reader, frames = read_frames(tmp_path, data, batch_rows=1000)
    assert len(frames) >= 5  # 100 KB of rows in batches of about 16 KB, not one 1000-row batch
    assert all(f.height < 30 for f in frames)
    assert pl.concat(frames)["_elt_row"].to_list() == list(range(1, 101))
    assert reader.rows_read == 100


# -- Parquet -----------------------------------------------------------------------------------


def parquet_contract(drift: str = "strict") -> Contract:
    return make_contract(
        columns=[
            {"name": "id", "type": "bigint"},
            {"name": "name", "type": "text"},
            {"name": "price", "type": "double precision"},
        ],
        drift=drift,
    )


def test_parquet_batches_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame(
        {"price": [1.5, None, 3.25], "id": [1, 2, 3], "name": ["a", "", None]}
    ).write_parquet(path)
    reader = FileReader(path, "p.parquet", parquet_contract())
    frames = list(reader.batches())
    frame = pl.concat(frames)
    assert frame.schema == pl.Schema(
        {"_elt_row": pl.Int64, "id": pl.Int64, "name": pl.String, "price": pl.Float64}
    )
    assert frame.rows() == [(1, 1, "a", 1.5), (2, 2, "", None), (3, 3, None, 3.25)]
    assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_parquet_reads_only_the_needed_columns_in_batches(tmp_path: Path) -> None:
    # polars cannot hold a 256-bit decimal (it panics on one): reading the column would fail.
    unreadable = pa.array([Decimal("1.50")] * 100, pa.decimal256(70, 2))
    table = pa.table(
        {
            "id": pa.array(range(100), pa.int64()),
            "name": [f"n{i}" for i in range(100)],
            "price": pa.array([0.5] * 100),
            "huge": unreadable,
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, row_group_size=30)
    reader = FileReader(path, "p.parquet", parquet_contract("tolerant"), batch_rows=40)
    frames = list(reader.batches())
    assert [f.height for f in frames] == [40, 40, 20]
    assert frames[0].columns == ["_elt_row", "id", "name", "price"]
    assert pl.concat(frames)["_elt_row"].to_list() == list(range(1, 101))
    assert pl.concat(frames)["id"].to_list() == list(range(100))
    assert reader.header is not None and reader.header.extra == ["huge"]


def test_parquet_strict_drift_rejects_extra_column(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame({"id": [1], "name": ["a"], "price": [1.0], "x": [1]}).write_parquet(path)
    with pytest.raises(FileRejected, match=r"unexpected columns \['x'\]"):
        list(FileReader(path, "p.parquet", parquet_contract()).batches())


@pytest.mark.parametrize("keep", ["all but the last 20 bytes", "the first half"])
def test_truncated_parquet_is_rejected(tmp_path: Path, keep: str) -> None:
    good = tmp_path / "good.parquet"
    pl.DataFrame({"id": [1, 2], "name": ["a", "b"], "price": [1.0, 2.0]}).write_parquet(good)
    data = good.read_bytes()
    end = len(data) - 20 if keep.startswith("all") else len(data) // 2
    error = rejection(tmp_path, data[:end], parquet_contract(), name="bad.parquet")
    assert (
        "not a readable Parquet file" in error.problem and "truncated or corrupt" in error.problem
    )


def test_parquet_with_corrupt_pages_is_rejected(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pl.DataFrame({"id": list(range(50)), "name": ["x"] * 50, "price": [1.0] * 50}).write_parquet(
        good
    )
    damaged = bytearray(good.read_bytes())
    for index in range(8, 300):  # page headers and data, not the footer
        damaged[index] ^= 0x5A
    error = rejection(tmp_path, bytes(damaged), parquet_contract(), name="bad.parquet")
    assert "Parquet data cannot be read" in error.problem


def test_parquet_column_of_an_unreadable_type_is_rejected_by_name(tmp_path: Path) -> None:
    """decimal256 makes polars panic; the reader refuses it up front and names the column."""
    path = tmp_path / "wide.parquet"
    pq.write_table(
        pa.table(
            {
                "id": pa.array([1], pa.int64()),
                "price": pa.array([Decimal("1.50")], pa.decimal256(50, 2)),
            }
        ),
        path,
    )
    contract = make_contract(
        columns=[{"name": "id", "type": "bigint"}, {"name": "price", "type": "numeric"}]
    )
    with pytest.raises(FileRejected) as caught:
        list(FileReader(path, "wide.parquet", contract).batches())
    assert caught.value.column == "price"
    assert "decimal256(50, 2)" in str(caught.value) and "decimal128" in str(caught.value)


def test_a_record_beyond_elt_max_record_bytes_is_rejected_naming_the_setting(
    tmp_path: Path,
) -> None:
    big = b"1," + b"x" * 200_000 + b"\n"
    with pytest.raises(FileRejected) as caught:
        read_frames(tmp_path, b"a,b\n" + b"2,small\n" * 10 + big, record_limit=65536)
    error = caught.value
    assert "larger than 65536 bytes" in error.problem
    assert "ELT_MAX_RECORD_BYTES" in error.problem


def test_parquet_batches_of_wide_rows_are_bounded_in_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_BATCH_BYTES", 20_000)
    path = tmp_path / "p.parquet"
    table = pa.table({"id": range(100), "name": ["y" * 1000] * 100, "price": [1.0] * 100})
    pq.write_table(table, path, compression="none", use_dictionary=False)  # 100 KB of data
    reader = FileReader(path, "p.parquet", parquet_contract(), batch_rows=1000)
    frames = list(reader.batches())
    assert len(frames) >= 5
    assert all(f.height <= 20 for f in frames)
    assert pl.concat(frames)["id"].to_list() == list(range(100))


def test_new_columns_ignore_under_strict_names_reads_past_columns_the_contract_lacks(
    tmp_path: Path,
) -> None:
    contract = make_contract().model_copy(update={"policy": Policy(new_columns="ignore")})
    reader, frames = read_frames(tmp_path, b"a,b,extra\n1,2,3\n", contract)
    assert frames[0].rows() == [(1, "1", "2")]
    assert reader.header is not None and reader.header.extra == ["extra"]
    error = rejection(tmp_path, b"A,b\n1,2\n", contract)  # names still match exactly
    assert "missing columns ['a']" in error.problem


def test_a_small_uncompressed_csv_is_read_whole_and_a_bigger_one_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, csv_path: str
) -> None:
    """The two ways give the same rows; which one a file takes depends on its size alone."""
    calls: list[int] = []
    read_whole = readers._Tap.read_whole

    def counted(tap: Any) -> pa.Buffer:
        calls.append(1)
        return read_whole(tap)

    monkeypatch.setattr(readers._Tap, "read_whole", counted)
    monkeypatch.setattr(readers, "WHOLE_READ_BYTES", 64 if csv_path == "read whole" else -1)
    small, big = b"a,b\n1,x\n", b"a,b\n" + b"1,x\n" * 100
    assert read_rows(tmp_path, small) == [(1, "1", "x")]
    assert len(calls) == (1 if csv_path == "read whole" else 0)
    assert len(read_rows(tmp_path, big)) == 100
    assert len(calls) == (1 if csv_path == "read whole" else 0)  # over the limit: streamed
