"""The trigger outbox in the lineage store: pending versions per consumer, claiming firings, confirming runs.

Every new dataset version gets an outbox row in its own transaction (migration 7's database trigger).  A
consumer (one Pipeline) sees the rows written after it first registered, of the datasets it declares, that
are published (``hw_version_published``) and that it has not consumed.  :func:`claim` writes a firing and
its consumed rows in one transaction and refuses when any row is taken already, so two operators (or two
passes) never fire the same row twice; the firing stays unconfirmed until its run exists.
"""

from __future__ import annotations

import json
import select
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from headwater.lineage.records import dataset_key
from headwater.pipelines.triggering import Firing, PendingVersion
from headwater.spec.models import TriggerVersion

__all__ = ["NOTIFY_CHANNEL", "UnconfirmedFiring", "claim", "confirm", "dataset_hex", "pending_versions",
           "register", "unconfirmed", "wait_for_versions"]

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


def wait_for_versions(conn: Conn, timeout: float) -> set[str]:
    """Block until new versions are committed (notifications on ``NOTIFY_CHANNEL``) or ``timeout`` seconds
    pass; the datasets that got them, as :func:`dataset_hex` keys (empty after a timeout).  ``conn`` is an
    autocommit connection that has run ``LISTEN``."""
    changed = {n.payload for n in conn.notifies(timeout=timeout, stop_after=1)}
    while changed and select.select([conn.fileno()], [], [], 0)[0]:  # what else came meanwhile: one pass
        drained = {n.payload for n in conn.notifies(timeout=0.001)}
        if not drained:
            break
        changed |= drained
    return changed


def dataset_hex(namespace: str, name: str) -> str:
    """A dataset as the notifications name it."""
    return dataset_key(namespace, name).hex()
