"""Small helpers for status fields: timestamps, durations, conditions that change only on a flip."""

from __future__ import annotations

from datetime import UTC, datetime

from headwater.spec.models import Condition

__all__ = ["format_duration", "isotime", "parse_time", "set_condition", "truncate"]


def isotime(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate(moment: datetime) -> datetime:
    """``moment`` in UTC without sub-second digits, as status timestamps are kept."""
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_duration(now: datetime, since: datetime) -> str:
    """``1h2m3s`` style, like kubectl."""
    seconds = max(0, int((now - since).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def set_condition(
    conditions: list[Condition], type_: str, status: str, reason: str, message: str, now: datetime,
    observed_generation: int | None = None,
) -> bool:
    """Set a condition in place; ``lastTransitionTime`` moves only when the status flips. True if changed."""
    for i, cond in enumerate(conditions):
        if cond.type != type_:
            continue
        if (cond.status, cond.reason, cond.message) == (status, reason, message):
            return False
        moved = cond.status != status
        conditions[i] = cond.model_copy(update={
            "status": status, "reason": reason, "message": message,
            "last_transition_time": isotime(now) if moved else cond.last_transition_time,
            "observed_generation": observed_generation if observed_generation is not None
            else cond.observed_generation,
        })
        return True
    conditions.append(Condition(type=type_, status=status, reason=reason, message=message,
                                last_transition_time=isotime(now), observed_generation=observed_generation))
    return True
