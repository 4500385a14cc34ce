"""A real identity process and the `ceper` command line on its database, for the identity tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ceper.broker import free_port
from tests.fixtures.processes import ROOT, service_process


@dataclass
class Identity:
    url: str
    env: dict[str, str]  # what the process runs with: the command line gets the same database

    def ceper(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CEPER_")}
        return subprocess.run(
            [sys.executable, "-m", "ceper", *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env={**clean, **self.env},
            cwd=ROOT,
            timeout=120,
        )

    def add_client(self, name: str, role: str, tenant: str | None = None) -> dict[str, Any]:
        done = self.ceper("clients", "add", name, "--role", role, *(["--tenant", tenant] if tenant else []), "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def add_person(self, username: str, role: str, password: str, tenant: str | None = None) -> None:
        done = self.ceper(
            "users", "add", username, "--role", role, *(["--tenant", tenant] if tenant else []), stdin=password + "\n"
        )
        assert done.returncode == 0, done.stderr

    def token(self, client_id: str, secret: str) -> str:
        response = httpx.post(f"{self.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def sign_in(self, username: str, password: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/sessions", json={"username": username, "password": password}, timeout=30)

    def jwks_fetches(self) -> int:
        """How many times the JWKS was served, from the service's own metrics."""
        total = 0.0
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith("ceper_http_requests_total{") and 'route="/.well-known/jwks.json"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


@contextmanager
def identity_process(database_url: str | None = None, **settings: str) -> Iterator[Identity]:
    """Identity on a free port, its issuer being its own address; `settings` are extra CEPER_ variables."""
    root = Path(tempfile.mkdtemp(prefix="ceper-test-identity-"))
    port = free_port()
    env = {"CEPER_VAR_DIR": str(root), "CEPER_IDENTITY_URL": f"http://127.0.0.1:{port}", "CEPER_ENV": "test"}
    if database_url:
        env["CEPER_IDENTITY_DATABASE_URL"] = database_url
    env.update({f"CEPER_{name.upper()}": value for name, value in settings.items()})
    try:
        with service_process("services.identity.app:create_app", env, root / "identity.log", port=port) as url:
            yield Identity(url, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def protected_process(issuer: str, jwks_url: str, **settings: str) -> Iterator[str]:
    """The small protected service, trusting `issuer` by settings alone."""
    root = Path(tempfile.mkdtemp(prefix="ceper-test-protected-"))
    env = {"CEPER_AUTH_ISSUER": issuer, "CEPER_AUTH_JWKS_URL": jwks_url, "CEPER_VAR_DIR": str(root)}
    env.update({f"CEPER_{name.upper()}": value for name, value in settings.items()})
    try:
        with service_process("tests.fixtures.protected_app:create_app", env, root / "protected.log") as url:
            yield url
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def free_url() -> str:
    return f"http://127.0.0.1:{free_port()}"
