"""OpenLineage both ways, as pure functions: strict parsing of RunEvents, and RunEvents for Headwater steps.

Ingest (:func:`parse_run_event`): the job's namespace is the pipeline and its name the step; every
event becomes a run and step status; a COMPLETE event also becomes lineage edges
(inputs → job → outputs) and one dataset version per output, with the row count of its
``outputStatistics`` facet and a fingerprint of its ``schema`` facet.

Emit (:func:`build_run_event`): START/RUNNING/COMPLETE/FAIL/ABORT events for a step of a
Headwater run, with a stable uuid5 run id (:func:`step_run_uuid`), so a resent event is the same event.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Final

from headwater.lineage.records import (
    DatasetRef,
    DatasetVersionRecord,
    DeclaredOutputsRecord,
    EdgeRecord,
    Record,
    RunRecord,
    StepRecord,
)
from headwater.lineage.validation import Checker, InvalidEventError

__all__ = [
    "EVENT_TYPES", "MAX_EDGES", "MAX_EVENT_AHEAD", "PRODUCER", "InvalidEventError", "OutputDataset",
    "ParsedEvent", "build_run_event", "parse_run_event", "pipeline_job_namespace", "schema_fingerprint",
    "step_run_uuid",
]

EVENT_TYPES: Final = ("START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER")
_PHASES: Final = {"START": "Running", "RUNNING": "Running", "COMPLETE": "Succeeded", "FAIL": "Failed",
                  "ABORT": "Cancelled"}
PRODUCER: Final = "https://headwater.dev/operator"
_SPEC: Final = "https://openlineage.io/spec"
_RUN_EVENT_SCHEMA: Final = f"{_SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
MAX_EDGES: Final = 10_000
"""At most this many lineage edges (distinct inputs x distinct outputs) per event: more is refused, never cut."""
MAX_EVENT_AHEAD: Final = timedelta(days=1)
"""How far in the future an eventTime may be (clocks drift; a year 9999 does not)."""
RUN_ID_NAMESPACE: Final = uuid.UUID("5b0c3c1e-3d5e-5a8e-9a57-6865616477a1")
"""uuid5 namespace of the OpenLineage run ids of Headwater steps and runs (never change it)."""


@dataclass(frozen=True)
class OutputDataset:
    """An output of a COMPLETE event with what its facets say about the write."""

    dataset: DatasetRef
    row_count: int | None = None
    schema_fingerprint: str | None = None


@dataclass(frozen=True)
class ParsedEvent:
    """A valid RunEvent: the fields Headwater uses, the raw event and a digest of it."""

    event_type: str
    event_time: datetime
    run_id: str
    job_namespace: str
    job_name: str
    inputs: tuple[DatasetRef, ...]
    outputs: tuple[OutputDataset, ...]
    error: str | None
    raw: Mapping[str, Any]
    canonical: str | None = field(default=None, repr=False, compare=False)
    """The raw event's canonical JSON when parsing made it already (see :attr:`canonical_json`)."""

    @cached_property
    def canonical_json(self) -> str:
        """The raw event as JSON with sorted keys and no spaces: what its digest hashes and the store keeps."""
        return self.canonical if self.canonical is not None else _canonical(self.raw)

    @cached_property
    def digest(self) -> bytes:
        """sha256 of the canonical JSON of the raw event: the same event sent twice is stored once."""
        return hashlib.sha256(self.canonical_json.encode()).digest()

    def records(self) -> list[Record]:
        """What the event says, as store records (none for OTHER)."""
        phase = _PHASES.get(self.event_type)
        if phase is None:
            return []
        final = self.event_type in {"COMPLETE", "FAIL", "ABORT"}
        started = None if final else self.event_time
        finished = self.event_time if final else None
        run, pipeline, step = self.run_id, self.job_namespace, self.job_name
        records: list[Record] = [
            RunRecord(run, pipeline, "", phase, trigger="openlineage", source="openlineage",
                      started_at=started, finished_at=finished),
            StepRecord(run, pipeline, step, phase, started_at=started, finished_at=finished,
                       error=self.error),
        ]
        if self.event_type == "COMPLETE":
            outputs = tuple(o.dataset for o in self.outputs)
            records.append(EdgeRecord(run, pipeline, step, self.inputs, outputs, seen_at=self.event_time))
            records.extend(
                DatasetVersionRecord(o.dataset, run, pipeline, step, self.event_time, o.row_count,
                                     o.schema_fingerprint)
                for o in self.outputs
            )
        else:
            # Not a write (yet, or ever): the datasets it names are known from now on, so that a read of any
            # of them answers and explain names this run's step as the producer of its outputs, but no edge
            # and no version are recorded.
            if self.inputs:
                records.append(EdgeRecord(run, pipeline, step, self.inputs, (), seen_at=self.event_time))
            if self.outputs:
                records.append(DeclaredOutputsRecord(run, pipeline, step, tuple(o.dataset for o in self.outputs)))
        return records


