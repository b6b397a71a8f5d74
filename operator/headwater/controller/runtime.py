"""The operator's shared runtime: settings, API client, engine, recorder, monitors and metrics.

One typed object, created at start-up, kept in kopf's memo and closed at clean-up.
"""

from __future__ import annotations

import asyncio
from functools import partial

from kubernetes import client, config

from headwater.adapters.delivery import JsonPoster
from headwater.adapters.events import EventQueue
from headwater.adapters.kube import KubeClient
from headwater.adapters.metrics import Metrics
from headwater.controller.config import Settings
from headwater.lineage.emitting import OpenLineageEmitter
from headwater.lineage.recording import Recorder
from headwater.lineage.store import LineageStore
from headwater.runs.engine import RunEngine
from headwater.runs.jobs import JobSettings
from headwater.sla.monitor import SlaMonitor

__all__ = ["Runtime", "api_client"]


class Runtime:
    """Everything the handlers share, kept in kopf's memo."""

    def __init__(self, settings: Settings, api_client: client.ApiClient) -> None:
        self.settings = settings
        self.kube = KubeClient(api_client)
        self.events = EventQueue(self.kube)
        self.recorder = Recorder(partial(LineageStore.open, settings.database_url), self.kube, self.scopes(),
                                 settings.record_rescan_seconds) if settings.database_url else None
        self.metrics = Metrics()
        self.emitter = OpenLineageEmitter(settings.openlineage_url, settings.openlineage_api_key) \
            if settings.openlineage_url else None
        self.alerts = JsonPoster(settings.alert_webhook_url, settings.alert_webhook_token, name="alerts") \
            if settings.alert_webhook_url else None
        self.sla = SlaMonitor(self.kube, self.metrics, self.events, self.alerts, self.scopes(),
                              settings.freshness_window_seconds)
        self.engine = RunEngine(self.kube, JobSettings(settings.step_image, settings.job_ttl_seconds),
                                self.events, recorder=self.recorder, metrics=self.metrics,
                                emitter=self.emitter, on_finish=self.sla.run_finished)
        self.tasks: list[asyncio.Task[None]] = []

    def scopes(self) -> list[str | None]:
        return list(self.settings.namespaces) or [None]


def api_client(pool: int) -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)
