"""Helpers of the lineage API tests (no tests here): the API served on loopback with its tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp.test_utils import TestClient, TestServer

from headwater.lineage import LineageStore
from headwater.lineage.api import INGEST_PATH, ApiAuth, create_app

T = TypeVar("T")
Client = TestClient[Any, Any]
READ, WRITE = "read-s3cret", "write-s3cret"
AUTH = ApiAuth(READ, WRITE)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def serve(store: LineageStore, scenario: Callable[[Client], Awaitable[T]], auth: ApiAuth = AUTH) -> T:
    """Run ``scenario`` against the API served on 127.0.0.1 (a free port)."""
    async def main() -> T:
        async with TestClient(TestServer(create_app(store, auth=auth), host="127.0.0.1")) as client:
            return await scenario(client)

    return asyncio.run(main())


def call(store: LineageStore, method: str, path: str, *, body: bytes | None = None,
         headers: dict[str, str] | None = None, auth: ApiAuth = AUTH) -> tuple[int, Any]:
    """One request (with the route's token unless ``headers`` are given): the status and the JSON answer."""
    if headers is None:
        headers = bearer(WRITE if path == INGEST_PATH else READ)

    async def scenario(client: Client) -> tuple[int, Any]:
        async with client.request(method, path, data=body, headers=headers) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()

    return serve(store, scenario, auth)


def get(store: LineageStore, path: str, **kwargs: Any) -> tuple[int, Any]:
    return call(store, "GET", path, **kwargs)


def post_json(store: LineageStore, path: str, document: object, **kwargs: Any) -> tuple[int, Any]:
    return call(store, "POST", path, body=json.dumps(document).encode(), **kwargs)


def post_event(store: LineageStore, event: object) -> tuple[int, Any]:
    return post_json(store, INGEST_PATH, event)
