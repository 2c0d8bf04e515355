"""Partition keys from landing paths: exact round trip, safe for Dagster, readable."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elt_assets.landing.keys import key_to_path, path_to_key

pytestmark = [pytest.mark.pure]

# Dagster refuses partition keys containing these (dagster/_core/definitions/partitions/utils).
DAGSTER_INVALID = ["...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0"]

TRICKY_PATHS = [
    "orders/2026-01-01.csv",
    "orders/with space.csv",
    "orders/ünïcödé ✓ 日本.csv",
    "orders/a,b,c.csv",
    "orders/100% done.csv",
    "orders/%41.csv",  # literal text that looks like an escape
    "orders/%2E%25%%.csv",
    "a/b/c/d/e/deeply nested.csv.gz",
    "orders/....csv",
    "orders/a...b.csv",
    "orders/a....b.csv",
    "orders/.........csv",
    "..../x",
    "orders/tab\there.csv",
    "orders/new\nline.csv",
    "orders/bell\a\b\f\r\v\0.csv",
    "orders/del\x7f.csv",
    "orders/pipe|name.csv",
    "orders/[bracket].csv",
    "orders/a]b[c.csv",
    "x",
    "%",
    ".",
    "..",
    "...",
]


def assert_dagster_safe(key: str) -> None:
    for bad in DAGSTER_INVALID:
        assert bad not in key, f"{bad!r} in key {key!r}"
    assert "," not in key, key
    assert "|" not in key and "[" not in key and "]" not in key, key


@pytest.mark.parametrize("path", TRICKY_PATHS)
def test_round_trip_and_safe_for_tricky_paths(path: str) -> None:
    key = path_to_key(path)
    assert key_to_path(key) == path
    assert_dagster_safe(key)


@pytest.mark.parametrize(
    "path",
    [
        "orders/2026-01-01.csv",
        "Sales Data/Q1 report_final.v2.csv.gz",
        "données/été 2026/größe.csv",
        "日本/東京.parquet",
        "a..b/c.d",
    ],
)
def test_plain_paths_map_to_themselves(path: str) -> None:
    """Letters, digits, spaces, unicode, /, -, _, . (no `...` run): the key reads like the path."""
    assert path_to_key(path) == path


def test_specific_encodings_are_percent_hex_of_utf8() -> None:
    assert path_to_key("a,b") == "a%2Cb"
    assert path_to_key("100%") == "100%25"
    assert path_to_key("%41") == "%2541"
    assert key_to_path("%2541") == "%41"
    assert path_to_key("a|b[c]") == "a%7Cb%5Bc%5D"
    assert path_to_key("a\tb\nc") == "a%09b%0Ac"
    # The third dot of each run is encoded, so no `...` survives, and a 4th dot may stay plain.
    assert path_to_key("...") == "..%2E"
    assert path_to_key("....") == "..%2E."
    assert path_to_key("......") == "..%2E..%2E"


def test_file_name_that_is_not_utf8_gets_a_storable_key() -> None:
    """os.fsdecode turns a latin-1 name into lone surrogates; the key must be valid UTF-8."""
    path = os.fsdecode(b"orders/caf\xe9.csv")
    key = path_to_key(path)
    assert key == "orders/caf%E9.csv"
    key.encode("utf-8")  # storable: no lone surrogates left
    assert key_to_path(key) == path
    assert os.fsencode(key_to_path(key)) == b"orders/caf\xe9.csv"


@pytest.mark.parametrize("bad", ["", "/abs/path.csv", "/"])
def test_rejects_empty_and_absolute_paths(bad: str) -> None:
    with pytest.raises(ValueError, match="expected a relative path"):
        path_to_key(bad)


relative_paths = st.text(min_size=1).filter(lambda text: not text.startswith("/"))
# File names as the OS hands them over: any bytes except NUL and "/" first, through os.fsdecode.
os_paths = (
    st.binary(min_size=1)
    .filter(lambda raw: b"\0" not in raw and not raw.startswith(b"/"))
    .map(os.fsdecode)
)


@given(relative_paths)
def test_round_trip_property(path: str) -> None:
    assert key_to_path(path_to_key(path)) == path


@given(relative_paths)
def test_keys_are_dagster_safe_property(path: str) -> None:
    assert_dagster_safe(path_to_key(path))


@given(os_paths)
def test_os_file_names_round_trip_to_valid_utf8_keys(path: str) -> None:
    key = path_to_key(path)
    key.encode("utf-8")
    assert_dagster_safe(key)
    assert key_to_path(key) == path


@given(st.text(alphabet=st.sampled_from("ab/-_. é日"), min_size=1))
def test_readable_alphabet_is_unchanged_unless_a_dot_run(path: str) -> None:
    if path.startswith("/"):
        path = "x" + path
    key = path_to_key(path)
    if "..." in path:
        assert key != path
    else:
        assert key == path
