"""Serving the lineage API: inside the operator's event loop, or alone as ``headwater api``.

Both read the same :class:`~headwater.controller.config.Settings` (``HEADWATER_DATABASE_URL``,
``HEADWATER_API_HOST``, ``HEADWATER_API_PORT``, ``HEADWATER_API_TOKEN``, ``HEADWATER_API_WRITE_TOKEN``,
``HEADWATER_API_AUTH_ENABLED`` and the API's bounds).  The API opens a store of its own (its own pool
and threads), so its queries never wait on, or hold up, the operator's recorder and loops.  Inside the
operator the port answers /livez from the start and the rest once the store can be opened, so a
database outage never fails the liveness probe.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from headwater.controller.config import Settings
from headwater.lineage.api import ApiAuth, FreshnessBoard, create_app, start_api
from headwater.lineage.store import LineageStore
from headwater.spec.redaction import redact

__all__ = ["auth_of", "open_api_store", "serve", "serve_when_ready"]

log = logging.getLogger(__name__)


def auth_of(settings: Settings) -> ApiAuth:
    """The API's tokens from the settings; what is missing or switched off is logged as a warning."""
    auth = ApiAuth(settings.api_token, settings.api_write_token, settings.api_auth_enabled)
    for warning in auth.warnings():
        log.warning("%s", warning)
    return auth


def open_api_store(settings: Settings) -> LineageStore:
    """The API's own store: one connection per API thread, each statement under the API's timeout."""
    assert settings.database_url is not None
    return LineageStore.open(settings.database_url, max_size=settings.api_threads,
                             statement_timeout=settings.api_statement_timeout_seconds)


async def serve_when_ready(settings: Settings, freshness: FreshnessBoard | None = None) -> None:
    """Serve the API from this process once the store opens (retrying until then), until cancelled.

    ``freshness`` answers the freshness board (the operator's reads the Pipelines it watches)."""
    auth = auth_of(settings)
    waiting = await start_api(None, host=settings.api_host, port=settings.api_port)
    try:
        store = await _open_store(settings)
    finally:
        await waiting.cleanup()
    runner = await start_api(store, host=settings.api_host, port=settings.api_port, auth=auth,
                             max_waiting=settings.api_max_waiting, freshness=freshness)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        store.close()


async def _open_store(settings: Settings) -> LineageStore:
    delay = 1.0
    while True:
        try:
            return await asyncio.to_thread(open_api_store, settings)
        except Exception as exc:
            log.warning("lineage API waits for the database: %s; retrying in %.0fs", redact(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def serve(settings: Settings) -> int:
    """Block serving the API alone (``headwater api``); the store must be reachable at start."""
    if not settings.database_url:
        raise SystemExit("error: give --database-url or set HEADWATER_DATABASE_URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    auth = auth_of(settings)
    with open_api_store(settings) as store:
        web.run_app(create_app(store, auth=auth, max_waiting=settings.api_max_waiting), host=settings.api_host,
                    port=settings.api_port, print=None)
    return 0
