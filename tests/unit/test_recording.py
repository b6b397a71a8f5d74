"""What the operator writes to the lineage store for a finished run."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.lineage.records import DatasetRef, DatasetVersionRecord, EdgeRecord, RunRecord, StepRecord
from headwater.lineage.run_records import is_recorded, records_for_run
from manifests import step

pytestmark = pytest.mark.unit

WAREHOUSE = "postgres://warehouse"


def finished_run(**status: Any) -> dict[str, Any]:
    steps = [step("extract", type="sql", inputs=[{"namespace": "api://stripe", "name": "payments"}],
                  outputs=[{"namespace": WAREHOUSE, "name": "raw.payments"}]),
             step("load", "extract", type="sql", inputs=[{"namespace": WAREHOUSE, "name": "raw.payments"}],
                  outputs=[{"namespace": WAREHOUSE, "name": "analytics.revenue"}])]
    return {
        "metadata": {"name": "rev-1", "namespace": "data", "uid": "0f3c9a1e-5d2b-4c8e-9f10-2a3b4c5d6e7f"},
        "spec": {"pipelineRef": {"name": "rev"}, "trigger": "manual"},
        "status": {"phase": "Failed", "startedAt": "2026-11-23T06:00:00Z", "finishedAt": "2026-11-23T06:01:00Z",
                   "pipelineSpec": {"steps": steps},
                   "steps": [
                       {"name": "extract", "phase": "Succeeded", "attempts": 1, "startedAt": "2026-11-23T06:00:00Z",
                        "finishedAt": "2026-11-23T06:00:30Z", "result": {"rowsAffected": 120}},
                       {"name": "load", "phase": "Failed", "attempts": 3, "reason": "BackoffLimitExceeded",
                        "message": "relation raw.payments is locked"}],
                   **status},
    }


def test_a_finished_run_becomes_its_run_steps_edges_and_dataset_versions() -> None:
    records = records_for_run(finished_run())
    runs = [r for r in records if isinstance(r, RunRecord)]
    steps = {r.step: r for r in records if isinstance(r, StepRecord)}
    edges = [r for r in records if isinstance(r, EdgeRecord)]
    versions = [r for r in records if isinstance(r, DatasetVersionRecord)]
    assert [(r.run_id, r.pipeline, r.phase) for r in runs] == [("data/rev-1/0f3c9a1e", "rev", "Failed")]
    assert (runs[0].name, runs[0].uid) == ("rev-1", "0f3c9a1e-5d2b-4c8e-9f10-2a3b4c5d6e7f")
    assert steps["extract"].rows_affected == 120
    assert steps["load"].error == "relation raw.payments is locked"
    assert [(e.step, e.inputs, e.outputs) for e in edges] == [
        ("extract", (DatasetRef("api://stripe", "payments"),), (DatasetRef(WAREHOUSE, "raw.payments"),))]
    assert [(v.dataset.name, v.row_count) for v in versions] == [("raw.payments", 120)]


def test_a_reused_step_of_a_retry_is_not_written_again() -> None:
    run = finished_run()
    run["status"]["steps"][0]["reason"] = "Reused"
    records = records_for_run(run)
    assert not [r for r in records if isinstance(r, EdgeRecord | DatasetVersionRecord)]


def test_only_a_true_recorded_condition_counts() -> None:
    run = finished_run(conditions=[{"type": "Recorded", "status": "False", "reason": "Pending", "message": "",
                                    "lastTransitionTime": "2026-11-23T06:02:00Z"}])
    assert not is_recorded(run)
    run["status"]["conditions"][0]["status"] = "True"
    assert is_recorded(run)


def test_tables_a_sql_step_reads_without_declaring_them_still_become_lineage() -> None:
    run = finished_run()
    run["status"]["pipelineSpec"]["steps"][0]["sql"] = (
        "INSERT INTO raw.payments SELECT * FROM staging.refunds JOIN staging.fx USING (currency)")
    edges = [r for r in records_for_run(run) if isinstance(r, EdgeRecord)]
    assert {d.name for d in edges[0].inputs} == {"payments", "staging.refunds", "staging.fx"}
    assert {d.namespace for d in edges[0].inputs if d.name.startswith("staging.")} == {WAREHOUSE}


def test_a_run_created_again_under_the_same_name_is_another_run_in_every_record() -> None:
    first, again = finished_run(), finished_run()
    again["metadata"]["uid"] = "7d41e0b2-0000-4000-8000-000000000000"
    ids = [{r.run_id for r in records_for_run(run)} for run in (first, again)]
    assert ids == [{"data/rev-1/0f3c9a1e"}, {"data/rev-1/7d41e0b2"}]


def test_a_row_count_the_store_cannot_hold_is_left_out_rather_than_failing_the_run() -> None:
    run = finished_run()
    for rows in (2**63, True, -1, "12"):
        run["status"]["steps"][0]["result"] = {"rowsAffected": rows}
        steps = [r for r in records_for_run(run) if isinstance(r, StepRecord)]
        assert steps[0].rows_affected is None
