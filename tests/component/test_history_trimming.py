"""When a finished run owes nothing more, it joins its Pipeline's history: the engine trims the runs that
joined before it to the history limits, oldest first, and labels it settled.  With a lineage recorder
configured a run not yet recorded is never deleted; runs in flight are neither counted nor read."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fakekube import EVENTS, RUNS, FakeKube, ManualClock
from headwater.lineage.recorder import Recorder
from headwater.lineage.run_records import CONDITION_RECORDED
from headwater.spec import constants as c
from headwater.spec.names import job_name
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"


def finished(name: str, phase: str, recorded: bool, pipeline_name: str = "orders") -> dict[str, Any]:
    body = run(name, pipeline_name)
    body["metadata"]["labels"] = {c.LABEL_PIPELINE: pipeline_name}
    if phase != "Running":  # as an operator leaves a finished run that owes nothing more
        body["metadata"]["labels"][c.LABEL_SETTLED] = "true"
    conditions = [{"type": CONDITION_RECORDED, "status": "True", "reason": "Recorded", "message": "in the store",
                   "lastTransitionTime": "2026-11-22T00:00:00Z"}] if recorded else []
    body["status"] = {"phase": phase, "conditions": conditions}
    return body


@pytest.fixture
def history(kube: FakeKube, clock: ManualClock) -> None:
    """Pipeline orders keeping one succeeded and one failed run, its earlier runs (oldest first), a run
    still going, a run of another pipeline, and the run orders-new, whose Job is about to succeed."""
    kube.seed(pipeline("orders", [step("load")], successfulRunsHistoryLimit=1,
                       failedRunsHistoryLimit=1), NS)
    earlier = [("ok-recorded-old", "Succeeded", True), ("failed-unrecorded", "Failed", False),
               ("ok-unrecorded", "Succeeded", False), ("cancelled-recorded", "Cancelled", True),
               ("ok-recorded", "Succeeded", True), ("failed-recorded", "Failed", True),
               ("still-running", "Running", False)]
    for name, phase, recorded in earlier:
        kube.seed(finished(name, phase, recorded), NS)
        clock.advance(60)
    kube.seed(finished("other-old", "Succeeded", True, "other"), NS)
    clock.advance(60)
    kube.seed(run("orders-new", "orders"), NS)


def finish_the_new_run(kube: FakeKube, operator: Operator) -> None:
    operator.deliver()
    kube.complete_job(NS, job_name("orders-new", "load"))
    operator.deliver()
    assert kube.read(RUNS, NS, "orders-new")["status"]["phase"] == "Succeeded"


@pytest.mark.usefixtures("history")
def test_with_a_recorder_finished_runs_not_yet_recorded_are_never_trimmed_but_count_toward_the_limits(
        kube: FakeKube, clock: ManualClock) -> None:
    recorder = Recorder(lambda: None, kube, [None])  # not started: the engine only tells it a run finished
    operator = Operator(kube, clock, recorder=recorder)
    finish_the_new_run(kube, operator)
    assert len(kube.names(RUNS, NS)) == 9  # held by the recorder's finalizer: it has not joined the history
    recorded = kube.read(RUNS, NS, "orders-new")
    recorded["status"]["conditions"].append({"type": CONDITION_RECORDED, "status": "True", "reason": "Recorded",
                                             "message": "in the store", "lastTransitionTime": "2026-11-22T00:00:00Z"})
    kube.replace_run_status(recorded, recorded["status"])
    kube.patch(RUNS, NS, "orders-new", {"metadata": {"finalizers": []}})  # recorded and let go, as the recorder does
    operator.deliver()
    # orders-new is the one succeeded run kept, so ok-recorded goes; ok-unrecorded and failed-unrecorded
    # (finished before the store was configured) stay beyond the limits until they are recorded
    assert kube.names(RUNS, NS) == ["failed-recorded", "failed-unrecorded", "ok-unrecorded",
                                    "orders-new", "other-old", "still-running"]


@pytest.mark.usefixtures("history")
def test_without_a_recorder_finished_runs_beyond_the_limits_are_trimmed_oldest_first(
        kube: FakeKube, operator: Operator) -> None:
    finish_the_new_run(kube, operator)
    assert kube.names(RUNS, NS) == ["failed-recorded", "orders-new", "other-old", "still-running"]


@pytest.mark.usefixtures("history")
def test_a_trim_reads_only_the_runs_that_joined_the_history_however_many_are_in_flight(
        kube: FakeKube, operator: Operator) -> None:
    for i in range(300):
        kube.seed(finished(f"queued-{i:03d}", "Running", False), NS)
    read: list[int] = []
    paged = kube.iter_runs

    def counted(namespace: str | None, selector: str | None = None, page: int = 200) -> Any:
        items = list(paged(namespace, selector, page))
        read.append(len(items))
        return iter(items)

    kube.iter_runs = counted  # type: ignore[method-assign]
    finish_the_new_run(kube, operator)
    assert read == [6]  # the finished runs of orders labelled settled; orders-new itself is in hand
    assert len([n for n in kube.names(RUNS, NS) if n.startswith("queued-")]) == 300
    assert kube.read(RUNS, NS, "orders-new")["metadata"]["labels"][c.LABEL_SETTLED] == "true"


def settled_runs_joining_together(kube: FakeKube, operator: Operator, history_limit: int) -> None:
    """Four settled runs of orders join its history: orders-0 alone, the three others while its join is under
    way (each returning at once), together in the next batch."""
    kube.seed(pipeline("orders", [step("load")], successfulRunsHistoryLimit=history_limit), NS)
    for i in range(4):
        body = finished(f"orders-{i}", "Succeeded", True)
        del body["metadata"]["labels"][c.LABEL_SETTLED]  # settled, about to join
        kube.seed(body, NS)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        assert release.wait(10)

    kube.before("get_pipeline", hold)  # the first join is under way, its Pipeline being read
    first = threading.Thread(target=operator.engine.join_history, args=(kube.read(RUNS, NS, "orders-0"),))
    first.start()
    assert inside.wait(10)
    for i in (1, 2, 3):  # each returns at once: no thread waits for another
        operator.engine.join_history(kube.read(RUNS, NS, f"orders-{i}"))
    assert kube.count("get_pipeline") == 1
    release.set()
    first.join(10)


def test_runs_that_finish_while_one_joins_the_history_return_at_once_and_join_together_in_one_more_trim(
        kube: FakeKube, operator: Operator) -> None:
    settled_runs_joining_together(kube, operator, history_limit=2)
    assert kube.count("get_pipeline") == 2 and kube.count("iter_runs") == 2  # two trims for four runs
    assert kube.names(RUNS, NS) == ["orders-2", "orders-3"]
    assert all(r["metadata"]["labels"][c.LABEL_SETTLED] == "true" for r in kube.select(RUNS, NS))


def test_a_run_whose_label_is_refused_gets_its_own_event_and_the_rest_of_its_batch_is_labelled(
        kube: FakeKube, operator: Operator) -> None:
    kube.fail("patch_run_metadata", 422, name="orders-2", times=None, message="denied by a policy")
    settled_runs_joining_together(kube, operator, history_limit=10)
    labelled = {r["metadata"]["name"] for r in kube.select(RUNS, NS) if c.LABEL_SETTLED in r["metadata"]["labels"]}
    assert labelled == {"orders-0", "orders-1", "orders-3"}
    events = [(e["involvedObject"]["name"], e["reason"]) for e in kube.select(EVENTS, NS)]
    assert events == [("orders-2", "HistoryFailed")]


def test_a_run_the_history_cannot_delete_gets_its_own_event_and_the_batch_still_joins(
        kube: FakeKube, operator: Operator) -> None:
    kube.fail("delete_run", 422, name="orders-0", times=None, message="denied by a policy")
    settled_runs_joining_together(kube, operator, history_limit=2)
    assert kube.names(RUNS, NS) == ["orders-0", "orders-2", "orders-3"]  # orders-1 went, beyond the limit
    assert all(r["metadata"]["labels"][c.LABEL_SETTLED] == "true" for r in kube.select(RUNS, NS))
    events = [(e["involvedObject"]["name"], e["reason"]) for e in kube.select(EVENTS, NS)]
    assert events == [("orders-0", "HistoryFailed")]
