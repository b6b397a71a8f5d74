"""Alerts are kept in the Pipeline's status before they are sent, and sent until a receiver acknowledges them.

The run engine, the SLA monitor and the sender are the real ones, over the in-memory Kubernetes API;
the receiver is a real HTTP server on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fakekube import PIPELINES, RUNS, FakeKube
from headwater.adapters.delivery import JsonPoster
from headwater.adapters.metrics import Metrics
from headwater.runs.engine import RunEngine
from headwater.runs.jobs import JobSettings, RunRef
from headwater.sla.monitor import SlaMonitor
from headwater.spec.models import PipelineRunStatus
from headwater.spec.names import job_name
from helpers import wait_for
from manifests import pipeline, run, step
from test_delivery import ScriptedReceiver

pytestmark = pytest.mark.component

NS = "data"
WH = "postgres://warehouse"


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    server = ScriptedReceiver([])
    yield server
    server.close()


def cluster() -> FakeKube:
    kube = FakeKube()
    kube.seed(pipeline("revenue", [step("extract", outputs=[{"namespace": WH, "name": "raw.payments"}])],
                       owner="data@example.com", notifications={"slackChannel": "#revenue"}), NS)
    kube.seed(pipeline("reporting", [step("report", inputs=[{"namespace": WH, "name": "raw.payments"}],
                                          outputs=[{"namespace": WH, "name": "reporting.daily"}])],
                       owner="finance@example.com"), NS)
    kube.seed(run("revenue-1", "revenue"), NS)
    return kube


class Operator:
    """The parts of one operator process that raise and send alerts."""

    def __init__(self, kube: FakeKube, url: str, start_sender: bool = True) -> None:
        self.metrics = Metrics()
        self.sender = JsonPoster(url, "t0ken", name="alerts", metrics=self.metrics, attempts=2, timeout=5,
                                 first_delay=0.01)
        self.monitor = SlaMonitor(kube, self.metrics, lambda *_: None, self.sender, [NS])  # type: ignore[arg-type]
        self.engine = RunEngine(kube, JobSettings("img"), lambda *_: None, on_finish=self.monitor.run_finished)
        kube.follow_jobs(self.engine.jobs.saw)
        if start_sender:
            self.sender.start()

    def stop(self) -> None:
        self.sender.stop()


def fail_the_run(kube: FakeKube, engine: RunEngine) -> None:
    engine.reconcile(NS, "revenue-1")
    kube.fail_job(NS, job_name("revenue-1", "extract"), attempts=1)
    engine.reconcile(NS, "revenue-1")
    assert kube.read(RUNS, NS, "revenue-1")["status"]["phase"] == "Failed"


def ref_of(run: dict[str, Any]) -> RunRef:
    meta = run["metadata"]
    return RunRef(meta["name"], meta["namespace"], meta["uid"], run["spec"]["pipelineRef"]["name"])


def alerts(kube: FakeKube) -> list[dict[str, Any]]:
    return list((kube.read(PIPELINES, NS, "revenue").get("status") or {}).get("alerts") or [])


def bodies(receiver: ScriptedReceiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


def test_an_alert_written_before_a_crash_is_sent_by_the_next_operator(receiver: ScriptedReceiver) -> None:
    kube = cluster()
    first = Operator(kube, receiver.url, start_sender=False)  # dies before its sender sends anything
    fail_the_run(kube, first.engine)
    first.stop()
    assert receiver.requests == []
    [pending] = alerts(kube)
    assert pending["id"] == f"run-{kube.read(RUNS, NS, 'revenue-1')['metadata']['uid']}"
    assert "notifiedAt" not in pending

    second = Operator(kube, receiver.url)
    try:
        second.monitor.evaluate_all()  # its first evaluation, right after start-up
        wait_for(lambda: "notifiedAt" in alerts(kube)[0], timeout=30, message="the alert to be acknowledged")
    finally:
        second.stop()
    [message] = bodies(receiver)
    assert message["incident"]["id"] == pending["id"]
    assert message["incident"]["channel"] == "#revenue"
    assert [d["name"] for d in message["incident"]["affectedDatasets"]] == ["raw.payments", "reporting.daily"]
    assert "revenue/extract failed in run data/revenue-1" in message["text"]


def test_an_alert_is_sent_again_until_the_receiver_takes_it_and_then_never_again(receiver: ScriptedReceiver) -> None:
    receiver.script = ["500", "500"]  # the sender's two attempts fail
    kube = cluster()
    operator = Operator(kube, receiver.url)
    try:
        fail_the_run(kube, operator.engine)
        wait_for(lambda: len(receiver.requests) == 2, timeout=30, message="two failed attempts")
        wait_for(lambda: operator.metrics.registry.get_sample_value(
            "headwater_delivery_dropped_total", {"sender": "alerts", "reason": "gave_up"}) == 1, timeout=30,
            message="the sender to give up")
        assert "notifiedAt" not in alerts(kube)[0]
        operator.monitor.evaluate_all()  # the next evaluation sends it again
        wait_for(lambda: "notifiedAt" in alerts(kube)[0], timeout=30, message="the alert to be acknowledged")
        run = kube.read(RUNS, NS, "revenue-1")
        operator.monitor.run_finished(ref_of(run), PipelineRunStatus.model_validate(run["status"]))  # applied again
        operator.monitor.evaluate_all()
    finally:
        operator.stop()
    assert len(receiver.requests) == 3
    assert len(alerts(kube)) == 1


def test_a_receiver_that_refuses_an_alert_is_not_asked_again(receiver: ScriptedReceiver) -> None:
    receiver.script = [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"]
    kube = cluster()
    operator = Operator(kube, receiver.url)
    try:
        fail_the_run(kube, operator.engine)
        wait_for(lambda: alerts(kube)[0].get("refused"), timeout=30, message="the refusal to be written")
        operator.monitor.evaluate_all()
    finally:
        operator.stop()
    assert len(receiver.requests) == 1


def test_a_pass_that_read_the_pipelines_before_the_acknowledgement_does_not_send_the_alert_again(
        receiver: ScriptedReceiver) -> None:
    # A freshness pass lists the Pipelines, the alert is delivered and acknowledged meanwhile, and the pass
    # then sends what its (now stale) list still shows as pending: seen as two identical Slack messages.
    kube = cluster()
    operator = Operator(kube, receiver.url, start_sender=False)
    try:
        fail_the_run(kube, operator.engine)
        listed_before = kube.list_pipelines(NS)
        operator.sender.start()
        wait_for(lambda: "notifiedAt" in alerts(kube)[0], timeout=30, message="the alert to be acknowledged")
        operator.monitor.deliver_pending(listed_before)
        operator.sender.send({"marker": True})  # one queue, one thread: anything sent before it arrives first
        wait_for(lambda: any(b.get("marker") for b in bodies(receiver)), timeout=30, message="the marker")
    finally:
        operator.stop()
    assert [b.get("marker", False) for b in bodies(receiver)] == [False, True]
