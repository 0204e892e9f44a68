"""Resource limits: what one tenant (a project of the HTTP API) or one document may ask the server to do.

Every limit has a default that suits a shared server and can be changed with an environment variable
``ACCORD_LIMIT_<NAME>`` (for example ``ACCORD_LIMIT_MAX_REQUESTS_PER_RUN=5000000``) or a ``.env`` file.
The limits apply to every project alike; ``docs/security.md`` lists them. A document or file that passes a
limit is refused before the work starts, with a one-line message naming the field and the limit."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Limits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCORD_LIMIT_", env_file=".env", extra="ignore")

    # documents (campaigns, templates, import specs, upload mappings; YAML and JSON)
    max_document_depth: int = Field(default=32, ge=4, le=1000,
                                    description="Deepest nesting of lists/mappings in a YAML or JSON document.")
    max_document_nodes: int = Field(default=100_000, ge=100,
                                    description="Most scalars, lists and mappings in one YAML document.")
    # campaigns
    max_requests_per_run: int = Field(default=1_000_000, ge=1,
                                      description="Rating requests one run may expand to "
                                                  "(items x models x templates x personas x samples).")
    max_models: int = Field(default=50, ge=1, description="Models in one campaign.")
    max_templates: int = Field(default=50, ge=1, description="Templates in one campaign.")
    max_samples: int = Field(default=100, ge=1, le=1000, description="Samples per prompt in one campaign.")
    max_personas: int = Field(default=1000, ge=1, description="Personas in one campaign.")
    # prompt templates (rendering)
    max_template_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest template document.")
    max_template_versions: int = Field(default=100, ge=1, description="Versions of one custom template.")
    max_templates_per_project: int = Field(default=200, ge=1, description="Custom templates of one project.")
    max_render_chars: int = Field(default=200_000, ge=1000, description="Longest rendered prompt (characters).")
    max_render_iterations: int = Field(default=100_000, ge=100,
                                       description="Loop iterations (over all loops) while rendering one prompt.")
    max_string_chars: int = Field(default=200_000, ge=1000,
                                  description="Longest string a template expression may build.")
    # dataset imports
    max_rows: int = Field(default=1_000_000, ge=1, description="Data rows in one import file.")
    max_columns: int = Field(default=1000, ge=1, description="Columns in one import file.")
    max_cell_chars: int = Field(default=1_000_000, ge=1000, description="Longest cell of an import file.")
    max_decoded_bytes: int = Field(default=512 * 1024 * 1024, ge=1024,
                                   description="Largest import file once decompressed and decoded.")
    max_regex_chars: int = Field(default=200, ge=10, description="Longest 're:' column pattern.")


@lru_cache(maxsize=1)
def get_limits() -> Limits:
    return Limits()
