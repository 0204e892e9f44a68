"""Settings of the HTTP API server, from the environment (prefix ``ACCORD_API_``) or given to ``create_app``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCORD_API_", extra="ignore")

    max_upload_bytes: int = Field(default=200 * 1024 * 1024, ge=1,
                                  description="Largest dataset upload (all files of one request together).")
    max_document_bytes: int = Field(default=1024 * 1024, ge=1024,
                                    description="Largest JSON/YAML body (campaigns, templates, mappings).")
    rate_limit_per_minute: float = Field(default=1200.0, gt=0, description="Sustained requests per minute per API key.")
    rate_limit_burst: int = Field(default=120, ge=1, description="Requests a key may send at once above the rate.")
    allowed_key_envs: list[str] = Field(
        default_factory=lambda: ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"],
        description="Environment variables a campaign may name in api_key_env (the server's own credentials).")
    allowed_base_urls: list[str] = Field(
        default_factory=list,
        description="Provider endpoints a campaign may name in base_url; any other is refused (no SSRF, no leaking "
                    "the server's keys to an endpoint of the submitter's choosing).")
    key_endpoints: dict[str, list[str]] = Field(
        default_factory=lambda: {"OPENAI_API_KEY": ["openai"], "ANTHROPIC_API_KEY": ["anthropic"]},
        description="Where each credential variable may be sent: endpoints of allowed_base_urls, or 'openai' / "
                    "'anthropic' for that provider's own endpoint. A variable not listed is sent nowhere.")
    execution: str = Field(default="embedded", description="embedded (runs execute in this process) or distributed.")
    metrics_token: str | None = Field(default=None, description="Bearer token for /metrics; unset: /metrics is off.")
    cookie_secure: bool = Field(default=True, description="Mark the dashboard's session cookie Secure (sent over HTTPS "
                                                         "only); turn off only to use the dashboard over plain HTTP "
                                                         "on localhost.")
    session_secret: str | None = Field(default=None, description="Key that signs dashboard sessions (default: random "
                                                                 "per process; replicas behind a balancer must share "
                                                                 "one).")
    session_max_age_s: int = Field(default=12 * 3600, ge=60, description="How long a dashboard session lasts.")
    sse_interval_s: float = Field(default=1.0, gt=0, description="How often a progress stream looks for changes.")
    sse_max_s: float = Field(default=3600.0, gt=0, description="A progress stream closes after this long (clients reconnect).")
    resume_runs_on_start: bool = Field(default=True, description="Embedded mode: at start, continue the runs a "
                                                                  "previous server process left running.")
    templates_dir: Path | None = Field(default=None, description="Where custom templates are kept (default: "
                                                                   "<ACCORD_HOME>/api-templates).")
    json_logs: bool = Field(default=True, description="Structured JSON logs on stderr.")