def schema_fingerprint(fields: Sequence[Mapping[str, Any]]) -> str:
    """sha256 (hex) of the columns of a ``schema`` facet: names, types and nested fields, in order."""
    def canon(items: Sequence[Mapping[str, Any]]) -> list[Any]:
        return [[f.get("name"), f.get("type"), canon(f.get("fields") or [])] for f in items]

    return hashlib.sha256(json.dumps(canon(fields), separators=(",", ":")).encode()).hexdigest()


def parse_run_event(event: object, *, now: datetime | None = None) -> ParsedEvent:
    """Validate an OpenLineage RunEvent strictly; raise :class:`InvalidEventError` naming every bad field.

    Bounds: ``eventTime`` from 1970 to ``now`` + :data:`MAX_EVENT_AHEAD`; at most :data:`MAX_EDGES`
    edges (distinct inputs x distinct outputs), whatever the event type."""
    check = Checker()
    root = check.obj(event, "")
    canonical = _storable_json(event)
    if canonical is None:  # not certainly storable: look at every string, to name the bad ones
        check.storable(event, "")
    event_type = check.choice(root, "eventType", EVENT_TYPES)
    event_time = check.timestamp(root, "eventTime", (now or datetime.now(UTC)) + MAX_EVENT_AHEAD)
    check.string(root, "producer")
    check.string(root, "schemaURL", required=False)
    run = check.obj(root.get("run"), "run") if "run" in root else check.missing("run")
    run_id = check.uuid(run, "run.runId")
    check.obj(run.get("facets", {}), "run.facets")
    job = check.obj(root.get("job"), "job") if "job" in root else check.missing("job")
    job_namespace = check.string(job, "job.namespace", max_length=1024)
    job_name = check.string(job, "job.name", max_length=1024)
    inputs = [_dataset(check, item, f"inputs[{i}]") for i, item in enumerate(check.array(root, "inputs"))]
    outputs = [_output(check, item, f"outputs[{i}]") for i, item in enumerate(check.array(root, "outputs"))]
    error = _error_message(run)
    _check_edges(check, {d for d in inputs if d}, {o.dataset for o in outputs if o})
    check.raise_if_any()
    return ParsedEvent(
        event_type=event_type, event_time=event_time, run_id=run_id, job_namespace=job_namespace,
        job_name=job_name, inputs=tuple(d for d in inputs if d is not None),
        outputs=tuple(o for o in outputs if o is not None), error=error, raw=root, canonical=canonical,
    )


_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
"""``json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, without making an encoder
each time (the digest of every event ever stored hashes this text: never change it)."""


def _storable_json(event: object) -> str | None:
    """The canonical JSON of ``event`` when it certainly holds neither NUL nor an unpaired surrogate, else None.

    The JSON escapes a NUL as ``\\u0000`` (a text holding a backslash and "u0000" looks the same: such an
    event is looked at string by string, which finds nothing), and an unpaired surrogate cannot be encoded:
    one pass in C instead of a walk in Python over every string of a valid event."""
    try:
        canonical = _canonical(event)
        canonical.encode()
    except (TypeError, ValueError):  # not JSON data (a caller's Python objects), or a surrogate
        return None
    return None if "\\u0000" in canonical else canonical


def _check_edges(check: Checker, inputs: set[DatasetRef], outputs: set[DatasetRef]) -> None:
    edges = len(inputs) * len(outputs)
    if edges > MAX_EDGES:
        check.fail("inputs x outputs", f"at most {MAX_EDGES} lineage edges per event (got {len(inputs)} distinct "
                                       f"inputs x {len(outputs)} distinct outputs = {edges}); send several events")


def _dataset(check: Checker, item: object, path: str) -> DatasetRef | None:
    data = check.obj(item, path)
    namespace = check.string(data, f"{path}.namespace", max_length=65536)
    name = check.string(data, f"{path}.name", max_length=65536)
    check.obj(data.get("facets", {}), f"{path}.facets")
    valid = namespace and name and "\0" not in namespace + name
    return DatasetRef(namespace, name) if valid else None


