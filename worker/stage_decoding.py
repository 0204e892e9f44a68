"""The decoding base of a request's stage: the campaign's ``decoding``, with the stage's own ``decoding`` over it
for subjects (``generate``) and judges (``judge``). The scheduler (cache keys) and the executor (the call) both
read it here, so a cache key always describes the call that was made."""

from __future__ import annotations

from typing import Any

STAGE_FIELDS = {"generate": "subjects", "judge": "judges"}


def stage_base_decoding(campaign_doc: dict[str, Any], stage: str) -> dict[str, Any]:
    base = {k: v for k, v in (campaign_doc.get("decoding") or {}).items() if v is not None}
    field = STAGE_FIELDS.get(stage)
    if field is not None:
        stage_doc = campaign_doc.get(field) or {}
        base.update({k: v for k, v in (stage_doc.get("decoding") or {}).items() if v is not None})
    return base
