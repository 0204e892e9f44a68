"""Benchmark: rating short items with the default local model (SmolLM2-135M-Instruct, llama.cpp), through
accord's embedded path, beside llama.cpp's raw prompt speed measured in the same run.

    .venv/bin/python bench/local_model.py [--items 1500] [--template likert_unsafe]

Prints:
- raw: llama.cpp evaluating a fresh prompt of the template's length (whole prompt, one batch, empty cache),
  in prompt tokens per second;
- accord: ratings per second of one embedded run over ``--items`` distinct short items (one sample each),
  prompt and label tokens evaluated per rating (the template's shared instructions are evaluated once and
  reused; only each item's own tokens are computed), and the target
  ``ratings/s >= 0.8 x raw tokens/s / tokens evaluated per rating``;
- the process's peak resident memory.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from bench_cli import parse_args   # also puts the checkout on sys.path


def raw_tokens_per_second(n_tokens: int, repeats: int = 5) -> float:
    """llama.cpp's own prompt evaluation: ``n_tokens`` from an empty cache, best of ``repeats``."""
    from accord.worker.providers.local_llama import default_model_path, load_model

    loaded = load_model(default_model_path())
    llama = loaded.llama
    tokens = llama.tokenize(("The quick brown fox jumps over the lazy dog. " * 200).encode(), add_bos=False)[:n_tokens]
    best = float("inf")
    with loaded.lock:
        for _ in range(repeats):
            llama.n_tokens = 0
            loaded.prefix = ()
            started = time.perf_counter()
            llama.eval(tokens)
            best = min(best, time.perf_counter() - started)
        llama.n_tokens = 0
        loaded.prefix = ()
    return len(tokens) / best


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__, argv, {"--items": 1500, "--template": "likert_unsafe"})

    from accord.models.migrate import init_db
    from accord.scheduler.campaign_spec import parse_campaign
    from accord.scheduler.embedded import run_embedded
    from accord.scheduler.expand import create_run
    from accord.worker.providers.local_llama import default_model_path, load_model

    from tests.integration.distributed_stack import import_distinct_dataset

    home = Path(tempfile.mkdtemp(prefix="accord-bench-local-"))
    engine = init_db(f"sqlite:///{home / 'bench.db'}")
    import_distinct_dataset(engine, home / "dataset", args.items)
    spec = parse_campaign({"name": "local-bench", "dataset": "bench", "dimension": "Q_overall", "samples": 1,
                           "decoding": {"temperature": 0.0, "seed": 1}, "cache": False,
                           "models": [{"name": "smollm2", "provider": "local"}], "templates": [args.template]})
    plan = create_run(engine, spec)
    loaded = load_model(default_model_path())
    evaluated0 = loaded.evaluated
    started = time.perf_counter()
    progress = run_embedded(engine, plan.run_id)
    elapsed = time.perf_counter() - started
    evaluated = loaded.evaluated - evaluated0

    from accord.models.run_frames import load_llm_frame

    frame = load_llm_frame(engine, plan.run_id)
    prompt_len = int(frame["input_tokens"].median())
    raw = raw_tokens_per_second(prompt_len)
    per_rating = evaluated / max(progress.done, 1)
    rate = progress.done / elapsed
    target = 0.8 * raw / per_rating
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"run {plan.run_id}: {progress.status}, {progress.done} rated, {progress.failed} failed in {elapsed:.1f} s")
    print(f"raw llama.cpp prompt evaluation ({prompt_len} tokens, fresh): {raw:,.0f} tokens/s")
    print(f"accord: {rate:.2f} ratings/s; {per_rating:.1f} tokens evaluated per rating of {prompt_len} prompt tokens")
    print(f"target: ratings/s >= 0.8 x {raw:,.0f} / {per_rating:.1f} = {target:.2f}  ->  "
          f"{'met' if rate >= target else 'missed'} ({rate / target:.2f}x the target)")
    print(f"peak memory: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
