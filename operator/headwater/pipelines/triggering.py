"""Dataset triggers decided as data: given a Pipeline's triggers and its pending dataset versions, the runs to create.

Pure: the caller reads the pending versions (published, of declared inputs, not yet consumed by this
Pipeline) from the lineage store's outbox, claims each :class:`Firing` there and creates its run.  A firing's
run name derives from the versions it consumes, so deciding twice over the same rows names the same run.
Policy (docs/triggers-and-backfills.md): ``any`` fires one run per new version, oldest first; ``all`` fires
once every input has a new version, folding several new versions of one input into its latest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from headwater.lineage.run_records import FINALIZER
from headwater.spec import constants as c
from headwater.spec.models import DatasetTriggers, Trigger, TriggerMode, TriggerVersion
from headwater.spec.names import MAX_PIPELINE_NAME, bounded, label_value
from headwater.spec.times import isotime_precise, parse_time

__all__ = [
    "MAX_FIRINGS_PER_PASS", "Firing", "PendingVersion", "consumer_key", "deadline_satisfied", "decide",
    "run_name_for_versions", "triggered_run",
]

MAX_FIRINGS_PER_PASS = 50
"""Runs one Pipeline's triggers create in one pass; more pending versions fire in the next passes."""


@dataclass(frozen=True)
class PendingVersion:
    """A published version of an input dataset, not yet consumed by the Pipeline (one outbox row)."""

    outbox_id: int
    namespace: str
    name: str
    version_id: int
    run_id: str
    pipeline: str
    written_at: datetime

    @property
    def dataset(self) -> tuple[str, str]:
        return self.namespace, self.name


@dataclass(frozen=True)
class Firing:
    """One run to create: its name, the outbox rows it consumes, and the versions it reports (one per input)."""

    run_name: str
    outbox_ids: tuple[int, ...]
    versions: tuple[TriggerVersion, ...]


def consumer_key(namespace: str, name: str, uid: str) -> str:
    """Who consumes outbox rows: one Pipeline object (a Pipeline deleted and created again starts afresh)."""
    return f"{namespace}/{name}/{uid}"


def run_name_for_versions(pipeline: str, consumer: str, version_ids: Iterable[int]) -> str:
    """``<pipeline>-d<11 hex>``: the same consumed versions always name the same run (and never a slot's run,
    whose suffix is 12 digits)."""
    canonical = consumer + ":" + ",".join(str(v) for v in sorted(set(version_ids)))
    return f"{bounded(pipeline, MAX_PIPELINE_NAME)}-d{hashlib.sha256(canonical.encode()).hexdigest()[:11]}"


def _reported(version: PendingVersion, superseded: int) -> TriggerVersion:
    return TriggerVersion(namespace=version.namespace, name=version.name, version=version.version_id,
                          run=version.run_id[:512], written_at=isotime_precise(version.written_at),
                          superseded=superseded)


def decide(pipeline: str, consumer: str, triggers: DatasetTriggers, pending: Sequence[PendingVersion], *,
           suspended: bool = False, limit: int = MAX_FIRINGS_PER_PASS) -> list[Firing]:
    """The runs to create now, oldest first.

    A suspended Pipeline fires nothing and consumes nothing: its pending versions are kept and fire on resume.
    Versions of datasets the triggers do not declare, and versions written by this Pipeline itself (a
    trigger loop), are never fired.
    """
    if suspended or limit <= 0:
        return []
    declared = {(d.namespace, d.name) for d in triggers.inputs}
    usable = sorted((v for v in pending if v.dataset in declared and v.pipeline != pipeline),
                    key=lambda v: v.outbox_id)
    if triggers.mode == TriggerMode.ANY:
        return [Firing(run_name_for_versions(pipeline, consumer, [v.version_id]), (v.outbox_id,),
                       (_reported(v, 0),)) for v in usable[:limit]]
    by_input: dict[tuple[str, str], list[PendingVersion]] = {}
    for version in usable:
        by_input.setdefault(version.dataset, []).append(version)
    if set(by_input) != declared:
        return []  # some input has nothing new yet: keep waiting, consume nothing
    consumed = [v for d in sorted(declared) for v in by_input[d]]
    versions = tuple(_reported(by_input[d][-1], len(by_input[d]) - 1) for d in sorted(declared))
    return [Firing(run_name_for_versions(pipeline, consumer, [v.version_id for v in consumed]),
                   tuple(sorted(v.outbox_id for v in consumed)), versions)]


def deadline_satisfied(runs: Iterable[dict[str, Any]], previous_slot: datetime) -> bool:
    """With ``withSchedule: NoLaterThan``: whether a dataset-triggered run was created after the slot before
    this one (so this slot has nothing to catch up on)."""
    for run in runs:
        if (run.get("spec") or {}).get("trigger") != Trigger.DATASET.value:
            continue
        created = run.get("metadata", {}).get("creationTimestamp")
        if created and parse_time(created) > previous_slot:
            return True
    return False


def triggered_run(pipeline: dict[str, Any], run_name: str, versions: Sequence[TriggerVersion]) -> dict[str, Any]:
    """The PipelineRun of one firing, owned by its Pipeline, saying which versions triggered it.

    Held by the lineage finalizer from its creation (dataset triggers need the lineage store, and every run
    is held once started while there is one), so that starting it is one write, not two."""
    meta = pipeline["metadata"]
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.PIPELINERUN_KIND,
        "metadata": {
            "name": run_name,
            "namespace": meta["namespace"],
            "labels": {c.LABEL_PIPELINE: label_value(meta["name"]), c.LABEL_TRIGGER: Trigger.DATASET.value},
            "finalizers": [FINALIZER],
            "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.PIPELINE_KIND, "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"pipelineRef": {"name": meta["name"]}, "trigger": Trigger.DATASET.value,
                 "triggeredBy": [v.model_dump(by_alias=True, exclude_none=True, mode="json") for v in versions]},
    }
