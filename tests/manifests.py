"""Pipeline and PipelineRun manifests for every test tier: the models and ``headwater validate`` (unit),
the apiserver's admission and the operator end to end (e2e).

``BAD_CASES`` is the list of invalid manifests every layer must reject, each with the field the
error must name and the words that must explain it, as the apiserver and as ``headwater
validate`` put it.  ``failing_pods`` and ``held_pods`` ask the local control plane's simulated
nodes for a pod behaviour (hack/kwok/stages.yaml).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

API_VERSION = "headwater.dev/v1alpha1"
OWNER = "data-team@example.com"
IMAGE = "busybox"
FAIL_LABEL = "headwater.dev/test-fail"
HOLD_LABEL = "headwater.dev/test-hold"


def step(step_id: str, *depends_on: str, **fields: Any) -> dict[str, Any]:
    """A valid step, depending on ``depends_on``, with ``fields`` on top.

    A container step running busybox unless ``type`` says otherwise; a sql step runs ``SELECT 1``.
    """
    kind = fields.get("type", "container")
    base: dict[str, Any] = {"id": step_id, "type": kind}
    if kind == "sql":
        base["sql"] = "SELECT 1"
    else:
        base["image"] = IMAGE
    if depends_on:
        base["dependsOn"] = list(depends_on)
    return {**base, **fields}


def pipeline(name: str = "orders", steps: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    """A valid Pipeline (sql extract -> sql transform -> container load) unless ``steps``/``spec`` say otherwise."""
    if steps is None:
        steps = [
            step("extract", type="sql", outputs=[{"namespace": "postgres://warehouse", "name": "raw.orders"}]),
            step("transform", "extract", type="sql"),
            step("load", "transform"),
        ]
    return {"apiVersion": API_VERSION, "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"owner": OWNER, **spec, "steps": steps}}


def run(name: str = "orders-1", pipeline_name: str = "orders", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "PipelineRun", "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline_name}, **spec}}


def failing_pods() -> dict[str, Any]:
    """podMetadata that makes every attempt of a step fail on the simulated nodes."""
    return {"labels": {FAIL_LABEL: "true"}}


def held_pods() -> dict[str, Any]:
    """podMetadata that keeps every attempt of a step running until the test releases that pod.

    The outcome of each attempt is then the test's decision (conftest_e2e.release), taken once it has
    seen the pod: nothing depends on how fast the pod was created or how long it ran.
    """
    return {"labels": {HOLD_LABEL: "true"}}


def _with_step(index: int, **fields: Any) -> dict[str, Any]:
    manifest = pipeline()
    manifest["spec"]["steps"][index].update(fields)
    return manifest


def _without(index: int, key: str) -> dict[str, Any]:
    manifest = pipeline()
    del manifest["spec"]["steps"][index][key]
    return manifest


@dataclass(frozen=True)
class BadCase:
    """An invalid manifest and how each layer must describe the problem."""

    id: str
    manifest: dict[str, Any]
    field: str                   # the field headwater validate names
    validate_words: str          # words headwater validate uses
    api_field: str | None        # the field the apiserver names; None: the apiserver accepts it (cycle)
    api_words: str = ""          # words the apiserver uses
    same_message: bool = False   # a headwater.spec.rules rule: both layers print the very same message

    def copy(self) -> dict[str, Any]:
        return copy.deepcopy(self.manifest)


BAD_CASES: list[BadCase] = [
    BadCase("duplicate-step-id", _with_step(2, id="extract", dependsOn=[]), "spec.steps[2].id",
            "step id 'extract' is used by more than one step; step ids must be unique",
            "spec.steps", "step ids must be unique"),
    BadCase("unknown-dependency", _with_step(1, dependsOn=["extrct"]), "spec.steps[1].dependsOn",
            "step 'transform' depends on unknown step 'extrct'; known steps: extract, transform, load",
            "spec.steps", "every dependsOn entry must be the id of a step of this pipeline"),
    BadCase("self-dependency", _with_step(1, dependsOn=["transform"]), "spec.steps[1].dependsOn",
            "step 'transform' depends on itself",
            "spec.steps[1].dependsOn", "step 'transform' depends on itself", same_message=True),
    BadCase("cycle-of-three", _with_step(0, dependsOn=["load"]), "spec.steps",
            "dependency cycle: extract -> transform -> load -> extract", None),
    BadCase("garbage-cron", pipeline(schedule="every day at six"), "spec.schedule",
            "must be 5 cron fields", "spec.schedule", "should match"),
    BadCase("out-of-range-cron", pipeline(schedule="61 6 * * *"), "spec.schedule",
            "must be 5 cron fields with values in range", "spec.schedule", "should match"),
    BadCase("out-of-range-hour", pipeline(schedule="0 25 * * *"), "spec.schedule",
            "hour 0-23", "spec.schedule", "should match"),
    BadCase("never-firing-cron", pipeline(schedule="0 0 31 2 *"), "spec.schedule",
            "'0 0 31 2 *' never fires", None),
    BadCase("time-zone-outside-the-known-areas", pipeline(schedule="0 6 * * *", timeZone="Mars/Olympus"),
            "spec.timeZone", "Area/Location with a known area", "spec.timeZone", "should match"),
    BadCase("unknown-time-zone", pipeline(schedule="0 6 * * *", timeZone="Mars"), "spec.timeZone",
            "unknown time zone 'Mars'", None),
    BadCase("pipeline-name-too-long", pipeline(name="p" * 241), "metadata.name",
            "a Pipeline name may be at most 240 characters", "metadata.name",
            "a Pipeline name may be at most 240 characters"),
    BadCase("negative-retries", _with_step(0, retries=-1), "spec.steps[0].retries",
            "should be greater than or equal to 0",
            "spec.steps[0].retries", "should be greater than or equal to 0"),
    BadCase("zero-timeout", _with_step(0, timeoutSeconds=0), "spec.steps[0].timeoutSeconds",
            "should be greater than or equal to 1", "spec.steps[0].timeoutSeconds",
            "should be greater than or equal to 1"),
    BadCase("container-step-without-image", _without(2, "image"), "spec.steps[2].image",
            "step 'load' of type container needs an image", "spec.steps[2].image",
            "step 'load' of type container needs an image", same_message=True),
    BadCase("sql-step-without-sql", _without(0, "sql"), "spec.steps[0].sql",
            "step 'extract' of type sql needs sql",
            "spec.steps[0].sql", "step 'extract' of type sql needs sql", same_message=True),
    BadCase("dataset-name-with-spaces",
            _with_step(0, outputs=[{"namespace": "postgres://warehouse", "name": "raw orders"}]),
            "spec.steps[0].outputs[0].name", "without spaces",
            "spec.steps[0].outputs[0].name", "should match"),
    BadCase("dataset-namespace-without-scheme",
            _with_step(0, outputs=[{"namespace": "warehouse", "name": "raw.orders"}]),
            "spec.steps[0].outputs[0].namespace", "scheme://authority", "spec.steps[0].outputs[0].namespace",
            "should match"),
    BadCase("unknown-field", _with_step(2, imagePullPolicy="Always"), "spec.steps[2].imagePullPolicy",
            "unknown field", "spec.steps[2].imagePullPolicy", "unknown field"),
    BadCase("too-many-steps", pipeline(steps=[step(f"s{i}") for i in range(201)]), "spec.steps",
            "must have at most 200 items", "spec.steps", "must have at most 200 items"),
    BadCase("owner-not-an-email", pipeline(owner="data-team"), "spec.owner", "must be an email address",
            "spec.owner", "should match"),
    BadCase("freshness-with-both-max-age-and-deadline",
            _with_step(0, outputs=[{"namespace": "postgres://warehouse", "name": "raw.orders",
                                    "freshness": {"maxAge": "6h", "deadline": "07:00"}}]),
            "spec.steps[0].outputs[0].freshness", "set exactly one of maxAge or deadline",
            "spec.steps[0].outputs[0].freshness", "set exactly one of maxAge or deadline", same_message=True),
    BadCase("check-with-two-kinds",
            _with_step(2, outputs=[{"namespace": "postgres://warehouse", "name": "mart.orders",
                                    "checks": [{"name": "rows", "rowCount": {"min": 1}, "schemaUnchanged": True}]}]),
            "spec.steps[2].outputs[0].checks[0]",
            "check 'rows' needs exactly one of rowCount, change, schemaUnchanged, sql or freshness",
            "spec.steps[2].outputs[0].checks[0]",
            "check 'rows' needs exactly one of rowCount, change, schemaUnchanged, sql or freshness", same_message=True),
    BadCase("sql-check-on-a-container-step",
            _with_step(2, outputs=[{"namespace": "postgres://warehouse", "name": "mart.orders",
                                    "checks": [{"name": "none-negative", "sql": "SELECT 1 WHERE false"}]}]),
            "spec.steps[2].outputs",
            "step 'load' of type container cannot have a check with sql; sql checks run in steps of type sql",
            "spec.steps[2].outputs",
            "step 'load' of type container cannot have a check with sql; sql checks run in steps of type sql",
            same_message=True),
    BadCase("duplicate-check-name",
            _with_step(0, outputs=[{"namespace": "postgres://warehouse", "name": "raw.orders", "checks": [
                {"name": "rows", "rowCount": {"min": 1}}, {"name": "rows", "rowCount": {"max": 9}}]}]),
            "spec.steps[0].outputs[0].checks", "check names must be unique within an output",
            "spec.steps[0].outputs[0].checks[1]", "Duplicate value"),
    BadCase("privileged-without-privilege-escalation",
            _with_step(2, securityContext={"privileged": True, "allowPrivilegeEscalation": False}),
            "spec.steps[2].securityContext", "allowPrivilegeEscalation cannot be false with privileged: true",
            "spec.steps[2].securityContext.allowPrivilegeEscalation",
            "allowPrivilegeEscalation cannot be false with privileged: true", same_message=True),
    BadCase("root-without-run-as-non-root-false", pipeline(securityContext={"runAsUser": 0}),
            "spec.securityContext", "runAsUser: 0 (root) needs runAsNonRoot: false",
            "spec.securityContext.runAsUser", "runAsUser: 0 (root) needs runAsNonRoot: false", same_message=True),
    BadCase("localhost-seccomp-without-profile",
            _with_step(2, securityContext={"seccompProfile": {"type": "Localhost"}}),
            "spec.steps[2].securityContext.seccompProfile", "localhostProfile is required with type Localhost",
            "spec.steps[2].securityContext.seccompProfile.localhostProfile",
            "localhostProfile is required with type Localhost", same_message=True),
    BadCase("retry-without-retry-of", run(trigger="retry"), "spec.retryOf",
            "trigger: retry needs retryOf", "spec.retryOf", "trigger: retry needs retryOf",
            same_message=True),
]
