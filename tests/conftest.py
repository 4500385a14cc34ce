"""Test-wide fixtures: the real Kafka broker and PostgreSQL server, and per-test settings over both databases."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from shared.settings import Settings

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.postgres", "tests.fixtures.tokens", "tests.fixtures.keycloak"]

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_settings(request: pytest.FixtureRequest, tmp_path, backend: str) -> Callable[..., Settings]:
    """Settings for one test: its own topic prefix on the shared broker, fresh databases of the backend."""
    from tests.fixtures.tokens import SUITE_MINT  # imported once pytest has loaded it as a plugin

    broker = request.getfixturevalue("kafka_broker")
    prefix = f"t{uuid.uuid4().hex[:10]}."

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "env": "test",
            "var_dir": tmp_path / "var",
            "kafka_bootstrap_servers": broker.bootstrap,
            "kafka_topic_prefix": prefix,
            "kafka_partitions": 3,
            "log_json": False,
            "outbox_poll_interval_s": 0.5,
            **SUITE_MINT.settings(request.getfixturevalue("suite_jwks_url")),
        }
        if backend == "postgresql":
            server = request.getfixturevalue("postgres_server")
            for service in ("orders", "capacity", "quality"):
                values[f"{service}_database_url"] = server.create_database()
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make
