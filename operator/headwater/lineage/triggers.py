"""The trigger outbox in the lineage store: pending versions per consumer, claiming firings, confirming runs.

Every new dataset version gets an outbox row in its own transaction (migration 7's database trigger).  A
consumer (one Pipeline) sees the rows written after it first registered, of the datasets it declares, that
are published (``hw_version_published``) and that it has not consumed.  :func:`claim` writes a firing and
its consumed rows in one transaction and refuses when any row is taken already, so two operators (or two
passes) never fire the same row twice; the firing stays unconfirmed until its run exists.

The ``*_all`` functions do the same for many consumers in one statement each (a trigger pass woken by many
versions at once): :func:`register_all`, :func:`unconfirmed_all`, :func:`pending_all`, :func:`claim_all`
(each firing still all or nothing) and :func:`confirm_all`.
"""

from __future__ import annotations

import json
import select
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from headwater.lineage.records import dataset_key
from headwater.pipelines.triggering import Firing, PendingVersion
from headwater.spec.models import TriggerVersion

__all__ = ["NOTIFY_CHANNEL", "UnconfirmedFiring", "claim", "claim_all", "confirm", "confirm_all", "dataset_hex",
           "pending_all", "pending_versions", "register", "register_all", "unconfirmed", "unconfirmed_all",
           "wait_for_versions"]

Conn = psycopg.Connection[Any]

NOTIFY_CHANNEL = "headwater_dataset_versions"
PENDING_LIMIT = 1000
"""Outbox rows read per consumer and pass (oldest first); the rest are read in the next passes."""

_REGISTER = """
INSERT INTO trigger_consumers (consumer, since) VALUES (%s, coalesce(%s, clock_timestamp()))
ON CONFLICT (consumer) DO NOTHING
"""

_PENDING = """
SELECT o.id, d.namespace, d.name, v.id, v.run_id, v.pipeline, v.written_at
FROM trigger_consumers c
JOIN trigger_outbox o ON o.created_at >= c.since
JOIN datasets d ON d.id = o.dataset_id
JOIN dataset_versions v ON v.id = o.version_id
WHERE c.consumer = %(consumer)s AND d.ident = ANY(%(idents)s)
  AND NOT EXISTS (SELECT 1 FROM trigger_consumed t WHERE t.consumer = c.consumer AND t.outbox_id = o.id)
  AND hw_version_published(v.id)
ORDER BY o.id
LIMIT %(limit)s
"""

_INSERT_FIRING = """
INSERT INTO trigger_firings (consumer, run_name, versions) VALUES (%s, %s, %s)
ON CONFLICT (consumer, run_name) DO NOTHING
RETURNING id
"""

_CONSUME = """
INSERT INTO trigger_consumed (consumer, outbox_id, firing_id)
SELECT %s, o, %s FROM unnest(%s::bigint[]) AS o
ON CONFLICT (consumer, outbox_id) DO NOTHING
"""

_UNCONFIRMED = """
SELECT id, run_name, versions FROM trigger_firings
WHERE consumer = %s AND confirmed_at IS NULL ORDER BY id LIMIT %s
"""


class _TakenError(Exception):
    """Another pass consumed one of the rows first: this firing is rolled back."""


class UnconfirmedFiring:
    """A claimed firing whose run is not known to exist yet."""

    def __init__(self, firing_id: int, run_name: str, versions: list[TriggerVersion]) -> None:
        self.firing_id, self.run_name, self.versions = firing_id, run_name, versions


def register(conn: Conn, consumer: str, since: datetime | None) -> None:
    """Start consuming versions written from ``since`` on (default: now), the first time only: a Pipeline
    fires on versions written after it declared its triggers, not on the whole history of its inputs."""
    conn.execute(_REGISTER, (consumer, since))


