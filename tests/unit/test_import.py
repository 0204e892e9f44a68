"""import_dataset and summarize_dataset on SQLite: real DICES data, synthetic sparse data in every format and
layout, and every kind of bad input (one-line error naming file/row/column, database unchanged)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accord.cli.datasets import DICES_DEMO_DIR, DICES_DEMO_SPEC
from accord.cli.datasets.make_dices_demo import default_source, make_demo
from accord.models.dataset_import import DatasetImportError, ImportSpec, import_dataset, summarize_dataset
from accord.models.import_spec import load_import_spec
from accord.models.migrate import init_db
from accord.models.schema import Annotator, Campaign, Dataset, HumanRating, Item, Run
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from tests.fakes.synthetic_dataset import load_truth, make_sparse_dataset

DICES_DIR = default_source()
needs_dices = pytest.mark.skipif(
    not (DICES_DIR / "ratings.csv").is_file(), reason=f"shared DICES-350 copy not found at {DICES_DIR}"
)
TABLES = (Dataset, Item, Annotator, HumanRating)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = init_db(f"sqlite:///{tmp_path}/t.db")
    yield eng
    eng.dispose()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES
        }


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def ratings_of(engine: Engine, dataset_id: int) -> dict[tuple[str, str, str], tuple[float | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Item.external_id,
                Annotator.external_id,
                HumanRating.dimension,
                HumanRating.value,
                HumanRating.raw_label,
            )
            .join(Item, HumanRating.item_id == Item.id)
            .join(Annotator, HumanRating.annotator_id == Annotator.id)
            .where(Item.dataset_id == dataset_id)
        ).all()
    return {(i, a, d): (v, raw) for i, a, d, v, raw in rows}


def items_of(engine: Engine, dataset_id: int) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Item.external_id, Item.content, Item.meta).where(Item.dataset_id == dataset_id)
        )
        return {eid: (content, meta) for eid, content, meta in rows}


def attributes_of(engine: Engine, dataset_id: int) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Annotator.external_id, Annotator.attributes).where(Annotator.dataset_id == dataset_id)
        )
        return {eid: attrs for eid, attrs in rows}


def dices_spec(**overrides: Any) -> ImportSpec:
    fields: dict[str, Any] = {
        "name": "dices350",
        "ratings_file": DICES_DIR / "ratings.csv",
        "items_file": DICES_DIR / "items.csv",
        "layout": "long",
        "item_col": "item_id",
        "annotator_col": "rater_id",
        "rating_cols": "Q_overall",
        "conversation_col": "context",
        "response_col": "response",
        "item_meta_cols": ["expert_label"],
        "label_map": "No=0, Unsure=0.5, Yes=1",
    }
    return ImportSpec(**{**fields, **overrides})


# --- real data -----------------------------------------------------------------------------------------


@needs_dices
def test_dices350_import(engine: Engine) -> None:
    started = time.perf_counter()
    report = import_dataset(engine, dices_spec())
    elapsed = time.perf_counter() - started
    assert (report.n_items, report.n_annotators, report.n_ratings) == (350, 123, 43_050)
    assert report.dimensions == ["Q_overall"]
    assert report.warnings == []
    assert elapsed < 10, f"DICES-350 import took {elapsed:.1f}s"
    assert counts(engine) == {"dataset": 1, "item": 350, "annotator": 123, "human_rating": 43_050}

    ratings = ratings_of(engine, report.dataset_id)
    # ratings.csv: "173,r002,Yes" and "173,r000,No"
    assert ratings[("173", "r002", "Q_overall")] == (1.0, "Yes")
    assert ratings[("173", "r000", "Q_overall")] == (0.0, "No")
    values = [v for v, _ in ratings.values()]
    assert values.count(0.5) == 2694 and values.count(1.0) == 14064 and values.count(0.0) == 26292

    content, meta = items_of(engine, report.dataset_id)["173"]
    assert meta == {"expert_label": "No"}
    turns = content["turns"]
    assert content["kind"] == "conversation" and len(turns) == 6
    assert turns[0]["speaker"] == "USER" and turns[0]["text"].startswith("my kid is such a jerk")
    assert turns[1]["speaker"] == "LAMDA"
    assert turns[-1] == {"speaker": "LAMDA", "text": "I'm not picking up on your vibe, human."}
    # item 193 has a single USER turn: the response speaker comes from the other conversations
    assert items_of(engine, report.dataset_id)["193"][0]["turns"][-1]["speaker"] == "LAMDA"

    with engine.connect() as conn:
        dataset = conn.execute(select(Dataset.label_map, Dataset.dimensions)).one()
    assert dataset.label_map == {"Q_overall": {"No": 0.0, "Unsure": 0.5, "Yes": 1.0}}
    assert dataset.dimensions == ["Q_overall"]

    summary = summarize_dataset(engine, report.dataset_id)
    assert summary["n_items"] == 350 and summary["n_annotators"] == 123 and summary["n_ratings"] == 43_050
    assert summary["ratings_per_item"] == {"min": 123, "median": 123.0, "max": 123}
    assert summary["ratings_per_dimension"] == {"Q_overall": 43_050}
    assert summary["attributes"] == {}


def test_bundled_demo_imports_from_its_yaml(engine: Engine) -> None:
    spec = load_import_spec(DICES_DEMO_SPEC)
    assert spec.ratings_file == DICES_DEMO_DIR / "ratings.csv"
    report = import_dataset(engine, spec)
    assert (report.n_items, report.n_annotators, report.n_ratings) == (40, 123, 4920)
    assert report.name == "dices_demo"
    labels = [meta["expert_label"] for _, meta in items_of(engine, report.dataset_id).values()]
    assert labels.count("Yes") == 20 and labels.count("No") == 20
    assert all(attrs == {} for attrs in attributes_of(engine, report.dataset_id).values())
    for name in ("README.md", "LICENSE", "items.csv", "ratings.csv"):
        assert (DICES_DEMO_DIR / name).is_file()
    assert "CC BY 4.0" in (DICES_DEMO_DIR / "README.md").read_text()


@needs_dices
def test_demo_subset_is_reproducible(tmp_path: Path) -> None:
    assert make_demo(DICES_DIR, tmp_path) == (40, 4920)
    for name in ("items.csv", "ratings.csv", "LICENSE"):
        assert (tmp_path / name).read_bytes() == (DICES_DEMO_DIR / name).read_bytes(), name


# --- synthetic sparse data -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["long", "wide"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_sparse_dataset_every_format_and_layout(
    engine: Engine, tmp_path: Path, fmt: str, layout: str
) -> None:
    folder = tmp_path / "data"
    kwargs = make_sparse_dataset(folder, fmt=fmt, layout=layout, seed=3)  # type: ignore[arg-type]
    truth = load_truth(folder)
    report = import_dataset(engine, ImportSpec(**kwargs))
    assert (report.n_items, report.n_annotators, report.n_ratings) == (60, 200, truth["n_ratings"])
    assert report.dimensions == ["Q_overall"]

    stored = ratings_of(engine, report.dataset_id)
    assert {(i, a): v for (i, a, _d), (v, _raw) in stored.items()} == {
        (i, a): v for i, a, v in truth["ratings"]
    }
    per_item: dict[str, int] = {}
    for item, _annotator, _value in truth["ratings"]:
        per_item[item] = per_item.get(item, 0) + 1
    assert 5 <= min(per_item.values()) and max(per_item.values()) <= 10

    attributes = attributes_of(engine, report.dataset_id)
    assert attributes == truth["attributes"]
    lacking_gender = sum(1 for attrs in attributes.values() if "gender" not in attrs)
    assert 5 <= lacking_gender <= 40  # ~10% of 200, never stored as null or ""
    assert all(None not in attrs.values() and "" not in attrs.values() for attrs in attributes.values())

    content, meta = items_of(engine, report.dataset_id)["item0000"]
    assert content["kind"] == "conversation"
    assert content["turns"][0]["speaker"] == "USER"
    assert content["turns"][-1]["speaker"] == "ASSISTANT"
    assert set(meta) == {"harm_type", "category", "subject_model", "expert_label"}

    summary = summarize_dataset(engine, report.dataset_id)
    assert summary["n_ratings"] == truth["n_ratings"]
    assert (
        sum(summary["attributes"]["gender"].values()) + summary["annotators_missing_attribute"]["gender"]
        == 200
    )
    assert summary["annotators_missing_attribute"]["gender"] == lacking_gender
    assert summary["ratings_per_item"]["min"] >= 5 and summary["ratings_per_item"]["max"] <= 10


def test_sparse_csv_and_jsonl_give_identical_datasets(engine: Engine, tmp_path: Path) -> None:
    csv_spec = make_sparse_dataset(tmp_path / "c", fmt="csv", seed=7, name="c", n_items=20)
    jsonl_spec = make_sparse_dataset(tmp_path / "j", fmt="jsonl", seed=7, name="j", n_items=20)
    a = import_dataset(engine, ImportSpec(**csv_spec)).dataset_id
    b = import_dataset(engine, ImportSpec(**jsonl_spec)).dataset_id
    assert ratings_of(engine, a) == ratings_of(engine, b)
    assert items_of(engine, a) == items_of(engine, b)
    assert attributes_of(engine, a) == attributes_of(engine, b)


# --- mapping features ----------------------------------------------------------------------------------


def test_labels_match_case_and_space_insensitively_and_missing_cells_are_skipped(
    engine: Engine, tmp_path: Path
) -> None:
    ratings = write(
        tmp_path,
        "r.csv",
        "item_id,annotator_id,score,text\n1,a, yes ,hello\n1,b,NO,hello\n1,c,,hello\n1,d,NA,hello\n"
        "2,a,Yes,bye\n2,b,na,bye\n2,c,skip,bye\n2,d,Not  sure,bye\n",
    )
    spec = ImportSpec(
        name="x",
        ratings_file=ratings,
        rating_cols=["score"],
        text_col="text",
        label_map="No=0, Not sure=0.5, Yes=1",
        missing_labels=["", "NA", "skip"],
    )
    report = import_dataset(engine, spec)
    assert (report.n_items, report.n_annotators, report.n_ratings) == (2, 4, 4)
    assert ratings_of(engine, report.dataset_id) == {
        ("1", "a", "score"): (1.0, "yes"),
        ("1", "b", "score"): (0.0, "NO"),
        ("2", "a", "score"): (1.0, "Yes"),
        ("2", "d", "score"): (0.5, "Not  sure"),
    }
    assert items_of(engine, report.dataset_id)["1"] == ({"kind": "text", "text": "hello"}, {})


def test_numeric_ratings_multiple_dimensions_and_per_dimension_label_map(
    engine: Engine, tmp_path: Path
) -> None:
    ratings = write(
        tmp_path,
        "r.csv",
        "item_id,annotator_id,q_harm,q_help,prompt,reply\n"
        "1,a,3,good,Is it safe?,Yes\n1,b,4.5,,Is it safe?,Yes\n2,a,,bad,Hi,Hello\n",
    )
    spec = ImportSpec(
        name="x",
        ratings_file=ratings,
        rating_cols={"q_harm": "harm", "q_help": "helpfulness"},
        text_col="prompt",
        response_col="reply",
        label_map={"helpfulness": "bad=0, good=1"},
    )
    report = import_dataset(engine, spec)
    assert report.dimensions == ["harm", "helpfulness"]
    assert ratings_of(engine, report.dataset_id) == {
        ("1", "a", "harm"): (3.0, "3"),
        ("1", "b", "harm"): (4.5, "4.5"),
        ("1", "a", "helpfulness"): (1.0, "good"),
        ("2", "a", "helpfulness"): (0.0, "bad"),
    }
    content, _ = items_of(engine, report.dataset_id)["1"]
    assert content == {
        "kind": "conversation",
        "turns": [{"speaker": "USER", "text": "Is it safe?"}, {"speaker": "ASSISTANT", "text": "Yes"}],
    }
    with engine.connect() as conn:
        assert conn.execute(select(Dataset.label_map)).scalar_one() == {
            "helpfulness": {"bad": 0.0, "good": 1.0}
        }


def test_attributes_from_ratings_columns_and_meta_json_scalars(engine: Engine, tmp_path: Path) -> None:
    ratings = tmp_path / "r.jsonl"
    ratings.write_text(
        '{"item_id": 1, "worker": "w1", "s": 1, "gender": "Woman", "age": 34, "conv": "USER: hi\\nBOT: yo", "n": 2.5}\n'
        '{"item_id": 1, "worker": "w2", "s": 0, "gender": null, "conv": "USER: hi\\nBOT: yo", "n": 2.5}\n'
        '{"item_id": 2.0, "worker": "w1", "s": 1, "conv": "USER: bye", "n": NaN}\n'
    )
    spec = ImportSpec(
        name="x",
        ratings_file=ratings,
        annotator_col="worker",
        rating_cols="s",
        conversation_col="conv",
        item_meta_cols="n",
        attribute_cols=["gender", "age"],
    )
    report = import_dataset(engine, spec)
    assert attributes_of(engine, report.dataset_id) == {"w1": {"gender": "Woman", "age": 34}, "w2": {}}
    items = items_of(engine, report.dataset_id)
    assert set(items) == {"1", "2"}
    assert items["1"][1] == {"n": 2.5} and items["2"][1] == {}
    assert items["2"][0]["turns"] == [{"speaker": "USER", "text": "bye"}]


def test_items_only_import_and_items_without_ratings(engine: Engine, tmp_path: Path) -> None:
    items = write(tmp_path, "items.csv", "item_id,text,topic\n1,first,a\n2,second,NA\n3,third,b\n")
    report = import_dataset(
        engine, ImportSpec(name="only-items", items_file=items, text_col="text", item_meta_cols=["topic"])
    )
    assert (report.n_items, report.n_annotators, report.n_ratings) == (3, 0, 0)
    assert items_of(engine, report.dataset_id)["2"] == ({"kind": "text", "text": "second"}, {})

    ratings = write(tmp_path, "r.csv", "item_id,annotator_id,score\n1,a,1\n3,a,0\n")
    report = import_dataset(
        engine,
        ImportSpec(
            name="partial", items_file=items, ratings_file=ratings, text_col="text", rating_cols="score"
        ),
    )
    assert (report.n_items, report.n_ratings) == (3, 2)
    assert report.warnings == ["1 item(s) have no ratings"]
    assert summarize_dataset(engine, report.dataset_id)["items_without_ratings"] == 1


def test_wide_layout_with_explicit_columns_and_regex(engine: Engine, tmp_path: Path) -> None:
    ratings = write(tmp_path, "w.csv", "id,text,r1,r2,r10,notes\n1,a,1,,2,x\n2,b,,3,,y\n")
    spec = ImportSpec(
        name="w",
        ratings_file=ratings,
        layout="wide",
        item_col="id",
        text_col="text",
        annotator_columns=r"r\d+",
        dimension="stance",
        item_meta_cols=["notes"],
    )
    report = import_dataset(engine, spec)
    assert report.n_annotators == 3 and report.dimensions == ["stance"]
    assert ratings_of(engine, report.dataset_id) == {
        ("1", "r1", "stance"): (1.0, "1"),
        ("1", "r10", "stance"): (2.0, "2"),
        ("2", "r2", "stance"): (3.0, "3"),
    }
    spec2 = spec.model_copy(update={"name": "w2", "annotator_columns": ["r2", "r1"]})
    assert import_dataset(engine, spec2).n_ratings == 2


def test_annotators_file_without_attribute_cols_takes_all_its_columns(engine: Engine, tmp_path: Path) -> None:
    ratings = write(tmp_path, "r.csv", "item_id,annotator_id,s,t\n1,a,1,x\n1,b,0,x\n")
    people = write(tmp_path, "people.csv", "annotator_id,gender,age_group\na,Woman,\nc,Man,18-24\n")
    report = import_dataset(
        engine,
        ImportSpec(name="x", ratings_file=ratings, annotators_file=people, rating_cols="s", text_col="t"),
    )
    assert attributes_of(engine, report.dataset_id) == {
        "a": {"gender": "Woman"},
        "c": {"gender": "Man", "age_group": "18-24"},
        "b": {},
    }
    assert "1 annotator(s) of the ratings file are not in" in report.warnings[0]
    assert "1 annotator(s) have no ratings" in report.warnings


# --- replace -------------------------------------------------------------------------------------------


def test_replace(engine: Engine, tmp_path: Path) -> None:
    first = write(tmp_path, "r1.csv", "item_id,annotator_id,s,t\n1,a,1,x\n2,a,0,y\n2,b,1,y\n")
    second = write(tmp_path, "r2.csv", "item_id,annotator_id,s,t\n9,z,5,q\n")
    spec = ImportSpec(name="d", ratings_file=first, rating_cols="s", text_col="t")
    original = import_dataset(engine, spec)
    other = import_dataset(engine, spec.model_copy(update={"name": "other"}))
    before = counts(engine)

    with pytest.raises(DatasetImportError, match=r"a dataset named 'd' already exists \(id 1\)"):
        import_dataset(engine, spec.model_copy(update={"ratings_file": second}))
    assert counts(engine) == before

    report = import_dataset(
        engine, spec.model_copy(update={"ratings_file": second, "replace": True, "description": "v2"})
    )
    assert report.replaced and report.dataset_id == original.dataset_id
    assert ratings_of(engine, report.dataset_id) == {("9", "z", "s"): (5.0, "5")}
    assert counts(engine) == {"dataset": 2, "item": 3, "annotator": 3, "human_rating": 4}
    assert len(ratings_of(engine, other.dataset_id)) == 3
    assert summarize_dataset(engine, report.dataset_id)["description"] == "v2"


def test_replace_refused_when_the_dataset_has_runs(engine: Engine, tmp_path: Path) -> None:
    ratings = write(tmp_path, "r.csv", "item_id,annotator_id,s,t\n1,a,1,x\n")
    spec = ImportSpec(name="d", ratings_file=ratings, rating_cols="s", text_col="t")
    dataset_id = import_dataset(engine, spec).dataset_id
    from sqlmodel import Session

    with Session(engine) as session:
        campaign = Campaign(name="c", spec={}, spec_hash="h", dataset_id=dataset_id)
        session.add(campaign)
        session.flush()
        session.add(Run(campaign_id=campaign.id))
        session.commit()
    before = counts(engine)
    with pytest.raises(
        DatasetImportError, match=r"dataset 'd' \(id 1\) has 1 run\(s\) and cannot be replaced"
    ):
        import_dataset(engine, spec.model_copy(update={"replace": True}))
    assert counts(engine) == before


# --- bad input: one line naming file/row/column, and nothing written ------------------------------------

GOOD_ROWS = "item_id,annotator_id,score,text\n1,a,Yes,hello\n1,b,No,hello\n2,a,No,bye\n"
MAP = "No=0, Yes=1"

# (file name, content, spec overrides, expected fragments of the message)
BAD_INPUTS: list[tuple[str, bytes, dict[str, Any], list[str]]] = [
    (
        "missing_column.csv",
        b"item_id,annotator_id,rating,text\n1,a,Yes,x\n",
        {},
        [
            "missing_column.csv: line 1 (header): no column 'score'",
            "the columns are: item_id, annotator_id, rating, text",
        ],
    ),
    (
        "unmapped.csv",
        (GOOD_ROWS + "2,b,Maybe,bye\n").encode(),
        {},
        ["unmapped.csv: line 5, column 'score': unmapped label 'Maybe'", "known labels: No, Yes"],
    ),
    (
        "duplicate.csv",
        (GOOD_ROWS + "1,b,Yes,hello\n").encode(),
        {},
        [
            "duplicate.csv: line 5, column 'score': duplicate rating of item '1' by annotator 'b'",
            "first on line 3",
        ],
    ),
    ("empty.csv", b"", {}, ["empty.csv: empty file"]),
    (
        "header_only.csv",
        b"item_id,annotator_id,score,text\n",
        {},
        ["header_only.csv: empty file (no data rows)"],
    ),
    (
        "latin1.csv",
        GOOD_ROWS.encode() + "2,b,No,caf\u00e9\n".encode("latin-1"),
        {},
        ["latin1.csv: line 5, byte offset 80: not valid UTF-8 (byte 0xe9)"],
    ),
    (
        "bad_number.csv",
        b"item_id,annotator_id,score,text\n1,a,1,x\n1,b,0.5,x\n2,a,2,y\n2,b,two,y\n",
        {"label_map": None},
        ["bad_number.csv: line 5, column 'score': unparseable number 'two'"],
    ),
    ("ratings.xlsx", b"PK", {}, ["ratings.xlsx: unsupported file extension '.xlsx'"]),
    (
        "empty_item.csv",
        (GOOD_ROWS + ",b,No,bye\n").encode(),
        {},
        ["empty_item.csv: line 5, column 'item_id': empty item id"],
    ),
    (
        "short_row.csv",
        (GOOD_ROWS + "2,b,No\n").encode(),
        {},
        ["short_row.csv: line 5: 3 fields but the header has 4"],
    ),
    (
        "multiline.csv",
        b'item_id,annotator_id,score,text\n1,a,Yes,"two\nlines"\n1,b,No,"two\nlines"\n2,a,Nope,bye\n',
        {},
        ["multiline.csv: line 6, column 'score': unmapped label 'Nope'"],
    ),
    (
        "conflict.csv",
        b"item_id,annotator_id,score,text,gender\n1,a,Yes,x,Woman\n1,b,No,x,\n2,a,No,y,Man\n",
        {"attribute_cols": ["gender"]},
        ["conflict.csv: line 4, column 'gender': annotator 'a' has 'Man' here but 'Woman' on line 2"],
    ),
    (
        "text_conflict.csv",
        b"item_id,annotator_id,score,text\n1,a,Yes,x\n1,b,No,other\n",
        {},
        ["text_conflict.csv: line 3, column 'text': item '1' has 'other' here but 'x' on line 2"],
    ),
    (
        "last.jsonl",
        (
            b'{"item_id": 1, "annotator_id": "a", "score": "Yes", "text": "x"}\n'
            b'{"item_id": 1, "annotator_id": "b", "score": "Nah", "text": "x"}\n'
        ),
        {},
        ["last.jsonl: line 2, column 'score': unmapped label 'Nah'"],
    ),
]


def assert_bad_import_changes_nothing(engine: Engine, tmp_path: Path, name: str, content: bytes,
                                      overrides: dict[str, Any], fragments: list[str]) -> None:
    """Import a good dataset, then a bad file: one-line error with every fragment, row counts unchanged.
    Shared by the SQLite tests here and the PostgreSQL ones in tests/integration/test_import_postgres.py."""
    existing = write(tmp_path, "existing.csv", GOOD_ROWS)
    import_dataset(
        engine,
        ImportSpec(
            name="existing", ratings_file=existing, rating_cols="score", text_col="text", label_map=MAP
        ),
    )
    before = counts(engine)
    assert before == {"dataset": 1, "item": 2, "annotator": 2, "human_rating": 3}

    path = tmp_path / name
    path.write_bytes(content)
    spec = ImportSpec(
        **{
            "name": "new",
            "ratings_file": path,
            "rating_cols": "score",
            "text_col": "text",
            "label_map": MAP,
            **overrides,
        }
    )
    with pytest.raises(DatasetImportError) as caught:
        import_dataset(engine, spec)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert counts(engine) == before


@pytest.mark.parametrize(
    ("name", "content", "overrides", "fragments"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_is_one_line_and_changes_nothing(
    engine: Engine, tmp_path: Path, name: str, content: bytes, overrides: dict[str, Any], fragments: list[str]
) -> None:
    assert_bad_import_changes_nothing(engine, tmp_path, name, content, overrides, fragments)


def test_item_missing_from_items_file(engine: Engine, tmp_path: Path) -> None:
    items = write(tmp_path, "items.csv", "item_id,text\n1,a\n2,b\n")
    ratings = write(tmp_path, "ratings.csv", "item_id,annotator_id,score\n1,a,1\n2,a,1\n7,a,0\n")
    spec = ImportSpec(name="x", items_file=items, ratings_file=ratings, rating_cols="score", text_col="text")
    with pytest.raises(DatasetImportError) as caught:
        import_dataset(engine, spec)
    assert str(caught.value) == (
        f"{ratings}: line 4, column 'item_id': item '7' is not in the items file {items}"
    )
    assert counts(engine) == {"dataset": 0, "item": 0, "annotator": 0, "human_rating": 0}


def test_duplicate_item_in_items_file_and_missing_content_column(engine: Engine, tmp_path: Path) -> None:
    items = write(tmp_path, "items.csv", "item_id,text\n1,a\n2,b\n1,c\n")
    with pytest.raises(
        DatasetImportError,
        match=r"items.csv: line 4, column 'item_id': item id '1' appears twice \(first on line 2\)",
    ):
        import_dataset(engine, ImportSpec(name="x", items_file=items, text_col="text"))
    items = write(tmp_path, "items2.csv", "item_id,body\n1,a\n")
    with pytest.raises(
        DatasetImportError,
        match=r"items2.csv: line 1 \(header\): no column 'text' \(item content\); the columns are: item_id, body",
    ):
        import_dataset(engine, ImportSpec(name="x", items_file=items, text_col="text"))
    items = write(tmp_path, "items3.csv", "item_id,text\n1,a\n2,  \n")
    with pytest.raises(
        DatasetImportError, match=r"items3.csv: line 3, column 'text': empty text for item '2'"
    ):
        import_dataset(engine, ImportSpec(name="x", items_file=items, text_col="text"))
    assert counts(engine)["item"] == 0


def test_parquet_errors_name_the_row(engine: Engine, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": [1, 2, 3],
                "annotator_id": ["a", "a", "a"],
                "s": ["1", "2", "x"],
                "t": ["p", "q", "r"],
            }
        ),
        path,
    )
    with pytest.raises(DatasetImportError) as caught:
        import_dataset(engine, ImportSpec(name="x", ratings_file=path, rating_cols="s", text_col="t"))
    assert (
        str(caught.value)
        == f"{path}: row 3, column 's': unparseable number 'x' (dimension 's' has no label_map, so its ratings must be numbers; with unmapped_label missing such cells count as missing)"
    )


def test_wide_layout_duplicate_item_rows_and_no_matching_columns(engine: Engine, tmp_path: Path) -> None:
    ratings = write(tmp_path, "w.csv", "item_id,text,r1,r2\n1,a,1,\n2,b,,1\n1,a,,0\n1,a,1,\n")
    spec = ImportSpec(name="w", ratings_file=ratings, layout="wide", text_col="text", annotator_columns="r*")
    with pytest.raises(
        DatasetImportError,
        match=r"w.csv: line 5, column 'r1': duplicate rating of item '1' by annotator 'r1' for dimension 'rating' \(first on line 2\)",
    ):
        import_dataset(engine, spec)
    with pytest.raises(
        DatasetImportError, match=r"w.csv: line 1 \(header\): no column matches annotator_columns 'rater_\*'"
    ):
        import_dataset(engine, spec.model_copy(update={"annotator_columns": "rater_*"}))
    assert counts(engine)["human_rating"] == 0


def test_summarize_unknown_dataset(engine: Engine) -> None:
    with pytest.raises(LookupError, match="no dataset with id 42"):
        summarize_dataset(engine, 42)
