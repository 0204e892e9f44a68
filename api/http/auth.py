"""Projects and their API keys, and the request authentication of the HTTP API.

A key is ``acc_`` + 43 random URL-safe characters (``secrets.token_urlsafe(32)``, 256 bits). It is shown
once, when created; the database keeps only its SHA-256 and a short prefix for display. A revoked key
stops working at once. The API takes the key from ``Authorization: Bearer <key>`` (or ``X-API-Key``);
the dashboard from its session cookie (a signed token naming the key, never the key itself). Every authenticated request knows its project and nothing else."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from accord.api.http.problems import ProblemError
from accord.models.projects import (
    DELETED_PREFIX,
    ProjectError,
    create_project,  # noqa: F401 - re-exported: callers create projects and keys here
    find_project,
)
from accord.models.schema import (
    Annotator, Answer, AnswerComparison, ApiKey, Campaign, Dataset, HumanAnswerJudgment, HumanRating,
    ImportedRating, Item, JudgeAssignment, Metric, ModelSpec, Project, ProviderBatch, ProviderBatchRequest,
    Rating, RatingRequest, Run, utcnow,
)
from fastapi import Request
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

KEY_PREFIX = "acc_"
DISPLAY_PREFIX_LENGTH = 12
COOKIE_NAME = "accord_session"


# Project errors and key errors are one kind: an admin operation that cannot be done.
AuthAdminError = ProjectError


@dataclass(frozen=True)
class Principal:
    """Who is asking: the project every query is scoped to, and the key that proved it."""

    project_id: int
    project_name: str
    key_id: int
    key_prefix: str
    project_created_at: datetime | None = None

    @property
    def namespace(self) -> str:
        """A name for the project's files that a later project reusing the id (after a database reset)
        cannot share."""
        created = self.project_created_at.isoformat() if self.project_created_at else ""
        digest = hashlib.sha256(f"{self.project_id}|{self.project_name}|{created}".encode()).hexdigest()[:12]
        return f"project-{self.project_id}-{digest}"


@dataclass(frozen=True)
class NewKey:
    key: str           # shown once, never stored
    key_id: int
    prefix: str
    project_id: int
    project_name: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def delete_project(engine: Engine, project: str | int, templates_root: Path | None = None) -> dict[str, int]:
    """Delete a project with everything it owns: its keys, runs with their requests and (cached) answers,
    campaigns, datasets, model specs and custom templates. The project row stays as a nameless tombstone,
    so its id is never given to another project (SQLite would otherwise reuse the highest id), and neither
    a key nor a cached answer of the deleted project can ever reach a later one. Returns rows deleted per
    table."""
    proj = find_project(engine, str(project))
    pid = proj.id
    namespace = Principal(project_id=pid, project_name=proj.name, key_id=0, key_prefix="",  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                          project_created_at=proj.created_at.replace(tzinfo=None) if proj.created_at else None).namespace
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        runs = select(col(Run.id)).where(col(Run.project_id) == pid).scalar_subquery()
        batches = select(col(ProviderBatch.id)).where(col(ProviderBatch.run_id).in_(runs)).scalar_subquery()
        datasets = select(col(Dataset.id)).where(col(Dataset.project_id) == pid).scalar_subquery()
        items = select(col(Item.id)).where(col(Item.dataset_id).in_(datasets)).scalar_subquery()
        # Children before parents: each table by the column that ties its rows to the project, and the ids
        # (of the project, or of its runs, batches, datasets or items) that column holds in those rows. A column
        # here is the model's attribute (SQLModel types it as its value): its ``table`` is the model's table.
        owner = [pid]
        owned_rows: list[tuple[Any, Any]] = [
            (ApiKey.project_id, owner), (ProviderBatchRequest.batch_id, batches), (Rating.run_id, runs),
            (Metric.run_id, runs), (ProviderBatch.run_id, runs), (AnswerComparison.run_id, runs),
            (JudgeAssignment.run_id, runs), (HumanAnswerJudgment.item_id, items), (Answer.run_id, runs),
            (RatingRequest.run_id, runs), (Run.project_id, owner), (Campaign.project_id, owner),
            (HumanRating.item_id, items), (ImportedRating.item_id, items), (Item.dataset_id, datasets),
            (Annotator.dataset_id, datasets), (Dataset.project_id, owner), (ModelSpec.project_id, owner)]
        for column, owned in owned_rows:
            deleted = conn.execute(delete(column.table).where(col(column).in_(owned)))
            counts[column.table.name] = deleted.rowcount or 0
        conn.execute(update(Project).where(col(Project.id) == pid)
                     .values(name=f"{DELETED_PREFIX}{pid}:{secrets.token_hex(8)}"))
    if templates_root is not None:
        shutil.rmtree(Path(templates_root) / namespace, ignore_errors=True)
    return counts


def create_key(engine: Engine, project: str | int, name: str = "") -> NewKey:
    """A new random key for ``project`` (name or id). The returned ``key`` is the only copy there will be."""
    proj = find_project(engine, str(project))
    key = generate_key()
    with Session(engine, expire_on_commit=False) as session:
        row = ApiKey(project_id=proj.id, prefix=key[:DISPLAY_PREFIX_LENGTH], key_hash=hash_key(key),  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                     name=name[:200])
        session.add(row)
        session.commit()
        return NewKey(key=key, key_id=row.id, prefix=row.prefix, project_id=proj.id, project_name=proj.name)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)


def revoke_key(engine: Engine, key_id_or_prefix: str) -> ApiKey:
    """Revoke a key by its id or its displayed prefix (which must name exactly one key)."""
    with Session(engine, expire_on_commit=False) as session:
        if key_id_or_prefix.isdigit():
            rows = [r for r in [session.get(ApiKey, int(key_id_or_prefix))] if r is not None]
        else:
            rows = list(session.execute(select(ApiKey).where(col(ApiKey.prefix) == key_id_or_prefix)).scalars())
        if not rows:
            raise AuthAdminError(f"no API key {key_id_or_prefix!r}")
        if len(rows) > 1:
            raise AuthAdminError(f"{len(rows)} keys start with {key_id_or_prefix!r}; revoke by id")
        row = rows[0]
        if row.revoked_at is None:
            session.execute(update(ApiKey).where(col(ApiKey.id) == row.id).values(revoked_at=utcnow()))
            session.commit()
            session.refresh(row)
        return row


def list_keys(engine: Engine, project: str | int) -> list[ApiKey]:
    proj = find_project(engine, str(project))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.execute(select(ApiKey).where(col(ApiKey.project_id) == proj.id).order_by(col(ApiKey.id))).scalars())


def _principal(engine: Engine, condition: Any) -> tuple[Principal, str] | None:
    with Session(engine) as session:
        row = session.execute(
            select(col(ApiKey.id), col(ApiKey.prefix), col(ApiKey.key_hash), col(ApiKey.revoked_at), col(Project.id), col(Project.name),
                   col(Project.created_at))
            .join(Project, col(Project.id) == col(ApiKey.project_id))
            .where(condition)
        ).first()
    if row is None or row[3] is not None:
        return None
    created = row[6].replace(tzinfo=None) if row[6] is not None else None
    return Principal(project_id=row[4], project_name=row[5], key_id=row[0], key_prefix=row[1],
                     project_created_at=created), row[2]


def lookup_key(engine: Engine, key: str) -> Principal | None:
    """The principal of a valid, unrevoked key, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    found = _principal(engine, ApiKey.key_hash == digest)
    if found is None or not hmac.compare_digest(found[1], digest):
        return None
    return found[0]


