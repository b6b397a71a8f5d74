"""Step Jobs: names, manifests, and the step state read back from a Job and its pods."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.runs.jobs import (
    PROBE_AFTER_SECONDS,
    JobSettings,
    Probe,
    RunRef,
    build_job,
    job_deadline,
    job_name,
    observe_job,
    probe,
    refusal,
)
from headwater.spec.models import SecurityContext, StepPhase, StepReason, StepSpec
from manifests import step

pytestmark = pytest.mark.unit

RUN = RunRef(name="revenue-202611230600", namespace="data", uid="u-1", pipeline="revenue")
SETTINGS = JobSettings(step_image="ghcr.io/headwater-dev/headwater:0.1.0", ttl_seconds=600)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_a_job_name_is_run_dash_step_followed_by_a_hash_of_the_pair() -> None:
    name = job_name("revenue-1", "extract-orders")
    assert re.fullmatch(r"revenue-1-extract-orders-[a-z2-7]{10}", name)


def test_job_names_of_distinct_run_and_step_pairs_never_coincide() -> None:
    assert job_name("a-b", "c") != job_name("a", "b-c")
    assert job_name("nightly-1", "load") != job_name("nightly", "1-load")


@given(run=st.from_regex(r"[a-z][a-z0-9-]{0,200}[a-z0-9]", fullmatch=True),
       step_id=st.from_regex(r"[a-z][a-z0-9-]{0,38}[a-z0-9]", fullmatch=True))
def test_every_job_name_is_a_stable_dns_label_of_at_most_63_characters(run: str, step_id: str) -> None:
    name = job_name(run, step_id)
    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert job_name(run, step_id) == name


def test_long_names_that_share_a_prefix_still_differ() -> None:
    run = "a-very-long-pipeline-name-that-goes-on-and-on-202611230600"
    assert job_name(run, "extract-orders") != job_name(run, "extract-ordersx")


def test_a_container_step_becomes_a_job_with_retries_timeout_and_owner() -> None:
    spec = StepSpec.model_validate(step("extract", retries=3, timeoutSeconds=120,
                                        command=["python", "-m", "extract"],
                                        podMetadata={"labels": {"team": "data"}, "annotations": {"a": "b"}}))
    job = build_job(RUN, spec, SETTINGS)
    assert job["metadata"]["name"] == job_name(RUN.name, "extract")
    assert job["metadata"]["labels"]["headwater.dev/step"] == "extract"
    assert job["metadata"]["ownerReferences"][0] == {
        "apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "name": RUN.name, "uid": "u-1",
        "controller": True, "blockOwnerDeletion": True}
    assert job["spec"]["backoffLimit"] == 3
    # each attempt may run 120 s; the Job has room for 4 attempts, each with 10 s to get its pod started,
    # and the 10, 20 and 40 s between them
    assert job["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 120
    assert job["spec"]["activeDeadlineSeconds"] == 4 * (120 + 10) + 10 + 20 + 40
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"] == [{"type": "DisruptionTarget"}]
    pod = job["spec"]["template"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["labels"]["headwater.dev/run"] == RUN.name
    assert pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["spec"]["containers"][0]["command"] == ["python", "-m", "extract"]


def test_a_sql_step_runs_the_headwater_sql_runner_with_the_connection_from_a_secret() -> None:
    spec = StepSpec.model_validate(step("load", type="sql", sql="INSERT INTO t SELECT 1",
                                        connectionSecretRef={"name": "warehouse", "key": "url"}))
    container = build_job(RUN, spec, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == SETTINGS.step_image
    assert container["command"] == ["headwater", "step", "sql"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HEADWATER_SQL"]["value"] == "INSERT INTO t SELECT 1"
    assert env["HEADWATER_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "warehouse", "key": "url"}}


def _pod_spec(step_fields: dict[str, Any] | None = None, pipeline_context: dict[str, Any] | None = None,
              ) -> dict[str, Any]:
    spec = StepSpec.model_validate(step("extract", **(step_fields or {})))
    context = SecurityContext.model_validate(pipeline_context) if pipeline_context is not None else None
    return dict(build_job(RUN, spec, SETTINGS, context)["spec"]["template"]["spec"])


def test_a_step_pod_gets_no_service_account_token_unless_the_step_asks_for_one() -> None:
    assert _pod_spec()["automountServiceAccountToken"] is False
    assert _pod_spec({"automountServiceAccountToken": True})["automountServiceAccountToken"] is True


def test_a_step_runs_under_the_restricted_pod_security_standard_by_default() -> None:
    pod = _pod_spec()
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    [container] = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert "runAsUser" not in pod["securityContext"] | container["securityContext"]  # the image's user


def test_the_steps_security_context_goes_field_by_field_over_the_pipelines_and_the_defaults() -> None:
    pod = _pod_spec({"securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["ALL"],
                                                                              "add": ["NET_BIND_SERVICE"]}}},
                    pipeline_context={"runAsUser": 2000, "readOnlyRootFilesystem": True})
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsUser": 1000,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_a_step_can_leave_the_restricted_standard_when_it_says_so() -> None:
    container = _pod_spec({"securityContext": {"runAsUser": 0, "runAsNonRoot": False, "privileged": True,
                                               "seccompProfile": {"type": "Unconfined"}}})["containers"][0]
    # privileged without allowPrivilegeEscalation drops the default false (Kubernetes refuses the pair)
    assert container["securityContext"] == {"capabilities": {"drop": ["ALL"]}, "runAsUser": 0, "runAsNonRoot": False,
                                            "privileged": True, "seccompProfile": {"type": "Unconfined"}}


def test_termination_messages_are_read_from_the_file_only_never_from_the_log() -> None:
    for step_type, fields in [("container", {}), ("sql", {"sql": "SELECT 1"})]:
        spec = StepSpec.model_validate(step("s", type=step_type, **fields))
        [container] = build_job(RUN, spec, SETTINGS)["spec"]["template"]["spec"]["containers"]
        assert container["terminationMessagePolicy"] == "File"


@pytest.mark.parametrize(("allowed", "account", "refused"), [
    ((), "warehouse-writer", False),  # no allow-list: any account
    (("warehouse-writer",), "warehouse-writer", False),  # by name, in any namespace
    (("data/warehouse-writer",), "warehouse-writer", False),  # by namespace/name
    (("other/warehouse-writer",), "warehouse-writer", True),
    (("reader",), "warehouse-writer", True),
    (("reader",), None, False),  # no account named: the namespace's default
    (("reader",), "default", False),
])
def test_a_step_may_name_only_service_accounts_on_the_operators_allow_list(
        allowed: tuple[str, ...], account: str | None, refused: bool) -> None:
    fields = {"serviceAccountName": account} if account else {}
    spec = StepSpec.model_validate(step("extract", **fields))
    settings = JobSettings(step_image=SETTINGS.step_image, allowed_service_accounts=frozenset(allowed))
    answer = refusal(RUN.namespace, spec, settings)
    if not refused:
        assert answer is None
        return
    assert answer is not None
    reason, message = answer
    assert reason == StepReason.SERVICE_ACCOUNT_NOT_ALLOWED
    assert "'warehouse-writer' is not allowed" in message and "HEADWATER_ALLOWED_SERVICE_ACCOUNTS" in message


@pytest.mark.parametrize(("pipeline_context", "step_context", "words"), [
    ({"privileged": True}, {"allowPrivilegeEscalation": False}, "allowPrivilegeEscalation cannot be false"),
    ({"runAsUser": 0, "runAsNonRoot": False}, {"runAsNonRoot": True}, "runAsUser: 0 (root) needs runAsNonRoot"),
])
def test_a_step_whose_security_context_over_the_pipelines_kubernetes_would_refuse_is_refused(
        pipeline_context: dict[str, Any], step_context: dict[str, Any], words: str) -> None:
    spec = StepSpec.model_validate(step("extract", securityContext=step_context))
    answer = refusal(RUN.namespace, spec, SETTINGS, SecurityContext.model_validate(pipeline_context))
    assert answer is not None
    assert answer[0] == StepReason.INVALID_SECURITY_CONTEXT
    assert words in answer[1]


def _job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "r-s"}, "status": {"conditions": conditions or [], **status}}


def _pod(phase: str, message: str, created: str = "2026-11-23T06:00:00Z") -> dict[str, Any]:
    return {"metadata": {"creationTimestamp": created}, "status": {"phase": phase, "containerStatuses": [
        {"state": {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1, "message": message}}}]}}


def test_a_complete_job_reports_success_attempts_and_the_json_result() -> None:
    job = _job([{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-23T06:01:00Z"}],
               succeeded=1, failed=1, startTime="2026-11-23T06:00:00Z")
    seen = observe_job(job, [_pod("Failed", "boom"), _pod("Succeeded", json.dumps({"rowsAffected": 7}))])
    assert seen.phase == StepPhase.SUCCEEDED
    assert seen.attempts == 2
    assert seen.result == {"rowsAffected": 7}
    assert seen.finished_at == "2026-11-23T06:01:00Z"


def test_a_failed_job_reports_the_reason_and_the_last_attempts_message() -> None:
    job = _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}], failed=3)
    pods = [_pod("Failed", json.dumps({"error": "relation raw.orders does not exist"}), f"2026-11-23T06:0{i}:00Z")
            for i in range(3)]
    seen = observe_job(job, pods)
    assert seen.phase == StepPhase.FAILED
    assert seen.reason == "BackoffLimitExceeded"
    assert seen.attempts == 3
    assert seen.message is not None and "relation raw.orders does not exist" in seen.message


def test_a_job_with_an_active_pod_is_running_and_counts_earlier_failures() -> None:
    seen = observe_job(_job(active=1, failed=1), [])
    assert (seen.phase, seen.attempts) == (StepPhase.RUNNING, 2)


def test_a_job_without_pods_yet_is_pending() -> None:
    assert observe_job(_job(), []).phase == StepPhase.PENDING


def test_a_job_between_a_failed_attempt_and_its_retry_stays_running() -> None:
    seen = observe_job(_job(failed=1), [])
    assert (seen.phase, seen.attempts) == (StepPhase.RUNNING, 1)


def test_a_succeeded_pod_not_yet_counted_by_the_job_controller_keeps_the_step_running() -> None:
    job = _job()
    job["status"]["uncountedTerminatedPods"] = {"succeeded": ["uid-1"]}
    seen = observe_job(job, [])
    assert (seen.phase, seen.attempts) == (StepPhase.RUNNING, 1)


PSA = ('Error creating: pods "r-s-abcde" is forbidden: violates PodSecurity "restricted:latest": '
       'allowPrivilegeEscalation != false (container "step" must set securityContext.allowPrivilegeEscalation=false)')


def _failed_create(message: str = PSA, at: str = "2026-11-23T06:00:05Z") -> dict[str, Any]:
    return {"reason": "FailedCreate", "type": "Warning", "message": message, "lastTimestamp": at,
            "involvedObject": {"kind": "Job", "name": "r-s"}}


def test_a_job_whose_pods_cannot_be_created_is_pending_with_the_job_controllers_reason() -> None:
    seen = observe_job(_job(), [], [_failed_create("older", "2026-11-23T06:00:01Z"), _failed_create()])
    assert (seen.phase, seen.reason, seen.message) == (StepPhase.PENDING, "FailedCreate", PSA)
    assert seen.blocked


def test_a_pod_that_cannot_pull_its_image_keeps_the_step_running_with_the_waiting_reason() -> None:
    pod = {"metadata": {"creationTimestamp": "2026-11-23T06:00:00Z"}, "status": {"phase": "Pending",
           "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff",
                                                        "message": 'Back-off pulling image "nope:1"'}}}]}}
    seen = observe_job(_job(active=1), [pod])
    assert (seen.phase, seen.reason, seen.message) == (StepPhase.RUNNING, "ImagePullBackOff",
                                                       'Back-off pulling image "nope:1"')


def test_a_job_that_hits_its_deadline_without_ever_creating_a_pod_names_why() -> None:
    job = _job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                 "message": "Job was active longer than specified deadline"}])
    seen = observe_job(job, [], [_failed_create()])
    assert (seen.phase, seen.reason) == (StepPhase.FAILED, "FailedCreate")
    assert seen.message is not None
    assert seen.message.startswith("Job was active longer than specified deadline (DeadlineExceeded)")
    assert "violates PodSecurity" in seen.message


def test_the_jobs_deadline_leaves_every_attempt_its_timeout_and_the_delays_between_attempts() -> None:
    def deadline(retries: int, timeout: int) -> int:
        return job_deadline(StepSpec.model_validate(step("s", retries=retries, timeoutSeconds=timeout)))
    # each attempt: 10 s to get its pod started, then its timeout
    assert deadline(0, 300) == 310
    assert deadline(1, 5) == 2 * 15 + 10
    # the Job controller's delay doubles from 10 s and stops at 6 minutes
    assert deadline(8, 60) == 9 * 70 + 10 + 20 + 40 + 80 + 160 + 320 + 360 + 360


def test_a_pod_that_succeeded_makes_the_step_succeed_though_the_job_controller_counted_it_past_the_deadline() -> None:
    # The Job controller checks the Job's deadline before it counts pods: one far behind its queue marks a
    # Job whose pod ran for a second DeadlineExceeded, with the pod's success counted beside it.
    job = _job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                 "message": "Job was active longer than specified deadline",
                 "lastTransitionTime": "2026-11-23T06:10:00Z"}], succeeded=1, startTime="2026-11-23T06:00:00Z")
    pod = _pod("Succeeded", json.dumps({"rowsAffected": 7}))
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = "2026-11-23T06:00:02Z"
    seen = observe_job(job, [pod])
    assert (seen.phase, seen.reason, seen.result) == (StepPhase.SUCCEEDED, "Completed", {"rowsAffected": 7})
    assert seen.finished_at == "2026-11-23T06:00:02Z"
    # before its pods are read, the counts already say so
    assert observe_job(job, []).phase == StepPhase.SUCCEEDED
    interim = _job([{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}],
                   uncountedTerminatedPods={"succeeded": ["p-1"]})
    assert observe_job(interim, []).phase == StepPhase.SUCCEEDED


def test_an_attempt_ended_at_its_own_deadline_fails_the_step_with_deadline_exceeded() -> None:
    job = _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}], failed=2)
    first, last = (_pod("Failed", json.dumps({"error": "terminated by SIGTERM"}), f"2026-11-23T06:00:0{i}Z")
                   for i in (0, 5))
    for pod in (first, last):
        pod["status"].update(reason="DeadlineExceeded",
                             message="Pod was active on the node longer than the specified deadline")
    seen = observe_job(job, [first, last])
    assert (seen.phase, seen.reason, seen.attempts) == (StepPhase.FAILED, "DeadlineExceeded", 2)
    assert seen.message == ("Job has reached the specified backoff limit (BackoffLimitExceeded); the last attempt "
                            "ran out of its time: Pod was active on the node longer than the specified deadline; "
                            "last attempt: terminated by SIGTERM")
    # an attempt that failed on its own keeps the Job's reason
    last["status"].pop("reason")
    assert observe_job(job, [first, last]).reason == "BackoffLimitExceeded"


def _aged(seconds: float, **status: Any) -> dict[str, Any]:
    job = _job(**status)
    job["metadata"]["creationTimestamp"] = "2026-11-23T06:00:00Z"
    return job


def test_events_and_pods_are_read_only_for_jobs_whose_pods_have_not_started_after_a_few_seconds() -> None:
    t0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    later = t0 + timedelta(seconds=PROBE_AFTER_SECONDS)
    fresh = _aged(0)
    assert probe(fresh, observe_job(fresh, []), t0) == Probe()
    assert probe(fresh, observe_job(fresh, []), later) == Probe(events=True)
    starting = _aged(0, active=1)
    assert probe(starting, observe_job(starting, []), later) == Probe(pods=True)
    running = _aged(0, active=1, ready=1)
    assert probe(running, observe_job(running, []), later) == Probe()
    never_started = _job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}])
    assert probe(never_started, observe_job(never_started, []), t0) == Probe(events=True)


def test_text_from_a_pod_loses_its_nul_and_control_characters_and_is_bounded() -> None:
    job = _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}],
               failed=1)
    seen = observe_job(job, [_pod("Failed", "bad\x00 byte\x1b[31m " + "x" * 5000)])
    assert seen.message is not None and "\x00" not in seen.message and "\x1b" not in seen.message
    assert seen.message.startswith("limit; last attempt: bad byte[31m x")
    assert len(seen.message) <= 2 * 1024 and seen.message.endswith("[cut]")


def test_a_json_result_with_nul_in_its_strings_is_cleaned_and_an_oversized_one_dropped() -> None:
    done = _job([{"type": "Complete", "status": "True"}], succeeded=1)
    seen = observe_job(done, [_pod("Succeeded", json.dumps({"rowsAffected": 3, "note": "a\u0000b\ud800"}))])
    assert seen.result == {"rowsAffected": 3, "note": "ab\ufffd"}
    failed = _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}], failed=1)
    huge = observe_job(failed, [_pod("Failed", json.dumps({"error": "e" * 10_000}))])
    assert huge.result is None
    assert huge.message == "the step's result was dropped: it takes more than 4096 bytes"
