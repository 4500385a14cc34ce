"""Alembic environment of the identity database."""

from services.identity.store import metadata
from shared.migrations_env import run_migrations

run_migrations(metadata)
