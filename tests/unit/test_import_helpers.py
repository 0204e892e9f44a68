"""Pieces of the import that need no database: label maps, the spec, conversation cells, file reading."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from accord.models.import_formats import DatasetImportError, parse_conversation, read_table
from accord.models.import_spec import (
    ImportSpec,
    load_import_spec,
    match_columns,
    parse_label_map_string,
    resolve_label_maps,
    spec_from_mapping,
)

# --- label maps ----------------------------------------------------------------------------------------


def test_label_map_string_is_parsed() -> None:
    assert parse_label_map_string("No=0, Unsure=0.5, Yes=1") == {"No": 0.0, "Unsure": 0.5, "Yes": 1.0}
    assert parse_label_map_string(" strongly disagree = 1 ,agree=3 ") == {
        "strongly disagree": 1.0,
        "agree": 3.0,
    }


def test_label_map_string_with_semicolons_allows_commas_in_labels() -> None:
    assert parse_label_map_string("Yes, definitely=1; No, never=0") == {
        "Yes, definitely": 1.0,
        "No, never": 0.0,
    }


def test_label_map_string_null_value() -> None:
    assert parse_label_map_string("Yes=1, No=0, Refused=null") == {"Yes": 1.0, "No": 0.0, "Refused": None}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("No 0, Yes=1", "expected label=number"),
        ("No=zero", "'zero' is not a number"),
        ("No=0, No=1", "given twice"),
        ("=1", "empty label"),
        (" , ", "empty"),
        ("No=inf", "finite"),
    ],
)
def test_label_map_string_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_label_map_string(text)


def test_label_maps_flat_apply_to_every_dimension() -> None:
    maps = resolve_label_maps({"No": 0, "Yes": "1"}, ["a", "b"])
    assert maps == {"a": {"No": 0.0, "Yes": 1.0}, "b": {"No": 0.0, "Yes": 1.0}}


def test_label_maps_per_dimension() -> None:
    maps = resolve_label_maps({"a": "No=0, Yes=1", "b": {"low": 1, "high": 5}}, ["a", "b", "c"])
    assert maps == {"a": {"No": 0.0, "Yes": 1.0}, "b": {"low": 1.0, "high": 5.0}}


def test_label_maps_reject_unknown_dimension_and_mixed_forms() -> None:
    with pytest.raises(ValueError, match="names dimension 'z'"):
        resolve_label_maps({"z": {"No": 0}}, ["a"])
    with pytest.raises(ValueError, match="mixes"):
        resolve_label_maps({"a": {"No": 0}, "Yes": 1}, ["a"])
    with pytest.raises(ValueError, match="differ only in case"):
        resolve_label_maps({"Yes": 1, "yes": 0}, ["a"])


# --- the spec ------------------------------------------------------------------------------------------


def test_spec_needs_files_content_and_rating_columns() -> None:
    with pytest.raises(DatasetImportError, match="give ratings_file, items_file, or both"):
        spec_from_mapping({"name": "x", "text_col": "t"})
    with pytest.raises(DatasetImportError, match="exactly one of text_col"):
        spec_from_mapping({"name": "x", "ratings_file": "r.csv", "rating_cols": ["s"]})
    with pytest.raises(DatasetImportError, match="needs rating_cols"):
        spec_from_mapping({"name": "x", "ratings_file": "r.csv", "text_col": "t"})
    with pytest.raises(DatasetImportError, match="needs annotator_columns"):
        spec_from_mapping({"name": "x", "ratings_file": "r.csv", "text_col": "t", "layout": "wide"})
    with pytest.raises(DatasetImportError, match=r"import spec: label_map: names dimension 'other'"):
        spec_from_mapping(
            {
                "name": "x",
                "ratings_file": "r.csv",
                "text_col": "t",
                "rating_cols": "s",
                "label_map": {"other": "a=1"},
            }
        )


def test_spec_rating_columns_map_column_to_dimension() -> None:
    spec = ImportSpec(
        name="x", ratings_file="r.csv", text_col="t", rating_cols={"q1": "safety", "q2": "quality"}
    )
    assert spec.rating_columns() == {"q1": "safety", "q2": "quality"}
    assert spec.dimensions() == ["safety", "quality"]
    assert ImportSpec(name="x", ratings_file="r.csv", text_col="t", rating_cols="a, b").dimensions() == [
        "a",
        "b",
    ]
    wide = ImportSpec(
        name="x", ratings_file="r.csv", text_col="t", layout="wide", annotator_columns="r*", dimension="harm"
    )
    assert wide.dimensions() == ["harm"]


def test_spec_from_yaml_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "import.yaml").write_text(
        "name: demo\nratings_file: data/r.csv\ntext_col: t\nrating_cols: [s]\nitem_meta_cols: a, b\n"
    )
    spec = load_import_spec(tmp_path / "import.yaml", name="other")
    assert spec.ratings_file == tmp_path / "data" / "r.csv"
    assert spec.name == "other"
    assert spec.item_meta_cols == ["a", "b"]


def test_match_columns_glob_regex_and_list() -> None:
    columns = ["item_id", "rater_1", "rater_2", "rater_10", "notes"]
    assert match_columns("rater_*", columns) == ["rater_1", "rater_2", "rater_10"]
    assert match_columns(r"rater_\d", columns) == ["rater_1", "rater_2"]
    assert match_columns("re:r.*", columns) == ["rater_1", "rater_2", "rater_10"]
    assert match_columns("rater_2, rater_1", columns) == ["rater_2", "rater_1"]
    assert match_columns(["notes"], columns) == ["notes"]


# --- conversation cells --------------------------------------------------------------------------------


def test_conversation_lines_with_multiline_turns() -> None:
    turns, leading = parse_conversation("USER: hi\nLAMDA: hello\nthere\n\nUSER: list:\n1. one\nNote: two")
    assert turns == [
        {"speaker": "USER", "text": "hi"},
        {"speaker": "LAMDA", "text": "hello\nthere"},
        {"speaker": "USER", "text": "list:\n1. one\nNote: two"},
    ]
    assert leading is False


def test_conversation_common_role_names_and_leading_text() -> None:
    turns, leading = parse_conversation("some context\nUser: question\nassistant: answer")
    assert turns == [
        {"speaker": "USER", "text": "some context"},
        {"speaker": "USER", "text": "question"},
        {"speaker": "ASSISTANT", "text": "answer"},
    ]
    assert leading is True


def test_conversation_json_list() -> None:
    text = '[{"role": "user", "content": "hi"}, {"speaker": "Bot", "text": " yo "}]'
    assert parse_conversation(text)[0] == [
        {"speaker": "USER", "text": "hi"},
        {"speaker": "BOT", "text": "yo"},
    ]
    assert parse_conversation([{"role": "user", "content": "x"}])[0] == [{"speaker": "USER", "text": "x"}]
    with pytest.raises(ValueError, match="turn 2 has no 'speaker' or 'role'"):
        parse_conversation([{"role": "user", "content": "x"}, {"content": "y"}])


def test_conversation_text_in_brackets_is_not_json() -> None:
    turns, _ = parse_conversation("[Playing a game] next word: men")
    assert turns == [{"speaker": "USER", "text": "[Playing a game] next word: men"}]


# --- reading files -------------------------------------------------------------------------------------


def test_csv_row_numbers_follow_lines_of_multiline_records(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('id,text\n1,"two\nlines"\n\n2,plain\n3,"a\nb\nc"\n4,x\n', encoding="utf-8")
    table = read_table(path)
    assert table.columns["id"] == ["1", "2", "3", "4"]
    assert table.row_numbers == [2, 5, 6, 9]
    assert table.columns["text"][2] == "a\nb\nc"


def test_csv_gz_jsonl_gz_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"x,y\n1,2\n"))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"x": 1}\n\n{"x": 2, "y": "z"}\n'))
    (tmp_path / "c.tsv").write_text("x\ty\n1\t2\n")
    assert read_table(tmp_path / "a.csv.gz").columns == {"x": ["1"], "y": ["2"]}
    jsonl = read_table(tmp_path / "b.jsonl.gz")
    assert jsonl.columns == {"x": [1, 2], "y": [None, "z"]}
    assert jsonl.row_numbers == [1, 3]
    assert read_table(tmp_path / "c.tsv").columns == {"x": ["1"], "y": ["2"]}


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbfitem_id,x\n1,2\n")
    assert list(read_table(tmp_path / "a.csv").columns) == ["item_id", "x"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.xlsx", b"x", "a.xlsx: unsupported file extension '.xlsx'; supported: .csv"),
        ("a.csv", b"", "a.csv: empty file"),
        ("a.csv", b"x,y\n", "a.csv: empty file (no data rows)"),
        ("a.csv", b"x,y\n1,2\n3,\xe9\n", "a.csv: line 3, byte offset 10: not valid UTF-8 (byte 0xe9)"),
        ("a.csv", b"x,y\n1,2\n3,4,5\n", "a.csv: line 3: 3 fields but the header has 2 (x, y)"),
        ("a.csv", b"x,x\n1,2\n", "a.csv: line 1 (header): column 'x' appears twice (fields 1 and 2)"),
        ("a.jsonl", b'{"x": 1}\n{"x": 2\n', "a.jsonl: line 2: invalid JSON"),
        ("a.jsonl", b'{"x": 1}\n[1]\n', "a.jsonl: line 2: expected a JSON object, got list"),
        ("a.parquet", b"PAR1 not really", "a.parquet: not a readable Parquet file"),
        ("a.csv.gz", b"not gzip", "a.csv.gz: not a valid gzip file"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DatasetImportError) as caught:
        read_table(tmp_path / name)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / name))
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetImportError, match="file not found"):
        read_table(tmp_path / "nope.csv")