def pending_versions(conn: Conn, consumer: str, inputs: Sequence[tuple[str, str]],
                     limit: int = PENDING_LIMIT) -> list[PendingVersion]:
    """The consumer's pending published versions of ``inputs`` ((namespace, name) pairs), oldest first."""
    idents = [dataset_key(namespace, name) for namespace, name in inputs]
    rows = conn.execute(_PENDING, {"consumer": consumer, "idents": idents, "limit": limit}).fetchall()
    return [PendingVersion(int(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]), _aware(r[6]))
            for r in rows]


def _aware(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value


def claim(conn: Conn, consumer: str, firing: Firing) -> int | None:
    """Write the firing and its consumed rows in one transaction; its id, or None when another pass took any
    of its rows (or wrote the same firing) first."""
    versions = json.dumps([v.model_dump(by_alias=True, exclude_none=True, mode="json") for v in firing.versions])
    try:
        with conn.transaction():
            row = conn.execute(_INSERT_FIRING, (consumer, firing.run_name, versions)).fetchone()
            if row is None:
                raise _TakenError
            firing_id = int(row[0])
            taken = conn.execute(_CONSUME, (consumer, firing_id, list(firing.outbox_ids))).rowcount
            if taken != len(firing.outbox_ids):
                raise _TakenError
    except _TakenError:
        return None
    return firing_id


def unconfirmed(conn: Conn, consumer: str, limit: int = 100) -> list[UnconfirmedFiring]:
    """Firings claimed but whose run is not confirmed yet (a crash between the claim and the create)."""
    rows = conn.execute(_UNCONFIRMED, (consumer, limit)).fetchall()
    return [UnconfirmedFiring(int(r[0]), str(r[1]), [TriggerVersion.model_validate(v) for v in r[2]])
            for r in rows]


# The newest version a firing reports is the newest it consumes (``all`` reports each input's latest), so
# its outbox row says when the firing became due; both times are the store's clock.
_CONFIRM = """
UPDATE trigger_firings f SET confirmed_at = clock_timestamp()
WHERE f.id = %s AND f.confirmed_at IS NULL
RETURNING extract(epoch FROM f.confirmed_at - (
    SELECT max(o.created_at) FROM trigger_outbox o
    WHERE o.version_id IN (SELECT (v ->> 'version')::bigint FROM jsonb_array_elements(f.versions) v)))
"""


def confirm(conn: Conn, firing_id: int) -> float | None:
    """The firing's run exists: nothing is left to do for it.  The seconds from its newest consumed version's
    commit to now (the trigger latency), or None when it was confirmed already."""
    row = conn.execute(_CONFIRM, (firing_id,)).fetchone()
    return None if row is None or row[0] is None else max(float(row[0]), 0.0)


# --- many consumers at once ---------------------------------------------------------------------------
# Rows are written in a stable order (consumers, run names and outbox ids sorted), so that two passes
# writing overlapping rows wait on each other instead of deadlocking.

_REGISTER_ALL = """
INSERT INTO trigger_consumers (consumer, since)
SELECT c, coalesce(s, clock_timestamp()) FROM unnest(%s::text[], %s::timestamptz[]) AS t(c, s)
ORDER BY c
ON CONFLICT (consumer) DO NOTHING
"""

_UNCONFIRMED_ALL = """
SELECT consumer, id, run_name, versions FROM (
    SELECT f.consumer, f.id, f.run_name, f.versions,
           row_number() OVER (PARTITION BY f.consumer ORDER BY f.id) AS n
    FROM trigger_firings f WHERE f.consumer = ANY(%s::text[]) AND f.confirmed_at IS NULL) q
WHERE n <= %s ORDER BY consumer, id
"""

_PENDING_ALL = """
WITH wanted AS (SELECT * FROM unnest(%(consumers)s::text[], %(idents)s::bytea[]) AS w(consumer, ident))
SELECT c.consumer, p.outbox_id, p.namespace, p.name, p.version_id, p.run_id, p.pipeline, p.written_at
FROM trigger_consumers c
CROSS JOIN LATERAL (
    SELECT o.id AS outbox_id, d.namespace, d.name, v.id AS version_id, v.run_id, v.pipeline, v.written_at
    FROM trigger_outbox o
    JOIN datasets d ON d.id = o.dataset_id
    JOIN dataset_versions v ON v.id = o.version_id
    WHERE o.created_at >= c.since AND d.ident IN (SELECT w.ident FROM wanted w WHERE w.consumer = c.consumer)
      AND NOT EXISTS (SELECT 1 FROM trigger_consumed t WHERE t.consumer = c.consumer AND t.outbox_id = o.id)
      AND hw_version_published(v.id)
    ORDER BY o.id
    LIMIT %(limit)s) p
WHERE c.consumer IN (SELECT consumer FROM wanted)
ORDER BY c.consumer, p.outbox_id
"""

_INSERT_FIRINGS = """
INSERT INTO trigger_firings (consumer, run_name, versions)
SELECT c, r, v::jsonb FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS t(c, r, v, i)
ORDER BY i
ON CONFLICT (consumer, run_name) DO NOTHING
RETURNING id, consumer, run_name
"""

_CONSUME_ALL = """
INSERT INTO trigger_consumed (consumer, outbox_id, firing_id)
SELECT c, o, f FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) WITH ORDINALITY AS t(c, o, f, i)
ORDER BY i
ON CONFLICT (consumer, outbox_id) DO NOTHING
RETURNING firing_id
"""

_UNDO_CONSUMED = "DELETE FROM trigger_consumed WHERE firing_id = ANY(%s::bigint[])"
_UNDO_FIRINGS = "DELETE FROM trigger_firings WHERE id = ANY(%s::bigint[])"

_CONFIRM_ALL = """
UPDATE trigger_firings f SET confirmed_at = clock_timestamp()
WHERE f.id = ANY(%s::bigint[]) AND f.confirmed_at IS NULL
RETURNING f.id, extract(epoch FROM f.confirmed_at - (
    SELECT max(o.created_at) FROM trigger_outbox o
    WHERE o.version_id IN (SELECT (v ->> 'version')::bigint FROM jsonb_array_elements(f.versions) v)))
"""


def register_all(conn: Conn, consumers: Sequence[tuple[str, datetime | None]]) -> None:
    """:func:`register` for many consumers ((consumer, since) pairs) in one statement."""
    if consumers:
        conn.execute(_REGISTER_ALL, ([c for c, _ in consumers], [s for _, s in consumers]))


def unconfirmed_all(conn: Conn, consumers: Sequence[str], limit: int = 100) -> dict[str, list[UnconfirmedFiring]]:
    """:func:`unconfirmed` for many consumers in one statement (at most ``limit`` each, oldest first)."""
    found: dict[str, list[UnconfirmedFiring]] = {c: [] for c in consumers}
    if consumers:
        for r in conn.execute(_UNCONFIRMED_ALL, (list(consumers), limit)).fetchall():
            found[str(r[0])].append(UnconfirmedFiring(int(r[1]), str(r[2]),
                                                      [TriggerVersion.model_validate(v) for v in r[3]]))
    return found


def pending_all(conn: Conn, inputs: dict[str, Sequence[tuple[str, str]]],
                limit: int = PENDING_LIMIT) -> dict[str, list[PendingVersion]]:
    """:func:`pending_versions` for many consumers (consumer -> its inputs) in one statement."""
    found: dict[str, list[PendingVersion]] = {c: [] for c in inputs}
    pairs = [(consumer, dataset_key(ns, name)) for consumer, wanted in inputs.items() for ns, name in wanted]
    if pairs:
        rows = conn.execute(_PENDING_ALL, {"consumers": [c for c, _ in pairs], "idents": [i for _, i in pairs],
                                           "limit": limit}).fetchall()
        for r in rows:
            found[str(r[0])].append(PendingVersion(int(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]),
                                                   str(r[6]), _aware(r[7])))
    return found


