"""The lineage HTTP API (aiohttp): upstream, downstream, explain, datasets, runs, OpenLineage ingest and the web UI.

Secure and bounded by default.  Every route but the probes (``/livez``, ``/healthz``, ``/readyz``,
``/metrics``) and the web UI's page and scripts (``/ui/``, no data: see :mod:`headwater.lineage.ui`) needs
``Authorization: Bearer <token>``: the read token for queries, the write token for
``POST /api/v1/lineage`` (:class:`ApiAuth`; a server without the token of a route refuses it).  Graph
answers are pages of at most ``limit`` nodes and edges (``truncated``, ``nextCursor``).  Store work and
the JSON encoding of answers run on the API's own threads (:class:`Workers`), never on the event loop or
its default executor, so slow queries cannot delay the operator's loops; at most ``max_waiting``
requests wait for a thread (429 beyond).  Ingested events are stored in batches
(:mod:`headwater.lineage.ingest_queue`); a body up to :data:`INLINE_PARSE` is parsed on the loop.

Datasets in URLs: the dataset **name** is the rest of the path, percent-encoded as one segment
(``raw.orders``, ``a%2Fb`` for ``a/b``); its OpenLineage **namespace** is the optional
``?namespace=`` query parameter.  Names too long for a URL are asked with ``POST /v1/query/...`` and a
JSON body.  Without a namespace the name must be unique (409 ``ambiguous_dataset`` otherwise).  Errors
are ``{"error": {"code": ..., "message": ...}}``; docs/lineage.md lists them.  Serving the API (in the
operator or alone) is :mod:`headwater.controller.api_server`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import psycopg
from aiohttp import web

from headwater.lineage import views
from headwater.lineage.ingest_queue import (
    DEFAULT_MAX_QUEUE_BYTES,
    IngestQueue,
    IngestQueueFullError,
)
from headwater.lineage.openlineage import InvalidEventError, ParsedEvent, parse_run_event
from headwater.lineage.queries import (
    DEFAULT_DEPTH,
    DEFAULT_LIMIT,
    MAX_DEPTH,
    MAX_LIMIT,
    AmbiguousDatasetError,
    BadCursorError,
    Cursor,
    DatasetNotFoundError,
    RunNotFoundError,
)
from headwater.lineage.records import jsonable
from headwater.lineage.store import LineageStore
from headwater.lineage.ui import UI_PATH, WebUi

__all__ = ["INGEST_PATH", "MAX_BODY", "OPEN_PATHS", "STORE", "ApiAuth", "Workers", "create_app", "start_api",
           "waiting_app"]

log = logging.getLogger(__name__)

STORE: Final = web.AppKey("store", LineageStore)
OPEN_PATHS: Final = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})
INGEST_PATH: Final = "/api/v1/lineage"
MAX_BODY: Final = 4 * 1024 * 1024
DEFAULT_MAX_WAITING: Final = 64
INLINE_PARSE: Final = 16 * 1024
"""Ingested bodies up to this size are parsed on the event loop, larger ones on the API's threads."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiAuth:
    """Who may do what: the read token queries, the write token ingests; neither does the other's work.

    ``enabled=False`` opens every route to anyone who reaches the port (an explicit choice)."""

    read_token: str | None = None
    write_token: str | None = None
    enabled: bool = True

    def warnings(self) -> list[str]:
        """What an operator of the server should hear at start."""
        if not self.enabled:
            return ["the lineage API runs WITHOUT authentication (auth disabled): anyone who reaches its port "
                    "can read lineage and step errors and ingest events"]
        return [f"no {what} token is set ({env}): the API refuses every {routes}"
                for token, what, env, routes in [
                    (self.read_token, "read", "HEADWATER_API_TOKEN", "query"),
                    (self.write_token, "write", "HEADWATER_API_WRITE_TOKEN", "ingest (POST /api/v1/lineage)")]
                if not token]


_AUTH: Final = web.AppKey("auth", ApiAuth)


class BadRequestError(ValueError):
    """A request parameter or body is not acceptable; the message says which and why."""


