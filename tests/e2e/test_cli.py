"""The `accord` command as a user runs it (a subprocess): import, bad input, run, status, results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import DICES
from tests.fakes.openai_server import OpenAIFakeServer

ACCORD = [sys.executable, "-m", "accord"]


def accord(db: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACCORD_DATABASE_URL": db, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([*ACCORD, *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"accord {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def counts(db: str) -> dict[str, int]:
    engine = create_engine(db)
    with engine.connect() as c:
        out = {t: c.execute(text(f"select count(*) from {t}")).scalar_one()
               for t in ("dataset", "item", "annotator", "human_rating")}
    engine.dispose()
    return out


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.mark.skipif(not DICES.exists(), reason="shared/datasets/dices350 is not beside the repository")
def test_import_dices_from_the_command_line(db: str) -> None:
    out = accord(db, "import", str(DICES / "ratings.csv"), "--name", "dices350", "--items", str(DICES / "items.csv"),
                 "--annotator-col", "rater_id", "--rating-col", "Q_overall", "--conversation-col", "context",
                 "--response-col", "response", "--meta-col", "expert_label", "--label-map", "No=0, Unsure=0.5, Yes=1")
    assert "350 items, 123 annotators, 43050 ratings" in out.stdout
    assert counts(db) == {"dataset": 1, "item": 350, "annotator": 123, "human_rating": 43050}


def write(path: Path, text_: str | bytes) -> Path:
    if isinstance(text_, bytes):
        path.write_bytes(text_)
    else:
        path.write_text(text_)
    return path


@pytest.mark.parametrize("name, content, args, expected", [
    ("missing_column.csv", "item,annotator_id,q,text\n1,a,Yes,hi\n", [],
     "missing_column.csv: line 1 (header): no column 'item_id' (item id); the columns are: item, annotator_id, q, text"),
    ("unmapped.csv", "item_id,annotator_id,q,text\n1,a,Yes,hi\n2,a,Maybe,ho\n", [],
     "unmapped.csv: line 3, column 'q': unmapped label 'Maybe' for dimension 'q'; known labels: No, Yes"),
    ("dupe.csv", "item_id,annotator_id,q,text\n1,a,Yes,hi\n1,a,No,hi\n", [],
     "dupe.csv: line 3, column 'q': duplicate rating of item '1' by annotator 'a' for dimension 'q' (first on line 2)"),
    ("empty.csv", "", [], "empty.csv: empty file"),
    ("latin1.csv", "item_id,annotator_id,q,text\n1,a,Yes,caf\xe9\n".encode("latin-1"), [], "latin1.csv: line 2, byte offset 39: not valid UTF-8 (byte 0xe9)"),
])
def test_bad_input_exits_nonzero_with_one_line_and_changes_nothing(db: str, tmp_path: Path, name: str, content,
                                                                  args: list[str], expected: str) -> None:
    good = write(tmp_path / "good.csv", "item_id,annotator_id,q,text\n1,a,Yes,hi\n2,b,No,ho\n")
    accord(db, "import", str(good), "--name", "good", "--rating-col", "q", "--text-col", "text", "--label-map", "No=0, Yes=1")
    before = counts(db)
    bad = write(tmp_path / name, content)
    proc = accord(db, "import", str(bad), "--name", "bad", "--rating-col", "q", "--text-col", "text",
                  "--label-map", "No=0, Yes=1", *args, check=False)
    assert proc.returncode != 0
    message = proc.stderr.strip()
    assert message.count("\n") == 0, message            # one line
    assert message.startswith("error: ") and expected in message, message
    assert counts(db) == before


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    srv = OpenAIFakeServer().start()
    yield srv
    srv.stop()


def test_run_status_results_from_the_command_line(db: str, tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    ratings = write(tmp_path / "r.csv", "item_id,annotator_id,q,text\n" + "".join(
        f"{i},{a},{'Yes' if (i + a) % 3 == 0 else 'No'},item number {i}\n" for i in range(8) for a in range(5)))
    accord(db, "import", str(ratings), "--name", "tiny", "--rating-col", "q", "--text-col", "text", "--label-map", "No=0, Yes=1")
    camp = write(tmp_path / "camp.yaml", f"""
name: tiny-run
dataset: tiny
models:
  - {{name: fake-gpt, provider: openai, model: gpt-4o-mini, base_url: "{server.base_url}"}}
templates: [binary_unsafe]
samples: 2

""")
    out = accord(db, "run", str(camp), "--no-report")
    assert "16 rating requests" in out.stdout and "completed" in out.stdout
    status = accord(db, "status", "1")
    assert "completed" in status.stdout and "16 rated" in status.stdout
    accord(db, "results", "1", "--format", "csv", "-o", str(tmp_path / "out.csv"))
    df = pd.read_csv(tmp_path / "out.csv")
    assert len(df) == 16 and set(df["label"]) <= {"safe", "unsafe"} and (df["status"] == "done").all()
    accord(db, "results", "1", "--format", "parquet", "-o", str(tmp_path / "out.parquet"))
    assert pd.read_parquet(tmp_path / "out.parquet")["request_id"].tolist() == df["request_id"].tolist()
    bad = accord(db, "status", "99", check=False)
    assert bad.returncode != 0 and "run 99: no such run" in bad.stderr
    camp_bad = write(tmp_path / "bad.yaml", "name: x\ndataset: tiny\nmodels: []\ntemplates: [binary_unsafe]\n")
    proc = accord(db, "run", str(camp_bad), check=False)
    assert proc.returncode != 0 and "models: List should have at least 1 item" in proc.stderr
