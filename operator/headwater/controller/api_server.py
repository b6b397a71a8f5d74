"""Serving the lineage API: inside the operator's event loop, or alone as ``headwater api``.

Both read the same :class:`~headwater.controller.config.Settings` (``HEADWATER_DATABASE_URL``,
``HEADWATER_API_HOST``, ``HEADWATER_API_PORT``, ``HEADWATER_API_TOKEN``).  Inside the operator the port
answers /livez from the start and the rest once the store can be opened, so a database outage never
fails the liveness probe.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from headwater.controller.config import Settings
from headwater.lineage.api import create_app, start_api
from headwater.lineage.store import LineageStore
from headwater.spec.redaction import redact

__all__ = ["serve", "serve_when_ready"]

log = logging.getLogger(__name__)


async def serve_when_ready(settings: Settings) -> None:
    """Serve the API from this process once the store opens (retrying until then), until cancelled."""
    assert settings.database_url is not None
    waiting = await start_api(None, host=settings.api_host, port=settings.api_port)
    try:
        store = await _open_store(settings.database_url)
    finally:
        await waiting.cleanup()
    runner = await start_api(store, host=settings.api_host, port=settings.api_port, token=settings.api_token)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        store.close()


async def _open_store(url: str) -> LineageStore:
    delay = 1.0
    while True:
        try:
            return await asyncio.to_thread(LineageStore.open, url)
        except Exception as exc:
            log.warning("lineage API waits for the database: %s; retrying in %.0fs", redact(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def serve(settings: Settings) -> int:
    """Block serving the API alone (``headwater api``); the store must be reachable at start."""
    if not settings.database_url:
        raise SystemExit("error: give --database-url or set HEADWATER_DATABASE_URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with LineageStore.open(settings.database_url) as store:
        web.run_app(create_app(store, token=settings.api_token), host=settings.api_host, port=settings.api_port,
                    print=None)
    return 0
