"""accord's HTTP API and dashboard (FastAPI). ``create_app(engine=None) -> FastAPI``; ``accord serve`` runs it."""

from accord.api.http.app import create_app, openapi_document

__all__ = ["create_app", "openapi_document"]
