"""OpenLineage mapping: strict validation naming the field, events to records, and events for steps."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.lineage.openlineage import (
    InvalidEventError,
    build_run_event,
    parse_run_event,
    schema_fingerprint,
    step_run_uuid,
)
from headwater.lineage.records import (
    DatasetRef,
    DatasetVersionRecord,
    DeclaredOutputsRecord,
    EdgeRecord,
    RunRecord,
    StepRecord,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
RAW, CLEAN = DatasetRef("postgres://w", "raw.orders"), DatasetRef("postgres://w", "clean.orders")


def _complete(**kwargs: Any) -> dict[str, Any]:
    return build_run_event("COMPLETE", run_id="data/revenue-1", pipeline="revenue", step="transform",
                           event_time=T0, inputs=[RAW], outputs=[CLEAN], **kwargs)


def test_step_run_ids_are_stable_uuid5_distinct_per_step_and_run() -> None:
    first = step_run_uuid("data/revenue-1", "extract")
    assert first == step_run_uuid("data/revenue-1", "extract")
    assert uuid.UUID(first).version == 5
    assert len({first, step_run_uuid("data/revenue-1", "load"), step_run_uuid("data/revenue-2", "extract"),
                step_run_uuid("data/revenue-1")}) == 4


def test_a_built_complete_event_parses_back_into_edges_and_versions() -> None:
    event = _complete(row_counts={CLEAN: 42})
    records = parse_run_event(event).records()
    run_id = step_run_uuid("data/revenue-1", "transform")
    assert records[0] == RunRecord(run_id, "revenue", "", "Succeeded", "openlineage", None, T0, "openlineage")
    assert records[1] == StepRecord(run_id, "revenue", "transform", "Succeeded", finished_at=T0)
    assert records[2] == EdgeRecord(run_id, "revenue", "transform", (RAW,), (CLEAN,), seen_at=T0)
    assert records[3] == DatasetVersionRecord(CLEAN, run_id, "revenue", "transform", T0, 42, None)


def test_start_and_fail_events_carry_no_edge_and_no_version_only_status_and_the_outputs_they_name() -> None:
    start = build_run_event("START", run_id="r", pipeline="p", step="s", event_time=T0, outputs=[CLEAN])
    records = parse_run_event(start).records()
    assert [type(r).__name__ for r in records] == ["RunRecord", "StepRecord", "DeclaredOutputsRecord"]
    assert isinstance(records[2], DeclaredOutputsRecord) and records[2].outputs == (CLEAN,)
    failed = build_run_event("FAIL", run_id="r", pipeline="p", step="s", event_time=T0, error="boom")
    step = parse_run_event(failed).records()[1]
    assert isinstance(step, StepRecord)
    assert (step.phase, step.error, step.finished_at) == ("Failed", "boom", T0)
    assert failed["run"]["facets"]["errorMessage"]["message"] == "boom"


def test_row_counts_appear_only_on_complete_events() -> None:
    start = build_run_event("START", run_id="r", pipeline="p", step="s", event_time=T0, outputs=[CLEAN],
                            row_counts={CLEAN: 1})
    assert "outputFacets" not in start["outputs"][0]
    assert _complete(row_counts={CLEAN: 1})["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1


def test_building_refuses_unknown_types_and_naive_times() -> None:
    with pytest.raises(ValueError, match="event type"):
        build_run_event("DONE", run_id="r", pipeline="p", step="s", event_time=T0)
    with pytest.raises(ValueError, match="time zone"):
        build_run_event("START", run_id="r", pipeline="p", step="s", event_time=datetime(2026, 1, 1))


def test_every_problem_is_reported_with_its_field() -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_run_event({"eventType": "COMPLETE", "eventTime": "yesterday", "job": {"namespace": 3},
                         "inputs": {"namespace": "x"}})
    assert caught.value.errors == [
        "eventTime: must be an ISO 8601 date-time with a time zone (got 'yesterday')",
        "producer: required",
        "run: required",
        "run.runId: required",
        "job.namespace: must be a non-empty string",
        "job.name: required",
        "inputs: must be an array",
    ]


def test_a_non_object_event_is_refused() -> None:
    with pytest.raises(InvalidEventError, match=r"^event: must be a JSON object"):
        parse_run_event([1, 2])


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e["outputs"][0].update(facets={"schema": {"fields": [{"type": "int"}]}}),
     "outputs[0].facets.schema.fields[0].name: required"),
    (lambda e: e["outputs"][0].update(outputFacets={"outputStatistics": {"rowCount": True}}),
     "outputs[0].outputFacets.outputStatistics.rowCount: must be a non-negative integer"),
    (lambda e: e["inputs"][0].update(name="a\ud800b"), "inputs[0].name: must be valid Unicode"),
    (lambda e: e["run"].update(facets=[]), "run.facets: must be a JSON object"),
    (lambda e: e.update(eventTime="2026-11-23T06:00:00"), "eventTime: must be an ISO 8601"),
])
def test_nested_problems_name_their_path(change: Any, message: str) -> None:
    event = _complete()
    change(event)
    with pytest.raises(InvalidEventError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_run_event(event)


def test_schema_fingerprints_follow_names_types_and_nesting() -> None:
    base = [{"name": "id", "type": "bigint"}, {"name": "amount", "type": "numeric"}]
    assert schema_fingerprint(base) == schema_fingerprint([dict(f, description="x") for f in base])
    assert schema_fingerprint(base) != schema_fingerprint([base[0], {"name": "amount", "type": "text"}])
    assert schema_fingerprint(base) != schema_fingerprint(base[::-1])
    nested = [{"name": "s", "type": "struct", "fields": [{"name": "a", "type": "int"}]}]
    assert schema_fingerprint(nested) != schema_fingerprint([{"name": "s", "type": "struct"}])


def test_a_schema_facet_becomes_the_versions_fingerprint() -> None:
    event = _complete()
    fields = [{"name": "id", "type": "bigint"}]
    event["outputs"][0]["facets"]["schema"] = {"_producer": "x", "_schemaURL": "y", "fields": fields}
    version = parse_run_event(event).records()[-1]
    assert isinstance(version, DatasetVersionRecord)
    assert version.schema_fingerprint == schema_fingerprint(fields)


def test_the_same_event_has_the_same_digest_whatever_the_key_order() -> None:
    event = _complete()
    reordered = dict(reversed(list(event.items())))
    assert parse_run_event(event).digest == parse_run_event(reordered).digest
    assert parse_run_event(event).digest != parse_run_event(_complete(row_counts={CLEAN: 1})).digest


def test_other_events_are_kept_raw_without_records() -> None:
    event = _complete()
    event["eventType"] = "OTHER"
    assert parse_run_event(event).records() == []


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00",
                                  "2026-11-24T06:00:01Z"])
def test_an_event_time_before_1970_or_more_than_a_day_ahead_is_refused(when: str) -> None:
    event = _complete()
    event["eventTime"] = when
    with pytest.raises(InvalidEventError, match="eventTime: must be between 1970-01-01T00:00:00Z and "
                                                r"2026-11-24T06:00:00\+00:00 \(now \+ 1 day\)"):
        parse_run_event(event, now=T0)


@pytest.mark.parametrize("when", ["1970-01-01T00:00:00Z", "2026-11-24T06:00:00Z", "2026-11-24T20:00:00+14:00"])
def test_an_event_time_from_1970_to_a_day_ahead_is_accepted(when: str) -> None:
    event = _complete()
    event["eventTime"] = when
    assert parse_run_event(event, now=T0).event_time == datetime.fromisoformat(when)


def _fan(inputs: int, outputs: int, event_type: str = "COMPLETE") -> dict[str, Any]:
    event = build_run_event(event_type, run_id="r", pipeline="p", step="s", event_time=T0,
                            inputs=[DatasetRef("postgres://w", f"in{i}") for i in range(inputs)],
                            outputs=[DatasetRef("postgres://w", f"out{o}") for o in range(outputs)])
    return event


@pytest.mark.parametrize("event_type", ["COMPLETE", "START"])
def test_more_than_ten_thousand_edges_in_one_event_are_refused_not_cut(event_type: str) -> None:
    with pytest.raises(InvalidEventError, match=r"inputs x outputs: at most 10000 lineage edges per event "
                                                r"\(got 101 distinct inputs x 100 distinct outputs = 10100\)"):
        parse_run_event(_fan(101, 100, event_type), now=T0)


def test_ten_thousand_edges_and_repeated_datasets_are_within_the_limit() -> None:
    event = _fan(100, 100)
    event["inputs"] += event["inputs"]  # the same dataset twice is one edge end
    [edges] = [r for r in parse_run_event(event, now=T0).records() if isinstance(r, EdgeRecord)]
    assert len(edges.inputs) * len(edges.outputs) == 10_000


def test_a_text_that_only_looks_like_an_escaped_nul_is_accepted() -> None:
    event = _complete()
    event["job"]["facets"] = {"documentation": {"description": "C:\\u0000\\dir"}}
    assert parse_run_event(event).raw["job"]["facets"]["documentation"]["description"] == "C:\\u0000\\dir"


@pytest.mark.parametrize("where", ["value", "key"])
def test_a_nul_anywhere_is_refused_by_its_path(where: str) -> None:
    event = _complete()
    event["run"]["facets"] = {"custom": {"note": "a\u0000b"} if where == "value" else {"no\u0000te": "b"}}
    path = "run.facets.custom.note" if where == "value" else "run.facets.custom.no\u0000te"
    with pytest.raises(InvalidEventError, match=re.escape(f"{path}: {'' if where == 'value' else 'keys '}must not")):
        parse_run_event(event)


def test_the_digest_is_sha256_of_the_events_sorted_compact_json() -> None:
    event = _complete()  # events stored by earlier versions are recognised when sent again
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert parse_run_event(event).digest == hashlib.sha256(canonical.encode()).digest()
