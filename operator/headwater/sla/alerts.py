"""Cascading alerts: from a failed step or a stale source to every dataset downstream of it, across
pipelines, grouped into one notification per incident that names the cause, the affected datasets
and their owners."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from headwater.spec.models import PipelineSpec

__all__ = ["DatasetGraph", "Incident", "notification"]

Key = tuple[str, str]  # (namespace, name)


def _label(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class DatasetGraph:
    """Declared datasets of every Pipeline: what each step reads and writes, and who owns what."""

    downstream: dict[Key, set[Key]] = field(default_factory=dict)
    producers: dict[Key, tuple[str, str]] = field(default_factory=dict)  # dataset -> (namespace/pipeline, owner)
    outputs_of_step: dict[tuple[str, str, str], list[Key]] = field(default_factory=dict)

    @classmethod
    def from_pipelines(cls, pipelines: list[dict[str, Any]]) -> DatasetGraph:
        graph = cls()
        for obj in pipelines:
            try:
                spec = PipelineSpec.model_validate(obj["spec"])
            except ValidationError:
                continue  # not Ready (its condition says why): it declares nothing
            meta = obj["metadata"]
            owner = spec.owner or ""
            for step in spec.steps:
                outs = [(d.namespace, d.name) for d in step.outputs]
                graph.outputs_of_step[(meta["namespace"], meta["name"], step.id)] = outs
                for out in outs:
                    graph.producers[out] = (f"{meta['namespace']}/{meta['name']}", owner)
                for src in step.inputs:
                    graph.downstream.setdefault((src.namespace, src.name), set()).update(outs)
        return graph

    def closure(self, roots: list[Key]) -> list[Key]:
        """Every dataset downstream of ``roots`` (roots included), cycle-safe, in breadth-first order."""
        seen, order, todo = set(roots), list(roots), deque(roots)
        while todo:
            for nxt in sorted(self.downstream.get(todo.popleft(), ())):
                if nxt not in seen:
                    seen.add(nxt)
                    order.append(nxt)
                    todo.append(nxt)
        return order


@dataclass(frozen=True)
class Incident:
    """One root cause and everything it puts at risk."""

    cause: str  # for people: "revenue/extract-payments failed in run data/revenue-1: BackoffLimitExceeded"
    source: str  # namespace/pipeline whose next successful run clears the risk
    affected: tuple[Key, ...]
    owners: tuple[str, ...]

    @classmethod
    def build(cls, graph: DatasetGraph, cause: str, source: str, roots: list[Key]) -> Incident:
        affected = tuple(graph.closure(roots))
        owners = tuple(sorted({graph.producers[k][1] for k in affected if k in graph.producers} - {""}))
        return cls(cause, source, affected, owners)


def notification(incident: Incident) -> dict[str, Any]:
    """A Slack-compatible message (``text``) that generic receivers can read as JSON (``incident``)."""
    lines = [f":rotating_light: Headwater: {incident.cause}",
             f"{len(incident.affected)} dataset(s) at risk: {', '.join(_label(k) for k in incident.affected)}"]
    if incident.owners:
        lines.append(f"Owners: {', '.join(incident.owners)}")
    return {
        "text": "\n".join(lines),
        "incident": {"cause": incident.cause, "source": incident.source,
                     "affectedDatasets": [{"namespace": k[0], "name": k[1]} for k in incident.affected],
                     "owners": list(incident.owners)},
    }
