"""The SLA monitor's writes of a Pipeline's status when many of its runs finish at once: written together in
one round per Pipeline (a group commit), and never held up by another Pipeline's write."""

from __future__ import annotations

import threading

import pytest

from fakekube import PIPELINES, RUNS, FakeKube
from headwater.runs.jobs import RunRef
from headwater.spec.models import PipelineRunStatus
from headwater.spec.names import job_name
from helpers import wait_for
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"
WH = "postgres://warehouse"


def finished_runs(kube: FakeKube, operator: Operator) -> dict[str, tuple[RunRef, PipelineRunStatus]]:
    """Runs orders-1..4 and leads-1, each finished by the operator: what the SLA monitor is given for each."""
    kube.seed(pipeline("orders", [step("load", outputs=[{"namespace": WH, "name": "raw.orders"}])]), NS)
    kube.seed(pipeline("leads", [step("load", outputs=[{"namespace": WH, "name": "mkt.leads"}])]), NS)
    names = [("orders", f"orders-{i}") for i in range(1, 5)] + [("leads", "leads-1")]
    for pipeline_name, name in names:
        kube.seed(run(name, pipeline_name), NS)
    operator.deliver()
    for _, name in names:
        kube.complete_job(NS, job_name(name, "load"))
    operator.deliver()
    out = {}
    for pipeline_name, name in names:
        body = kube.read(RUNS, NS, name)
        ref = RunRef(name, NS, body["metadata"]["uid"], pipeline_name)
        out[name] = (ref, PipelineRunStatus.model_validate(body["status"]))
    return out


def test_runs_of_one_pipeline_finishing_together_are_written_in_one_round_and_other_pipelines_never_wait(
        kube: FakeKube, operator: Operator) -> None:
    runs = finished_runs(kube, operator)
    monitor = operator.sla
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        assert release.wait(10)

    def finish(name: str) -> None:
        monitor.run_finished(*runs[name], latest=False)

    reads_before = kube.count("get_pipeline", "orders")
    kube.before("get_pipeline", hold, name="orders")  # the first write of orders' status is under way
    threads = [threading.Thread(target=finish, args=("orders-1",))]
    threads[0].start()
    assert inside.wait(10)
    threads += [threading.Thread(target=finish, args=(f"orders-{i}",)) for i in (2, 3, 4)]
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: len(monitor._writes._pending.get((NS, "orders"), [])) == 3, timeout=10,
             message="three writes to wait for the next round")
    other = threading.Thread(target=finish, args=("leads-1",))
    other.start()
    other.join(5)
    assert not other.is_alive(), "a write of another Pipeline waited for orders"
    release.set()
    for thread in threads:
        thread.join(10)
    assert kube.count("get_pipeline", "orders") - reads_before == 2  # one read (and write) per round
    assert operator.errors == []


def test_a_successful_run_reads_only_the_pipelines_that_show_a_risk_it_caused(
        kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("orders", [step("load", outputs=[{"namespace": WH, "name": "raw.orders"}])]), NS)
    kube.seed(pipeline("revenue", [step("build", inputs=[{"namespace": WH, "name": "raw.orders"}],
                                        outputs=[{"namespace": WH, "name": "analytics.revenue"}])]), NS)
    for i in range(20):  # unrelated Pipelines: none of their datasets is at risk
        kube.seed(pipeline(f"other-{i:02d}", [step("load", outputs=[{"namespace": WH, "name": f"x.t{i}"}])]), NS)
    operator.deliver()
    operator.run_one_step(NS, "orders-1", "orders", "load", "relation raw.orders is locked")
    assert kube.read(PIPELINES, NS, "revenue")["status"]["datasets"][0]["atRiskSource"] == f"{NS}/orders"
    before = {p["metadata"]["name"]: kube.count("get_pipeline", p["metadata"]["name"])
              for p in kube.select(PIPELINES, NS)}
    operator.run_one_step(NS, "orders-2", "orders", "load")
    assert kube.read(PIPELINES, NS, "revenue")["status"]["datasets"][0].get("atRisk") is None  # cleared
    read = {name: kube.count("get_pipeline", name) - n for name, n in before.items()}
    assert read["revenue"] >= 1
    assert {name for name, n in read.items() if n and name.startswith("other-")} == set()


def test_a_failed_run_reads_only_the_pipelines_that_declare_a_dataset_it_puts_at_risk(
        kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("orders", [step("load", outputs=[{"namespace": WH, "name": "raw.orders"}])]), NS)
    kube.seed(pipeline("revenue", [step("build", inputs=[{"namespace": WH, "name": "raw.orders"}],
                                        outputs=[{"namespace": WH, "name": "analytics.revenue"}])]), NS)
    for i in range(20):  # unrelated Pipelines: none of their datasets is downstream of raw.orders
        kube.seed(pipeline(f"other-{i:02d}", [step("load", outputs=[{"namespace": WH, "name": f"x.t{i}"}])]), NS)
    operator.deliver()
    before = {p["metadata"]["name"]: kube.count("get_pipeline", p["metadata"]["name"])
              for p in kube.select(PIPELINES, NS)}
    operator.run_one_step(NS, "orders-1", "orders", "load", "relation raw.orders is locked")
    assert kube.read(PIPELINES, NS, "revenue")["status"]["datasets"][0]["atRiskSource"] == f"{NS}/orders"
    read = {name: kube.count("get_pipeline", name) - n for name, n in before.items()}
    assert read["revenue"] >= 1
    assert {name for name, n in read.items() if n and name.startswith("other-")} == set()


def test_runs_finishing_together_share_one_listing_of_the_pipelines_made_after_they_finished(
        kube: FakeKube, operator: Operator) -> None:
    runs = finished_runs(kube, operator)
    revenue = pipeline("revenue", [step("build", inputs=[{"namespace": WH, "name": "raw.orders"}],
                                        outputs=[{"namespace": WH, "name": "analytics.revenue"}])])
    revenue["status"] = {"datasets": [{"namespace": WH, "name": "analytics.revenue", "atRisk": "orders failed",
                                       "atRiskSource": f"{NS}/orders"}]}
    monitor = operator.sla
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:  # the first listing is under way when the others finish
        inside.set()
        assert release.wait(10)

    listings_before = kube.count("list_pipelines")
    kube.before("list_pipelines", hold)
    first = threading.Thread(target=monitor.run_finished, args=runs["orders-1"])
    first.start()
    assert inside.wait(10)
    kube.seed(revenue, NS)  # put at risk after the first listing was read: only a later listing shows it
    others = [threading.Thread(target=monitor.run_finished, args=runs[f"orders-{i}"]) for i in (2, 3, 4)]
    for thread in others:
        thread.start()

    def others_arrived() -> bool:  # waiting for the next listing, or (one per run) listing on their own
        waiting = len(monitor._lists._pending.get("pipelines", [])) if hasattr(monitor, "_lists") else 0
        return waiting == 3 or kube.count("list_pipelines") - listings_before == 4
    wait_for(others_arrived, timeout=10, message="the three other runs to ask for the Pipelines")
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    # one listing under way and one for every run that finished meanwhile, not one per run
    assert kube.count("list_pipelines") - listings_before == 2
    assert kube.read(PIPELINES, NS, "revenue")["status"]["datasets"][0].get("atRisk") is None  # seen, cleared
    assert operator.errors == []
