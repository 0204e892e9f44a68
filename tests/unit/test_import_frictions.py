"""The import frictions of issue 14 (finding 5), each on a small file made to resemble what real datasets
carry: a JSON export that is an object, an items file naming its id column differently, numeric labels
written as 1.0, duplicate item x annotator pairs, a refusal sentence in a label column, a wide file passed
as long, metadata roles; and the errors in the terms of `accord import`'s options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from accord.cli.main import app, import_error_in_cli_terms
from accord.models.dataset_import import DatasetImportError, ImportSpec, import_dataset, summarize_dataset
from accord.models.migrate import init_db
from accord.models.settings import get_settings
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from tests.unit.test_import import counts, items_of, ratings_of, write


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = init_db(f"sqlite:///{tmp_path}/t.db")
    yield eng
    eng.dispose()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CliRunner, str]]:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("ACCORD_DATABASE_URL", url)
    get_settings.cache_clear()
    yield CliRunner(), url
    get_settings.cache_clear()


def run(cli: tuple[CliRunner, str], *args: str) -> tuple[int, str]:
    runner, _url = cli
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


# --- JSON object holding the records --------------------------------------------------------------------


def test_json_object_needs_records_key_and_then_imports(engine: Engine, tmp_path: Path) -> None:
    doc = {"meta": {"version": 2}, "data": [
        {"item_id": "1", "annotator_id": "a", "label": "safe", "text": "hi"},
        {"item_id": "1", "annotator_id": "b", "label": "unsafe", "text": "hi"},
        {"item_id": "2", "annotator_id": "a", "label": "unsafe", "text": "ho"},
    ]}
    path = write(tmp_path, "export.json", json.dumps(doc))
    spec = {"name": "j", "ratings_file": path, "rating_cols": "label", "text_col": "text",
            "label_map": "safe=0, unsafe=1"}
    with pytest.raises(DatasetImportError) as caught:
        import_dataset(engine, ImportSpec(**spec))
    assert str(caught.value) == (
        f"{path}: expected a JSON array of records, but the document is an object (keys: meta, data); "
        "the records may be under 'data': name the key with records_key")
    assert import_error_in_cli_terms(str(caught.value)).endswith("name the key with --records-key")
    report = import_dataset(engine, ImportSpec(**spec, records_key="data"))
    assert (report.n_items, report.n_annotators, report.n_ratings) == (2, 2, 3)


def test_records_key_dotted_and_missing(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "nested.json", json.dumps({"result": {"rows": [
        {"item_id": "1", "annotator_id": "a", "label": 1, "text": "hi"}]}}))
    report = import_dataset(engine, ImportSpec(name="n", ratings_file=path, rating_cols="label", text_col="text",
                                               records_key="result.rows"))
    assert report.n_ratings == 1
    with pytest.raises(DatasetImportError, match=r"nested.json: records_key 'result.data': no key 'data' here "
                                                 r"\(keys: rows\)"):
        import_dataset(engine, ImportSpec(name="m", ratings_file=path, rating_cols="label", text_col="text",
                                          records_key="result.data"))


# --- the items file names its id column differently -----------------------------------------------------


def test_items_file_with_its_own_id_column(engine: Engine, tmp_path: Path) -> None:
    ratings = write(tmp_path, "r.csv", "comment,worker,offensive\nc1,w1,2\nc1,w2,3\nc2,w1,1\n")
    items = write(tmp_path, "items.csv", "id,text\nc1,first comment\nc2,second comment\n")
    spec = {"name": "o", "ratings_file": ratings, "items_file": items, "item_col": "comment",
            "annotator_col": "worker", "rating_cols": "offensive", "text_col": "text"}
    with pytest.raises(DatasetImportError) as caught:
        import_dataset(engine, ImportSpec(**spec))
    message = str(caught.value)
    assert message == (f"{items}: line 1 (header): no column 'comment' (item id); the columns are: id, text; "
                       "name the items file's id column with items_id_col")
    assert import_error_in_cli_terms(message).endswith("with --items-id-col")
    report = import_dataset(engine, ImportSpec(**spec, items_id_col="id"))
    assert (report.n_items, report.n_ratings) == (2, 3)
    assert items_of(engine, report.dataset_id)["c2"][0] == {"kind": "text", "text": "second comment"}


# --- numeric labels match by value ------------------------------------------------------------------------


def test_numeric_labels_match_by_value(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "likert.csv", "item_id,annotator_id,q,text\n1,a,1.0,x\n1,b,5,x\n2,a,03,y\n2,b,2.50,y\n")
    report = import_dataset(engine, ImportSpec(name="l", ratings_file=path, rating_cols="q", text_col="text",
                                               label_map="1=1, 2=2, 2.5=2.5, 3=3, 4=4, 5=5"))
    got = ratings_of(engine, report.dataset_id)
    assert {k[:2]: v[0] for k, v in got.items()} == {("1", "a"): 1.0, ("1", "b"): 5.0, ("2", "a"): 3.0,
                                                     ("2", "b"): 2.5}
    assert got[("1", "a", "q")][1] == "1.0"  # the raw label is kept as written


# --- duplicates and non-labels ----------------------------------------------------------------------------

SPARSE = ("item_id,annotator_id,harm,text\n"
          "1,a,Yes,t1\n1,b,No,t1\n1,a,No,t1\n"         # a rated item 1 twice
          "2,a,I cannot rate this content.,t2\n2,b,Yes,t2\n2,c,Unsure,t2\n"
          "3,c,No,t3\n3,c,Yes,t3\n")                    # c rated item 3 twice


@pytest.mark.parametrize("policy, item1_a, item3_c", [("first", 0.0 + 1.0, 0.0), ("last", 0.0, 1.0),
                                                      ("mean", 0.5, 0.5)])
def test_duplicates_kept_first_last_or_averaged_and_counted(
        engine: Engine, tmp_path: Path, policy: str, item1_a: float, item3_c: float) -> None:
    path = write(tmp_path, "sparse.csv", SPARSE)
    report = import_dataset(engine, ImportSpec(
        name="s", ratings_file=path, rating_cols="harm", text_col="text", label_map="No=0, Unsure=0.5, Yes=1",
        on_duplicate=policy, unmapped_label="missing"))
    got = ratings_of(engine, report.dataset_id)
    assert got[("1", "a", "harm")][0] == item1_a
    assert got[("3", "c", "harm")][0] == item3_c
    assert report.n_ratings == 5  # 8 rows - 2 duplicates - 1 non-label
    expected = {"duplicate_ratings": {"count": 2, "policy": policy},
                "unmapped_labels": {"count": 1, "policy": "missing",
                                    "examples": {"I cannot rate this content.": 1}, "per_dimension": {"harm": 1}}}
    assert report.dropped == expected
    assert summarize_dataset(engine, report.dataset_id)["dropped"] == expected
    if policy == "mean":
        assert got[("1", "a", "harm")][1] == "Yes|No"


def test_duplicates_and_non_labels_are_errors_by_default(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "sparse.csv", SPARSE)
    spec = {"name": "s", "ratings_file": path, "rating_cols": "harm", "text_col": "text",
            "label_map": "No=0, Unsure=0.5, Yes=1"}
    before = counts(engine)
    with pytest.raises(DatasetImportError) as caught:
        import_dataset(engine, ImportSpec(**spec))
    assert str(caught.value) == (
        f"{path}: line 4, column 'harm': duplicate rating of item '1' by annotator 'a' for dimension 'harm' "
        "(first on line 2); use on_duplicate first, last or mean to keep one")
    assert import_error_in_cli_terms(str(caught.value)).endswith("; use --on-duplicate first, last or mean to keep one")
    with pytest.raises(DatasetImportError) as caught:
        import_dataset(engine, ImportSpec(**spec, on_duplicate="first"))
    assert str(caught.value) == (
        f"{path}: line 5, column 'harm': unmapped label 'I cannot rate this content.' for dimension 'harm'; "
        "known labels: No, Unsure, Yes (with unmapped_label missing such cells count as missing)")
    assert counts(engine) == before


def test_scales_recorded_from_label_map_or_observed_values(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "two.csv", "item_id,annotator_id,likert,score,text\n1,a,1,0.2,x\n2,a,5,0.9,y\n")
    report = import_dataset(engine, ImportSpec(name="sc", ratings_file=path, rating_cols="likert, score",
                                               text_col="text", label_map={"likert": "1=1,2=2,3=3,4=4,5=5"}))
    scales = summarize_dataset(engine, report.dataset_id)["scales"]
    assert scales == {"likert": {"min": 1.0, "max": 5.0, "source": "label_map", "values": [1.0, 2.0, 3.0, 4.0, 5.0]},
                      "score": {"min": 0.2, "max": 0.9, "source": "observed", "values": [0.2, 0.9]}}


# --- the command line ----------------------------------------------------------------------------------------


def test_cli_errors_name_flags_not_spec_fields(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "r.csv", "item_id,annotator_id,q,text\n1,a,1,x\n")
    code, out = run(cli, "import", str(path), "--name", "d", "--rating-col", "q")
    assert code == 2
    assert out == "error: give exactly one of --text-col (plain text) and --conversation-col (turns)"
    code, out = run(cli, "import", str(path), "--name", "d", "--text-col", "text", "--layout", "wide")
    assert out == ("error: --layout 'wide' needs --annotator-columns (a list of columns or a pattern like "
                   "'rater_*')")
    code, out = run(cli, "import", str(path), "--name", "d", "--text-col", "text", "--rating-col", "q",
                    "--on-duplicate", "sometimes")
    assert code == 2 and out.startswith("error: --on-duplicate: Input should be 'error', 'first', 'last' or 'mean'")


def test_cli_already_exists_names_replace(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "r.csv", "item_id,annotator_id,q,text\n1,a,1,x\n")
    args = ["import", str(path), "--name", "d", "--rating-col", "q", "--text-col", "text"]
    assert run(cli, *args)[0] == 0
    code, out = run(cli, *args)
    assert code == 2
    assert out == "error: a dataset named 'd' already exists (id 1); choose another name or replace it (--replace)"
    assert run(cli, *args, "--replace")[0] == 0


def test_cli_wide_file_passed_as_long_suggests_layout_wide(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raters = [f"rater_{k}" for k in range(30)]
    header = ",".join(["item_id", "text", *raters])
    path = write(tmp_path, "wide.csv", header + "\n1,hello," + ",".join("1" for _ in raters) + "\n")
    code, out = run(cli, "import", str(path), "--name", "w", "--rating-col", "rating", "--text-col", "text")
    assert code == 2
    assert out == (f"error: {path}: line 1 (header): no column 'annotator_id' (annotator id); the columns are: "
                   f"item_id, text, {', '.join(raters[:28])} (and 2 more); if each column holds one annotator's "
                   "ratings, the file is wide: use --layout wide with --annotator-columns")
    code, out = run(cli, "import", str(path), "--name", "w", "--layout", "wide", "--annotator-columns", "rater_*",
                    "--text-col", "text")
    assert code == 0 and "1 items, 30 annotators, 30 ratings" in out


def test_cli_meta_role_and_dropped_counts(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "refusal.csv", "item_id,annotator_id,refused,text,model\n"
                                          "1,a,yes,t1,m1\n1,b,no,t1,m1\n2,a,As an AI I cannot,t2,m2\n"
                                          "2,b,yes,t2,m2\n1,a,no,t1,m1\n")
    code, out = run(cli, "import", str(path), "--name", "r", "--rating-col", "refused", "--text-col", "text",
                    "--label-map", "no=0, yes=1", "--meta-role", "subject_model=model",
                    "--unmapped-label", "missing", "--on-duplicate", "last")
    assert code == 0, out
    assert "dropped: 1 duplicate ratings; kept the last" in out
    assert "dropped: 1 unmapped labels (e.g. 'As an AI I cannot'); counted as missing" in out
    engine = init_db(cli[1])
    assert items_of(engine, 1)["2"][1] == {"subject_model": "m2"}
    engine.dispose()
    code, out = run(cli, "import", str(path), "--name", "r2", "--rating-col", "refused", "--text-col", "text",
                    "--label-map", "no=0, yes=1", "--meta-col", "model", "--unmapped-label", "missing",
                    "--on-duplicate", "first")
    assert ("warning: metadata column 'model' is stored as 'model', which no analysis reads; for the "
            "subject_model role use --meta-role subject_model=model") in out
    code, out = run(cli, "import", str(path), "--name", "r3", "--rating-col", "refused", "--text-col", "text",
                    "--meta-role", "judge=model")
    assert code == 2
    assert out == ("error: --meta-role: unknown role 'judge'; the roles are: subject_model, category, "
                   "expert_label")


def test_cli_meaning_is_stored_and_checked(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "r.csv", "item_id,annotator_id,q,text\n1,a,1,x\n")
    args = ["import", str(path), "--rating-col", "q", "--text-col", "text"]
    code, out = run(cli, *args, "--name", "m1", "--meaning", "low=compliant,high=refusing")
    assert code == 0, out
    engine = init_db(cli[1])
    from accord.models.schema import Dataset
    from sqlalchemy import select

    with engine.connect() as conn:
        info = conn.execute(select(Dataset.import_info).where(Dataset.name == "m1")).scalar_one()
    engine.dispose()
    assert info["meaning"] == {"low": "compliant", "high": "refusing"}
    code, out = run(cli, *args, "--name", "m2", "--meaning", "compliant")
    assert code == 2 and out == "error: --meaning: expected low=WORD,high=WORD, as in low=safe,high=unsafe"


def test_import_help_lists_the_roles(cli) -> None:  # type: ignore[no-untyped-def]
    code, out = run(cli, "import", "--help")
    assert code == 0
    for role in ("subject_model", "category", "expert_label"):
        assert role in out
