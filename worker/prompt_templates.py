"""Prompt templates: loading (bundled or user files), resolution of parameters, rendering to chat messages.

A template file is YAML with ``name``, ``version``, ``response_format`` (likert | binary | multiple_choice |
open_ended | pairwise | listwise), Jinja2 ``system`` and ``user`` text, and ``output`` (``labels``: label -> numeric value,
``logprobs``, ``max_tokens``, ``pattern``). Multiple-choice templates list ``options`` (text and value) and
take the parameter ``option_order`` (e.g. "BA"), which decides which letter stands for which option;
the resolved label -> value map is stored with the template, so every rating can be scored.

Judges' comparison formats see ``answers``, the answers of one item in the order shown, each with its
``label`` (A, B, ...), the delimited ``answer`` and its raw ``text``: ``pairwise`` templates have exactly the
labels A and B (which of the two answers); ``listwise`` templates have no labels (the answer is an order of
the k letters, ``labels`` lists them when rendering) and are parsed by ``accord.worker.ranking_parse``.

The rated content is rendered inside a delimited block, and any copy of the delimiters inside the content
is neutralised, so text in a conversation cannot close the block and pass for instructions.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from accord.models.limits import get_limits
from accord.models.yaml_loader import load_mapping
from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

BUNDLED_DIR = Path(__file__).parent / "templates"
RESPONSE_FORMATS = ("likert", "binary", "multiple_choice", "open_ended", "pairwise", "listwise")
COMPARISON_FORMATS = ("pairwise", "listwise")   # a judge shown several answers of one item at once
PAIR_LABELS = ("A", "B")
BEGIN = "<<<BEGIN RATED CONTENT>>>"
END = "<<<END RATED CONTENT>>>"


class TemplateSpecError(ValueError):
    """A template file or reference that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class ResolvedTemplate:
    """A template with its parameters applied: what a PromptTemplate row stores."""

    name: str            # display name, e.g. "multiple_choice_unsafe[BA]"
    family: str          # the question it asks, shared by variants (for consistency analysis)
    version: str
    response_format: str
    system: str
    user: str
    labels: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    options: list[dict[str, Any]] = field(default_factory=list)   # [{letter, text, value}] for multiple choice
    persona: bool = False
    logprobs: bool = True
    max_tokens: int | None = None
    pattern: str | None = None
    rationale: bool = False

    @property
    def output_spec(self) -> dict[str, Any]:
        return {
            "family": self.family, "labels": self.labels, "params": self.params, "options": self.options,
            "persona": self.persona, "logprobs": self.logprobs, "max_tokens": self.max_tokens,
            "pattern": self.pattern, "rationale": self.rationale,
            "option_order": self.params.get("option_order", ""),
        }

    @property
    def content_hash(self) -> str:
        doc = {"name": self.name, "version": self.version, "format": self.response_format, "system": self.system,
               "user": self.user, "output": self.output_spec}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_row(cls, name: str, version: str, response_format: str, system: str, user: str,
                 output_spec: dict[str, Any]) -> "ResolvedTemplate":
        return cls(name=name, family=output_spec.get("family", name), version=version,
                   response_format=response_format, system=system, user=user,
                   labels={str(k): float(v) for k, v in output_spec.get("labels", {}).items()},
                   params=output_spec.get("params", {}), options=output_spec.get("options", []),
                   persona=bool(output_spec.get("persona")), logprobs=bool(output_spec.get("logprobs", True)),
                   max_tokens=output_spec.get("max_tokens"), pattern=output_spec.get("pattern"),
                   rationale=bool(output_spec.get("rationale")))


