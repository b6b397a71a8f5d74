"""Run the operator: /metrics and the lineage API at once, then (once leading, with leader election) kopf.

With ``HEADWATER_LEADER_ELECTION`` a process stands by, serving only /metrics (``headwater_leader 0``)
and the lineage API, until it holds the Lease; only then does kopf start, with every handler and loop.
A leader that loses its Lease exits at once (status 1): nothing more is written, and Kubernetes
restarts the container, which comes back as a standby.  A clean stop (SIGTERM) releases the Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from pathlib import Path

import kopf
from kubernetes import client
from prometheus_client import start_http_server

import headwater.controller.handlers  # noqa: F401  (importing registers the kopf handlers)
from headwater.adapters.metrics import Metrics
from headwater.controller.api_server import serve_when_ready
from headwater.controller.config import Settings, load_settings
from headwater.controller.election import LeaseElector
from headwater.controller.heap import limit_arenas
from headwater.controller.runtime import api_client, board_reader

__all__ = ["run_operator"]

log = logging.getLogger(__name__)

_POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def run_operator(namespaces: list[str] | None = None, *, verbose: bool = False, shard: str | None = None) -> None:
    """Block running the operator, cluster-wide or limited to ``namespaces`` (and to ``shard``, i/N)."""
    limit_arenas()  # before any thread starts: each would get an arena of its own
    settings = load_settings()
    scope = list(namespaces or settings.namespaces)
    # The namespaces given here reach the periodic loops (resync, schedules, freshness) too.
    update: dict[str, object] = {"namespaces": scope}
    if shard:
        update["shard"] = shard
    settings = Settings.model_validate({**settings.model_dump(), **update})
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.INFO if verbose else logging.WARNING)
    asyncio.run(_operate(settings))


async def _operate(settings: Settings) -> None:
    metrics = Metrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    serving = asyncio.create_task(serve_when_ready(settings, board_reader(settings))) \
        if settings.api_port and settings.database_url else None
    await asyncio.to_thread(_load_api_classes)
    elector = await _lead(settings, metrics) if settings.leader_election else None
    metrics.leader.set(1)
    scope = list(settings.namespaces)
    try:
        await kopf.operator(standalone=True, clusterwide=not scope, namespaces=scope,
                            memo=kopf.Memo(settings=settings, metrics=metrics))
    finally:
        if elector is not None:
            await asyncio.to_thread(elector.release)
        if serving is not None:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving


async def _lead(settings: Settings, metrics: Metrics) -> LeaseElector:
    """Stand by until this process holds the Lease; then keep it renewed, exiting the moment it is lost."""
    identity = settings.leader_identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    namespace = settings.lease_namespace or _own_namespace()
    elector = LeaseElector(api_client(4), namespace, settings.lease(), identity,
                           duration_seconds=settings.lease_duration_seconds,
                           renew_deadline_seconds=settings.lease_renew_deadline_seconds,
                           retry_seconds=settings.lease_retry_seconds)
    metrics.leader.set(0)
    log.info("standing by for the Lease %s/%s as %s%s", namespace, settings.lease(), identity,
             f" (shard {settings.shard})" if settings.shard else "")
    holder: str | None = None
    while True:
        try:
            if await asyncio.to_thread(elector.try_lead):
                break
        except Exception as exc:  # the API is unreachable: a standby just tries again
            log.warning("reading the Lease %s/%s failed: %s", namespace, settings.lease(), exc)
        if elector.holder() != holder:
            holder = elector.holder()
            log.info("the Lease %s/%s is held by %s", namespace, settings.lease(), holder or "nobody")
        await asyncio.sleep(settings.lease_retry_seconds)
    elector.keep(_exit_at_once)
    return elector


def _load_api_classes() -> None:
    """Load the kubernetes client's API classes now, before standing by: the package imports them on first
    use, which took 5 s on a busy 2-core machine, and a standby that takes over should not pay that then."""
    for name in ("CustomObjectsApi", "CoordinationV1Api"):
        getattr(client, name)


def _exit_at_once(reason: str) -> None:
    """Leadership is lost: stop every write now, by ending the process (the pod restarts as a standby)."""
    log.critical("lost leadership (%s): exiting so that nothing more is written", reason)
    logging.shutdown()
    os._exit(1)


def _own_namespace() -> str:
    try:
        return _POD_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"
