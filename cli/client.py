"""A small Python client of accord's HTTP API (used by the CLI's ``--remote`` and ``remote`` commands,
usable from pipelines).

    client = AccordClient("http://127.0.0.1:8000", api_key)
    ds = client.upload_dataset({"name": "dices", ...}, ratings_file="ratings.csv", items_file="items.csv")
    campaign = client.create_campaign(safe_load(open("campaign.yaml").read()))   # accord.models.yaml_loader
    run = client.start_run(campaign["id"])
    for status in client.follow(run["id"]):
        print(status["done"], "/", status["total"])
    client.export_ratings(run["id"], "ratings.parquet", format="parquet")

Errors are ``ApiError`` carrying the problem document (status, detail, the fields at fault)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx


class ApiError(Exception):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors") or [])
        super().__init__(f"HTTP {status}: {detail}" + (f" [{fields}]" if fields and fields not in detail else ""))


class AccordClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Bearer {api_key}"})

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AccordClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------------
    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500]}
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else {"detail": str(problem)})
        return response

    def _get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._check(self.http.get(path, params=clean)).json()

    def _post(self, path: str, body: Any = None) -> Any:
        return self._check(self.http.post(path, json=body)).json()

    def _pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            page = self._get(path, after=after, **params)
            yield from page["items"]
            after = page.get("next_cursor")
            if after is None:
                return

    # -- health ---------------------------------------------------------------------------------------
    def ready(self) -> bool:
        return self.http.get("/readyz").status_code == 200

    # -- datasets -------------------------------------------------------------------------------------
    def upload_dataset(self, mapping: dict[str, Any], *, ratings_file: str | Path | None = None,
                       items_file: str | Path | None = None, annotators_file: str | Path | None = None) -> Any:
        """Upload files with their column mapping (``ImportSpec`` fields without file paths)."""
        handles = {}
        try:
            for field, path in (("ratings_file", ratings_file), ("items_file", items_file),
                                ("annotators_file", annotators_file)):
                if path is not None:
                    p = Path(path)
                    handles[field] = (p.name, open(p, "rb"))  # noqa: SIM115 - closed below
            files = {k: (name, fh, "application/octet-stream") for k, (name, fh) in handles.items()}
            response = self.http.post("/api/v1/datasets", data={"mapping": json.dumps(mapping)}, files=files)
        finally:
            for _name, fh in handles.values():
                fh.close()
        return self._check(response).json()

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._pages("/api/v1/datasets"))

    def dataset(self, dataset_id: int) -> Any:
        return self._get(f"/api/v1/datasets/{dataset_id}")

    def delete_dataset(self, dataset_id: int) -> None:
        self._check(self.http.delete(f"/api/v1/datasets/{dataset_id}"))

    # -- templates and model specs --------------------------------------------------------------------
    def templates(self) -> Any:
        return self._get("/api/v1/templates")

    def create_template(self, document: dict[str, Any]) -> Any:
        return self._post("/api/v1/templates", document)

    def model_specs(self) -> list[dict[str, Any]]:
        return list(self._pages("/api/v1/model-specs"))

    # -- campaigns ------------------------------------------------------------------------------------
    def validate_campaign(self, document: dict[str, Any]) -> Any:
        return self._post("/api/v1/campaigns/validate", document)

    def plan(self, document: dict[str, Any]) -> Any:
        return self._post("/api/v1/campaigns/plan", document)

    def create_campaign(self, document: dict[str, Any]) -> Any:
        return self._post("/api/v1/campaigns", document)

    def campaigns(self) -> list[dict[str, Any]]:
        return list(self._pages("/api/v1/campaigns"))

    # -- runs -----------------------------------------------------------------------------------------
    def start_run(self, campaign_id: int, *, budget_usd: float | None = None, start: bool = True) -> Any:
        body: dict[str, Any] = {"start": start}
        if budget_usd is not None:
            body["budget_usd"] = budget_usd
        return self._post(f"/api/v1/campaigns/{campaign_id}/runs", body)

    def run(self, run_id: int) -> Any:
        return self._get(f"/api/v1/runs/{run_id}")

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages("/api/v1/runs", status=status))

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The project's newest runs (one page)."""
        return list(self._get("/api/v1/runs", limit=limit)["items"])

    def pause(self, run_id: int) -> Any:
        return self._post(f"/api/v1/runs/{run_id}/pause")

    def resume(self, run_id: int) -> Any:
        return self._post(f"/api/v1/runs/{run_id}/resume")

    def cancel(self, run_id: int) -> Any:
        return self._post(f"/api/v1/runs/{run_id}/cancel")

    def follow(self, run_id: int, *, until_report: bool = False) -> Iterator[dict[str, Any]]:
        """The run's status documents as the server streams them (SSE), until it finishes (or, with
        ``until_report``, until its report is ready)."""
        with self.http.stream("GET", f"/api/v1/runs/{run_id}/events", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            event, data = "", []
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and event:
                    payload = json.loads("\n".join(data)) if data else {}
                    if event == "progress":
                        yield payload
                    elif event == "end" and not until_report or event == "report":
                        return
                    event, data = "", []

    def ratings(self, run_id: int, *, model: str | None = None, template: str | None = None,
                status: str | None = None) -> Iterator[dict[str, Any]]:
        return self._pages(f"/api/v1/runs/{run_id}/ratings", model=model, template=template, status=status,
                           limit=1000)

    def export_ratings(self, run_id: int, output: str | Path | BinaryIO, *, format: str = "csv",
                       **filters: Any) -> str | Path | BinaryIO:
        """Stream the run's ratings (CSV or Parquet) into a file path or an open binary file."""
        params = {"format": format, **{k: v for k, v in filters.items() if v is not None}}
        with self.http.stream("GET", f"/api/v1/runs/{run_id}/ratings/export", params=params, timeout=None) as r:
            if r.status_code >= 400:
                r.read()
                self._check(r)
            if isinstance(output, (str, Path)):
                with open(output, "wb") as fh:
                    fh.writelines(r.iter_bytes())
            else:
                output.writelines(r.iter_bytes())
        return output

    def metrics(self, run_id: int, **filters: Any) -> Any:
        return self._get(f"/api/v1/runs/{run_id}/metrics", **filters)

    def report_html(self, run_id: int) -> str:
        return self._check(self.http.get(f"/api/v1/runs/{run_id}/report", timeout=600)).text

    def report_json(self, run_id: int) -> str:
        """The report's data as the server wrote it (JSON text: what ``accord report --format json`` writes)."""
        return self._check(self.http.get(f"/api/v1/runs/{run_id}/report.json", timeout=600)).text
