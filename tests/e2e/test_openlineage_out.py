"""The operator sends an OpenLineage RunEvent for every step transition to a configured endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest_e2e import OperatorProcess, wait_run
from headwater.lineage.openlineage import step_run_uuid
from headwater.lineage.run_records import run_id
from helpers import Cluster, Receiver, receiving, wait_for
from manifests import failing_pods, pipeline, run, step

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


def test_every_step_transition_reaches_the_openlineage_endpoint_with_stable_run_ids(
        cluster: Cluster, namespace: str, tmp_path: Path, receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/api/v1/lineage"
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_OPENLINEAGE_URL=url)
    operator.start()
    try:
        cluster.apply(pipeline("ol", [step("extract", outputs=[{"namespace": "postgres://wh", "name": "raw.x"}]),
                                      step("load", "extract", retries=0, podMetadata=failing_pods())]),
                      run("ol-1", "ol"), namespace=namespace)
        assert wait_run(cluster, namespace, "ol-1")["status"]["phase"] == "Failed"

        def seen() -> list[tuple[str, str]]:
            return sorted((e["job"]["name"], e["eventType"]) for e in receiver.events)

        expected = [("extract", "COMPLETE"), ("extract", "START"), ("load", "FAIL"), ("load", "START")]
        assert wait_for(lambda: seen() == expected and seen(), timeout=120, message="four events") == expected
    finally:
        operator.stop()
    ids = {(e["job"]["name"], e["run"]["runId"]) for e in receiver.events}
    lineage_id = run_id(namespace, "ol-1", cluster.get("pipelinerun", "ol-1", namespace)["metadata"]["uid"])
    assert ids == {("extract", step_run_uuid(lineage_id, "extract")), ("load", step_run_uuid(lineage_id, "load"))}
    assert all(e["job"]["namespace"] == f"{namespace}/ol" for e in receiver.events)  # namespace/pipeline
