"""Alembic environment of the quality database."""

from services.quality.store import metadata
from shared.migrations_env import run_migrations

run_migrations(metadata)
