"""The SLA metrics, derived from the Pipelines' status: pure.

Level-based: everything is read back from ``status.datasets`` and ``status.alerts``, so the gauges are
right again on the first pass after a restart.  The share of SLA checks met is the one figure kept in
memory, over a sliding window of passes (``MetWindow``); Prometheus' ``avg_over_time`` over the
stale gauge is its durable form.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from headwater.sla.alerts import is_pending
from headwater.spec.models import PipelineSpec, PipelineStatus
from headwater.spec.times import parse_time

__all__ = ["DatasetGauges", "MetWindow", "SlaSummary", "summarize"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetGauges:
    label: str  # namespace/name
    last_updated: float | None  # epoch seconds
    stale: bool
    at_risk: bool


@dataclass
class SlaSummary:
    datasets: list[DatasetGauges] = field(default_factory=list)
    met: int = 0  # datasets with an SLA that meet it
    total: int = 0  # datasets with an SLA
    pending_alerts: int = 0


def summarize(pipelines: list[dict[str, Any]]) -> SlaSummary:
    """The gauges of every dataset in the Pipelines' status; a Pipeline whose status cannot be read is skipped."""
    out = SlaSummary()
    for obj in pipelines:
        try:
            status = PipelineStatus.model_validate(obj.get("status") or {})
        except ValidationError:
            log.debug("Pipeline %s/%s: status unreadable; no dataset metrics", obj["metadata"].get("namespace"),
                      obj["metadata"].get("name"))
            continue
        out.pending_alerts += sum(1 for a in status.alerts if is_pending(a))
        with_sla = {(o.namespace, o.name) for s in PipelineSpec.model_validate(obj["spec"]).steps
                    for o in s.outputs if o.freshness}
        for d in status.datasets:
            if (d.namespace, d.name) in with_sla:
                out.total, out.met = out.total + 1, out.met + (0 if d.stale else 1)
            out.datasets.append(DatasetGauges(
                f"{d.namespace}/{d.name}", parse_time(d.last_updated).timestamp() if d.last_updated else None,
                bool(d.stale), bool(d.at_risk)))
    return out


class MetWindow:
    """The share of (dataset, pass) pairs that met their SLA over the last ``seconds``; not thread-safe."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, met, with an SLA)

    def record(self, at: float, met: int, total: int) -> float:
        """Add one pass; the share met in the window (1.0 when nothing was checked)."""
        self._samples.append((at, met, total))
        while self._samples and self._samples[0][0] < at - self.seconds:
            self._samples.popleft()
        checked = sum(t for _, _, t in self._samples)
        return sum(m for _, m, _ in self._samples) / checked if checked else 1.0
