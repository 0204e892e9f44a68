"""Prompt templates: loading (bundled or user files), resolution of parameters, rendering to chat messages.

A template file is YAML with ``name``, ``version``, ``response_format`` (likert | binary | multiple_choice |
open_ended), Jinja2 ``system`` and ``user`` text, and ``output`` (``labels``: label -> numeric value,
``logprobs``, ``max_tokens``, ``pattern``). Multiple-choice templates list ``options`` (text and value) and
take the parameter ``option_order`` (e.g. "BA"), which decides which letter stands for which option;
the resolved label -> value map is stored with the template, so every rating can be scored.

The rated content is rendered inside a delimited block, and any copy of the delimiters inside the content
is neutralised, so text in a conversation cannot close the block and pass for instructions.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from accord.models.yaml_loader import safe_load
from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

BUNDLED_DIR = Path(__file__).parent / "templates"
RESPONSE_FORMATS = ("likert", "binary", "multiple_choice", "open_ended")
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


def _load_document(path: Path) -> dict[str, Any]:
    try:
        doc = safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateSpecError(f"{path}: no such template file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TemplateSpecError(f"{path}: not a valid YAML template: {e}") from None
    if not isinstance(doc, dict):
        raise TemplateSpecError(f"{path}: a template must be a YAML mapping")
    return doc


def load_template(name: str | None = None, path: str | None = None, version: str | None = None,
                  params: dict[str, Any] | None = None) -> ResolvedTemplate:
    """Load a bundled template by name, or a user template by path, and apply its parameters."""
    if path:
        source = Path(path)
    else:
        if name not in bundled_template_names():
            raise TemplateSpecError(
                f"templates: no bundled template {name!r}; bundled: {', '.join(bundled_template_names())}")
        source = BUNDLED_DIR / f"{name}.yaml"
    doc = _load_document(source)
    resolved = resolve_template(doc, params or {}, str(source))
    if version is not None and str(version) != resolved.version:
        raise TemplateSpecError(f"{source}: version {version!r} requested, the file is version {resolved.version!r}")
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
            raise TemplateSpecError(f"{source}: option_order must be a permutation of {letters!r}, got {order!r}")
        # order[k] is the original option shown at position k: "BA" shows option B first.
        for pos, orig in enumerate(order):
            opt = raw_options[letters.index(orig)]
            options.append({"letter": letters[pos], "text": str(opt["text"]), "value": float(opt["value"])})
        labels = {o["letter"]: o["value"] for o in options}
        if order != letters:
            display = f"{name}[{order}]"
    else:
        raw_labels = output.get("labels") or {}
        if fmt != "open_ended" and not raw_labels:
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


@lru_cache(maxsize=1)
def _jinja_env() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                keep_trailing_newline=False, autoescape=False)


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


def render_answer(text: str) -> str:
    """A subject's answer as a delimited block; copies of any delimiter inside it are neutralised."""
    body = _neutralise(text).replace(ANSWER_BEGIN, "<<BEGIN ANSWER>>").replace(ANSWER_END, "<<END ANSWER>>")
    return f"{ANSWER_BEGIN}\n{body}\n{ANSWER_END}"


def render_messages(template: ResolvedTemplate, content: dict[str, Any],
                    persona: dict[str, str] | None = None, *, item: dict[str, Any] | None = None,
                    answer: str | None = None) -> list[dict[str, str]]:
    """The chat messages of ``template`` for an item. Variables: ``content`` (the item, delimited),
    ``item`` (see ``item_variables``), ``answer`` (a subject's answer, delimited; ``answer_text`` as is),
    ``persona``/``persona_phrase``, ``options`` (letter, option; option texts may use the same variables),
    ``labels`` and the template's parameters."""
    context: dict[str, Any] = {
        "content": render_content(content),
        "item": item if item is not None else item_variables("", content, {}),
        "persona": persona or {},
        "persona_phrase": persona_phrase(persona) if persona else "",
        "labels": list(template.labels),
        **template.params,
    }
    if answer is not None:
        context["answer"] = render_answer(answer)
        context["answer_text"] = answer
    context["options"] = [(o["letter"], {**o, "text": _compiled(o["text"]).render(context) if "{" in o["text"] else o["text"]})
                          for o in template.options]
    messages = []
    system = _compiled(template.system).render(context).strip() if template.system else ""
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": _compiled(template.user).render(context).strip()})
    return messages


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    """A template text compiled once per process (compiling costs more than rendering)."""
    return _jinja_env().from_string(source)


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
