"""The writes that storing ratings (``execute.store_ratings``) and storing subjects' answers
(``answers.store_answers``) share: the dialect's INSERT, for ``ON CONFLICT (request_id) DO NOTHING``, and
marking the requests whose result went in as done."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, any_, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from accord.models.schema import RatingRequest, RequestStatus


def conflict_insert(engine: Engine) -> Any:
    """The dialect's ``insert`` (the one with ``on_conflict_do_nothing``)."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def mark_done(connection: Connection, attempts: dict[int, int], now: datetime) -> None:
    """Mark requests done with their attempt counts ({request id: attempts}): one UPDATE per distinct count
    (nearly always one). On PostgreSQL the ids go as one array (``id = ANY(:ids)``), so the statement's
    text is the same for any number of them and the driver parses and prepares it once; SQLite gets an
    expanding ``IN``."""
    requests = RatingRequest.__table__  # type: ignore[attr-defined]  # set by SQLModel on table classes
    by_count: dict[int, list[int]] = defaultdict(list)
    for request_id, count in attempts.items():
        by_count[int(count)].append(int(request_id))
    if connection.dialect.name == "postgresql":
        match = requests.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(Integer)))
    else:
        match = requests.c.id.in_(bindparam("ids", expanding=True))
    for count, ids in by_count.items():
        connection.execute(update(requests).where(match).values(
            status=RequestStatus.done.value, attempts=count, last_error=None, updated_at=now), {"ids": ids})
