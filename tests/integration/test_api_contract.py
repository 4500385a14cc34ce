"""Every service answers whatever a client sends as its OpenAPI document says: generated requests (schemathesis,
valid and invalid) against real service processes on the real broker and each database. No request may make
one fail with a 5xx, and every answer must match a documented status, content type and schema."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from ceper.broker import free_port
from services.capacity.app import create_app as capacity_app
from services.identity.app import create_app as identity_app
from services.orders.app import create_app as orders_app
from services.quality.app import create_app as quality_app

REPO = Path(__file__).resolve().parents[2]
APPS: dict[str, Callable[[], Any]] = {
    "orders": orders_app,
    "capacity": capacity_app,
    "quality": quality_app,
    "identity": identity_app,
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Each service's document as the app serves it, read once: each operation is one test.
OPERATIONS = {
    (service, operation.label): operation
    for service, app in APPS.items()
    for operation in (result.ok() for result in schemathesis.openapi.from_dict(app().openapi()).get_all_operations())
}
# Invalid requests can be made only where there is something to get wrong: a body, a header or a query.
CASES = [(service, label, GenerationMode.POSITIVE) for service, label in sorted(OPERATIONS)] + [
    (service, label, GenerationMode.NEGATIVE)
    for (service, label), operation in sorted(OPERATIONS.items())
    if len(operation.body) or len(operation.query) or len(operation.headers)
]


class Servers:
    """Real service processes (uvicorn, migrated on start), started when a test first needs one."""

    def __init__(self, request: pytest.FixtureRequest, backend: str) -> None:
        self.request = request
        self.backend = backend
        self.root = Path(tempfile.mkdtemp(prefix="ceper-test-api-contract-"))
        self.prefix = f"t{uuid.uuid4().hex[:10]}."
        self.urls: dict[str, str] = {}
        self.processes: list[tuple[subprocess.Popen[bytes], Any]] = []

    def url(self, service: str) -> str:
        if service not in self.urls:
            self.urls[service] = self._start(service)
        return self.urls[service]

    def _start(self, service: str) -> str:
        env = {
            **os.environ,
            "CEPER_ENV": "test",
            "CEPER_VAR_DIR": str(self.root),
            "CEPER_KAFKA_BOOTSTRAP_SERVERS": self.request.getfixturevalue("kafka_broker").bootstrap,
            "CEPER_KAFKA_TOPIC_PREFIX": self.prefix,
            "CEPER_KAFKA_PARTITIONS": "3",
            "CEPER_LOG_JSON": "false",
            "CEPER_LOG_LEVEL": "WARNING",
        }
        if self.backend == "postgresql":
            env[f"CEPER_{service.upper()}_DATABASE_URL"] = self.request.getfixturevalue("postgres_server").create_database()
        port = free_port()
        log_path = self.root / f"{service}.log"
        log = open(log_path, "w")  # noqa: SIM115 — the service writes to it until it is stopped
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"services.{service}.app:create_app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.processes.append((process, log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{service} did not become ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        for process, log in self.processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    running = Servers(request, request.param)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize(("service", "label", "mode"), CASES, ids=[f"{s}-{m.value}-{label}" for s, label, m in CASES])
def test_every_answer_is_documented_and_none_is_a_server_error(
    servers: Servers, service: str, label: str, mode: GenerationMode
) -> None:
    url = servers.url(service)

    @given(case=OPERATIONS[(service, label)].as_strategy(mode))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)

    answers_as_documented()
