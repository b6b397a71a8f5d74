"""Group commit of OpenLineage ingest: the events of concurrent requests are stored in one transaction.

A request's event waits in :class:`IngestQueue` while the batch before it is stored; the next batch takes
every waiting event (at most ``max_batch_bytes`` and ``max_batch_events``) and stores it in one transaction
on the API's threads, and each request is answered only once its event is committed.  An event the
database refuses fails alone (``LineageStore.ingest_batch`` stores the batch again one by one).  At most
``max_queue_bytes`` of events wait or are being stored at once: beyond, a request is refused
(:class:`IngestQueueFullError`, HTTP 429) rather than held in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from headwater.lineage.openlineage import ParsedEvent
from headwater.lineage.store import IngestResult, LineageStore

__all__ = ["DEFAULT_MAX_BATCH_BYTES", "DEFAULT_MAX_BATCH_EVENTS", "DEFAULT_MAX_QUEUE_BYTES", "IngestQueue",
           "IngestQueueFullError"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_BYTES: Final = 1024 * 1024
"""Request bytes stored in one transaction at most (a larger event is a batch of its own)."""
DEFAULT_MAX_BATCH_EVENTS: Final = 64
DEFAULT_MAX_QUEUE_BYTES: Final = 16 * 1024 * 1024
"""Request bytes waiting or being stored at once at most (a lone event is always taken)."""

Runner = Callable[..., Awaitable[Any]]
"""Runs ``function(*args)`` off the event loop (the API's :class:`headwater.lineage.api.Workers`)."""


class IngestQueueFullError(RuntimeError):
    """More event bytes wait to be stored than the queue holds."""


@dataclass
class _Item:
    event: ParsedEvent
    size: int
    answer: asyncio.Future[IngestResult]


class IngestQueue:
    """Events waiting to be stored, and the one batch being stored; use it from one event loop only."""

    def __init__(self, store: LineageStore, run: Runner, *, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                 max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS,
                 max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES) -> None:
        self.max_batch_bytes, self.max_batch_events = max_batch_bytes, max_batch_events
        self.max_queue_bytes = max_queue_bytes
        self._store, self._run = store, run
        self._waiting: deque[_Item] = deque()
        self._bytes = 0
        self._storing: asyncio.Task[None] | None = None

    async def submit(self, event: ParsedEvent, size: int) -> IngestResult:
        """Store ``event`` (``size``: its request's bytes) with whatever else waits; return once committed."""
        if self._bytes and self._bytes + size > self.max_queue_bytes:
            raise IngestQueueFullError(
                f"at most {self.max_queue_bytes} bytes of OpenLineage events wait to be stored at once; "
                "try again shortly")
        item = _Item(event, size, asyncio.get_running_loop().create_future())
        self._waiting.append(item)
        self._bytes += size
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_waiting(), name="lineage-ingest")
        # A client that goes away does not take its event back: it is stored all the same.
        return await asyncio.shield(item.answer)

    def _next_batch(self) -> list[_Item]:
        batch = [self._waiting.popleft()]
        size = batch[0].size
        while (self._waiting and len(batch) < self.max_batch_events
               and size + self._waiting[0].size <= self.max_batch_bytes):
            batch.append(self._waiting.popleft())
            size += batch[-1].size
        return batch

    async def _store_waiting(self) -> None:
        while self._waiting:
            batch = self._next_batch()
            results: list[IngestResult | BaseException]
            try:
                results = list(await self._run(self._store.ingest_batch, [item.event for item in batch]))
            except Exception as exc:  # the API's threads refused the batch (too busy): each request hears it
                results = [exc] * len(batch)
            except BaseException:  # the loop is stopping: the requests end unanswered, their clients retry
                self._answer(batch, None)
                raise
            self._answer(batch, results)

    def _answer(self, batch: list[_Item], results: list[IngestResult | BaseException] | None) -> None:
        for k, item in enumerate(batch):
            self._bytes -= item.size
            result = None if results is None else results[k]
            if item.answer.done():
                continue
            if result is None:
                item.answer.cancel()
            elif isinstance(result, BaseException):
                item.answer.set_exception(result)
            else:
                item.answer.set_result(result)

    def close(self) -> None:
        """Stop storing; requests still waiting end unanswered (their clients retry: writes are idempotent)."""
        if self._storing is not None and not self._storing.done():
            self._storing.cancel()
        while self._waiting:
            self._answer([self._waiting.popleft()], None)
