"""`accord describe` and the per-group analysis behind it: the DICES-350 baseline, per-group means and
item-matched differences recomputed with pandas on a sparse set with demographics, numeric ages binned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from accord.analysis.describe import DescribeOptions, describe_ratings
from accord.analysis.group_means import bin_names, bin_numeric_attributes
from accord.cli.main import app
from accord.cli.describe import parse_bins
from accord.models.settings import get_settings
from typer.testing import CliRunner

from tests.conftest import DICES


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("ACCORD_DATABASE_URL", f"sqlite:///{tmp_path}/d.db")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.skipif(not (DICES / "ratings.csv").exists(), reason="DICES-350 not available")
def test_describe_dices350_prints_the_reference_baseline(cli: CliRunner) -> None:
    code, out = invoke(cli, "import", str(DICES / "ratings.csv"), "--name", "dices350", "--items",
                       str(DICES / "items.csv"), "--annotator-col", "rater_id", "--rating-col", "Q_overall",
                       "--conversation-col", "context", "--response-col", "response",
                       "--label-map", "No=0, Unsure=0.5, Yes=1")
    assert code == 0, out
    code, out = invoke(cli, "describe", "dices350", "--permutations", "10", "--bootstrap", "10")
    assert code == 0, out
    text = " ".join(out.split())
    assert "350 items, 123 annotators, 43050 ratings" in text
    assert "median annotator r 0.513" in text
    assert "nominal 0.1609" in text
    assert "scale: 0..1 (from the label map)" in text
    assert all(len(line) <= 80 for line in out.splitlines())
    code, out = invoke(cli, "describe", "dices350", "--format", "json", "--permutations", "10", "--bootstrap", "10")
    data = json.loads(out)
    assert round(data["baseline"]["annotator_loo_r"]["median"], 3) == 0.513
    assert round(data["baseline"]["krippendorff_alpha"]["nominal"], 4) == 0.1609
    assert data["label_distribution"] == {"No": 26292, "Yes": 14064, "Unsure": 2694}


def sparse_offensiveness(folder: Path, seed: int = 3) -> tuple[Path, Path]:
    """A sparse 1-5 offensiveness set: 40 items, 16 annotators with race and a numeric age, 5 ratings per
    item; Black annotators rate about 0.3 higher on the same items."""
    rng = np.random.default_rng(seed)
    annotators = pd.DataFrame({"annotator_id": [f"w{j:02d}" for j in range(16)],
                               "race": ["Black"] * 6 + ["White"] * 7 + ["Asian"] * 2 + [None],
                               "age": rng.integers(19, 70, size=16)})
    rows = []
    for i in range(40):
        base = rng.uniform(1, 4)
        for j in rng.choice(16, size=5, replace=False):
            shift = 0.6 if annotators["race"][j] == "Black" else 0.0
            rows.append((f"c{i}", f"w{j:02d}", int(np.clip(np.rint(base + shift + rng.normal(0, 0.7)), 1, 5)),
                         f"comment {i}"))
    ratings = pd.DataFrame(rows, columns=["comment_id", "worker", "offensive", "text"])
    rp, ap = folder / "ratings.csv", folder / "workers.csv"
    ratings.to_csv(rp, index=False)
    annotators.rename(columns={"annotator_id": "worker"}).to_csv(ap, index=False)
    return rp, ap


def test_group_means_and_item_matched_differences_recomputed_with_pandas(cli: CliRunner, tmp_path: Path) -> None:
    rp, ap = sparse_offensiveness(tmp_path)
    code, out = invoke(cli, "import", str(rp), "--name", "off", "--annotators", str(ap), "--item-col", "comment_id",
                       "--annotator-col", "worker", "--rating-col", "offensive", "--text-col", "text")
    assert code == 0, out
    code, out = invoke(cli, "describe", "off", "--format", "json", "--permutations", "200", "--bootstrap", "200")
    assert code == 0, out
    data = json.loads(out)
    assert (data["scale"]["min"], data["scale"]["max"], data["scale"]["source"]) == (1.0, 5.0, "observed")
    assert data["dropped_at_import"] == {}
    ratings = pd.read_csv(rp, dtype={"comment_id": str})
    workers = pd.read_csv(ap)
    merged = ratings.merge(workers, on="worker")
    race = data["groups"]["race"]
    expected = merged.dropna(subset=["race"]).groupby("race")["offensive"].agg(["mean", "size"])
    got = {g["group"]: g for g in race["groups"]}
    assert set(got) == {"race=Asian", "race=Black", "race=White"}
    for name, row in expected.iterrows():
        assert got[f"race={name}"]["mean"] == pytest.approx(row["mean"], abs=1e-12)
        assert got[f"race={name}"]["n_ratings"] == row["size"]
        assert got[f"race={name}"]["ci_low"] < row["mean"] < got[f"race={name}"]["ci_high"]
    per_item = merged.groupby(["comment_id", "race"])["offensive"].mean().unstack()
    matched = (per_item["Black"] - per_item["White"]).dropna()
    diff = next(d for d in race["differences"] if (d["group_a"], d["group_b"]) == ("race=Black", "race=White"))
    assert diff["difference"] == pytest.approx(matched.mean(), abs=1e-12)
    assert diff["n_items"] == len(matched)
    assert diff["difference"] > 0.3 and diff["pvalue"] < 0.05
    assert diff["p_adjusted_bh"] >= diff["pvalue"]
    # numeric ages are binned into age bands by default, not one group per age
    age = data["groups"]["age"]
    assert age["binned"]["rule"] == "age bands (default)"
    assert {g["group"] for g in age["groups"]} <= {f"age={b}" for b in bin_names([18, 25, 35, 45, 55, 65])}


def test_describe_text_fits_80_columns_and_bad_options_are_one_line(cli: CliRunner, tmp_path: Path) -> None:
    rp, ap = sparse_offensiveness(tmp_path)
    invoke(cli, "import", str(rp), "--name", "off", "--annotators", str(ap), "--item-col", "comment_id",
           "--annotator-col", "worker", "--rating-col", "offensive", "--text-col", "text")
    code, out = invoke(cli, "describe", "off", "--permutations", "50", "--bootstrap", "50", "--bins", "age=30,50")
    assert code == 0, out
    assert "age (binned: edges)" in out and "30-49" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for args, message in [
        (["describe", "nope"], "error: no dataset 'nope'; imported: off"),
        (["describe", "off", "--dimension", "x"], "error: --dimension: 'x' is not a dimension of 'off' (it has: "
                                                  "offensive)"),
        (["describe", "off", "--attribute", "gender"], "error: --attribute 'gender' is not a column of the "
                                                       "annotators frame"),
        (["describe", "off", "--bins", "race=2"], "error: --bins: attribute 'race' is not numeric"),
        (["describe", "off", "--bins", "age=50,30"], "error: --bins: 'age=50,30': edges must increase"),
    ]:
        code, out = invoke(cli, *args)
        assert code == 2
        assert " ".join(out.split()).startswith(message), out


def test_bins_edges_quantiles_and_names() -> None:
    assert bin_names([18, 25, 35]) == ["<18", "18-24", "25-34", "35+"]
    assert bin_names([0.5, 1.5]) == ["<0.5", "[0.5, 1.5)", "1.5+"]
    assert parse_bins(["age=18,30", "income=4"]) == {"age": [18.0, 30.0], "income": 4}
    frame = pd.DataFrame({"annotator_id": list("abcdefgh"), "income": [10, 20, 30, 40, 50, 60, 70, 80],
                          "age": ["19", "24", "25", "40", None, "66", "70", "35"]})
    binned, info = bin_numeric_attributes(frame, {"income": 2, "age": [25, 65]})
    assert binned["income"].tolist() == ["<45"] * 4 + ["45+"] * 4
    assert binned["age"].tolist() == ["<25", "<25", "25-64", "25-64", None, "65+", "65+", "25-64"]
    assert [b.rule for b in info] == ["quantiles (2)", "edges"]


def test_describe_ratings_without_attributes() -> None:
    human = pd.DataFrame({"item_id": ["1", "1", "2", "2", "3", "3"], "annotator_id": list("ababab"),
                          "value": [0, 1, 1, 1, 0, 0.0]})
    data = describe_ratings(human, None, DescribeOptions(n_resamples=10, n_permutations=10))
    assert (data["n_items"], data["n_annotators"], data["n_ratings"]) == (3, 2, 6)
    assert data["groups"] == {}
    assert data["value_distribution"] == {"0": 3, "1": 3}