def claim_all(conn: Conn, firings: Sequence[tuple[str, Firing]]) -> list[int | None]:
    """:func:`claim` for many (consumer, firing) pairs in a few statements: each firing's id, or None when
    another pass took any of its rows (or wrote the same firing) first.  Each firing is all or nothing: one
    that got only some of its rows gives them back before the transaction commits.  Should two passes
    contend so that the store detects a deadlock, each firing is claimed on its own instead."""
    if not firings:
        return []
    order = sorted(range(len(firings)), key=lambda i: (firings[i][0], firings[i][1].run_name))
    try:
        with conn.transaction():
            ids = _claim_in_order(conn, [firings[i] for i in order])
    except psycopg.errors.DeadlockDetected:
        return [claim(conn, consumer, firing) for consumer, firing in firings]
    result: list[int | None] = [None] * len(firings)
    for position, i in enumerate(order):
        result[i] = ids[position]
    return result


def _claim_in_order(conn: Conn, firings: Sequence[tuple[str, Firing]]) -> list[int | None]:
    versions = [json.dumps([v.model_dump(by_alias=True, exclude_none=True, mode="json") for v in f.versions])
                for _, f in firings]
    inserted = {(str(r[1]), str(r[2])): int(r[0]) for r in conn.execute(
        _INSERT_FIRINGS, ([c for c, _ in firings], [f.run_name for _, f in firings], versions)).fetchall()}
    ids: list[int | None] = [inserted.get((c, f.run_name)) for c, f in firings]
    rows = [(c, o, firing_id) for (c, f), firing_id in zip(firings, ids, strict=True) if firing_id is not None
            for o in sorted(f.outbox_ids)]
    taken: dict[int, int] = {}
    if rows:
        for r in conn.execute(_CONSUME_ALL, ([c for c, _, _ in rows], [o for _, o, _ in rows],
                                             [f for _, _, f in rows])).fetchall():
            taken[int(r[0])] = taken.get(int(r[0]), 0) + 1
    short = [firing_id for (_, f), firing_id in zip(firings, ids, strict=True)
             if firing_id is not None and taken.get(firing_id, 0) != len(f.outbox_ids)]
    if short:  # another pass consumed some of their rows first: these firings are not made
        conn.execute(_UNDO_CONSUMED, (short,))
        conn.execute(_UNDO_FIRINGS, (short,))
    return [None if firing_id in short else firing_id for firing_id in ids]