class BoardUnavailableError(RuntimeError):
    """The freshness board's source (the operator's Kubernetes client) failed to answer."""


class TooBusyError(RuntimeError):
    """More requests wait for the API's threads than it queues."""


class Workers:
    """The API's own threads: at most ``threads`` store calls at once, at most ``max_waiting`` queued."""

    def __init__(self, threads: int, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.threads, self.max_waiting = threads, max_waiting
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lineage-api")
        self._lock = threading.Lock()
        self._admitted = 0

    def _done(self, _: object) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` on a worker thread; :class:`TooBusyError` when the queue is full."""
        with self._lock:
            if self._admitted >= self.threads + self.max_waiting:
                raise TooBusyError(f"at most {self.threads} lineage queries run and {self.max_waiting} wait at "
                                   "once; try again shortly")
            self._admitted += 1
        try:
            future = self._executor.submit(partial(function, *args, **kwargs))
        except BaseException:
            self._done(None)
            raise
        # Counted until the thread is done, even when the client has gone and the handler was cancelled.
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_WORKERS: Final = web.AppKey("workers", Workers)
_INGEST: Final = web.AppKey("ingest", IngestQueue)
FreshnessBoard = Callable[[], Any]
"""Answers the freshness board's JSON (:func:`headwater.sla.board.freshness_board` over the Pipelines)."""
_FRESHNESS: Final[web.AppKey[FreshnessBoard | None]] = web.AppKey("freshness")
GRAPH_DEPTH: Final = 3
"""The graph view's default depth (each direction)."""


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


_HTTP_CODES: Final = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
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
    except (BadRequestError, BadCursorError) as exc:
        return _error(400, "bad_request", str(exc))
    except BoardUnavailableError as exc:
        log.warning("Freshness board unavailable: %s", exc.__cause__)
        return _error(503, "board_unavailable", str(exc))
    except (TooBusyError, IngestQueueFullError) as exc:
        response = _error(429, "too_many_requests", str(exc))
        response.headers["Retry-After"] = "1"
        return response
    except psycopg.errors.QueryCanceled:
        timeout = request.app[STORE].statement_timeout
        if request.path == INGEST_PATH:
            return _error(503, "store_busy", f"storing the event took longer than the store's statement_timeout "
                                             f"({timeout:g} s); try again later")
        return _error(422, "query_timeout", f"the query ran longer than the API's statement_timeout ({timeout:g} s); "
                                            "ask for less: a smaller depth or limit")
    except psycopg.OperationalError:
        log.exception("Lineage store unavailable for %s %s", request.method, request.path)
        return _error(503, "store_unavailable", "the lineage store is not reachable; try again later")
    except Exception:
        log.exception("Failed to answer %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; see the API server's log")


def _bearer(request: web.Request) -> bytes:
    return request.headers.get("Authorization", "").encode(errors="replace")


def _is(given: bytes, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(given, f"Bearer {token}".encode())


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[_AUTH]
    # The UI's routes serve only the page and its scripts (no data): the page asks for the read token and
    # sends it with every data request.  Decided by the route that matched, not by the path's text.
    if not auth.enabled or request.path in OPEN_PATHS or WebUi.serves(request.match_info.handler):
        return await handler(request)
    write = request.path == INGEST_PATH
    needed, other = (auth.write_token, auth.read_token) if write else (auth.read_token, auth.write_token)
    what = "write (ingest)" if write else "read"
    given = _bearer(request)
    if _is(given, needed):
        return await handler(request)
    if _is(given, other):
        return _error(403, "forbidden", f"this route needs the {what} token; the token given may not "
                                        f"{'ingest' if write else 'read'}")
    message = (f"an 'Authorization: Bearer <{what} token>' header is required" if needed
               else f"this server has no {what} token configured, so it refuses every such request")
    response = _error(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="headwater"'
    return response


def _int(raw: object, name: str, low: int, high: int) -> int:
    value = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if isinstance(raw, str):
        try:
            value = int(raw)
        except ValueError:
            value = None
    if value is None or not low <= value <= high:
        shown = raw[:32] if isinstance(raw, str) else raw
        raise BadRequestError(f"{name} must be an integer between {low} and {high} (got {shown!r})")
    return value


def _text(raw: object, name: str, *, required: bool) -> str | None:
    if raw is None and not required:
        return None
    if not isinstance(raw, str) or not raw:
        raise BadRequestError(f"{name} must be a non-empty string" + ("" if required else ", when given"))
    return raw


@dataclass(frozen=True)
class _Query:
    """What a dataset query asks: from the path and query string (GET) or from a JSON body (POST)."""

    name: str
    namespace: str | None
    depth: int
    limit: int
    cursor: Cursor | None

    @classmethod
    def parse(cls, fields: dict[str, Any], name: object) -> _Query:
        cursor = _text(fields.get("cursor"), "cursor", required=False)
        return cls(
            name=str(_text(name, "name", required=True)),
            namespace=_text(fields.get("namespace"), "namespace", required=False),
            depth=_int(fields.get("depth", DEFAULT_DEPTH), "depth", 1, MAX_DEPTH),
            limit=_int(fields.get("limit", DEFAULT_LIMIT), "limit", 1, MAX_LIMIT),
            cursor=Cursor.decode(cursor) if cursor is not None else None,
        )


def _reject_constant(name: str) -> None:
    raise BadRequestError(f"body: {name} is not valid JSON")


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except BadRequestError:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"body: not a JSON document ({type(exc).__name__}: {str(exc)[:200]})") from None


async def _query(request: web.Request) -> _Query:
    if request.method == "GET":
        return _Query.parse(dict(request.query), request.match_info["name"])
    fields = await request.app[_WORKERS].run(_decode, await request.read())
    if not isinstance(fields, dict):
        raise BadRequestError("body: must be a JSON object such as {\"name\": \"raw.orders\"}")
    unknown = sorted(set(fields) - {"name", "namespace", "depth", "limit", "cursor"})
    if unknown:
        raise BadRequestError(f"body: unknown fields {', '.join(map(repr, unknown))[:200]}")
    return _Query.parse(fields, fields.get("name"))


def _encoded(function: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """Call the store and encode its answer, both on a worker thread (a large answer is CPU work too)."""
    return json.dumps(jsonable(function(*args, **kwargs))).encode()


async def _answer(request: web.Request, function: Callable[..., Any], *args: Any, status: int = 200,
                  **kwargs: Any) -> web.Response:
    body = await request.app[_WORKERS].run(_encoded, function, *args, **kwargs)
    return web.Response(body=body, status=status, content_type="application/json")


async def _upstream(request: web.Request) -> web.Response:
    q = await _query(request)
    return await _answer(request, request.app[STORE].upstream, q.name, namespace=q.namespace, depth=q.depth,
                         limit=q.limit, cursor=q.cursor)


async def _downstream(request: web.Request) -> web.Response:
    q = await _query(request)
    return await _answer(request, request.app[STORE].downstream, q.name, namespace=q.namespace, depth=q.depth,
                         limit=q.limit, cursor=q.cursor)


async def _explain(request: web.Request) -> web.Response:
    q = await _query(request)
    if q.cursor is not None:
        raise BadRequestError("cursor: explain ranks the nearest datasets and has no further pages; "
                              "explain a dataset further upstream instead")
    return await _answer(request, request.app[STORE].explain, q.name, namespace=q.namespace, depth=q.depth,
                         limit=q.limit)


async def _dataset(request: web.Request) -> web.Response:
    q = await _query(request)
    return await _answer(request, request.app[STORE].dataset, q.name, namespace=q.namespace)


def _listing(store: LineageStore, limit: int, offset: int) -> dict[str, Any]:
    return {"datasets": store.datasets(limit=limit, offset=offset), "limit": limit, "offset": offset}


async def _datasets(request: web.Request) -> web.Response:
    limit = _int(request.query.get("limit", DEFAULT_LIMIT), "limit", 1, MAX_LIMIT)
    offset = _int(request.query.get("offset", 0), "offset", 0, 2**31 - 1)
    return await _answer(request, _listing, request.app[STORE], limit, offset)


async def _run(request: web.Request) -> web.Response:
    return await _answer(request, request.app[STORE].run, request.match_info["id"])


async def _graph(request: web.Request) -> web.Response:
    q = _Query.parse({"depth": GRAPH_DEPTH, **request.query}, request.match_info["name"])
    if q.cursor is not None:
        raise BadRequestError("cursor: the graph view has one page; ask upstream or downstream for more")
    return await _answer(request, request.app[STORE].view, views.neighbourhood, q.name, namespace=q.namespace,
                         depth=q.depth, limit=q.limit)


async def _columns(request: web.Request) -> web.Response:
    name = str(_text(request.match_info["name"], "name", required=True))
    namespace = _text(request.query.get("namespace"), "namespace", required=False)
    return await _answer(request, request.app[STORE].view, views.columns, name, namespace=namespace)


def _run_page(store: LineageStore, pipeline: str | None, namespace: str | None, limit: int,
              offset: int) -> dict[str, Any]:
    return {"runs": store.view(views.runs, pipeline=pipeline, namespace=namespace, limit=limit, offset=offset),
            "limit": limit, "offset": offset}


async def _runs(request: web.Request) -> web.Response:
    limit = _int(request.query.get("limit", 50), "limit", 1, views.MAX_PAGE)
    offset = _int(request.query.get("offset", 0), "offset", 0, 2**31 - 1)
    pipeline = _text(request.query.get("pipeline"), "pipeline", required=False)
    namespace = _text(request.query.get("namespace"), "namespace", required=False)
    return await _answer(request, _run_page, request.app[STORE], pipeline, namespace, limit, offset)


async def _search(request: web.Request) -> web.Response:
    text = str(_text(request.query.get("q"), "q", required=True))
    if len(text) > views.MAX_QUERY:
        raise BadRequestError(f"q must be at most {views.MAX_QUERY} characters (got {len(text)})")
    limit = _int(request.query.get("limit", 20), "limit", 1, views.MAX_SEARCH)
    return await _answer(request, request.app[STORE].view, views.search, text, limit=limit)


def _flow(store: LineageStore, pipeline: str, namespace: str | None) -> dict[str, Any]:
    links = store.view(views.step_flow, pipeline, namespace)
    return {"pipeline": pipeline, "namespace": namespace, "links": [{"from": a, "to": b} for a, b in links]}


async def _step_flow(request: web.Request) -> web.Response:
    pipeline = str(_text(request.query.get("pipeline"), "pipeline", required=True))
    namespace = _text(request.query.get("namespace"), "namespace", required=False)
    return await _answer(request, _flow, request.app[STORE], pipeline, namespace)


async def _freshness(request: web.Request) -> web.Response:
    board = request.app[_FRESHNESS]
    if board is None:
        return web.json_response({"available": False, "datasets": [], "incidents": [], "truncated": False,
                                  "reason": "this API server reads no Pipelines (it runs without the operator); "
                                            "the operator's API serves the freshness board"})
    return await _answer(request, _board, board)


def _board(board: FreshnessBoard) -> Any:
    try:
        return board()
    except Exception as exc:
        raise BoardUnavailableError("the Pipelines could not be read from Kubernetes; try again shortly") from exc


def _parse_event(body: bytes) -> ParsedEvent:
    try:
        event = parse_run_event(_decode(body))
        event.digest  # noqa: B018  (computed here, so an event too deep to encode fails alone, on its own)
        return event
    except RecursionError:
        raise BadRequestError("body: nested too deeply") from None


async def _ingest(request: web.Request) -> web.Response:
    """POST /api/v1/lineage: one OpenLineage RunEvent, stored whole or not at all (see ingest_queue)."""
    body = await request.read()
    # A small event is parsed on the loop (a fraction of a millisecond; a hop to a thread and back costs
    # about as much again); a larger one on the API's threads.
    event = _parse_event(body) if len(body) <= INLINE_PARSE else await request.app[_WORKERS].run(_parse_event, body)
    try:
        result = await request.app[_INGEST].submit(event, len(body))
    except RecursionError:
        raise BadRequestError("body: nested too deeply") from None
    answer = {"eventType": result.event_type, "runId": result.run_id, "duplicate": result.duplicate,
              "records": result.records}
    return web.Response(body=json.dumps(answer).encode(), status=201, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    if await request.app[_WORKERS].run(request.app[STORE].ping):
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


def create_app(store: LineageStore, *, auth: ApiAuth | None = None, max_body_bytes: int = MAX_BODY,
               threads: int | None = None, max_waiting: int = DEFAULT_MAX_WAITING,
               freshness: FreshnessBoard | None = None, ui: WebUi | None = None,
               ingest_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES) -> web.Application:
    """The API over ``store``.  ``auth`` defaults to required tokens with none set: only the probes answer.

    ``threads`` (default: the store's pool size) run the store calls; ``max_waiting`` more may queue.
    Ingested events are stored in batches; at most ``ingest_queue_bytes`` of them wait (429 beyond).
    ``freshness`` answers ``/v1/freshness`` (the operator passes one that reads the Pipelines; without it
    the board says it is not available); ``ui`` serves the web UI (default: the one built into the package)."""
    app = web.Application(middlewares=[_errors, _auth], client_max_size=max_body_bytes)
    app[STORE] = store
    app[_AUTH] = auth or ApiAuth()
    app[_FRESHNESS] = freshness
    workers = Workers(threads or store.max_size, max_waiting)
    app[_WORKERS] = workers
    ingest = IngestQueue(store, workers.run, max_queue_bytes=ingest_queue_bytes)
    app[_INGEST] = ingest

    async def close_workers(_: web.Application) -> None:
        ingest.close()
        workers.close()

    app.on_cleanup.append(close_workers)
    any_name = "{name:[\\s\\S]+}"  # a newline is a character like any other in a dataset name
    app.router.add_get("/livez", _livez)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _healthz)
    app.router.add_get(f"/v1/lineage/upstream/{any_name}", _upstream)
    app.router.add_get(f"/v1/lineage/downstream/{any_name}", _downstream)
    app.router.add_get(f"/v1/explain/{any_name}", _explain)
    app.router.add_get("/v1/datasets", _datasets)
    app.router.add_get(f"/v1/datasets/{any_name}", _dataset)
    app.router.add_get("/v1/runs/{id:[\\s\\S]+}", _run)
    app.router.add_post("/v1/query/upstream", _upstream)
    app.router.add_post("/v1/query/downstream", _downstream)
    app.router.add_post("/v1/query/explain", _explain)
    app.router.add_post("/v1/query/dataset", _dataset)
    app.router.add_post(INGEST_PATH, _ingest)
    app.router.add_get(f"/v1/graph/{any_name}", _graph)
    app.router.add_get(f"/v1/columns/{any_name}", _columns)
    app.router.add_get("/v1/runs", _runs)
    app.router.add_get("/v1/search", _search)
    app.router.add_get("/v1/flow", _step_flow)
    app.router.add_get("/v1/freshness", _freshness)
    (ui or WebUi.packaged()).add_routes(app.router)
    return app


async def start_api(store: LineageStore | None, *, host: str, port: int, auth: ApiAuth | None = None,
                    max_waiting: int = DEFAULT_MAX_WAITING, freshness: FreshnessBoard | None = None
                    ) -> web.AppRunner:
    """Serve the API in the running event loop (e.g. the operator's); ``await runner.cleanup()`` stops it.

    Without a store (not reachable yet) only /livez answers, so a liveness probe never restarts an
    operator whose database is away."""
    app = waiting_app() if store is None else create_app(store, auth=auth, max_waiting=max_waiting,
                                                         freshness=freshness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("Serving the lineage API on %s:%d (web UI at %s)", host, port, UI_PATH)
    return runner
