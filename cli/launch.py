"""Starting a run from a campaign file (checked against its budget first) and judging its failures: shared by
``accord run`` and ``accord run --distributed``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import typer
from accord.cli.app import chosen_project_id, console, fail, open_engine
from accord.scheduler import run_service
from accord.scheduler.campaign_spec import CampaignSpec, CampaignSpecError, load_campaign
from accord.scheduler.expand import CampaignError, RunPlan, create_run
from accord.scheduler.plan import plan_campaign
from accord.scheduler.run_control import get_run
from accord.worker.prompt_templates import TemplateSpecError
from sqlalchemy.engine import Engine


def start_run(campaign: Path, budget: float | None, mode: str, force: bool = False,
              project: str | None = None) -> tuple[Engine, CampaignSpec, RunPlan]:
    """Create the run of ``campaign`` (``mode`` embedded or distributed) in the CLI's project (``project``: the
    ``--project`` given); refuses, naming the fix, a campaign whose estimated cost exceeds its budget unless
    ``force``."""
    try:
        spec = load_campaign(campaign)
        engine = open_engine()
        owner = chosen_project_id(engine, project)
        if (budget if budget is not None else spec.budget_usd) is not None and not force:
            estimate = plan_campaign(engine, spec, owner, budget_override=budget)
            if estimate.exceeds_budget:
                fail(f"{campaign}: estimated cost ${estimate.cost_usd:.4f} exceeds the budget of "
                     f"${estimate.budget_usd:.4f}; see `accord plan {campaign}`, raise budget_usd, "
                     "or pass --force")
        plan = create_run(engine, spec, project_id=owner, mode=mode, budget_override=budget)
    except (CampaignSpecError, CampaignError, TemplateSpecError) as e:
        fail(str(e))
        raise
    return engine, spec, plan


def check_failed_share(engine: Engine, run_id: int, threshold: float) -> None:
    """Exit non-zero, saying so, when more of the run's requests failed than the campaign allows."""
    run = get_run(engine, run_id)
    check_share(run_id, run.failed, run.total, threshold)


def check_share(run_id: int, failed: int, total: int, threshold: float, where: str = "") -> None:
    """Exit non-zero, saying so, when ``failed`` of ``total`` passes ``threshold`` (``where``: e.g. the
    ``--remote URL`` to repeat in the suggested status command)."""
    share = run_service.failed_share(SimpleNamespace(failed=failed, total=total))  # type: ignore[arg-type]  # failed_share reads only failed and total
    if share > threshold:
        console.print(f"[bold red]run {run_id}: {failed} of {total} requests failed ({share:.1%}), more than "
                      f"the campaign's max_failed_share of {threshold:.1%}[/]; "
                      f"see [bold]accord status {run_id}{where}[/]")
        raise typer.Exit(code=1)