def confirm_all(conn: Conn, firing_ids: Sequence[int]) -> dict[int, float | None]:
    """:func:`confirm` for many firings in one statement: the trigger latency of each firing confirmed now
    (None for those confirmed already)."""
    found: dict[int, float | None] = dict.fromkeys(firing_ids)
    if firing_ids:
        for r in conn.execute(_CONFIRM_ALL, (list(firing_ids),)).fetchall():
            found[int(r[0])] = None if r[1] is None else max(float(r[1]), 0.0)
    return found


GATHER_SECONDS = 0.0
"""How long a woken trigger pass waits for more versions after the first notification: none, since a pass
takes what already arrived and the next pass starts while this one's runs are created (a 25 ms wait added
that to every firing, and measured slower at 100 completions at once: docs/benchmarks.md)."""


def wait_for_versions(conn: Conn, timeout: float, gather: float = GATHER_SECONDS) -> set[str]:
    """Block until new versions are committed (notifications on ``NOTIFY_CHANNEL``) or ``timeout`` seconds
    pass; the datasets that got them, as :func:`dataset_hex` keys (empty after a timeout).  Once the first
    arrives, what else has arrived joins it, and what commits within ``gather`` seconds.  ``conn`` is an
    autocommit connection that has run ``LISTEN``."""
    changed = {n.payload for n in conn.notifies(timeout=timeout, stop_after=1)}
    deadline = time.monotonic() + gather
    while changed and (left := deadline - time.monotonic()) > 0:
        changed |= {n.payload for n in conn.notifies(timeout=left)}
    while changed and select.select([conn.fileno()], [], [], 0)[0]:  # what else came meanwhile: one pass
        drained = {n.payload for n in conn.notifies(timeout=0.001)}
        if not drained:
            break
        changed |= drained
    return changed


def dataset_hex(namespace: str, name: str) -> str:
    """A dataset as the notifications name it."""
    return dataset_key(namespace, name).hex()
