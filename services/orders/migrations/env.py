"""Alembic environment of the orders database."""

from services.orders.store import metadata
from shared.migrations_env import run_migrations

run_migrations(metadata)