def _output(check: Checker, item: object, path: str) -> OutputDataset | None:
    dataset = _dataset(check, item, path)
    data = item if isinstance(item, dict) else {}
    output_facets = check.obj(data.get("outputFacets", {}), f"{path}.outputFacets")
    stats = check.obj(output_facets.get("outputStatistics", {}), f"{path}.outputFacets.outputStatistics")
    row_count = check.count(stats, f"{path}.outputFacets.outputStatistics.rowCount")
    facets = data.get("facets")
    facets = facets if isinstance(facets, dict) else {}
    fingerprint = None
    if "schema" in facets:
        schema = check.obj(facets["schema"], f"{path}.facets.schema")
        fields = check.fields(schema, f"{path}.facets.schema.fields")
        fingerprint = schema_fingerprint(fields) if fields is not None else None
    return OutputDataset(dataset, row_count, fingerprint) if dataset else None


def _error_message(run: Mapping[str, Any]) -> str | None:
    facets = run.get("facets")
    error = facets.get("errorMessage") if isinstance(facets, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


def step_run_uuid(run_id: str, step: str | None = None) -> str:
    """The OpenLineage run id of a step of a Headwater run (or of the run itself when ``step`` is None)."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, run_id if step is None else f"{run_id}/{step}"))


def _facet(schema: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{_SPEC}/facets/{schema}", **fields}


def _output_json(dataset: DatasetRef, row_count: int | None,
                 assertions: Sequence[tuple[str, bool]] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"namespace": dataset.namespace, "name": dataset.name, "facets": {}}
    if assertions:
        schema = "1-0-1/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet"
        out["facets"]["dataQualityAssertions"] = _facet(
            schema, assertions=[{"assertion": name, "success": ok} for name, ok in assertions])
    if row_count is not None:
        schema = "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
        stats = _facet(schema, rowCount=row_count)
        out["outputFacets"] = {"outputStatistics": stats}
    return out


def pipeline_job_namespace(namespace: str | None, pipeline: str) -> str:
    """The OpenLineage job namespace of a Pipeline's steps: its Kubernetes namespace and name, so that two
    Pipelines of one name in two namespaces (two teams' ``revenue``) never share a job in a receiver."""
    return f"{namespace}/{pipeline}" if namespace else pipeline


def build_run_event(
    event_type: str,
    *,
    run_id: str,
    pipeline: str,
    step: str,
    event_time: datetime,
    inputs: Sequence[DatasetRef] = (),
    outputs: Sequence[DatasetRef] = (),
    row_counts: Mapping[DatasetRef, int] | None = None,
    error: str | None = None,
    assertions: Mapping[DatasetRef, Sequence[tuple[str, bool]]] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """An OpenLineage RunEvent for ``step`` of Headwater run ``run_id``, the job ``step`` in the job namespace
    :func:`pipeline_job_namespace` (``<namespace>/<pipeline>``; ``pipeline`` without a Kubernetes ``namespace``), its
    parent the job ``pipeline`` there; ``assertions``: check verdicts (name, passed) per output, as data-quality
    assertion facets."""
    if event_type not in _PHASES:
        raise ValueError(f"event type {event_type!r} is not one of {', '.join(_PHASES)}")
    if event_time.tzinfo is None:
        raise ValueError("event_time must carry a time zone")
    jobs = pipeline_job_namespace(namespace, pipeline)
    parent = _facet("1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet",
                    run={"runId": step_run_uuid(run_id)}, job={"namespace": jobs, "name": pipeline})
    run_facets: dict[str, Any] = {"parent": parent}
    if event_type == "FAIL" and error is not None:
        run_facets["errorMessage"] = _facet("1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                                            message=error, programmingLanguage="unknown")
    counts = row_counts or {}
    return {
        "eventType": event_type,
        "eventTime": event_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "producer": PRODUCER,
        "schemaURL": _RUN_EVENT_SCHEMA,
        "run": {"runId": step_run_uuid(run_id, step), "facets": run_facets},
        "job": {"namespace": jobs, "name": step, "facets": {}},
        "inputs": [{"namespace": d.namespace, "name": d.name, "facets": {}} for d in inputs],
        "outputs": [_output_json(d, counts.get(d) if event_type == "COMPLETE" else None,
                                 (assertions or {}).get(d, ())) for d in outputs],
    }
