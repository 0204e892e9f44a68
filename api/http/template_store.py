"""Prompt templates over the API: the bundled ones (read-only) and each project's custom templates.

A custom template is a template document (the fields of a template YAML file) validated with
``resolve_template`` and kept as ``<root>/<project namespace>/<name>/<version>.yaml``; versions are immutable, a
change is a new version. Campaigns refer to a custom template by name (and optionally version); the API
resolves the reference to the file, so campaigns never name server paths themselves."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from accord.models.limits import get_limits
from accord.models.yaml_loader import safe_load
from accord.worker.prompt_templates import (
    BUNDLED_DIR,
    ResolvedTemplate,
    TemplateRenderError,
    TemplateSpecError,
    bundled_template_names,
    load_template,
    render_messages,
    resolve_template,
)

log = logging.getLogger("accord.api")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")


class TemplateStoreError(ValueError):
    """A template that cannot be stored; ``field`` names the document field at fault."""

    def __init__(self, message: str, field: str = "document", conflict: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.conflict = conflict


@dataclass
class StoredVersion:
    version: str
    path: Path
    document: dict[str, Any]
    resolved: ResolvedTemplate
    created_at: datetime


def _version_key(version: str) -> tuple[int, Any]:
    return (0, int(version)) if version.isdigit() else (1, version)


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


class TemplateStore:
    """Templates on disk, each version parsed once: a version's file is immutable, so its parsed document and
    resolved template are kept in memory (keyed by path, size and mtime) and lists never re-parse."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._parsed: dict[Path, tuple[tuple[int, int], StoredVersion]] = {}
        self._lock = threading.Lock()

    def _load(self, name: str, path: Path) -> StoredVersion:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            hit = self._parsed.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        doc = safe_load(path.read_text(encoding="utf-8")) or {}
        stored = StoredVersion(version=path.stem, path=path, document=doc,
                               resolved=resolve_template(doc, {}, f"template {name} version {path.stem}"),
                               created_at=datetime.fromtimestamp(stat.st_mtime, UTC))
        with self._lock:
            if len(self._parsed) >= 10_000:
                self._parsed.clear()
            self._parsed[path] = (stamp, stored)
        return stored

    def _folder(self, namespace: str, name: str) -> Path:
        if not NAME_RE.match(name):
            raise TemplateStoreError(f"name: {name!r} is not a valid template name", "name")
        return self.root / namespace / name

    def names(self, namespace: str) -> list[str]:
        base = self.root / namespace
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and NAME_RE.match(p.name) and any(p.glob("*.yaml")))

    def versions(self, namespace: str, name: str) -> list[StoredVersion]:
        folder = self._folder(namespace, name)
        if not folder.is_dir():
            return []
        out = []
        for path in folder.glob("*.yaml"):
            try:
                out.append(self._load(name, path))
            except (yaml.YAMLError, TemplateSpecError, OSError, UnicodeDecodeError, TypeError, ValueError,
                    KeyError) as err:
                # A version stored before today's checks (say, with YAML aliases) is left out, not served.
                log.warning("template version skipped: %s", type(err).__name__,
                            extra={"template": name, "version": path.stem})
        return sorted(out, key=lambda v: _version_key(v.version))

    def find(self, namespace: str, name: str, version: str | None = None) -> StoredVersion | None:
        if not NAME_RE.match(name):
            return None
        versions = self.versions(namespace, name)
        if not versions:
            return None
        if version is None:
            return versions[-1]
        return next((v for v in versions if v.version == str(version)), None)

    def create(self, namespace: str, document: dict[str, Any]) -> StoredVersion:
        """Validate and store a new version; the version is the next number unless the document names one."""
        doc = {k: v for k, v in document.items() if v is not None}
        name = str(doc.get("name", ""))
        if not NAME_RE.match(name):
            raise TemplateStoreError("name: letters, digits, '_', '.', '-' (up to 100), starting with a letter or "
                                     "digit", "name")
        if name in bundled_template_names():
            raise TemplateStoreError(f"name: {name!r} is a bundled template; choose another name", "name",
                                     conflict=True)
        folder = self._folder(namespace, name)
        existing = self.versions(namespace, name)
        limits = get_limits()
        if not existing and len(self.names(namespace)) >= limits.max_templates_per_project:
            raise TemplateStoreError(f"name: this project has {limits.max_templates_per_project} custom templates, "
                                     "the limit (ACCORD_LIMIT_MAX_TEMPLATES_PER_PROJECT)", "name", conflict=True)
        if len(existing) >= limits.max_template_versions:
            raise TemplateStoreError(f"version: {name!r} has {limits.max_template_versions} versions, the limit "
                                     "(ACCORD_LIMIT_MAX_TEMPLATE_VERSIONS)", "version", conflict=True)
        dumped = yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)
        if len(dumped.encode("utf-8")) > limits.max_template_bytes:
            raise TemplateStoreError(f"document: larger than {limits.max_template_bytes} bytes "
                                     "(ACCORD_LIMIT_MAX_TEMPLATE_BYTES)", "document")
        if doc.get("version") is None:
            numbers = [int(v.version) for v in existing if v.version.isdigit()]
            doc["version"] = str(max(numbers, default=0) + 1)
        version = str(doc["version"])
        if not VERSION_RE.match(version):
            raise TemplateStoreError("version: letters, digits, '_', '.', '-' (up to 50)", "version")
        doc["version"] = version
        if any(v.version == version for v in existing):
            raise TemplateStoreError(f"version: {name!r} version {version!r} exists; versions are immutable, "
                                     "create a new one", "version", conflict=True)
        try:
            resolved = resolve_template(doc, {}, "template")
            try:   # a template that passes the sandbox's limits on a small item is refused now, not at run time
                render_messages(resolved, {"kind": "text", "text": "sample"},
                                {"gender": "sample"} if resolved.persona else None)
            except TemplateRenderError as err:
                if err.over_limit:
                    raise
        except TemplateSpecError as err:
            message = str(err).removeprefix("template: ")
            m = re.search(r"field '([^']+)'", message)
            raise TemplateStoreError(message, m.group(1) if m else "document") from None
        except (TypeError, ValueError, KeyError) as err:
            raise TemplateStoreError(f"options: {err}", "options") from None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{version}.yaml"
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.dump(doc, fh, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)
        try:
            os.link(tmp, path)   # fails if a concurrent request stored this version first
        except FileExistsError:
            raise TemplateStoreError(f"version: {name!r} version {version!r} exists", "version",
                                     conflict=True) from None
        finally:
            os.unlink(tmp)
        return self._load(name, path)


@lru_cache(maxsize=64)
def _bundled_document(name: str) -> str:
    return json.dumps(safe_load((BUNDLED_DIR / f"{name}.yaml").read_text(encoding="utf-8")) or {})


def bundled_document(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_bundled_document(name))   # a fresh copy each time
    return document


@lru_cache(maxsize=64)
def bundled_resolved(name: str) -> ResolvedTemplate:
    return load_template(name)
