"""Rebuild the corpus files whose bytes cannot be typed in an editor: gzip, Parquet, encodings,
BOMs, CR/CRLF line endings, NUL bytes, invisible or combining characters and long fields.

The output is deterministic (gzip mtime 0, fixed data), so running this again leaves the committed
files unchanged (with the same pyarrow version for Parquet). The plain-text corpus files are
written by hand and not touched here. Run from anywhere:

    .venv/bin/python elt_assets_tests/corpus/make_corpus.py
"""

from __future__ import annotations

import gzip
import io
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

LANDING = Path(__file__).resolve().parent / "landing"
HEADER = "id,name,born\n"
PEOPLE = "1,Ann,1990-01-01\n2,Bob,1991-02-02\n3,Cy,1992-03-03\n"
# texts/long_field.csv: an unquoted field of 4096 characters and a quoted one of 2100 with commas,
# doubled quotes and line breaks inside.
LONG_PLAIN = "".join(chr(ord("a") + i % 26) for i in range(4096))
LONG_QUOTED = ('x,y "z"\n' * 300)[:2100]


def write(relative: str, data: bytes) -> None:
    path = LANDING / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def people_files() -> None:
    write("people/empty.csv", b"")
    cafe = HEADER + "1,Café,1990-01-01\n2,€uro,1991-02-02\n"
    write("people/cp1252_bytes.csv", cafe.encode("cp1252"))  # read as UTF-8: refused
    write("people/bom.csv", b"\xef\xbb\xbf" + (HEADER + PEOPLE).encode())
    write(
        "people/bom_quoted_header.csv",
        b'\xef\xbb\xbf"id","name","born"\n1,"Ann",1990-01-01\n2,"Bob ""B""",1991-02-02\n',
    )
    write("people/utf16.csv", (HEADER + PEOPLE).encode("utf-16"))  # with its BOM, little endian
    write(
        "people/crlf.csv",
        b'id,name,born\r\n1,Ann,1990-01-01\r\n2,"two\r\nlines",1991-02-02\r\n3,Cy,\r\n',
    )
    write(
        "people/mixed_endings.csv",
        b"id,name,born\n1,Ann,1990-01-01\r\n2,Bob,1991-02-02\n3,Cy,1992-03-03\r\n",
    )
    write("people/cr_only.csv", b"id,name,born\r1,Ann,1990-01-01\r2,Bob,1991-02-02\r")
    write(
        "people/nul_bytes.csv",
        b"id,name,born\n1,Ann,1990-01-01\n2,B\x00ob,1991-02-02\n3,Cy,1992-03-03\n",
    )
    many = (HEADER + "".join(f"{i},name {i},1990-01-01\n" for i in range(1, 400))).encode()
    whole = gz(many)
    write("people/truncated.csv.gz", whole[: len(whole) // 2])
    write("people/trailing_garbage.csv.gz", gz((HEADER + PEOPLE).encode()) + b"garbage\x00\x01")
    write(
        "people/multi_member.csv.gz",
        gz((HEADER + "1,Ann,1990-01-01\n").encode()) + gz(b"2,Bob,1991-02-02\n"),
    )
    write("people/not_gzip.csv.gz", (HEADER + PEOPLE).encode())  # plain CSV named .csv.gz
    write(
        "people_cp1252/cp1252.csv",
        (HEADER + "1,Café,1990-01-01\n2,€uro \u2013 \u201cquoted\u201d Müller,1991-02-02\n").encode(
            "cp1252"
        ),
    )
    write(
        "people_utf16/utf16.csv",
        (HEADER + '1,Ann,1990-01-01\n2,"Bob, Jr.",1991-02-02\n3,Zoë 😀,\n').encode("utf-16"),
    )


def text_files() -> None:
    rows = [
        "id,body,label,uid,doc",
        "1,emoji \U0001f600 family \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
        " flag \U0001f1e9\U0001f1ea,\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466,,",
        "2,combining e\u0301 vs \u00e9 and A\u030a,e\u0301e\u0301e\u0301e\u0301e\u0301,,",
        "3,RTL \u05e9\u05dc\u05d5\u05dd \u0639\u0631\u0628\u064a mixed,\u05e9\u05dc\u05d5\u05dd,,",
        "4,zero\u200bwidth and \ufeffinside,,,",
        "5,,e\u0301e\u0301e\u0301e\u0301e\u0301e\u0301,,",
        '6,astral \U0001d518\U0001d52b and CJK \u4e22,,,"{""\u540d"": ""\u503c"",'
        ' ""e"": ""\U0001f600""}"',
    ]
    write("texts/unicode.csv", ("\n".join(rows) + "\n").encode())
    quoted = LONG_QUOTED.replace('"', '""')
    write(
        "texts/long_field.csv",
        f'id,body,label,uid,doc\n1,{LONG_PLAIN},,,\n2,"{quoted}",,,\n'.encode(),
    )


def parquet_files() -> None:
    typed = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "qty": pa.array([5, None, -(2**31)], pa.int32()),
            "price": pa.array([Decimal("12.30"), Decimal("0.05"), None], pa.decimal128(10, 2)),
            "name": pa.array(["Café \U0001f600", "", None], pa.string()),
        }
    )
    write("items/typed.parquet", parquet(typed))
    overflow = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "qty": pa.array([2**31 - 1, 2**31, -(2**31) - 1, 7], pa.int64()),
            "price": pa.array([1.5, 0.1, 2.25, 3.0], pa.float64()),
            "name": pa.array(["a", "b", "c", "d"], pa.string()),
        }
    )
    write("items/int64_overflow.parquet", parquet(overflow))
    nested = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "qty": pa.array([1, 2], pa.int32()),
            "price": pa.array([1.5, 2.5], pa.float64()),
            "name": pa.array(
                [{"first": "Ann", "last": "Lee"}, {"first": "Bob", "last": None}],
                pa.struct([("first", pa.string()), ("last", pa.string())]),
            ),
        }
    )
    write("items/struct_column.parquet", parquet(nested))
    listed = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "qty": pa.array([[1, 2]], pa.list_(pa.int64())),
            "price": pa.array([1.5], pa.float64()),
            "name": pa.array(["a"], pa.string()),
        }
    )
    write("items/list_column.parquet", parquet(listed))
    wide = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "qty": pa.array([1], pa.int32()),
            "price": pa.array([Decimal("1.50")], pa.decimal256(40, 2)),
            "name": pa.array(["a"], pa.string()),
        }
    )
    write("items/decimal256.parquet", parquet(wide))
    write("items/csv_named.parquet", b"id,qty,price,name\n1,2,3.00,a\n")
    whole = parquet(typed)
    write("items/truncated.parquet", whole[: len(whole) * 6 // 10])


if __name__ == "__main__":
    people_files()
    text_files()
    parquet_files()
