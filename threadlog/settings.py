"""Settings from the environment (``THREADLOG_*``) and CLI flags, validated at start.

A bad value is a :class:`SettingsError` naming the field, raised before anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from events.errors import ValidationFailed, pydantic_error_details
from events.ids import check_token


class SettingsError(ValidationFailed):
    code = "invalid_settings"


class Settings(BaseSettings):
    """Every knob of a threadlog process. Env vars are ``THREADLOG_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="THREADLOG_", extra="forbid")

    nats_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="NATS server URLs (comma separated in the "
        "environment); empty starts an embedded server")
    nats_creds: Path | None = Field(
        None, description="credentials file (.creds) this process connects with; the "
        "embedded server's own service credentials when empty")
    nats_port: int | None = Field(None, ge=1, le=65535,
                                  description="fixed port of the embedded server")
    nats_host: str = Field("127.0.0.1", min_length=1, max_length=255,
                           description="interface the embedded server listens on")
    handler_concurrency: int = Field(64, ge=1, le=10_000,
                                     description="requests each subject serves at once")
    nats_down_exit_s: float = Field(
        300.0, ge=0, description="exit non-zero when NATS stays unreachable this long "
        "(0: never; the connections reconnect for as long as the process runs)")
    sql_time_limit_s: float = Field(10.0, gt=0, le=3600,
                                    description="operators' SQL: time limit per query")
    sql_memory_limit_mb: int = Field(512, ge=16, le=1 << 20,
                                     description="operators' SQL: memory growth per query")
    data_dir: Path = Field(Path(".threadlog"), description="embedded NATS store, DuckDB file")
    events_stream: str = "EVENTS"
    deltas_stream: str = "DELTAS"
    replicas: int = Field(1, ge=1, le=5)
    duplicate_window_s: float = Field(120.0, gt=0, le=7 * 24 * 3600)
    deltas_max_age_s: float = Field(600.0, gt=0)
    max_command_bytes: int = Field(1_000_000, ge=1024)
    request_timeout_s: float = Field(5.0, gt=0)
    model: str = Field("scripted/default", description="litellm model for the demo agent")
    duckdb_file: str = Field("threadlog.duckdb", description="relative to data_dir")
    spend_limit_usd: float | None = Field(
        None, ge=0, description="default per-user spend limit per billing period (USD)")
    rate_messages_per_minute: int = Field(
        0, ge=0, le=1_000_000_000, description="default per-user limit on generations "
        "per minute (token bucket, shared by every process; 0: unlimited)")
    generation_parallelism: int | None = Field(
        None, ge=0, le=100_000, description="limit on generations running their steps at "
        "once across every process (handlers.generation_limits; 0 paused; unset: no limit "
        "and no admission cost). Applied when the limit is first created; change it live "
        "with `threadlog generations limit N`")
    rate_tokens_per_minute: int = Field(
        0, ge=0, le=1_000_000_000, description="default per-user limit on model tokens "
        "per minute (0: unlimited)")

    @field_validator("nats_urls", mode="before")
    @classmethod
    def _split_urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [u.strip() for u in v.split(",") if u.strip()]
        return v

    @field_validator("nats_urls")
    @classmethod
    def _check_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"{url!r} is not a nats:// URL")
        return v

    @field_validator("events_stream", "deltas_stream")
    @classmethod
    def _check_stream(cls, v: str) -> str:
        check_token(v, what="stream name")
        return v

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / self.duckdb_file

    @property
    def nats_store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def auth_dir(self) -> Path:
        """The embedded server's keys (operator, account, role signing keys)."""
        return self.data_dir / "auth"


def load_settings(**overrides: Any) -> Settings:
    """Settings from env, with non-None ``overrides`` (CLI flags) on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        details = pydantic_error_details(exc)
        fields = ", ".join(".".join(e["loc"]) + ": " + e["msg"] for e in details["errors"])
        raise SettingsError(f"invalid settings: {fields}", details=details) from None
