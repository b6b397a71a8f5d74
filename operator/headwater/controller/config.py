"""Operator settings, read once at start from ``HEADWATER_*`` environment variables."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from headwater.spec.rules import DNS_LABEL, DNS_SUBDOMAIN
from headwater.spec.shards import Shard

__all__ = ["Settings", "load_settings"]

# name, or namespace/name
_ACCOUNT = re.compile(rf"^({DNS_LABEL[1:-1]}/)?{DNS_SUBDOMAIN[1:-1]}$")


class Settings(BaseSettings):
    """Every tunable of the operator, validated at start; an invalid value stops the process with a clear error."""

    # Never echo a rejected value: some (the database URL, tokens) are secrets.
    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore", frozen=True, hide_input_in_errors=True)

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch (comma-separated); empty means cluster-wide.",
    )
    step_image: str = Field(
        default="ghcr.io/headwater-dev/headwater:0.1.0",
        description="Image that runs sql steps (`headwater step sql`) when a step names none.",
    )
    allowed_service_accounts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="ServiceAccounts steps may name in serviceAccountName (comma-separated), each as name (in "
        "any namespace) or namespace/name; empty means any. A step naming another one fails without a Job.",
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
    api_host: str = Field(
        default="127.0.0.1",
        description="Address the lineage HTTP API listens on (in a pod: 0.0.0.0, which the chart sets).",
    )
    api_auth_enabled: bool = Field(
        default=True,
        description="Require bearer tokens on every API route but the probes; false opens the API to anyone "
        "who reaches it (logged as a warning at start).",
    )
    api_token: str | None = Field(default=None, description="Bearer token of the API's read (query) routes.")
    api_write_token: str | None = Field(
        default=None, description="Bearer token of the API's ingest route (POST /api/v1/lineage)."
    )
    api_threads: int = Field(
        default=4, ge=1, le=64,
        description="Threads (and database connections) of the API's own pool: its store work never runs "
        "on the threads of the operator's loops.",
    )
    api_max_waiting: int = Field(
        default=64, ge=0, le=10_000, description="Requests that may wait for an API thread; more get 429."
    )
    api_statement_timeout_seconds: float = Field(
        default=10.0, gt=0, le=3600,
        description="statement_timeout of the API's database connections: a longer query answers 422.",
    )
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
        default=30.0, gt=0, description="How often finished runs not yet in the lineage store, and the outputs of "
        "Ready Pipelines, are looked for."
    )
    backfill_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often Backfills create their next runs and write their progress."
    )
    trigger_rescan_seconds: float = Field(
        default=2.0, gt=0, description="How often dataset triggers are evaluated without a new version's "
        "notification (a resumed Pipeline, a run whose creation failed); new versions wake them at once.",
    )

    shard: str | None = Field(
        default=None,
        description="This instance's shard, i/N (e.g. 0/3): it acts only on the namespaces whose SHA-256 is i "
        "modulo N; unset: every namespace (docs/install.md, Sharding).",
    )
    leader_election: bool = Field(
        default=False,
        description="Stand by until this process holds the Lease (leader election), so that replicas never "
        "act at once; off: act at once, as the only instance.",
    )
    lease_name: str = Field(
        default="headwater-operator", pattern=DNS_SUBDOMAIN,
        description="Name of the coordination.k8s.io Lease; with a shard, -shard-i-of-N is appended.",
    )
    lease_namespace: str | None = Field(
        default=None, pattern=DNS_LABEL,
        description="Namespace of the Lease; unset: the pod's own namespace (in a pod), else default.",
    )
    leader_identity: str | None = Field(
        default=None, max_length=128,
        description="This candidate's name in the Lease; unset: the host (pod) name and a random suffix.",
    )
    lease_duration_seconds: int = Field(
        default=10, ge=2, le=300,
        description="How long a Lease not renewed stays its holder's: the longest handover after a crash.",
    )
    lease_renew_deadline_seconds: float = Field(
        default=7.0, gt=0,
        description="The leader stops (exits) when it could not renew its Lease for this long; below the "
        "lease duration, so it has stopped before anyone else may take over.",
    )
    lease_retry_seconds: float = Field(
        default=2.0, gt=0, description="How often the leader renews and a standby tries to take over."
    )

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return str(Shard.parse(value))

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        if not self.lease_retry_seconds < self.lease_renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError("lease timing must be retry < renew deadline < duration "
                             f"({self.lease_retry_seconds:g} < {self.lease_renew_deadline_seconds:g} < "
                             f"{self.lease_duration_seconds})")
        return self

    def owned_shard(self) -> Shard | None:
        return Shard.parse(self.shard) if self.shard else None

    def lease(self) -> str:
        """The Lease's name: one per shard."""
        shard = self.owned_shard()
        return f"{self.lease_name}-{shard.suffix}" if shard else self.lease_name

    @field_validator("namespaces", "allowed_service_accounts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [ns.strip() for ns in value.split(",") if ns.strip()]
        return value

    @field_validator("allowed_service_accounts")
    @classmethod
    def _account_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not _ACCOUNT.match(name)]
        if bad:
            raise ValueError(f"not a ServiceAccount name or namespace/name: {', '.join(bad)}")
        return value


def load_settings() -> Settings:
    """Settings from the environment."""
    return Settings()