def lookup_key_id(engine: Engine, key_id: int) -> Principal | None:
    """The principal of an unrevoked key by its id (a dashboard session names its key by id)."""
    found = _principal(engine, ApiKey.id == key_id)
    return found[0] if found is not None else None


class SessionSigner:
    """Dashboard sessions as signed tokens: ``v1.<key id>.<expiry>.<HMAC-SHA256>``. The cookie never holds
    the API key; a session ends at its expiry, when its key is revoked, or when the secret changes (a
    random one per process unless ``ACCORD_API_SESSION_SECRET`` is set, which replicas must share)."""

    def __init__(self, secret: str | None, max_age_s: int, clock: Any = time.time) -> None:
        self.secret = (secret or secrets.token_hex(32)).encode("utf-8")
        self.max_age_s = max_age_s
        self.clock = clock

    def _sign(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode("ascii"), hashlib.sha256).hexdigest()

    def issue(self, key_id: int) -> str:
        payload = f"v1.{int(key_id)}.{int(self.clock()) + self.max_age_s}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str | None) -> int | None:
        """The key id of a genuine, unexpired session token, else None."""
        if not token or len(token) > 200:
            return None
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(payload), parts[3]):
            return None
        if int(parts[2]) < self.clock():
            return None
        return int(parts[1])


def key_from_headers(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


def unauthenticated(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="accord"'})


def csrf_token(session: str) -> str:
    """The dashboard's per-session form token: derived from the session cookie (which is signed by the
    server and unreadable to scripts), so only the session's holder can make it."""
    return hashlib.sha256(f"accord-csrf|{session}".encode()).hexdigest()[:40]
