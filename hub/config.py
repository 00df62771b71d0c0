"""Typed settings, read from the environment (HUB_*), an optional config file and the CLI."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the hub reads at start-up.

    Precedence: explicit arguments (the CLI's flags) > environment (``HUB_DB_URL`` ...) >
    the TOML file named by ``--config`` / ``HUB_CONFIG`` > defaults.
    """

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    db_url: str = "sqlite:///./hub.db"
    host: str = "127.0.0.1"
    port: int = 8080
    config: str | None = None
    # Public base URL of the FHIR endpoint, for fullUrl and paging links; derived from the
    # request when unset.
    base_url: str | None = None
    # Security on (the default, embedded too): every endpoint but metadata, discovery and
    # health checks needs a bearer token.  Off only for a closed test bench.
    auth_required: bool = True
    # Access tokens' issuer (audience: this + /fhir); default: the base URL, else a fixed name.
    auth_issuer: str | None = None
    # Where the local admin client's credentials are written on first start (mode 0600);
    # default: beside the SQLite store, else ~/.config/county-records-hub/admin.json.
    admin_credentials: str | None = None
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    default_page_size: int = Field(default=20, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    # Pool sizing for PostgreSQL; SQLite uses its own.
    db_pool_size: int = 10
    db_max_overflow: int = 20
    log_level: str = "info"
    # The community's configuration (members, feeds, code maps); the demo community by default.
    community: str | None = None
    # MLLP listener for HL7 v2 feeds (hub serve --mllp-port); off unless a port is given.
    mllp_host: str = "127.0.0.1"
    mllp_port: int | None = None
    # MLLP over TLS: the listener's certificate chain and key (PEM); with a client CA, senders
    # must present certificates it signed (mutual TLS).
    mllp_tls_cert: str | None = None
    mllp_tls_key: str | None = None
    mllp_tls_client_ca: str | None = None
    # Threads applying inbox messages (per patient in order; patients in parallel).
    feed_workers: int = Field(default=2, ge=1)
    # The monthly inpatient feedback: on this day of each month at this time (the community's
    # zone) for the month before; off with HUB_FEEDBACK_SCHEDULE=false.
    feedback_schedule: bool = True
    feedback_day: int = Field(default=1, ge=1, le=28)
    feedback_time: str = Field(default="02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # Outbound HL7 v2 (routed orders and results, application ACKs): attempts before a
    # message becomes a dead letter for the office to replay, and how long to wait for an ACK.
    outbox_max_attempts: int = Field(default=12, ge=1)
    outbox_timeout: float = Field(default=30.0, gt=0)
    # Operations (hub.ops).  Redis, when the hub uses one: /readyz checks that it answers.
    # With it, inbox, outbox and rest-hook work travel on Redis Streams (hub.queue.streams),
    # shared by every worker process; the database stays the record.
    redis_url: str | None = None
    redis_prefix: str = "hub"  # key namespace, so several hubs may share one Redis
    # Seconds a stream entry may sit unacknowledged before another worker takes it over (its
    # consumer is presumed dead; a live one refreshes what it holds), and between passes of
    # the reconciler that re-announces pending rows no entry names (after a Redis restart).
    stream_claim_idle: float = Field(default=30.0, gt=0)
    stream_reconcile_seconds: float = Field(default=30.0, gt=0)
    # json (one object per line) or text; unset: json for hub api|mllp|worker|scheduler,
    # text for hub serve (a developer's terminal).
    log_format: Literal["json", "text"] | None = None
    # /readyz reports not ready past these (0: no limit): intake should slow down, not pile up.
    ready_max_inbox_depth: int = Field(default=10_000, ge=0)
    ready_max_inbox_age: float = Field(default=900.0, ge=0)
    # hub mllp|worker|scheduler serve /healthz, /readyz and /metrics here (no port: not served).
    ops_host: str = "127.0.0.1"
    ops_port: int | None = None
    # On SIGTERM: how long in-flight work (requests, MLLP messages, applying) may take to finish.
    shutdown_timeout: float = Field(default=20.0, gt=0)


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, then the TOML file's ``[hub]`` table, then overrides."""
    explicit = {k: v for k, v in overrides.items() if v is not None}
    env_settings = Settings(**explicit)
    path = config_file or env_settings.config
    if not path:
        return env_settings
    with Path(path).open("rb") as fh:
        file_values = tomllib.load(fh).get("hub", {})
    # The file only fills what neither the environment nor the caller set.
    env_set = env_settings.model_fields_set
    merged = {k: v for k, v in file_values.items() if k not in env_set}
    return Settings(**{**merged, **explicit, "config": path})
