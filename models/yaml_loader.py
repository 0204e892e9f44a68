"""YAML loading for user documents (campaigns, templates, import specs).

PyYAML follows YAML 1.1, where unquoted ``yes``, ``no``, ``on``, ``off`` (any case) are booleans: a label map
``{No: 0, Yes: 1}`` would silently become ``{False: 0, True: 1}``. This loader keeps YAML 1.2's rule: only
``true`` and ``false`` are booleans; everything else stays a string."""

from __future__ import annotations

import re
from typing import Any

import yaml


class SafeLoader12(yaml.SafeLoader):
    pass


SafeLoader12.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SafeLoader12.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader12)  # noqa: S506 - a SafeLoader subclass
