"""What the operator tells the lineage store: immutable records with stable idempotency keys.

Every record is a frozen dataclass.  ``record.key`` identifies the fact a record states: two records
with the same key state the same fact, and the store writes every record idempotently (writing one
twice changes nothing), so a run can be recorded again after a crash or an outage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pydantic.alias_generators import to_camel

from headwater.spec.models import RunPhase, StepPhase
from headwater.spec.times import isotime_precise

__all__ = [
    "RUN_PHASES",
    "STEP_PHASES",
    "CheckRecord",
    "DatasetRef",
    "DatasetVersionRecord",
    "DeclaredOutputsRecord",
    "EdgeRecord",
    "Record",
    "RunRecord",
    "StepRecord",
    "dataset_key",
    "job_key",
    "jsonable",
]

RUN_PHASES: Final = frozenset(p.value for p in RunPhase)
STEP_PHASES: Final = frozenset(p.value for p in StepPhase)


def _check_phase(phase: str, allowed: frozenset[str], what: str) -> None:
    if phase not in allowed:
        raise ValueError(f"{what} phase {phase!r} is not one of {', '.join(sorted(allowed))}")


def _check_aware(value: datetime | None, what: str) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{what} must carry a time zone (got {value.isoformat()})")


def _digest(kind: str, *parts: object) -> str:
    canonical = json.dumps([kind, *parts], separators=(",", ":"), ensure_ascii=False, default=str)
    return f"{kind}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


def dataset_key(namespace: str, name: str) -> bytes:
    """The unique key of a dataset in the store: sha256 of namespace, NUL, name (text never holds NUL)."""
    return hashlib.sha256(namespace.encode() + b"\0" + name.encode()).digest()


def job_key(namespace: str, pipeline: str, step: str) -> bytes:
    """The unique key of a job (a step of a pipeline) in the store: sha256 of the Kubernetes namespace
    (empty for jobs known from OpenLineage events), NUL, pipeline, NUL, step (migration 12 computes it too)."""
    return hashlib.sha256(b"\0".join(part.encode() for part in (namespace, pipeline, step))).digest()


@dataclass(frozen=True, order=True)
class DatasetRef:
    """A dataset named the OpenLineage way: ``namespace`` (postgres://warehouse) and ``name`` (raw.orders)."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        if not self.namespace or not self.name:
            raise ValueError("a dataset needs a non-empty namespace and name")
        if "\0" in self.namespace or "\0" in self.name:
            raise ValueError("a dataset namespace or name cannot contain NUL characters")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RunRecord:
    """A PipelineRun as it is now; ``run_id`` is the caller's id (``namespace/name/uid8`` for Headwater's
    runs, the OpenLineage run id for others), ``name`` and ``uid`` the Kubernetes object's when it has them."""

    run_id: str
    pipeline: str
    namespace: str
    phase: str
    trigger: str = "manual"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    source: str = "headwater"
    name: str | None = None
    uid: str | None = None

    def __post_init__(self) -> None:
        _check_phase(self.phase, RUN_PHASES, "run")
        _check_aware(self.started_at, "started_at")
        _check_aware(self.finished_at, "finished_at")

    @property
    def key(self) -> str:
        return _digest("run", self.run_id, self.phase, self.started_at, self.finished_at)


@dataclass(frozen=True)
class StepRecord:
    """One step of a run as it is now; a terminal phase, once stored, is final."""

    run_id: str
    pipeline: str
    step: str
    phase: str
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rows_affected: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _check_phase(self.phase, STEP_PHASES, "step")
        _check_aware(self.started_at, "started_at")
        _check_aware(self.finished_at, "finished_at")
        if self.attempts < 0:
            raise ValueError("attempts cannot be negative")

    @property
    def key(self) -> str:
        return _digest("step", self.run_id, self.step, self.phase, self.attempts)


@dataclass(frozen=True)
class EdgeRecord:
    """A step of a run read ``inputs`` and wrote ``outputs``: each input → (pipeline, step) → each output."""

    run_id: str
    pipeline: str
    step: str
    inputs: tuple[DatasetRef, ...]
    outputs: tuple[DatasetRef, ...]
    seen_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    namespace: str = ""
    """The pipeline's Kubernetes namespace (empty for a job known from an OpenLineage event): two Pipelines
    of one name in two namespaces are two jobs.  The run id says it already, so the key leaves it out."""

    def __post_init__(self) -> None:
        _check_aware(self.seen_at, "seen_at")
        object.__setattr__(self, "inputs", tuple(sorted(set(self.inputs))))
        object.__setattr__(self, "outputs", tuple(sorted(set(self.outputs))))

    @property
    def key(self) -> str:
        names = [[d.namespace, d.name] for d in (*self.inputs, *self.outputs)]
        return _digest("edge", self.run_id, self.pipeline, self.step, len(self.inputs), names)


@dataclass(frozen=True)
class CheckRecord:
    """One check's verdict on a dataset version (see ``headwater.runs.checks``)."""

    name: str
    kind: str
    severity: str
    outcome: str
    observed: str | None = None
    baseline: str | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warn"):
            raise ValueError(f"check severity {self.severity!r} is not error or warn")
        if self.outcome not in ("Passed", "Failed", "Skipped"):
            raise ValueError(f"check outcome {self.outcome!r} is not Passed, Failed or Skipped")


@dataclass(frozen=True)
class DatasetVersionRecord:
    """A write of ``dataset`` by a step of a run (one per dataset, run and step).

    ``published`` is False when a check of severity error failed on it: the rows were written, but
    nothing downstream may take it as the dataset's current version (baselines, triggers, "latest")."""

    dataset: DatasetRef
    run_id: str
    pipeline: str
    step: str
    written_at: datetime
    row_count: int | None = None
    schema_fingerprint: str | None = None
    published: bool = True
    checks: tuple[CheckRecord, ...] = ()
    logical_time: datetime | None = None
    """The logical time of the run that wrote it (its schedule slot): the partition the version holds."""

    def __post_init__(self) -> None:
        _check_aware(self.written_at, "written_at")
        _check_aware(self.logical_time, "logical_time")
        if self.row_count is not None and self.row_count < 0:
            raise ValueError("row_count cannot be negative")

    @property
    def key(self) -> str:
        return _digest("version", self.dataset.namespace, self.dataset.name, self.run_id, self.step)


@dataclass(frozen=True)
class DeclaredOutputsRecord:
    """The datasets a step of a run declares it writes, whether it wrote them or not."""

    run_id: str
    pipeline: str
    step: str
    outputs: tuple[DatasetRef, ...]
    namespace: str = ""
    """As :attr:`EdgeRecord.namespace`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(sorted(set(self.outputs))))

    @property
    def key(self) -> str:
        return _digest("declared", self.run_id, self.pipeline, self.step,
                       [[d.namespace, d.name] for d in self.outputs])


Record = RunRecord | StepRecord | EdgeRecord | DatasetVersionRecord | DeclaredOutputsRecord
_CAMEL_FIELDS: dict[type, tuple[tuple[str, str], ...] | None] = {}


def _camel_fields(cls: type) -> tuple[tuple[str, str], ...] | None:
    # Converting each field's name once per class, not once per value: a graph of 2,000 nodes has
    # tens of thousands of fields, and converting their names was most of its encoding time.
    if cls not in _CAMEL_FIELDS:
        _CAMEL_FIELDS[cls] = (tuple((f.name, to_camel(f.name)) for f in dataclasses.fields(cls))
                              if dataclasses.is_dataclass(cls) else None)
    return _CAMEL_FIELDS[cls]


def jsonable(value: object) -> Any:
    """``value`` as JSON-ready data: dataclasses become dicts with camelCase keys, times RFC 3339 UTC."""
    if value is None or isinstance(value, str | int | float):
        return value
    fields = _camel_fields(type(value))
    if fields is not None:
        return {camel: jsonable(getattr(value, name)) for name, camel in fields}
    if isinstance(value, datetime):
        return isotime_precise(value)
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value
