"""Following a run in the terminal: the progress bar, plain progress lines for logs and pipes, and the summary
printed when the run ends (shared by ``accord run``, ``accord run --distributed`` and ``accord demo``)."""

from __future__ import annotations

import time
from typing import Any

from accord.cli.app import console
from accord.scheduler.embedded import run_embedded
from accord.scheduler.run_control import Progress as RunProgress
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.engine import Engine


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]run {task.fields[run_id]}[/]"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("${task.fields[cost]:.4f}"), TextColumn("cached {task.fields[cached]}"),
        TextColumn("[red]failed {task.fields[failed]}[/]"), console=console, transient=False,
    )


class PlainProgress:
    """Progress as plain lines for logs and pipes (no terminal): one every ``every`` seconds, and the last."""

    def __init__(self, print_line: Any, every: float = 10.0, clock: Any = time.monotonic) -> None:
        self.print_line, self.every, self.clock = print_line, every, clock
        self.started = clock()
        self.last: float | None = None

    def __call__(self, p: Any, final: bool = False) -> None:  # a run_control.Progress
        now = self.clock()
        if not final and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        share = p.finished / p.total if p.total else 1.0
        self.print_line(f"run {p.run_id}: {p.finished}/{p.total} ({share:.0%}) after {elapsed:.0f} s, "
                        f"{(p.finished - p.cached) / elapsed:.1f}/s, ${p.cost_usd:.4f}, cached {p.cached}, "
                        f"failed {p.failed}")


def follow_embedded(engine: Engine, run_id: int, total: int) -> RunProgress:
    """Run the run here (embedded mode), showing its progress; returns its last progress."""
    started = time.monotonic()
    if not console.is_terminal:  # a log file or a pipe: plain lines now and then, not one final bar
        plain = PlainProgress(lambda line: console.print(line, highlight=False, soft_wrap=True))
        progress = run_embedded(engine, run_id, on_progress=plain)
        plain(progress, final=True)
        return progress
    with progress_bar() as bar:
        task = bar.add_task("rating", total=total, run_id=run_id, rate="0.0", cost=0.0, cached=0, failed=0)

        def on_progress(p: RunProgress) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=p.finished, total=p.total,
                       rate=f"{(p.finished - p.cached) / elapsed:.1f}", cost=p.cost_usd, cached=p.cached,
                       failed=p.failed)

        return run_embedded(engine, run_id, on_progress=on_progress)


def print_run_summary(p: RunProgress) -> None:
    console.print(f"run {p.run_id}: [bold]{p.status}[/] — {p.done} rated ({p.cached} from cache), "
                  f"{p.failed} failed, {p.cancelled} cancelled of {p.total}; {p.input_tokens} input / "
                  f"{p.output_tokens} output tokens; cost ${p.cost_usd:.4f}")
