"""The README's "How a rating flows" map names real modules: every path in its Mermaid diagram exists, and the
diagram names a module of each layer a rating passes through."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _flow_diagram() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### How a rating flows", 1)[1]
    found = re.search(r"```mermaid\n(.*?)```", section, re.S)
    assert found, "the README's rating flow has no Mermaid diagram"
    return found.group(1)


def test_every_module_in_the_readme_map_exists() -> None:
    folders = "models|worker|scheduler|analysis|report|api|cli"
    paths = re.findall(rf"\b((?:{folders})/[\w/]*(?:\.py|/))", _flow_diagram())
    assert len(paths) >= 15, paths
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"the README's map names modules that do not exist: {missing}"
    for step in ("scheduler/campaign_spec.py", "scheduler/expand.py", "worker/execute.py",
                 "worker/prompt_templates.py", "worker/rate_limiter.py", "worker/response_cache.py",
                 "worker/parsing.py", "scheduler/postprocess.py", "analysis/suite.py", "report/build.py"):
        assert step in paths, f"the README's map does not name {step}"
