"""Benchmark: building and rendering the run report for a synthetic study.

By default 1,500 items x 262 annotators (gender x race), 5 models x 3 templates x 5 samples, categories and
subject models (``--items 350 --annotators 123`` gives the DICES-sized study); the metrics come from
compute_all (with few resamples: the report's cost does not depend on them). Prints the wall time of
assemble_report (every section, table, reading and plot) and render_html, and the size of the HTML file
(the issue-14 target: under 1 MB for 1,500 items).

Run:  .venv/bin/python bench/report.py [--items 1500] [--resamples 50] [--out /tmp/report.html]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench_cli import Opt, parse_args
from accord.analysis.suite import SuiteOptions, compute_all
from accord.analysis.synthetic import make_synthetic
from accord.report.build import assemble_report, render_html, summarize_run
from accord.report.metrics import metrics_frame
from accord.models.run_frames import LLM_COLUMNS, RunFrames


def dices_sized_frames(seed: int = 0, n_items: int = 350, n_annotators: int = 123) -> RunFrames:
    human, annotators, llm, items = make_synthetic(
        n_items=n_items, n_annotators=n_annotators,
        attributes={"gender": ["Man", "Woman"], "race": ["Asian", "Black", "Latinx", "Multiracial", "White"]},
        models=[f"model_{k}" for k in range(5)], templates=["direct", "mc_ab", "mc_ba"], n_samples=5,
        group_effect=0.3, categories=["violence", "hate", "sexual", "misinformation", "other"],
        subject_models=["s1", "s2", "s3", "s4"], seed=seed)
    return run_frames_from(human, annotators, llm, items)


def run_frames_from(human: pd.DataFrame, annotators: pd.DataFrame, llm: pd.DataFrame,
                    items: pd.DataFrame) -> RunFrames:
    """Analysis-contract frames as the run's frames (every request answered, none from the cache)."""
    llm = llm.copy()
    defaults = {"request_id": np.arange(len(llm)), "status": "done", "raw_text": "", "cache_hit": False,
                "input_tokens": 100, "output_tokens": 2, "latency_ms": 50.0, "cost_usd": 0.0, "model_snapshot": "",
                "attempts": 1, "last_error": None, "response_format": "text"}
    for column in LLM_COLUMNS:
        if column not in llm.columns:
            llm[column] = defaults.get(column)
    return RunFrames(run_id=1, dimension=None, human=human, annotators=annotators, llm=llm[LLM_COLUMNS], items=items)


def run_fields(frames: RunFrames) -> dict:
    n = len(frames.llm)
    return {"id": 1, "campaign": "bench", "dataset": "synthetic", "status": "completed", "total": n, "done": n,
            "cached": 0, "failed": 0, "cancelled": 0, "cost_usd": 0.0, "input_tokens": 100 * n, "output_tokens": 2 * n,
            "cached_input_tokens": 0, "cache_write_tokens": 0, "repaired": 0, "started_at": None,
            "finished_at": None, "duration_s": None}


def main() -> None:
    args = parse_args(__doc__, None, {"--resamples": 50, "--items": 1500, "--annotators": 262,
                                      "--out": Opt(None, "write the HTML here", Path)}, whole_doc=True)
    frames = dices_sized_frames(n_items=args.items, n_annotators=args.annotators)
    t0 = time.perf_counter()
    records = compute_all(frames.human, frames.annotators, frames.llm, frames.items,
                          SuiteOptions(n_resamples=args.resamples, n_permutations=args.resamples))
    print(f"compute_all: {time.perf_counter() - t0:.1f} s, {len(records)} records")
    metrics = metrics_frame(r.__dict__ for r in records)
    t0, c0 = time.perf_counter(), time.process_time()
    data = assemble_report(summarize_run(run_fields(frames), frames), metrics, frames)
    t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    html = render_html(data)
    t_render = time.perf_counter() - t0
    size = len(html.encode("utf-8"))
    plots = sum(len(p) for p in data.plots.values())
    print(f"report for {args.items} items: assemble {t_build:.2f} s wall ({c_build:.2f} s CPU), render {t_render:.2f} s, "
          f"HTML {size / 1e6:.2f} MB ({size:,} bytes; plots {plots / 1e6:.2f} MB), {len(data.plots)} plots, "
          f"{len(data.sections)} sections")
    if args.out:
        args.out.write_text(html, encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
