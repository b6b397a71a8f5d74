"""The conditions a periodic loop keeps on each Pipeline it works on: False with the error while the
work on that Pipeline fails, True again after (``Scheduled`` by the scheduler, ``Triggered`` by the
dataset triggers).  Written onto the version read, and only when it changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headwater.adapters.kube import Kube
from headwater.spec.conditions import set_condition
from headwater.spec.models import PipelineStatus

__all__ = ["set_loop_condition"]


def set_loop_condition(kube: Kube, namespace: str, name: str, type_: str, failure: str | None, *,
                       failed_reason: str, ok_reason: str, ok_message: str) -> None:
    """Set condition ``type_`` of the Pipeline: False with ``failure`` when given, True otherwise."""
    def change(obj: dict[str, Any]) -> dict[str, Any] | None:
        conditions = list(PipelineStatus.model_validate(obj.get("status") or {}).conditions)
        state, reason, message = ("False", failed_reason, failure) if failure else ("True", ok_reason, ok_message)
        if not set_condition(conditions, type_, state, reason, message, datetime.now(UTC)):
            return None
        return {"conditions": [cond.model_dump(by_alias=True, exclude_none=True, mode="json") for cond in conditions]}
    kube.update_pipeline_status(namespace, name, change)