def bundled_template_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def _load_document(path: Path, label: str | None = None) -> dict[str, Any]:
    label = label or str(path)

    def read() -> str:
        text = path.read_text(encoding="utf-8")
        limit = get_limits().max_template_bytes
        if len(text) > limit:
            raise TemplateSpecError(f"{label}: larger than {limit} bytes (ACCORD_LIMIT_MAX_TEMPLATE_BYTES)")
        return text

    return load_mapping(read, lambda message: TemplateSpecError(f"{label}: {message}"),
                        missing="no such template file", not_yaml="not a valid YAML template",
                        not_mapping="a template must be a YAML mapping")


def load_template(name: str | None = None, path: str | None = None, version: str | None = None,
                  params: dict[str, Any] | None = None) -> ResolvedTemplate:
    """Load a bundled template by name, or a user template by path, and apply its parameters."""
    if path:
        source = Path(path)
        label = str(source)
    else:
        if name not in bundled_template_names():
            raise TemplateSpecError(
                f"templates: no bundled template {name!r}; bundled: {', '.join(bundled_template_names())}")
        source = BUNDLED_DIR / f"{name}.yaml"
        label = f"bundled template {name}"   # never the install path
    doc = _load_document(source, label)
    resolved = resolve_template(doc, params or {}, label)
    if version is not None and str(version) != resolved.version:
        raise TemplateSpecError(f"{label}: version {version!r} requested, the file is version {resolved.version!r}")
    return resolved


