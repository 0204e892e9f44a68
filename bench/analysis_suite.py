"""Benchmark: the full analysis suite on a synthetic DICES-sized study.

350 items x 123 annotators (gender x race attributes, every annotator rates every item),
5 models x 3 templates x 5 samples, categories and subject models, 1000 bootstrap resamples and
1000 permutations. Prints the wall time of compute_all and the number of records.

Run:  .venv/bin/python bench/analysis_suite.py [--resamples 1000] [--permutations 1000] [--profile]
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import time

from bench_cli import Opt, parse_args

from accord.analysis.suite import SuiteOptions, compute_all
from accord.analysis.synthetic import make_synthetic


def main() -> None:
    args = parse_args(__doc__, None, {"--resamples": 1000, "--permutations": 1000,
                                      "--two-way": Opt(False, "also run the two-way bootstrap"),
                                      "--profile": Opt(False, "print the 25 most expensive functions")}, whole_doc=True)

    t0 = time.perf_counter()
    human, annotators, llm, items = make_synthetic(
        n_items=350, n_annotators=123,
        attributes={"gender": ["Man", "Woman"], "race": ["Asian", "Black", "Latinx", "Multiracial", "White"]},
        models=[f"model_{k}" for k in range(5)], templates=["direct", "mc_ab", "mc_ba"], n_samples=5,
        group_effect=0.3, categories=["violence", "hate", "sexual", "misinformation", "other"],
        subject_models=["s1", "s2", "s3", "s4"], seed=0)
    t_data = time.perf_counter() - t0
    options = SuiteOptions(n_resamples=args.resamples, n_permutations=args.permutations,
                           two_way_bootstrap=args.two_way)
    print(f"data: {len(human)} human ratings, {len(llm)} LLM rows (generated in {t_data:.1f} s)")
    profiler = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    records = compute_all(human, annotators, llm, items, options)
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - t0
    counts = collections.Counter(r.name for r in records)
    print(f"compute_all: {wall:.2f} s wall, {len(records)} records "
          f"({args.resamples} resamples, {args.permutations} permutations)")
    print("records per metric:", dict(sorted(counts.items())))
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
