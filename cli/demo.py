"""``accord demo``: the bundled DICES subset rated by the local SmolLM2 model, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from sqlalchemy import select
from sqlmodel import Session, col

from accord.cli.progress import follow_embedded, print_run_summary
from accord.extras import needs_extra
from accord.models.dataset_import import import_dataset
from accord.models.import_spec import load_import_spec
from accord.models.migrate import init_db
from accord.models.projects import owner_id
from accord.models.schema import Dataset
from accord.models.settings import get_settings
from accord.scheduler import run_service
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import create_run

DEMO_DIR = Path(__file__).parent / "datasets" / "dices_demo"
DEMO_DATASET = "dices-demo"


def demo_campaign(items: int, samples: int) -> dict[str, Any]:
    return {
        "name": "demo-dices-smollm2",
        "dataset": DEMO_DATASET,
        "dimension": "Q_overall",
        "samples": samples,
        "decoding": {"temperature": 0.0 if samples == 1 else 0.8, "seed": 1234},
        "items": {"limit": items, "seed": 7},
        "models": [{"name": "smollm2-135m", "provider": "local", "max_concurrency": 1}],
        "templates": ["likert_unsafe", "binary_unsafe", "multiple_choice_unsafe",
                      {"name": "multiple_choice_unsafe", "params": {"option_order": "BA"}}],
    }


def run_demo(console: Console, items: int = 12, samples: int = 1, project_id: int | None = None) -> Path:
    settings = get_settings()
    engine = init_db(settings.resolved_database_url())
    project_id = owner_id(engine, project_id)
    with Session(engine) as session:
        exists = session.execute(select(col(Dataset.id)).where(col(Dataset.name) == DEMO_DATASET,
                                                               col(Dataset.project_id) == project_id)).first()
    if not exists:
        spec = load_import_spec(DEMO_DIR / "import.yaml", name=DEMO_DATASET, project_id=project_id)
        report = import_dataset(engine, spec)
        console.print(f"imported the bundled DICES subset as [bold]{DEMO_DATASET}[/]: {report.n_items} items, "
                      f"{report.n_annotators} annotators, {report.n_ratings} ratings (CC BY 4.0, see "
                      f"{DEMO_DIR / 'README.md'})")
    doc = demo_campaign(items, samples)
    campaign_file = settings.home / "demo" / "campaign.yaml"
    campaign_file.parent.mkdir(parents=True, exist_ok=True)
    campaign_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    console.print(f"campaign: {campaign_file}")
    plan = create_run(engine, parse_campaign(doc, str(campaign_file)), project_id=project_id)
    console.print(f"run [bold]{plan.run_id}[/]: {plan.total} rating requests by the local SmolLM2-135M-Instruct model "
                  f"({plan.cached} answered from cache)")
    progress = follow_embedded(engine, plan.run_id, plan.total)
    print_run_summary(progress)
    run_service.finish(engine, plan.run_id)
    with needs_extra("report"):                 # optional: matplotlib, behind the report's figures
        from accord.report.build import build_report_data, metrics_table, render_html
    data = build_report_data(engine, plan.run_id)
    console.print(metrics_table(data))
    out = settings.home / "reports" / f"run-{plan.run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    console.print(f"report: [bold]{out.resolve()}[/]")
    return out
