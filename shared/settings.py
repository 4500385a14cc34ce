"""The one settings object: every knob of every service, read from `CEPER_…` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["orders", "capacity", "quality", "console"]
DOMAIN_SERVICES: tuple[str, ...] = ("orders", "capacity", "quality")
DEFAULT_PORTS: dict[str, int] = {"console": 8000, "orders": 8001, "capacity": 8002, "quality": 8003}


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

    orders_database_url: str | None = None
    capacity_database_url: str | None = None
    quality_database_url: str | None = None
    console_database_url: str | None = None
    # None means: migrate on start everywhere but production, where `ceper migrate` does it.
    migrate_on_start: bool | None = None

    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_retention_hours: float = Field(default=168.0, ge=0)
    outbox_max_backoff_s: float = Field(default=5.0, gt=0)
    inbox_max_attempts: int = Field(default=3, ge=1)
    inbox_retry_backoff_s: float = Field(default=0.05, ge=0)
    inbox_batch_size: int = Field(default=500, ge=1)

    # Quality: how often the certificate-expiry job runs, how early it warns, and how lot records become a status.
    quality_expiry_check_interval_s: float = Field(default=300.0, gt=0)
    quality_expiry_warning_days: int = Field(default=30, ge=0)
    quality_status_window: int = Field(default=12, ge=1)
    quality_status_prior_weight: float = Field(default=10.0, ge=0)
    quality_status_prior_pass_rate: float = Field(default=0.9, ge=0, le=1)
    quality_status_good_at: float = Field(default=0.8, ge=0, le=1)
    quality_status_suspend_below: float = Field(default=0.6, ge=0, le=1)
    # Perpres 46/2025: buyers must prefer domestic products with TKDN ≥ 25 %.
    quality_default_min_tkdn_percent: float = Field(default=25.0, ge=0, le=100)

    # Capacity: how long an API hold waits for its confirmation, and how often expired holds are swept.
    capacity_hold_minutes: int = Field(default=60, ge=1)
    capacity_jobs_interval_s: float = Field(default=30.0, gt=0)

    orders_webhook_poll_interval_s: float = Field(default=0.5, gt=0)
    orders_jobs_interval_s: float = Field(default=30.0, gt=0)  # how often orders refreshes its business gauges
    # Lines are planned to finish this much earlier where capacity allows, so a failed lot can be made again in
    # time; a purchase-order line may state its own.
    orders_safety_lead_days: int = Field(default=7, ge=0, le=56)

    orders_url: str = "http://127.0.0.1:8001"
    capacity_url: str = "http://127.0.0.1:8002"
    quality_url: str = "http://127.0.0.1:8003"
    console_url: str = "http://127.0.0.1:8000"

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
