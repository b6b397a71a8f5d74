"""The operator sends an OpenLineage RunEvent for every step transition to a configured endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, fail_label, pipeline, run, step, wait_run
from headwater.lineage.openlineage import step_run_uuid
from headwater.lineage.run_records import run_id
from helpers import Cluster, wait_for

pytestmark = pytest.mark.e2e


class Receiver(ThreadingHTTPServer):
    """A loopback HTTP endpoint that keeps every JSON body it accepts (``answer``, 201 unless changed)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        self.answer = 201
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = outer.answer
                if answer < 300:
                    outer.events.append(json.loads(body))
                else:
                    outer.refused += 1
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_every_step_transition_reaches_the_openlineage_endpoint_with_stable_run_ids(
        cluster: Cluster, namespace: str, tmp_path: Path, receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/api/v1/lineage"
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_OPENLINEAGE_URL=url)
    operator.start()
    try:
        cluster.apply(pipeline("ol", [step("extract", outputs=[{"namespace": "postgres://wh", "name": "raw.x"}]),
                                      step("load", "extract", retries=0, podMetadata=fail_label())]),
                      run("ol-1", "ol"), namespace=namespace)
        assert wait_run(cluster, namespace, "ol-1")["status"]["phase"] == "Failed"

        def seen() -> list[tuple[str, str]]:
            return sorted((e["job"]["name"], e["eventType"]) for e in receiver.events)

        expected = [("extract", "COMPLETE"), ("extract", "START"), ("load", "FAIL"), ("load", "START")]
        assert wait_for(lambda: seen() == expected and seen(), timeout=30, message="four events") == expected
    finally:
        operator.stop()
    ids = {(e["job"]["name"], e["run"]["runId"]) for e in receiver.events}
    lineage_id = run_id(namespace, "ol-1", cluster.get("pipelinerun", "ol-1", namespace)["metadata"]["uid"])
    assert ids == {("extract", step_run_uuid(lineage_id, "extract")), ("load", step_run_uuid(lineage_id, "load"))}
    assert all(e["job"]["namespace"] == "ol" for e in receiver.events)
