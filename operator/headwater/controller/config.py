"""Operator settings, read once at start from ``HEADWATER_*`` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Every tunable of the operator, validated at start; an invalid value stops the process with a clear error."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore", frozen=True)

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch (comma-separated); empty means cluster-wide.",
    )
    step_image: str = Field(
        default="ghcr.io/headwater-dev/headwater:0.1.0",
        description="Image that runs sql steps (`headwater step sql`) when a step names none.",
    )
    job_ttl_seconds: int | None = Field(
        default=86400, ge=0,
        description="ttlSecondsAfterFinished of step Jobs; unset keeps finished Jobs until their run is deleted.",
    )
    resync_seconds: float = Field(
        default=30.0, gt=0, description="Safety re-reconcile interval of unfinished runs."
    )
    schedule_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often cron schedules are checked."
    )
    database_url: str | None = Field(default=None, description="PostgreSQL URL of the lineage store.")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Port of /metrics; 0 disables it.")
    api_port: int = Field(default=8080, ge=0, le=65535, description="Port of the lineage HTTP API; 0 disables it.")
    api_host: str = Field(default="0.0.0.0", description="Address the lineage HTTP API listens on.")
    api_token: str | None = Field(default=None, description="Bearer token the API's read routes require.")
    openlineage_url: str | None = Field(
        default=None, description="Endpoint (e.g. Marquez's /api/v1/lineage) that receives a RunEvent per step."
    )
    openlineage_api_key: str | None = Field(default=None, description="Bearer token for openlineage_url.")
    freshness_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often freshness SLAs are evaluated."
    )
    freshness_window_seconds: float = Field(
        default=7 * 86400, gt=0, description="Window of headwater_freshness_sla_met_ratio (the '99.5 %' figure)."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="Slack-compatible or generic webhook that receives one message per incident."
    )
    alert_webhook_token: str | None = Field(default=None, description="Bearer token for alert_webhook_url.")
    delivery_queue_bytes: int = Field(
        default=16 * 1024 * 1024, ge=64 * 1024,
        description="Bytes of JSON each sender (alerts, OpenLineage) may hold waiting for its receiver; "
        "a payload that does not fit is dropped and counted in headwater_delivery_dropped_total.",
    )
    record_rescan_seconds: float = Field(
        default=30.0, gt=0, description="How often finished runs not yet in the lineage store are looked for."
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [ns.strip() for ns in value.split(",") if ns.strip()]
        return value


def load_settings() -> Settings:
    """Settings from the environment."""
    return Settings()
