"""What a Ready Pipeline declares it writes, known to the lineage store before its first run.

Pure: the declaration is derived from the Pipeline object alone.  The recorder writes it as the steps'
declared outputs with no run yet (``step_outputs.last_run_id`` NULL, migration 11), so explain answers for
a dataset nobody wrote yet with the step that should write it, and a Pipeline that drops an output drops
its never-run declaration with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from headwater.lineage.records import DatasetRef
from headwater.spec.conditions import is_ready
from headwater.spec.models import PipelineSpec

__all__ = ["Declaration", "declaration_for"]


@dataclass(frozen=True)
class Declaration:
    """The outputs each step of a Pipeline declares, for one generation of one Pipeline object."""

    namespace: str
    pipeline: str
    outputs: tuple[tuple[str, tuple[DatasetRef, ...]], ...]
    """(step id, its declared outputs), in the spec's order; steps without outputs are left out."""
    version: tuple[str, int]
    """(uid, generation): a declaration already written for it needs no second write."""


def declaration_for(pipeline: dict[str, Any]) -> Declaration | None:
    """The Pipeline's declaration, or None while it is not Ready for its current generation (an invalid spec
    or an edit not yet checked declares nothing)."""
    if not is_ready(pipeline):
        return None
    try:
        spec = PipelineSpec.model_validate(pipeline.get("spec") or {})
    except ValidationError:
        return None
    meta = pipeline["metadata"]
    outputs = tuple((step.id, tuple(sorted({DatasetRef(o.namespace, o.name) for o in step.outputs})))
                    for step in spec.steps if step.outputs)
    return Declaration(meta["namespace"], meta["name"], outputs,
                       (str(meta.get("uid", "")), int(meta.get("generation") or 0)))
