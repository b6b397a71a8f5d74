"""Leader election over a coordination.k8s.io Lease, decided as data: what to do with the Lease as read.

The rules are Kubernetes' own (client-go): a candidate takes the Lease when it is free, or when its
record has not changed for ``leaseDurationSeconds`` *as timed on the candidate's own monotonic clock*
from when it first saw that record (so clocks of different machines never need to agree); the holder
renews it, and stops leading when ``renew_deadline`` has passed since its last successful renewal,
which is shorter than the lease duration, so it has stopped before anyone else may take over.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = ["LeaseRecord", "Move", "Observed", "decide", "observe", "released", "still_leading", "written"]


@dataclass(frozen=True)
class LeaseRecord:
    """The spec of a Lease: ``holder`` is empty when the Lease is free (released)."""

    holder: str
    duration_seconds: int
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Observed:
    """A record as last read (None: no Lease exists) and when (monotonic seconds) it was first seen so."""

    record: LeaseRecord | None
    since: float


class Move(StrEnum):
    CREATE = "Create"  # no Lease yet: create it, holding it
    TAKE = "Take"  # free or expired: take it over
    RENEW = "Renew"  # ours: renew it
    WAIT = "Wait"  # someone else's and still valid


def observe(previous: Observed | None, record: LeaseRecord | None, now: float) -> Observed:
    """The observation after reading ``record`` at ``now``: its clock restarts only when the record changed."""
    if previous is not None and previous.record == record:
        return previous
    return Observed(record, now)


def decide(identity: str, observed: Observed, now: float) -> Move:
    """What the candidate ``identity`` does with the Lease as observed."""
    record = observed.record
    if record is None:
        return Move.CREATE
    if record.holder == identity:
        return Move.RENEW
    if not record.holder or now - observed.since >= record.duration_seconds:
        return Move.TAKE
    return Move.WAIT


def written(identity: str, move: Move, current: LeaseRecord | None, duration_seconds: int,
            wall_time: str) -> LeaseRecord:
    """The record to write for ``move`` (not WAIT), ``wall_time`` being the MicroTime of now."""
    if move is Move.WAIT:
        raise ValueError("nothing is written while waiting")
    if move is Move.RENEW and current is not None:
        return replace(current, duration_seconds=duration_seconds, renew_time=wall_time)
    transitions = current.transitions + 1 if current is not None else 0
    return LeaseRecord(identity, duration_seconds, wall_time, wall_time, transitions)


def released(current: LeaseRecord, wall_time: str) -> LeaseRecord:
    """The record a holder leaves when it stops on purpose: free, so the next candidate takes it at once."""
    return replace(current, holder="", duration_seconds=1, renew_time=wall_time)


def still_leading(last_renewed: float, now: float, renew_deadline: float) -> bool:
    """Whether a holder whose last successful renewal started at ``last_renewed`` may still act."""
    return now - last_renewed < renew_deadline
