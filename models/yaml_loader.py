"""Loading user documents (campaigns, templates, import specs, upload mappings): one YAML loader and one
JSON loader for the CLI and the HTTP API alike.

YAML: PyYAML follows YAML 1.1, where unquoted ``yes``, ``no``, ``on``, ``off`` (any case) are booleans: a
label map ``{No: 0, Yes: 1}`` would silently become ``{False: 0, True: 1}``. This loader keeps YAML 1.2's
rule: only ``true`` and ``false`` are booleans; everything else stays a string. Anchors and aliases are
refused (a few hundred bytes of aliases expand to gigabytes), and so are documents nested deeper than
``max_document_depth`` or holding more than ``max_document_nodes`` nodes (see ``accord.models.limits``).

JSON: ``NaN``, ``Infinity`` and ``-Infinity`` are refused (they are not JSON, and a stored document holding
them is no longer valid JSON), and so is nesting deeper than ``max_document_depth``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml
from accord.models.limits import get_limits
from yaml.composer import ComposerError


class DocumentLimitError(ValueError):
    """A JSON document that is too deep or holds a non-finite number; the message says where."""


class SafeLoader12(yaml.SafeLoader):
    """YAML 1.2 booleans, no anchors or aliases, bounded depth and size."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        limits = get_limits()
        self._max_depth = limits.max_document_depth
        self._max_nodes = limits.max_document_nodes
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stubs leave peek_event untyped
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(None, None, "aliases (*name) are not accepted; write the value out",
                                event.start_mark)  # type: ignore[arg-type]  # libyaml's Mark: the same fields
        if getattr(event, "anchor", None) is not None:
            raise ComposerError(None, None, "anchors (&name) are not accepted; write the value out",
                                event.start_mark)
        self._nodes += 1
        if self._nodes > self._max_nodes:
            raise ComposerError(None, None, f"the document has more than {self._max_nodes} values",
                                event.start_mark)
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                raise ComposerError(None, None, f"nested deeper than {self._max_depth} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


SafeLoader12.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SafeLoader12.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def safe_load(text: str) -> Any:
    """A YAML document (``yaml.YAMLError`` for bad YAML, aliases, anchors, too deep or too large)."""
    return yaml.load(text, Loader=SafeLoader12)  # noqa: S506 - a SafeLoader subclass


def yaml_error_text(err: yaml.YAMLError) -> str:
    """A bounded one-line description of a YAML error: what is wrong, and at which line and column."""
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or "not valid YAML"
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(str(problem).split())[:200] + where


def load_mapping(read: Callable[[], str], fail: Callable[[str], Exception], *, not_yaml: str, not_mapping: str,
                 missing: str | None = None, unreadable: str | None = None) -> dict[str, Any]:
    """The YAML mapping in the text ``read()`` returns (a file's), or the exception ``fail(message)`` makes, raised
    from None: "not UTF-8 text", "<not_yaml>: <what is wrong, where>", or ``not_mapping`` for a document that is
    no mapping; for a file that is not there ``missing``, for one that cannot be read "<unreadable>: <why>"
    (without them such an OSError propagates)."""
    try:
        doc = safe_load(read())
    except OSError as e:
        if missing is not None and isinstance(e, FileNotFoundError):
            raise fail(missing) from None
        if unreadable is None:
            raise
        raise fail(f"{unreadable}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise fail("not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise fail(f"{not_yaml}: {yaml_error_text(e)}") from None
    if not isinstance(doc, dict):
        raise fail(not_mapping)
    return doc


def _reject_constant(name: str) -> Any:
    raise DocumentLimitError(f"{name} is not a number JSON allows; give a finite number")


def check_depth(value: Any, max_depth: int | None = None) -> None:
    """Refuse lists/mappings nested deeper than ``max_depth`` (iteratively: no recursion to exhaust)."""
    limit = max_depth if max_depth is not None else get_limits().max_document_depth
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                raise DocumentLimitError(f"nested deeper than {limit} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


def json_loads(text: str | bytes, *, allow_nan: bool = False) -> Any:
    """``json.loads`` that refuses NaN/Infinity (unless ``allow_nan``: data files, where NaN means a missing
    value) and nesting deeper than ``max_document_depth``.

    Raises ``json.JSONDecodeError`` for bad JSON and ``DocumentLimitError`` for the rest."""
    try:
        value = json.loads(text) if allow_nan else json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise DocumentLimitError(f"nested deeper than {get_limits().max_document_depth} levels") from None
    check_depth(value)
    return value
