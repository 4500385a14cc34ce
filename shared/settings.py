"""The one settings object: every knob of every service, read from `CEPER_…` environment variables."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["orders", "capacity", "quality", "console", "identity"]
DOMAIN_SERVICES: tuple[str, ...] = ("orders", "capacity", "quality")
DEFAULT_PORTS: dict[str, int] = {"console": 8000, "orders": 8001, "capacity": 8002, "quality": 8003, "identity": 8004}
# Algorithms that can never verify a token here: symmetric ones would let anyone holding the JWKS sign.
REFUSED_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CEPER_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    var_dir: Path = Path("var")
    log_level: str = "INFO"
    log_json: bool = True
    # Where to export trace spans (OTLP over HTTP, e.g. http://otel-collector:4318); unset, tracing is off.
    otel_exporter_otlp_endpoint: str | None = None

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Prepended to every topic and consumer group: lets tests share one broker without seeing each other.
    kafka_topic_prefix: str = ""
    kafka_partitions: int = Field(default=6, ge=1)
    # This replica's stable name within its consumer groups (static membership): a restarted process takes its
    # partitions back at once instead of waiting out the old session. Unique per replica of a service.
    instance_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")

    orders_database_url: str | None = None
    capacity_database_url: str | None = None
    quality_database_url: str | None = None
    console_database_url: str | None = None
    identity_database_url: str | None = None
    # None means: migrate on start everywhere but production, where `ceper migrate` does it.
    migrate_on_start: bool | None = None

    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_max_backoff_s: float = Field(default=5.0, gt=0)
    inbox_max_attempts: int = Field(default=3, ge=1)
    inbox_retry_backoff_s: float = Field(default=0.05, ge=0)
    inbox_batch_size: int = Field(default=500, ge=1)
    # How long a health probe of the database may take before the database counts as not answering.
    inbox_database_probe_timeout_s: float = Field(default=3.0, gt=0)
    # How long partitions taken away in a rebalance may finish the transaction in flight before it is abandoned.
    inbox_revoke_grace_s: float = Field(default=5.0, ge=0)
    # How often the consumer group's lag is measured from the broker.
    inbox_lag_interval_s: float = Field(default=5.0, gt=0)

    # Quality: how often the certificate-expiry job runs, how early it warns, and how lot records become a status.
    quality_expiry_check_interval_s: float = Field(default=300.0, gt=0)
    quality_expiry_warning_days: int = Field(default=30, ge=0)
    quality_status_window: int = Field(default=12, ge=1)
    quality_status_prior_weight: float = Field(default=10.0, ge=0)
    quality_status_prior_pass_rate: float = Field(default=0.9, ge=0, le=1)
    quality_status_good_at: float = Field(default=0.8, ge=0, le=1)
    quality_status_suspend_below: float = Field(default=0.6, ge=0, le=1)

    # Capacity: how long an API hold waits for its confirmation, and how often expired holds are swept.
    capacity_hold_minutes: int = Field(default=60, ge=1)
    capacity_jobs_interval_s: float = Field(default=30.0, gt=0)

    orders_webhook_poll_interval_s: float = Field(default=0.5, gt=0)
    # Webhook URLs must be https (None: in production only); after a secret is rotated the old one still signs
    # for this long, so buyers can switch without losing a message; networks the operator trusts despite the
    # address rules (a receiver beside the service), as CIDRs. Loopback, private and metadata are refused otherwise.
    orders_webhook_require_https: bool | None = None
    orders_webhook_secret_grace_s: float = Field(default=24 * 3600.0, ge=0, le=30 * 24 * 3600.0)
    orders_webhook_allowed_networks: list[str] = []
    orders_jobs_interval_s: float = Field(default=30.0, gt=0)  # how often orders refreshes its business gauges
    # Lines are planned to finish this much earlier where capacity allows, so a failed lot can be made again in
    # time; a purchase-order line may state its own.
    orders_safety_lead_days: int = Field(default=7, ge=0, le=56)

    orders_url: str = "http://127.0.0.1:8001"
    capacity_url: str = "http://127.0.0.1:8002"
    quality_url: str = "http://127.0.0.1:8003"
    console_url: str = "http://127.0.0.1:8000"
    identity_url: str = "http://127.0.0.1:8004"

    # Identity service: what it signs and for how long, where its signing key comes from, how it slows guessing.
    identity_issuer: str | None = None  # default: identity_url
    identity_audience: str = "ceper-supply"
    identity_token_ttl_s: int = Field(default=600, ge=30, le=3600)
    identity_refresh_grace_s: float = Field(default=60.0, ge=0, le=600)  # a spent refresh token within this is a race
    identity_session_hours: float = Field(default=12.0, gt=0, le=24 * 7)  # a sign-in renews its tokens this long at most
    identity_signing_key_file: Path | None = None  # a PEM EC P-256 private key; else keys live in the database
    identity_key_passphrase: SecretStr | None = None  # encrypts the private keys kept in the database
    identity_login_limit: str = "5/15 minutes"  # failed sign-ins per account name
    identity_login_ip_limit: str = "50/15 minutes"  # failed sign-ins per client address
    identity_login_limit_storage: str = "async+memory://"  # shared by replicas: e.g. async+redis://host:6379

    # Console sign-in: the key that seals session cookies and signs CSRF tokens (every replica the same one; in
    # production it must be set, elsewhere one is made once under var_dir), and the longest a sign-in lasts.
    console_session_secret: SecretStr | None = None
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 7)

    # Token verification in every service: an external identity provider takes over by these settings alone.
    auth_issuer: str | None = None  # default: the identity service's issuer
    auth_audience: str = "ceper-supply"
    auth_jwks_url: str | None = None  # default: <identity_url>/.well-known/jwks.json
    auth_token_url: str | None = None  # shown in /docs; default: <identity_url>/oauth/token
    auth_algorithms: list[str] = ["ES256", "RS256"]
    auth_leeway_s: int = Field(default=30, ge=0, le=300)
    auth_jwks_cache_s: float = Field(default=300.0, gt=0)
    auth_jwks_min_refresh_s: float = Field(default=10.0, ge=0)  # an unknown `kid` refreshes at most this often
    # Where each part of the caller is found in the token's claims (dotted paths; Keycloak: realm_access.roles).
    auth_subject_claim: str = "sub"
    auth_roles_claim: str = "roles"
    auth_buyer_claim: str = "buyer_code"
    auth_foundry_claim: str = "foundry_code"

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """`CEPER_<NAME>_FILE` names a file holding the value of `<name>` (Docker and Kubernetes secrets)."""
        if not isinstance(data, dict):
            return data
        for name in cls.model_fields:
            path = os.environ.get(f"CEPER_{name.upper()}_FILE")
            if path and data.get(name) is None:
                data[name] = Path(path).read_text().strip()
        return data

    @field_validator("auth_algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        refused = [a for a in algorithms if a in REFUSED_ALGORITHMS or a.startswith("HS")]
        if refused or not algorithms:
            raise ValueError(f"auth_algorithms must be asymmetric signature algorithms, refused: {refused or 'empty list'}")
        return algorithms

    @field_validator("orders_webhook_allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # a ValueError names the network that is not one
        return networks

    def webhooks_require_https(self) -> bool:
        return self.orders_webhook_require_https if self.orders_webhook_require_https is not None else self.env == "production"

    def identity_issuer_url(self) -> str:
        return (self.identity_issuer or self.identity_url).rstrip("/")

    def auth_issuer_url(self) -> str:
        return (self.auth_issuer or self.identity_issuer_url()).rstrip("/")

    def auth_jwks(self) -> str:
        return self.auth_jwks_url or f"{self.identity_url.rstrip('/')}/.well-known/jwks.json"

    def auth_token_endpoint(self) -> str:
        return self.auth_token_url or f"{self.identity_url.rstrip('/')}/oauth/token"

    def database_url(self, service: str) -> str:
        url = getattr(self, f"{service}_database_url", None)
        if url:
            return str(url)
        return f"sqlite+aiosqlite:///{(self.var_dir / f'{service}.db').as_posix()}"

    def should_migrate_on_start(self) -> bool:
        return self.migrate_on_start if self.migrate_on_start is not None else self.env != "production"

    def topic(self, name: str) -> str:
        return f"{self.kafka_topic_prefix}{name}"

    def consumer_group(self, service: str) -> str:
        return f"{self.kafka_topic_prefix}ceper-{service}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
