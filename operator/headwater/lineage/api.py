"""The lineage HTTP API (aiohttp): upstream, downstream, explain, datasets, runs and OpenLineage ingest.

Datasets in URLs: the dataset **name** is the rest of the path, percent-encoded as one segment
(``raw.orders``, ``a%2Fb`` for ``a/b``); its OpenLineage **namespace** is the optional
``?namespace=`` query parameter.  Without it the name must be unique: a name found in several
namespaces answers 409 ``ambiguous_dataset`` listing the candidates.  Errors are
``{"error": {"code": ..., "message": ...}}``.  With a token, every route but ``/healthz`` needs
``Authorization: Bearer <token>`` (401 otherwise).  The store is synchronous; handlers call it in
worker threads.  Serving it (in the operator or alone) is :mod:`headwater.controller.api_server`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import psycopg
from aiohttp import web

from headwater.lineage.openlineage import InvalidEventError
from headwater.lineage.queries import (
    DEFAULT_DEPTH,
    MAX_DEPTH,
    AmbiguousDatasetError,
    DatasetNotFoundError,
    Direction,
    RunNotFoundError,
)
from headwater.lineage.records import jsonable
from headwater.lineage.store import LineageStore

__all__ = ["STORE", "create_app", "start_api", "waiting_app"]

log = logging.getLogger(__name__)

STORE: Final = web.AppKey("store", LineageStore)
_TOKEN: Final = web.AppKey("token", str)
_OPEN_PATHS: Final = frozenset({"/healthz"})
_MAX_BODY: Final = 4 * 1024 * 1024
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequestError(ValueError):
    """A request parameter or body is not acceptable; the message says which and why."""


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


_HTTP_CODES: Final = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                      413: "body_too_large", 415: "unsupported_media_type"}


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON error of the documented shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.text or exc.reason)
    except (DatasetNotFoundError, RunNotFoundError) as exc:
        return _error(404, "not_found", str(exc))
    except AmbiguousDatasetError as exc:
        candidates = [{"namespace": c.namespace, "name": c.name} for c in exc.candidates]
        return _error(409, "ambiguous_dataset", str(exc), candidates=candidates)
    except InvalidEventError as exc:
        return _error(400, "invalid_event", str(exc), details=exc.errors)
    except BadRequestError as exc:
        return _error(400, "bad_request", str(exc))
    except psycopg.OperationalError:
        log.exception("Lineage store unavailable for %s %s", request.method, request.path)
        return _error(503, "store_unavailable", "the lineage store is not reachable; try again later")
    except Exception:
        log.exception("Failed to answer %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; see the API server's log")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app.get(_TOKEN)
    if token and request.path not in _OPEN_PATHS:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = _error(401, "unauthorized", "an 'Authorization: Bearer <token>' header is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="headwater"'
            return response
    return await handler(request)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be an integer between {low} and {high} (got {raw[:32]!r})")
    return value


def _dataset_args(request: web.Request) -> tuple[str, str | None]:
    namespace = request.query.get("namespace")
    if namespace == "":
        raise BadRequestError("namespace, when given, must not be empty")
    return request.match_info["name"], namespace


async def _call(method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) store method in a worker thread."""
    return await asyncio.to_thread(method, *args, **kwargs)


def _ok(value: object, status: int = 200) -> web.Response:
    return web.json_response(jsonable(value), status=status)


async def _graph(request: web.Request, direction: Direction) -> web.Response:
    name, namespace = _dataset_args(request)
    depth = _int_param(request, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH)
    store = request.app[STORE]
    method = store.upstream if direction == "upstream" else store.downstream
    return _ok(await _call(method, name, namespace=namespace, depth=depth))


async def _upstream(request: web.Request) -> web.Response:
    return await _graph(request, "upstream")


async def _downstream(request: web.Request) -> web.Response:
    return await _graph(request, "downstream")


async def _explain(request: web.Request) -> web.Response:
    name, namespace = _dataset_args(request)
    depth = _int_param(request, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH)
    return _ok(await _call(request.app[STORE].explain, name, namespace=namespace, depth=depth))


async def _datasets(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 1000, 1, 10_000)
    offset = _int_param(request, "offset", 0, 0, 2**31 - 1)
    items = await _call(request.app[STORE].datasets, limit=limit, offset=offset)
    return _ok({"datasets": items, "limit": limit, "offset": offset})


async def _dataset(request: web.Request) -> web.Response:
    name, namespace = _dataset_args(request)
    return _ok(await _call(request.app[STORE].dataset, name, namespace=namespace))


async def _run(request: web.Request) -> web.Response:
    return _ok(await _call(request.app[STORE].run, request.match_info["id"]))


def _reject_constant(name: str) -> None:
    raise BadRequestError(f"body: {name} is not valid JSON")


async def _ingest(request: web.Request) -> web.Response:
    """POST /api/v1/lineage: one OpenLineage RunEvent, stored whole or not at all."""
    body = await request.read()
    try:
        event = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, BadRequestError):
            raise
        raise BadRequestError(f"body: not a JSON document ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        result = await _call(request.app[STORE].ingest_openlineage, event)
    except RecursionError:
        raise BadRequestError("body: nested too deeply") from None
    return _ok(result, status=201)


async def _healthz(request: web.Request) -> web.Response:
    if await _call(request.app[STORE].ping):
        return web.json_response({"status": "ok"})
    return _error(503, "store_unavailable", "the lineage store is not reachable")


async def _livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _waiting(request: web.Request) -> web.Response:
    return _error(503, "store_unavailable", "the lineage store has not been reached yet")


def waiting_app() -> web.Application:
    """What the port serves until the lineage store opens: /livez answers, everything else is 503."""
    app = web.Application()
    app.router.add_get("/livez", _livez)
    app.router.add_route("*", "/{tail:.*}", _waiting)
    return app


def create_app(store: LineageStore, *, token: str | None = None, max_body_bytes: int = _MAX_BODY
               ) -> web.Application:
    """The API over ``store``; with ``token``, every route but /healthz needs that bearer token."""
    app = web.Application(middlewares=[_errors, _auth], client_max_size=max_body_bytes)
    app[STORE] = store
    if token:
        app[_TOKEN] = token
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/livez", _livez)
    app.router.add_get("/v1/lineage/upstream/{name:.+}", _upstream)
    app.router.add_get("/v1/lineage/downstream/{name:.+}", _downstream)
    app.router.add_get("/v1/explain/{name:.+}", _explain)
    app.router.add_get("/v1/datasets", _datasets)
    app.router.add_get("/v1/datasets/{name:.+}", _dataset)
    app.router.add_get("/v1/runs/{id:.+}", _run)
    app.router.add_post("/api/v1/lineage", _ingest)
    return app


async def start_api(store: LineageStore | None, *, host: str, port: int, token: str | None = None
                    ) -> web.AppRunner:
    """Serve the API in the running event loop (e.g. the operator's); ``await runner.cleanup()`` stops it.

    Without a store (not reachable yet) only /livez answers, so a liveness probe never restarts an
    operator whose database is away."""
    app = waiting_app() if store is None else create_app(store, token=token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("Serving the lineage API on %s:%d", host, port)
    return runner
