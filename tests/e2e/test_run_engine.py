"""The operator runs PipelineRuns as dependency-ordered Jobs on the real control plane."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, held_pod, release, wait_run
from control_plane import ControlPlane
from headwater.spec.times import parse_time
from helpers import Cluster, wait_for
from manifests import failing_pods, held_pods, pipeline, run, step

pytestmark = pytest.mark.e2e

TERMINAL = ("Succeeded", "Failed", "Cancelled")


def steps_by_name(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in obj["status"]["steps"]}


def run_jobs(cluster: Cluster, namespace: str, run_name: str) -> dict[str, dict[str, Any]]:
    jobs = cluster.list("jobs", namespace, f"headwater.dev/run={run_name}")
    return {j["metadata"]["labels"]["headwater.dev/step"]: j for j in jobs}


def step_phases(cluster: Cluster, namespace: str, run_name: str) -> dict[str, str]:
    return {k: v["phase"] for k, v in steps_by_name(cluster.get("pipelinerun", run_name, namespace)).items()}


def test_diamond_runs_in_dependency_order_with_parallel_branches(cluster: Cluster, namespace: str,
                                                                 operator: Any) -> None:
    cluster.apply(pipeline("diamond", [step("a"), step("b", "a", podMetadata=held_pods()),
                                       step("c", "a", podMetadata=held_pods()), step("d", "b", "c")]),
                  run("diamond-1", "diamond"), namespace=namespace)
    # neither branch can finish before the test lets it: both must be running at once
    branches = [held_pod(cluster, namespace, f"headwater.dev/run=diamond-1,headwater.dev/step={x}") for x in "bc"]
    wait_for(lambda: step_phases(cluster, namespace, "diamond-1") == {
        "a": "Succeeded", "b": "Running", "c": "Running", "d": "Pending"}, timeout=120,
        message="both branches to run while d waits")
    for pod in branches:
        release(cluster, namespace, pod)
    done = wait_run(cluster, namespace, "diamond-1")
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["progress"] == "4/4"
    s = steps_by_name(done)
    assert s["a"]["finishedAt"] <= s["b"]["startedAt"] and s["a"]["finishedAt"] <= s["c"]["startedAt"]
    assert max(s["b"]["finishedAt"], s["c"]["finishedAt"]) <= s["d"]["startedAt"]
    assert s["b"]["startedAt"] <= s["c"]["finishedAt"] and s["c"]["startedAt"] <= s["b"]["finishedAt"]
    jobs = run_jobs(cluster, namespace, "diamond-1")
    assert sorted(jobs) == ["a", "b", "c", "d"]
    assert jobs["a"]["metadata"]["ownerReferences"][0]["name"] == "diamond-1"
    table = cluster.kubectl("-n", namespace, "get", "pipelineruns").stdout
    assert table.split()[:6] == ["NAME", "PIPELINE", "PHASE", "PROGRESS", "STARTED", "DURATION"]
    assert "Succeeded" in table and "4/4" in table


def test_a_step_failing_once_then_succeeding_ends_succeeded_with_two_attempts(
        cluster: Cluster, namespace: str, operator: Any) -> None:
    cluster.apply(pipeline("flaky", [step("load", retries=2, podMetadata=held_pods())]),
                  run("flaky-1", "flaky"), namespace=namespace)
    # the first attempt fails and the retry succeeds, whenever each pod comes
    first = held_pod(cluster, namespace, "headwater.dev/run=flaky-1")
    release(cluster, namespace, first, fail=True)
    retry = held_pod(cluster, namespace, "headwater.dev/run=flaky-1", other_than=(first,))
    release(cluster, namespace, retry)
    done = wait_run(cluster, namespace, "flaky-1")
    load = steps_by_name(done)["load"]
    assert (done["status"]["phase"], load["phase"], load["attempts"]) == ("Succeeded", "Succeeded", 2)


def test_a_step_failing_past_its_retries_fails_and_skips_downstream_but_not_independent_steps(
        cluster: Cluster, namespace: str, operator: Any) -> None:
    cluster.apply(pipeline("broken", [step("extract", retries=1, podMetadata=failing_pods()),
                                      step("transform", "extract"), step("other")]),
                  run("broken-1", "broken"), namespace=namespace)
    done = wait_run(cluster, namespace, "broken-1")
    s = steps_by_name(done)
    assert done["status"]["phase"] == "Failed"
    assert (s["extract"]["phase"], s["extract"]["reason"], s["extract"]["attempts"]) == (
        "Failed", "BackoffLimitExceeded", 2)
    assert "simulated failure" in s["extract"]["message"]
    assert (s["transform"]["phase"], s["transform"]["reason"]) == ("Skipped", "UpstreamFailed")
    assert s["other"]["phase"] == "Succeeded"
    assert "transform" not in run_jobs(cluster, namespace, "broken-1")

    def events() -> str:
        return cluster.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=broken-1",
                               "-o", "jsonpath={.items[*].message}").stdout

    # Events are posted from a background queue, after the status that the run's wait saw
    wait_for(lambda: "Step extract failed: BackoffLimitExceeded" in events(), timeout=120,
             message="the Event naming the failed step")


def test_a_step_exceeding_its_timeout_fails_with_deadline_exceeded(cluster: Cluster, namespace: str,
                                                                   operator: Any) -> None:
    cluster.apply(pipeline("slow", [step("wait", timeoutSeconds=2, retries=0, podMetadata=held_pods())]),
                  run("slow-1", "slow"), namespace=namespace)
    done = wait_run(cluster, namespace, "slow-1")
    wait_step = steps_by_name(done)["wait"]
    assert (done["status"]["phase"], wait_step["phase"], wait_step["reason"]) == (
        "Failed", "Failed", "DeadlineExceeded")


def test_a_step_whose_pod_succeeded_succeeds_though_the_job_controller_counted_it_after_the_deadline(
        cluster: Cluster, namespace: str, operator: Any) -> None:
    control_plane = ControlPlane(cluster)
    if not control_plane.available():
        pytest.skip("needs the local kwok control plane (its kube-controller-manager is paused)")
    timeout = 10
    cluster.apply(pipeline("late", [step("a", timeoutSeconds=timeout, retries=0, podMetadata=held_pods())]),
                  run("late-1", "late"), namespace=namespace)
    pod = held_pod(cluster, namespace, "headwater.dev/run=late-1")

    def started_job() -> dict[str, Any] | None:
        job = run_jobs(cluster, namespace, "late-1").get("a")
        return job if job and (job.get("status") or {}).get("startTime") else None

    job = wait_for(started_job, timeout=60, message="the Job controller to start the step's Job")
    deadline = parse_time(job["status"]["startTime"]) + timedelta(seconds=job["spec"]["activeDeadlineSeconds"])
    # The controller-manager stops (as one far behind its queue would be) just before the Job's deadline;
    # the pod succeeds meanwhile, and the controller sees it only after the deadline has passed.
    wait_for(lambda: datetime.now(UTC) >= deadline - timedelta(seconds=2), timeout=timeout + 60, interval=0.1,
             message="two seconds before the Job's deadline")
    # The Job controller deletes the pod it finds past the deadline: a finalizer keeps it for the operator to read.
    keep = {"metadata": {"finalizers": ["headwater.dev/test-keep"]}}
    cluster.kubectl("-n", namespace, "patch", "pod", pod, "--type=merge", "-p", json.dumps(keep))
    try:
        with control_plane.paused("kube-controller-manager"):
            release(cluster, namespace, pod)
            wait_for(lambda: cluster.get("pod", pod, namespace)["status"].get("phase") == "Succeeded", timeout=5,
                     interval=0.1, message="the released pod to succeed")
            wait_for(lambda: datetime.now(UTC) >= deadline + timedelta(seconds=1), timeout=10, interval=0.1,
                     message="the Job's deadline to pass")
        done = wait_run(cluster, namespace, "late-1")
        job = run_jobs(cluster, namespace, "late-1")["a"]
        # the Job controller judged the Job as it does: by its deadline, though the pod had succeeded
        assert {c["reason"] for c in job["status"]["conditions"] if c["type"] in ("FailureTarget", "Failed")} == {
            "DeadlineExceeded"}, job["status"]
        assert cluster.get("pod", pod, namespace)["status"]["phase"] == "Succeeded"
        assert (done["status"]["phase"], steps_by_name(done)["a"]["phase"]) == ("Succeeded", "Succeeded"), \
            done["status"]
    finally:
        cluster.kubectl("-n", namespace, "patch", "pod", pod, "--type=json",
                        "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]', check=False)


def test_cancel_mid_run_deletes_running_jobs_and_ends_cancelled(cluster: Cluster, namespace: str,
                                                                operator: Any) -> None:
    cluster.apply(pipeline("long", [step("a", podMetadata=held_pods()), step("b", "a")]),
                  run("long-1", "long"), namespace=namespace)
    held_pod(cluster, namespace, "headwater.dev/run=long-1")
    wait_for(lambda: step_phases(cluster, namespace, "long-1")["a"] == "Running", timeout=120,
             message="step a to run")
    cluster.kubectl("-n", namespace, "patch", "pipelinerun", "long-1", "--type=merge",
                    "-p", '{"spec":{"cancel":true}}')
    done = wait_run(cluster, namespace, "long-1")
    s = steps_by_name(done)
    assert (done["status"]["phase"], s["a"]["phase"], s["b"]["phase"]) == ("Cancelled", "Cancelled", "Cancelled")
    wait_for(lambda: not run_jobs(cluster, namespace, "long-1"), timeout=120, message="the Job to be deleted")


def test_retry_of_runs_only_the_failed_and_skipped_steps(cluster: Cluster, namespace: str, operator: Any) -> None:
    steps = [step("a"), step("b", "a", retries=0, podMetadata=failing_pods()), step("c", "a"), step("d", "b", "c")]
    cluster.apply(pipeline("retry", steps), run("retry-1", "retry"), namespace=namespace)
    assert wait_run(cluster, namespace, "retry-1")["status"]["phase"] == "Failed"
    steps[1] = step("b", "a", retries=0)  # the fix
    cluster.apply(pipeline("retry", steps), namespace=namespace)
    cluster.apply(run("retry-2", "retry", retryOf="retry-1", trigger="retry"), namespace=namespace)
    done = wait_run(cluster, namespace, "retry-2")
    assert done["status"]["phase"] == "Succeeded"
    assert sorted(run_jobs(cluster, namespace, "retry-2")) == ["b", "d"]
    assert steps_by_name(done)["a"]["reason"] == "Reused"


def test_from_step_runs_exactly_the_downstream_closure(cluster: Cluster, namespace: str, operator: Any) -> None:
    cluster.apply(pipeline("closure", [step("a"), step("b", "a"), step("c", "a"), step("d", "b"), step("e", "c")]),
                  run("closure-1", "closure", fromStep="b"), namespace=namespace)
    done = wait_run(cluster, namespace, "closure-1")
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["progress"] == "2/2"
    assert sorted(run_jobs(cluster, namespace, "closure-1")) == ["b", "d"]


def test_an_invalid_pipeline_is_not_ready_and_its_runs_never_create_jobs(cluster: Cluster, namespace: str,
                                                                         operator: Any) -> None:
    cluster.apply(pipeline("cyclic", [step("a", "c"), step("b", "a"), step("c", "b")]), namespace=namespace)

    def ready_condition() -> dict[str, Any] | None:
        conds = (cluster.get("pipeline", "cyclic", namespace).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Ready"), None)

    ready = wait_for(ready_condition, timeout=120, message="the Ready condition")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidDAG")
    assert "dependency cycle: a -> b -> c -> a" in ready["message"] or "dependency cycle:" in ready["message"]
    cluster.apply(run("cyclic-1", "cyclic"), namespace=namespace)
    done = wait_run(cluster, namespace, "cyclic-1")
    assert done["status"]["phase"] == "Failed"
    assert "dependency cycle" in done["status"]["conditions"][0]["message"]
    assert run_jobs(cluster, namespace, "cyclic-1") == {}


def test_editing_the_pipeline_during_a_run_does_not_change_the_run(cluster: Cluster, namespace: str,
                                                                   operator: Any) -> None:
    cluster.apply(pipeline("snap", [step("a", podMetadata=held_pods()), step("b", "a")]), run("snap-1", "snap"),
                  namespace=namespace)
    first = held_pod(cluster, namespace, "headwater.dev/run=snap-1")
    cluster.apply(pipeline("snap", [step("a", podMetadata=held_pods()), step("b", "a", image="changed:2"),
                                    step("c", "b")]), namespace=namespace)
    # step a is still running: the edit lands mid-run, and the operator has seen it before b is due
    wait_for(lambda: (cluster.get("pipeline", "snap", namespace).get("status") or {}).get("observedGeneration") == 2,
             timeout=120, message="the operator to see the edited pipeline")
    release(cluster, namespace, first)
    done = wait_run(cluster, namespace, "snap-1")
    assert done["status"]["phase"] == "Succeeded"
    assert [s["name"] for s in done["status"]["steps"]] == ["a", "b"]
    jobs = run_jobs(cluster, namespace, "snap-1")
    assert sorted(jobs) == ["a", "b"]
    assert jobs["b"]["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


def test_finished_runs_leave_the_watch_labelled_settled_and_the_history_limit_still_deletes_the_oldest(
        cluster: Cluster, namespace: str, operator: Any) -> None:
    cluster.apply(pipeline("hist", [step("a")], successfulRunsHistoryLimit=2), namespace=namespace)
    for i in range(4):
        cluster.apply(run(f"hist-{i}", "hist"), namespace=namespace)
        assert wait_run(cluster, namespace, f"hist-{i}")["status"]["phase"] == "Succeeded"

    def remaining(selector: str | None = None) -> list[str]:
        return sorted(r["metadata"]["name"] for r in cluster.list("pipelineruns", namespace, selector))

    # runs labelled settled are no longer watched: trimming lists them, and deletes the oldest all the same
    assert wait_for(lambda: remaining() == ["hist-2", "hist-3"] and remaining(), timeout=120,
                    message="only the two newest runs to remain") == ["hist-2", "hist-3"]
    assert wait_for(lambda: remaining("headwater.dev/settled=true") == ["hist-2", "hist-3"], timeout=60,
                    message="both finished runs to be labelled settled")
    assert remaining("!headwater.dev/settled") == []


def test_events_alone_drive_a_run_and_a_job_deleted_mid_step_fails_it_without_a_second_job(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    # no safety resync during the test: every transition must come from a Job or PipelineRun event,
    # including those the operator drops as no-ops
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_RESYNC_SECONDS="3600")
    operator.start()
    try:
        cluster.apply(pipeline("evt", [step("a"), step("b", "a"), step("c", "a", podMetadata=held_pods()),
                                       step("d", "b", "c"), step("e", "b")]),
                      run("evt-1", "evt"), namespace=namespace)

        def only_c_left() -> bool:
            return step_phases(cluster, namespace, "evt-1") == {
                "a": "Succeeded", "b": "Succeeded", "c": "Running", "d": "Pending", "e": "Succeeded"}

        # c is held: once everything else has finished, only the Job's own deletion can move the run on
        wait_for(only_c_left, timeout=180, message="every step but c to finish, and c to run")
        job_c = run_jobs(cluster, namespace, "evt-1")["c"]["metadata"]["name"]
        cluster.kubectl("-n", namespace, "delete", "job", job_c)
        done = wait_run(cluster, namespace, "evt-1")
    finally:
        operator.stop()
    s = steps_by_name(done)
    assert done["status"]["phase"] == "Failed"
    assert (s["c"]["phase"], s["c"]["reason"]) == ("Failed", "JobDeleted")
    assert (s["d"]["phase"], s["d"]["reason"]) == ("Skipped", "UpstreamFailed")
    assert [s[x]["phase"] for x in ("a", "b", "e")] == ["Succeeded"] * 3
    assert "c" not in run_jobs(cluster, namespace, "evt-1")  # never created a second time
