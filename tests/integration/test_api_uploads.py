"""Dataset uploads: formats, size limits (while streaming, and after gzip), validation before anything is
written, and problems naming the file, row and column."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pandas as pd
import pytest

from tests.integration.api_helpers import ITEMS_CSV, MAPPING, RATINGS_CSV, ApiEnv, api, make_env  # noqa: F401


def post(api: ApiEnv, files: dict[str, tuple[str, bytes]], mapping: Any = None, extra: dict[str, str] | None = None,
         headers: dict[str, str] | None = None) -> Any:
    data = {} if mapping is False else {"mapping": mapping if isinstance(mapping, str)
                                        else json.dumps(mapping or {"name": "up", **MAPPING})}
    data.update(extra or {})
    return api.client.post("/api/v1/datasets", headers=headers or api.a.headers, data=data,
                           files={k: (name, io.BytesIO(content), "application/octet-stream")
                                  for k, (name, content) in files.items()})


def count_datasets(api: ApiEnv) -> int:
    from sqlalchemy import text

    with api.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM dataset")).scalar_one())


FILES = {"items_file": ("items.csv", ITEMS_CSV.encode()), "ratings_file": ("ratings.csv", RATINGS_CSV.encode())}


def test_parquet_jsonl_and_gzip_uploads(api: ApiEnv) -> None:
    ratings = pd.read_csv(io.StringIO(RATINGS_CSV))
    buf = io.BytesIO()
    ratings.to_parquet(buf, index=False)
    items_jsonl = "\n".join(json.dumps(r) for r in pd.read_csv(io.StringIO(ITEMS_CSV)).to_dict("records"))
    r = post(api, {"ratings_file": ("r.parquet", buf.getvalue()),
                   "items_file": ("items.jsonl.gz", gzip.compress(items_jsonl.encode()))},
             {"name": "mixed", **MAPPING})
    assert r.status_code == 201, r.text
    assert (r.json()["n_items"], r.json()["n_ratings"]) == (6, 15)
    assert r.json()["source"] == "upload: ratings=r.parquet; items=items.jsonl.gz"


def test_bad_cell_names_file_row_and_column_and_writes_nothing(api: ApiEnv) -> None:
    bad = RATINGS_CSV.replace("i2,a2,Man,1", "i2,a2,Man,maybe")
    r = post(api, {**FILES, "ratings_file": ("ratings.csv", bad.encode())})
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["file"], body["row"], body["column"]) == ("ratings_file", 6, "unsafe")
    assert body["errors"][0]["field"] == "ratings_file"
    assert "unparseable number 'maybe'" in body["detail"] and "ratings_file.csv: line 6" in body["detail"]
    assert "/tmp" not in r.text and "accord-upload" not in r.text
    assert count_datasets(api) == 0


def test_unknown_item_and_missing_column(api: ApiEnv) -> None:
    r = post(api, {**FILES, "ratings_file": ("ratings.csv", (RATINGS_CSV + "i9,a1,Woman,1\n").encode())})
    assert r.status_code == 422 and r.json()["row"] == 17 and "item 'i9' is not in the items file" in r.json()["detail"]
    r = post(api, FILES, {"name": "x", **MAPPING, "text_col": "body"})
    assert r.status_code == 422 and "'body'" in r.json()["detail"]
    assert count_datasets(api) == 0


@pytest.mark.parametrize("mapping, field", [
    ({"name": "x", **MAPPING, "layout": "diagonal"}, "mapping.layout"),
    ({"name": "x", **{k: v for k, v in MAPPING.items() if k != "text_col"}}, "mapping"),
    ({"name": "x", **MAPPING, "ratings_file": "/etc/passwd"}, "mapping.ratings_file"),
    ({"name": "x", **MAPPING, "project_id": 2}, "mapping.project_id"),
    ({"name": "", **MAPPING}, "mapping.name"),
    ("{broken", "mapping"),
    ("[1, 2]", "mapping"),
    (False, "mapping"),
])
def test_mapping_problems(api: ApiEnv, mapping: Any, field: str) -> None:
    r = post(api, FILES, mapping)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field, r.json()
    assert count_datasets(api) == 0


def test_form_problems(api: ApiEnv) -> None:
    r = post(api, {"ratings_file": ("ratings.xlsx", b"PK..")})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "ratings_file"
    assert "supported extension" in r.json()["detail"]
    r = post(api, {"other_file": ("x.csv", b"a,b\n")})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "other_file"
    r = api.client.post("/api/v1/datasets", headers=api.a.headers,
                        files={"mapping": (None, json.dumps({"name": "x", **MAPPING}))})   # multipart, no file
    assert r.status_code == 422 and "at least one file" in r.json()["detail"]
    assert post(api, {}).status_code == 415            # a urlencoded form is not an upload
    r = api.client.post("/api/v1/datasets", headers={**api.a.headers, "Content-Type": "application/json"},
                        content=b"{}")
    assert r.status_code == 415
    r = api.client.post("/api/v1/datasets", headers={**api.a.headers,
                                                     "Content-Type": "multipart/form-data; boundary=xyz"},
                        content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--\r\n")
    assert r.status_code == 422
    r = post(api, {"items_file": ("items.csv.gz", b"not gzip at all")}, {"name": "x", "text_col": "text"})
    assert r.status_code == 422 and "gzip" in r.json()["detail"]
    assert count_datasets(api) == 0


def test_size_limits(sqlite_engine: Any) -> None:
    env_iter = make_env(sqlite_engine, max_upload_bytes=4096, max_document_bytes=2048)
    env = next(env_iter)
    big = ("item_id,text\n" + "".join(f"i{i},{'x' * 50}\n" for i in range(200))).encode()
    assert len(big) > 4096
    r = post(env, {"items_file": ("items.csv", big)}, {"name": "big", "text_col": "text"})
    assert r.status_code == 413, r.text
    assert r.json()["errors"][0]["field"] in ("items_file", "body")
    # Declared too large: refused before the body is read.
    r = env.client.post("/api/v1/datasets", headers={**env.a.headers, "Content-Length": "99999999",
                                                     "Content-Type": "multipart/form-data; boundary=b"},
                        content=b"--b--\r\n")
    assert r.status_code in (413, 422)
    # Small enough compressed, too large once decompressed.
    bomb = gzip.compress(b"item_id,text\n" + b"i1," + b"y" * 200_000 + b"\n")
    assert len(bomb) < 4096
    r = post(env, {"items_file": ("items.csv.gz", bomb)}, {"name": "bomb", "text_col": "text"})
    assert r.status_code == 413 and "decompressed" in r.json()["detail"]
    r = post(env, {"items_file": ("items.csv", b"item_id,text\ni1,ok\n")},
             {"name": "n" * 100, "text_col": "text", "description": "d" * 3000})
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "mapping"
    ok = post(env, {"items_file": ("items.csv", b"item_id,text\ni1,ok\n")}, {"name": "small", "text_col": "text"})
    assert ok.status_code == 201, ok.text
    assert count_datasets(env) == 1
    for _ in env_iter:
        pass


def test_uploaded_files_are_removed(api: ApiEnv) -> None:
    import glob
    import tempfile

    before = set(glob.glob(f"{tempfile.gettempdir()}/accord-upload-*"))
    assert post(api, FILES).status_code == 201
    bad = post(api, {**FILES, "ratings_file": ("ratings.csv", b"garbage\n")}, {"name": "bad", **MAPPING})
    assert bad.status_code == 422, bad.text
    assert set(glob.glob(f"{tempfile.gettempdir()}/accord-upload-*")) - before == set()
