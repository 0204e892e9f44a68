"""``accord plan CAMPAIGN``: the pre-flight table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from accord.cli.app import chosen_project_id, console, fail, open_engine
from accord.cli.project_context import project_option
from accord.scheduler.campaign_spec import CampaignSpecError, load_campaign
from accord.scheduler.expand import CampaignError
from accord.scheduler.plan import CampaignPlan, plan_campaign
from accord.worker.prompt_templates import TemplateSpecError


def plan_table(plan: CampaignPlan) -> Table:
    t = Table(title=f"plan for campaign {plan.name}: {plan.items} items"
                    + (f", {plan.personas} personas" if plan.personas else ""))
    for col in ("stage", "model", "provider", "requests", "cached", "to call", "input tok (est)", "output tok (max)",
                "cost $ (est)", "price", "min at limits"):
        t.add_column(col, justify="right" if col not in ("stage", "model", "provider", "price") else "left")
    for m in plan.models:
        minutes = m.minutes_at_limits
        t.add_row(m.stage, m.model, m.provider, str(m.requests), str(m.cached), str(m.to_call), f"{m.input_tokens:,}",
                  f"{m.output_tokens:,}", f"{m.cost_usd:.4f}", m.price_source,
                  "no limit set" if minutes is None else f"{minutes:.1f}")
    t.add_row("total", "", "", str(plan.requests), str(plan.cached), str(plan.requests - plan.cached), "", "",
              f"{plan.cost_usd:.4f}", "", "", style="bold")
    return t


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(campaign: Path = typer.Argument(..., help="Campaign YAML (or JSON)."),
                 budget: Optional[float] = typer.Option(None, help="Budget to check against (overrides the campaign's)."),
                 project: Optional[str] = project_option()) -> None:
        """Before anything is sent: requests, cache hits available, tokens, dollars and duration per model."""
        try:
            spec = load_campaign(campaign)
            engine = open_engine()
            plan = plan_campaign(engine, spec, chosen_project_id(engine, project), budget_override=budget)
        except (CampaignSpecError, CampaignError, TemplateSpecError) as e:
            fail(str(e))
            return
        console.print(plan_table(plan))
        if plan.budget_usd is not None:
            verdict = "[red]exceeds[/]" if plan.exceeds_budget else "is within"
            console.print(f"estimated ${plan.cost_usd:.4f} {verdict} the budget of ${plan.budget_usd:.4f}")
