"""Alembic environment of the capacity database."""

from services.capacity.store import metadata
from shared.migrations_env import run_migrations

run_migrations(metadata)
