"""A real Prometheus (Debian's server) for tests: a copy of deploy/prometheus that scrapes the given service
processes every second and evaluates the project's alert rules, and the calls an on-call person would make to
its HTTP API.

The copy waits 1 s where a rule says `for:` minutes, and OutboxStuck's age threshold is 5 s instead of 300 s;
every expression is otherwise the project's own.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ceper.access import IssuerAuth
from ceper.broker import free_port
from tests.fixtures.tokens import ADMIN

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
HTTP = httpx.Client(timeout=30)  # a loaded test machine may take seconds to answer
OUTBOX_STUCK_AFTER_S = 5
# Jobs recompute the business gauges and the consumer lag every second instead of every half minute.
FAST_JOBS = {
    "CEPER_ORDERS_JOBS_INTERVAL_S": "1",
    "CEPER_CAPACITY_JOBS_INTERVAL_S": "1",
    "CEPER_QUALITY_EXPIRY_CHECK_INTERVAL_S": "1",
    "CEPER_INBOX_LAG_INTERVAL_S": "1",
    "CEPER_LOG_LEVEL": "WARNING",
}


def api_headers(caller: IssuerAuth = ADMIN, **extra: str) -> dict[str, str]:
    """The headers of a call to a service's API, as a client sends them: every test call goes through here. The
    token is the suite issuer's (the services here trust it), of an admin unless `caller` is someone else."""
    return {**caller.headers(), "Idempotency-Key": str(uuid.uuid4()), **extra}


def post(url: str, body: dict[str, Any], expected: int = 201) -> dict[str, Any]:
    answer = HTTP.post(url, json=body, headers=api_headers())
    assert answer.status_code == expected, f"{url}: {answer.status_code} {answer.text}"
    return answer.json()  # type: ignore[no-any-return]


def wait_for(check, timeout: float = 90.0, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {check.__doc__ or check}")
        time.sleep(interval)


class Prometheus:
    """The Prometheus server on a free port, with a copy of the project's config pointed at the given targets."""

    def __init__(self, root: Path, targets: list[tuple[str, str]]) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            pytest.fail("the Prometheus server is missing: run `bash deploy/install-system-deps.sh` (as root)", pytrace=False)
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets = list(targets)
        self._write_config()
        rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "1s"
                if rule.get("alert") == "OutboxStuck":
                    assert "> 300" in rule["expr"]
                    rule["expr"] = rule["expr"].replace("> 300", f"> {OUTBOX_STUCK_AFTER_S}")
        (root / "alerts.yml").write_text(yaml.safe_dump(rules))
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        (job,) = config["scrape_configs"]
        job["static_configs"] = [{"targets": [address], "labels": {"service": service}} for service, address in self.targets]
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))

    def start(self) -> None:
        self.log = open(self.root / "prometheus.log", "w")  # noqa: SIM115 — the server writes to it until it stops
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def ready() -> bool:
            """Prometheus is ready"""
            assert self.process is not None and self.process.poll() is None, (self.root / "prometheus.log").read_text()[-3000:]
            try:
                return HTTP.get(f"{self.url}/-/ready").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log.close()

    def scrape(self, service: str, address: str) -> None:
        """Adds a target to the running server (a config reload, as `kill -HUP` does) and waits for its first scrape."""
        assert self.process is not None
        self.targets.append((service, address))
        self._write_config()
        self.process.send_signal(signal.SIGHUP)

        def scraped() -> bool:
            """Prometheus scraped the new target"""
            return self.value(f'up{{job="ceper", instance="{address}"}}') == 1

        wait_for(scraped, timeout=60)

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = HTTP.get(f"{self.url}/api/v1/query", params={"query": promql}).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def firing(self) -> dict[str, list[dict[str, str]]]:
        """Alert name → label sets of its firing alerts."""
        alerts = HTTP.get(f"{self.url}/api/v1/alerts").json()["data"]["alerts"]
        out: dict[str, list[dict[str, str]]] = {}
        for alert in alerts:
            if alert["state"] == "firing":
                out.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return out

    def firing_for(self, alert: str, **labels: str) -> list[dict[str, str]]:
        """The firing alerts of one rule whose labels include `labels`."""
        return [a for a in self.firing().get(alert, []) if labels.items() <= a.items()]

    def rule_state(self, alert: str) -> str:
        groups = HTTP.get(f"{self.url}/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
        return next(rule["state"] for group in groups for rule in group["rules"] if rule["name"] == alert)
