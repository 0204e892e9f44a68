"""Schema (SQLModel tables), database engine and sessions, settings, Alembic migrations."""