def resolve_template(doc: dict[str, Any], params: dict[str, Any], source: str = "template") -> ResolvedTemplate:
    def need(key: str) -> Any:
        if key not in doc or doc[key] in (None, ""):
            raise TemplateSpecError(f"{source}: field '{key}' is required")
        return doc[key]

    name = str(need("name"))
    fmt = str(need("response_format"))
    if fmt not in RESPONSE_FORMATS:
        raise TemplateSpecError(f"{source}: response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {fmt!r}")
    user = str(need("user"))
    system = str(doc.get("system") or "")
    output = doc.get("output") or {}
    if not isinstance(output, dict):
        raise TemplateSpecError(f"{source}: field 'output' must be a mapping")
    merged_params = {**(doc.get("params") or {}), **params}
    unknown = set(params) - set(doc.get("params") or {})
    if unknown:
        raise TemplateSpecError(f"{source}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                                f"this template takes: {', '.join(sorted(doc.get('params') or {})) or 'none'}")
    options: list[dict[str, Any]] = []
    display = name
    if fmt == "multiple_choice":
        raw_options = doc.get("options")
        if not isinstance(raw_options, list) or len(raw_options) < 2:
            raise TemplateSpecError(f"{source}: a multiple_choice template needs 'options' (two or more)")
        letters = string.ascii_uppercase[: len(raw_options)]
        order = str(merged_params.get("option_order", letters))
        if sorted(order) != list(letters):
            raise TemplateSpecError(f"{source}: option_order must be a permutation of {letters!r}, got {order[:30]!r}")
        # order[k] is the original option shown at position k: "BA" shows option B first.
        for pos, orig in enumerate(order):
            opt = raw_options[letters.index(orig)]
            options.append({"letter": letters[pos], "text": str(opt["text"]), "value": float(opt["value"])})
        labels = {o["letter"]: o["value"] for o in options}
        if order != letters:
            display = f"{name}[{order}]"
    else:
        raw_labels = output.get("labels") or {}
        if fmt == "listwise" and raw_labels:
            raise TemplateSpecError(f"{source}: a listwise template has no 'output.labels' (its answer is an order "
                                    f"of the answers' letters)")
        if fmt == "pairwise" and sorted(map(str, raw_labels)) != list(PAIR_LABELS):
            raise TemplateSpecError(f"{source}: a pairwise template's 'output.labels' must be exactly A and B")
        if fmt not in ("open_ended", "listwise") and not raw_labels:
            raise TemplateSpecError(f"{source}: field 'output.labels' (label: numeric value) is required")
        try:
            labels = {str(k): float(v) for k, v in raw_labels.items()}
        except (TypeError, ValueError):
            raise TemplateSpecError(f"{source}: every value in 'output.labels' must be a number") from None
    env = _jinja_env()
    for field_name, text in (("system", system), ("user", user)):
        try:
            env.parse(text)
        except TemplateError as e:
            raise TemplateSpecError(f"{source}: field '{field_name}' is not valid Jinja2: {e}") from None
    return ResolvedTemplate(
        name=display, family=name, version=str(doc.get("version", "1")), response_format=fmt, system=system,
        user=user, labels=labels, params=merged_params, options=options, persona=bool(doc.get("persona")),
        logprobs=bool(output.get("logprobs", True)), max_tokens=output.get("max_tokens"),
        pattern=output.get("pattern"), rationale=bool(output.get("rationale", False)),
    )


class TemplateRenderError(TemplateSpecError):
    """A template that fails to render, or (``over_limit``) asks for more than the sandbox allows."""

    def __init__(self, message: str, over_limit: bool = False) -> None:
        super().__init__(message)
        self.over_limit = over_limit


_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("accord_render_budget", default=None)
_DIGITS = re.compile(r"\d+")
_SIZED_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def _charge(n: int) -> None:
    """Take ``n`` loop iterations from the current render's budget."""
    budget = _budget.get()
    if budget is None:
        return
    budget[0] -= max(n, 1)
    if budget[0] < 0:
        raise SecurityError(f"the template loops more than {get_limits().max_render_iterations} times "
                            "(ACCORD_LIMIT_MAX_RENDER_ITERATIONS)")


def _guarded_iter(iterable: Any) -> Iterator[Any]:
    for value in iterable:
        _charge(1)
        yield value


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    _charge(len(rng))
    if len(rng) > get_limits().max_render_iterations:
        raise SecurityError("range too large")
    return rng


def _check_size(n: int) -> None:
    limit = get_limits().max_string_chars
    if n > limit:
        raise SecurityError(f"the template builds a value of more than {limit} characters "
                            "(ACCORD_LIMIT_MAX_STRING_CHARS)")


def _bounded_concat(*parts: Any) -> str:
    texts = [str(p) for p in parts]
    _check_size(sum(len(t) for t in texts))
    return "".join(texts)


def _check_numbers_in(fmt: str) -> None:
    for m in _DIGITS.finditer(fmt):
        if len(m.group()) > 7 or int(m.group()) > get_limits().max_string_chars:
            raise SecurityError("a format width or precision is too large")


class LimitedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox (no attribute access to internals, no unsafe calls) plus resource limits: loops
    (every ``for`` and ``range``) draw on one iteration budget per render; repetition, concatenation,
    padding and formatting may not build strings past ``max_string_chars``; the rendered text may not pass
    ``max_render_chars``. Exceeding any of them raises ``SecurityError`` before the work is done."""

    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _bounded_range
        self.globals["__accord_iter"] = _guarded_iter
        self.globals["__accord_concat"] = _bounded_concat
        self.globals.pop("lipsum", None)
        for name in ("center", "indent", "format", "replace", "wordwrap", "truncate", "join"):
            self.filters[name] = self._bounded_filter(self.filters[name])

    @staticmethod
    def _bounded_filter(func: Any) -> Any:
        passes_arg = hasattr(func, "jinja_pass_arg")

        def bounded(*args: Any, **kwargs: Any) -> Any:
            values = [*args[1:], *kwargs.values()] if passes_arg else [*args, *kwargs.values()]
            if func.__name__ == "do_join" and values and isinstance(values[0], (list, tuple)):
                _check_size(sum(len(str(v)) for v in values[0]))
            for v in values:
                if isinstance(v, int) and not isinstance(v, bool):
                    _check_size(abs(v))
                if isinstance(v, str) and func.__name__ == "do_format":
                    _check_numbers_in(v)
            if func.__name__ == "do_replace" and len(values) >= 3 and isinstance(values[0], str):
                first = values[0]
                new = str(values[2])
                _check_size(len(first) + first.count(str(values[1])) * len(new))
            result = func(*args, **kwargs)
            if isinstance(result, str):
                _check_size(len(result))
            return result

        for attr in ("jinja_pass_arg",):
            if hasattr(func, attr):
                setattr(bounded, attr, getattr(func, attr))
        bounded.__name__ = func.__name__
        return bounded

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name("__accord_iter", "load"), [loop.iter], [], None, None)
        for concat in list(tree.find_all(nodes.Concat)):
            concat.nodes = [nodes.Call(nodes.Name("__accord_concat", "load"), list(concat.nodes), [], None, None)]
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    _check_size(len(seq) * max(times, 0))
        elif operator == "**":
            if isinstance(right, (int, float)) and isinstance(left, (int, float)) and abs(right) > 64 \
                    and abs(left) > 1:
                raise SecurityError("the exponent is too large")
        elif operator == "%" and isinstance(left, str):
            _check_numbers_in(left)
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            _check_size(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_numbers_in(str(value.__self__))
        return wrapped

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if name in _SIZED_METHODS:
                for v in [*args, *kwargs.values()]:
                    if isinstance(v, int):
                        _check_size(abs(v) * (8 if name == "expandtabs" else 1))
                if name == "expandtabs":
                    _check_size(len(owner) * 8)
            elif name == "replace" and len(args) >= 2:
                _check_size(len(owner) + owner.count(str(args[0])) * len(str(args[1])))
            elif name == "join" and args and isinstance(args[0], (list, tuple)):
                _charge(len(args[0]))
                _check_size(sum(len(str(v)) for v in args[0]))
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, (str, list, tuple)):
            _check_size(len(result))
        return result


@lru_cache(maxsize=1)
def _jinja_env() -> LimitedSandbox:
    return LimitedSandbox(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    """A template text compiled once per process (compiling costs more than rendering)."""
    return _jinja_env().from_string(source)


def _render(source: str, context: dict[str, Any], field_name: str) -> str:
    """One field rendered within the limits; ``TemplateRenderError`` names the field and the reason."""
    limits = get_limits()
    token = _budget.set([limits.max_render_iterations])
    try:
        out: list[str] = []
        size = 0
        for piece in _compiled(source).generate(context):
            size += len(piece)
            if size > limits.max_render_chars:
                raise SecurityError(f"the rendered prompt is longer than {limits.max_render_chars} characters "
                                    "(ACCORD_LIMIT_MAX_RENDER_CHARS)")
            out.append(piece)
        return "".join(out)
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, RecursionError, MemoryError) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        over = isinstance(e, (SecurityError, RecursionError, MemoryError))
        raise TemplateRenderError(f"field '{field_name}' does not render: {reason}", over_limit=over) from None
    finally:
        _budget.reset(token)


def _neutralise(text: str) -> str:
    return text.replace(BEGIN, "<<BEGIN RATED CONTENT>>").replace(END, "<<END RATED CONTENT>>")


def render_content(content: dict[str, Any]) -> str:
    """The item as delimited text: a conversation with speaker labels, or plain text."""
    if content.get("kind") == "conversation":
        lines = [f"{t.get('speaker', '?')}: {_neutralise(str(t.get('text', '')))}" for t in content.get("turns", [])]
        body = "\n".join(lines)
    else:
        body = _neutralise(str(content.get("text", "")))
    return f"{BEGIN}\n{body}\n{END}"


def persona_phrase(persona: dict[str, str]) -> str:
    """'a Woman, Black annotator' style phrase: values in a stable order (age, race, gender, then the rest)."""
    order = ["age", "age_group", "race", "ethnicity", "gender"]
    keys = sorted(persona, key=lambda k: (order.index(k) if k in order else len(order), k))
    words = " ".join(str(persona[k]) for k in keys)
    article = "an" if words[:1].lower() in "aeiou" and words else "a"
    return f"{article} {words} annotator".strip()


ANSWER_BEGIN = "<<<BEGIN ANSWER>>>"
ANSWER_END = "<<<END ANSWER>>>"


def content_text(content: dict[str, Any]) -> str:
    """The item's content as plain text (no delimiters): what a subject model is asked."""
    if content.get("kind") == "conversation":
        return "\n".join(f"{t.get('speaker', '?')}: {t.get('text', '')}" for t in content.get("turns", []))
    return str(content.get("text", ""))


def item_variables(external_id: str, content: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    """What a template sees as ``item``: ``item.id``, ``item.text`` (the content as plain text), every
    metadata column by name (``item.category``, ``item.safe_option``, ...) and ``item.meta`` (all of them)."""
    meta = dict(meta or {})
    return {**meta, "meta": meta, "id": external_id, "text": content_text(content)}


def comparison_labels(k: int) -> list[str]:
    """The letters labelling k answers shown together: A, B, C, ..."""
    if not 2 <= k <= len(string.ascii_uppercase):
        raise ValueError(f"a comparison shows 2 to {len(string.ascii_uppercase)} answers, not {k}")
    return list(string.ascii_uppercase[:k])


def render_answer(text: str) -> str:
    """A subject's answer as a delimited block; copies of any delimiter inside it are neutralised."""
    body = _neutralise(text).replace(ANSWER_BEGIN, "<<BEGIN ANSWER>>").replace(ANSWER_END, "<<END ANSWER>>")
    return f"{ANSWER_BEGIN}\n{body}\n{ANSWER_END}"


def render_messages(template: ResolvedTemplate, content: dict[str, Any],
                    persona: dict[str, str] | None = None, *, item: dict[str, Any] | None = None,
                    answer: str | None = None, answers: list[str] | None = None) -> list[dict[str, str]]:
    """The chat messages of ``template`` for an item. Variables: ``content`` (the item, delimited),
    ``item`` (see ``item_variables``), ``answer`` (a subject's answer, delimited; ``answer_text`` as is),
    ``answers`` (comparison formats: the answers shown, each with ``label``, ``answer`` delimited and ``text``),
    ``persona``/``persona_phrase``, ``options`` (letter, option; option texts may use the same variables),
    ``labels`` and the template's parameters."""
    context: dict[str, Any] = {
        "content": render_content(content),
        "item": item if item is not None else item_variables("", content, {}),
        "persona": persona or {},
        "persona_phrase": persona_phrase(persona) if persona else "",
        "labels": list(template.labels) if answers is None else comparison_labels(len(answers)),
        **template.params,
    }
    if answers is not None:
        context["answers"] = [{"label": label, "answer": render_answer(t), "text": t}
                              for label, t in zip(comparison_labels(len(answers)), answers)]
    if answer is not None:
        context["answer"] = render_answer(answer)
        context["answer_text"] = answer
    context["options"] = [(o["letter"], {**o, "text": _compiled(o["text"]).render(context) if "{" in o["text"] else o["text"]})
                          for o in template.options]
    messages = []
    system = _render(template.system, context, "system").strip() if template.system else ""
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": _render(template.user, context, "user").strip()})
    return messages


def cache_key(provider: str, model: str, base_url: str | None, messages: list[dict[str, str]],
              decoding: dict[str, Any], labels: list[str], sample_index: int, path: str | None = None,
              scope: str = "") -> str:
    """Deterministic key of a provider call: identical calls share one cached answer; samples differ.

    ``scope`` keeps tenants apart (the API's project): a cached answer is only ever reused inside the scope
    that paid for it, so no project can learn from cache hits what another project rated."""
    doc = {"provider": provider, "model": model, "base_url": base_url or "", "path": path or "",
           "messages": messages, "decoding": decoding, "labels": labels, "sample": sample_index}
    if scope:
        doc["scope"] = scope
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
