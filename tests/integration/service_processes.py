"""Services as real processes (uvicorn, migrated on start) on the test broker, for tests that look at them from
outside: their exported spans, their `/metrics` scraped by a real Prometheus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ceper.broker import free_port
from shared.settings import Settings
from tests.support import auth_env

REPO = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """One service under uvicorn on a free port; `start()` waits until `/readyz` answers 200."""

    def __init__(
        self, name: str, settings: Settings, root: Path, env: dict[str, str] | None = None, *, factory: str | None = None
    ) -> None:
        self.name = name
        # The app factory uvicorn runs: the service's own unless a test wires it otherwise (e.g. its clock).
        self.factory = factory or f"services.{name}.app:create_app"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"{name}.log"
        self.env = {
            **os.environ,
            "CEPER_ENV": "test",
            "CEPER_VAR_DIR": str(settings.var_dir),
            "CEPER_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "CEPER_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "CEPER_KAFKA_PARTITIONS": str(settings.kafka_partitions),
            "CEPER_OUTBOX_POLL_INTERVAL_S": str(settings.outbox_poll_interval_s),
            "CEPER_LOG_JSON": "true",
            **auth_env(settings),
            **(env or {}),
        }
        url = getattr(settings, f"{name}_database_url", None)
        if url:
            self.env[f"CEPER_{name.upper()}_DATABASE_URL"] = url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90, *, ready: bool = True) -> None:
        """`ready=False` waits only for `/healthz`: for a service meant to run without its broker."""
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", self.factory,
                 "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/{'readyz' if ready else 'healthz'}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not become ready:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops a service: the service flushes what it buffers and exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def service_processes(
    settings: Settings, root: Path, *names: str, env: dict[str, str] | None = None
) -> Iterator[dict[str, ServiceProcess]]:
    """Starts the named services in order; stops every one that was started."""
    running: dict[str, ServiceProcess] = {}
    try:
        for name in names:
            running[name] = ServiceProcess(name, settings, root, env)
            running[name].start()
        yield running
    finally:
        for service in reversed(running.values()):
            service.stop()
