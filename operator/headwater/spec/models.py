"""Pydantic models of the Pipeline and PipelineRun API (headwater.dev/v1alpha1).

The one source of truth: ``headwater.spec.crdgen`` turns these models into the CRDs in ``crds/``.
camelCase on the wire, snake_case in Python; specs forbid unknown fields.  Patterns, limits
and cross-field rules (CEL plus the same messages in Python) live in ``headwater.spec.rules``.
Timestamps are RFC 3339 strings, as Kubernetes writes them (a datetime given is converted).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from headwater.spec import dag, parsing
from headwater.spec import rules as r
from headwater.spec.constants import DEFAULT_IMAGE
from headwater.spec.podspec import (
    ConfigMapKeyRef,
    EnvFromSource,
    EnvVar,
    EnvVarSource,
    FreeForm,
    Name,
    NamedRef,
    PodMetadata,
    Resources,
    SecretKeyRef,
    SecurityContext,
    SpecModel,
    StatusModel,
    StepId,
    Text,
    Timestamp,
    optional,
    string,
)

__all__ = [
    "Alert", "AlertDataset", "BackfillSpec", "BackfillStatus", "ChangeCheck", "Check", "CheckOutcome", "CheckResult",
    "CheckSeverity", "ConcurrencyPolicy", "Condition", "ConfigMapKeyRef", "DataFreshnessCheck", "Dataset",
    "DatasetTriggers", "EnvFromSource", "EnvVar", "EnvVarSource", "Freshness", "NamedRef", "Notifications",
    "OutputDataset", "PipelineRef", "PipelineRunSpec", "PipelineRunStatus", "PipelineSpec", "PipelineStatus",
    "PodMetadata", "Resources", "RowCountCheck", "RunPhase", "SecretKeyRef", "SecurityContext", "StepPhase",
    "StepReason", "StepSpec", "StepStatus", "StepType", "Timestamp", "Trigger", "TriggerMode", "TriggerVersion",
    "Triggers", "WithSchedule",
]


class StepType(StrEnum):
    """What a step runs: sql (a statement, via the Headwater image), python, container or api_extract."""

    SQL = "sql"
    PYTHON = "python"
    CONTAINER = "container"
    API_EXTRACT = "api_extract"


class ConcurrencyPolicy(StrEnum):
    """What to do when a scheduled run is due while another run of the pipeline is active."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class Trigger(StrEnum):
    """Why a run exists: started by hand, by the schedule, or as a retry of an earlier run."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    RETRY = "retry"
    DATASET = "dataset"
    """New published versions of the Pipeline's trigger datasets (spec.triggers.datasets)."""
    BACKFILL = "backfill"
    """One schedule slot of a backfill (``headwater backfill``)."""


class RunPhase(StrEnum):
    """Where a run is in its life."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def final(self) -> bool:
        """Succeeded, Failed and Cancelled: a run in one of them never changes phase again."""
        return self in (RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED)

    @classmethod
    def ended(cls, value: object) -> bool:
        """Whether ``value`` (a phase as read from a raw object, or None) is a final phase."""
        return value in _FINAL_RUN_VALUES


class StepPhase(StrEnum):
    """Where a step of a run is; Skipped: an upstream step failed or the step was not selected."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"

    @property
    def final(self) -> bool:
        """Succeeded, Failed, Skipped and Cancelled: the step's outcome in its run is settled."""
        return self in (StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED, StepPhase.CANCELLED)


_FINAL_RUN_VALUES = frozenset(phase.value for phase in RunPhase if phase.final)


class StepReason(StrEnum):
    """Why a step is where it is, when Headwater decided it (Jobs' own reasons are passed on as they are)."""

    REUSED = "Reused"
    """Succeeded in the run this one retries; its outputs are used as they are."""
    NOT_SELECTED = "NotSelected"
    """Before the run's fromStep, or not in it."""
    UPSTREAM_FAILED = "UpstreamFailed"
    FAIL_FAST = "FailFast"
    CANCELLED = "Cancelled"
    JOB_CREATED = "JobCreated"
    JOB_DELETED = "JobDeleted"
    SERVICE_ACCOUNT_NOT_ALLOWED = "ServiceAccountNotAllowed"
    """The step names a ServiceAccount outside the operator's allow-list; no Job is created."""
    INVALID_SECURITY_CONTEXT = "InvalidSecurityContext"
    """The step's securityContext over the pipeline's is one Kubernetes refuses; no Job is created."""
    CHECK_FAILED = "CheckFailed"
    """A check of severity error failed on an output the step wrote (the step: Failed; the version is not
    published), or on an output of a step upstream (the step: Skipped)."""


class Freshness(SpecModel):
    """A freshness SLA on an output: maxAge (e.g. 6h) or a daily deadline (e.g. 07:00, Europe/Berlin)."""

    model_config = ConfigDict(frozen=True, json_schema_extra=r.cel(r.FRESHNESS_ONE_OF, r.FRESHNESS_TIME_ZONE))
    max_age: Annotated[str, string(32, r.DURATION)] | None = optional(
        "Stale when the last successful update is older than this: whole numbers with a unit s, m, h "
        "or d (24h), combinable, e.g. 30m, 6h, 1d, 1h30m."
    )
    deadline: Annotated[str, string(5, r.CLOCK)] | None = optional(
        "Must be updated every day by this time of day (HH:MM, 24-hour clock) in timeZone, e.g. 07:00."
    )
    time_zone: Annotated[str, string(64, r.TIME_ZONE)] | None = optional(
        "IANA time zone of the deadline, e.g. Europe/Berlin. Default: UTC."
    )

    @field_validator("max_age")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is not None and parsing.parse_duration(value) <= timedelta(0):
            raise parsing.error("duration", "maxAge must be longer than 0s")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return parsing.check_zone(value)

    @model_validator(mode="after")
    def _one_of(self) -> Freshness:
        if (self.max_age is None) == (self.deadline is None):
            raise r.FRESHNESS_ONE_OF.error()
        if self.time_zone is not None and self.deadline is None:
            raise r.FRESHNESS_TIME_ZONE.error()
        return self

    @property
    def max_age_delta(self) -> timedelta | None:
        """maxAge as a timedelta (None for a deadline)."""
        return None if self.max_age is None else parsing.parse_duration(self.max_age)


class Dataset(SpecModel):
    """A dataset named the OpenLineage way: a namespace (where: scheme://authority) and a name (what)."""

    model_config = ConfigDict(frozen=True)
    namespace: Annotated[str, string(253, r.DATASET_NAMESPACE)] = Field(
        description="Where the dataset lives, as scheme://authority: postgres://warehouse:5432, api://stripe."
    )
    name: Annotated[str, string(512, r.DATASET_NAME)] = Field(
        description="The dataset within its namespace, without spaces: raw.orders, analytics.daily_revenue."
    )

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class CheckSeverity(StrEnum):
    """What a failed check does: error keeps the version from being published, warn only tells."""

    ERROR = "error"
    WARN = "warn"


class CheckOutcome(StrEnum):
    """A check's verdict on one dataset version; Skipped: nothing to compare with yet (no baseline)."""

    PASSED = "Passed"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class RowCountCheck(SpecModel):
    """Bounds on the rows the step reports for the output."""

    model_config = ConfigDict(frozen=True, json_schema_extra=r.cel(r.ROW_COUNT_BOUNDS))
    min: int | None = optional("Fewest rows allowed.", ge=0)
    max: int | None = optional("Most rows allowed.", ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountCheck:
        if (self.min is None and self.max is None) or (
                self.min is not None and self.max is not None and self.min > self.max):
            raise r.ROW_COUNT_BOUNDS.error()
        return self


class ChangeCheck(SpecModel):
    """The row count against a trailing baseline: the median of the last published versions."""

    model_config = ConfigDict(frozen=True, json_schema_extra=r.cel(r.CHANGE_BOUNDS))
    max_drop_percent: int | None = optional(
        "Fail when the rows are more than this many percent below the baseline (1-100).", ge=1, le=100)
    max_growth_percent: int | None = optional(
        "Fail when the rows are more than this many percent above the baseline (1-100000).", ge=1, le=100000)
    versions: int = Field(7, ge=1, le=30, description="How many of the latest published versions make the "
                          "baseline (their median row count); fewer are used while fewer exist.")

    @model_validator(mode="after")
    def _bounds(self) -> ChangeCheck:
        if self.max_drop_percent is None and self.max_growth_percent is None:
            raise r.CHANGE_BOUNDS.error()
        return self


class DataFreshnessCheck(SpecModel):
    """How old the newest record may be when the step writes the output."""

    model_config = ConfigDict(frozen=True)
    max_age: Annotated[str, string(32, r.DURATION)] = Field(
        description="Fail when the newest record is older than this at write time, e.g. 2h or 1d.")
    column: Annotated[str, string(63, r.SQL_IDENTIFIER)] | None = optional(
        "For sql steps: the timestamp column whose maximum is the newest record (the step reports it). "
        "Other steps report newestRecordAt in their result.")

    @field_validator("max_age")
    @classmethod
    def _positive(cls, value: str) -> str:
        if parsing.parse_duration(value) <= timedelta(0):
            raise parsing.error("duration", "maxAge must be longer than 0s")
        return value

    @property
    def max_age_delta(self) -> timedelta:
        return parsing.parse_duration(self.max_age)


class Check(SpecModel):
    """A data check on a version of the output, evaluated when the step's Job succeeds (docs/checks.md)."""

    model_config = ConfigDict(frozen=True, json_schema_extra=r.cel(r.CHECK_ONE_KIND))
    name: Annotated[str, string(63, r.DNS_LABEL)] = Field(
        description="Name of the check, unique within the output (named in Events, alerts and metrics).")
    severity: CheckSeverity = Field(
        CheckSeverity.ERROR, description="error: a failure keeps the version from being published and skips "
        "what depends on it; warn: a failure is announced and the run goes on.")
    row_count: RowCountCheck | None = optional("Bounds on the row count.")
    change: ChangeCheck | None = optional("Row count change against the median of the last published versions.")
    schema_unchanged: bool | None = optional(
        "The columns must be those of the last published version (true to check).")
    sql: Annotated[str, string(65536)] | None = optional(
        "For sql steps: a query that must return no rows, run after the step's SQL (e.g. rows that break a rule).")
    freshness: DataFreshnessCheck | None = optional("How old the newest record may be at write time.")

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        kinds = [self.row_count, self.change, self.schema_unchanged, self.sql, self.freshness]
        if sum(k is not None for k in kinds) != 1:
            raise r.CHECK_ONE_KIND.error(name=self.name)
        return self

    @property
    def kind(self) -> str:
        """rowCount, change, schemaUnchanged, sql or freshness."""
        for kind, value in (("rowCount", self.row_count), ("change", self.change),
                            ("schemaUnchanged", self.schema_unchanged), ("sql", self.sql),
                            ("freshness", self.freshness)):
            if value is not None:
                return kind
        raise AssertionError("a check has exactly one kind")


MAX_CHECKS_PER_OUTPUT = 10


class OutputDataset(Dataset):
    """A dataset the step writes, with an optional freshness SLA and data checks."""

    freshness: Freshness | None = optional("How fresh this dataset must be; Headwater checks it.")
    checks: tuple[Check, ...] | None = optional(
        f"Data checks on each version the step writes (at most {MAX_CHECKS_PER_OUTPUT}); a failed check of "
        "severity error keeps the version from being published.",
        max_length=MAX_CHECKS_PER_OUTPUT,
        # unique names as a list map: CEL comparing every pair is beyond the apiserver's cost budget here
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})

    @field_validator("checks")
    @classmethod
    def _unique(cls, checks: tuple[Check, ...] | None) -> tuple[Check, ...] | None:
        names = [c.name for c in checks or ()]
        if len(set(names)) != len(names):
            raise r.UNIQUE_CHECK_NAMES.error()
        return checks

    @property
    def all_checks(self) -> tuple[Check, ...]:
        """The output's checks (none when the field is absent)."""
        return self.checks or ()


def _step_rule(rule: r.Rule, ok: bool, info: ValidationInfo) -> None:
    if not ok and "type" in info.data:
        raise rule.error(id=info.data.get("id", "?"), type=info.data["type"].value)


_STEP_RULES = (
    r.NO_SELF_DEPENDENCY, r.IMAGE_REQUIRED, r.SQL_REQUIRED, r.SQL_ONLY_FOR_SQL, r.CONNECTION_ONLY_FOR_SQL,
    r.SQL_CHECK_ONLY_FOR_SQL,
)


class StepSpec(SpecModel):
    """One step of the pipeline; it runs as a Kubernetes Job once every step in dependsOn has succeeded."""

    model_config = ConfigDict(json_schema_extra=r.cel(*_STEP_RULES))
    id: StepId = Field(description="Unique id of the step in the pipeline: a DNS-1123 label (lowercase "
                       "letters, digits, '-') of at most 40 characters, so Job names fit.")
    name: Annotated[str, string(253)] | None = optional("Human-readable name of the step.")
    type: StepType = Field(description="What the step runs: sql, python, container or api_extract.")
    depends_on: list[StepId] = Field(
        default_factory=list, max_length=r.MAX_DEPENDENCIES, json_schema_extra={"default": []},
        description="Ids of the steps that must succeed before this one starts.",
    )
    inputs: list[Dataset] = Field(default_factory=list, max_length=32, description="Datasets the step reads.")
    outputs: list[OutputDataset] = Field(
        default_factory=list, max_length=32, description="Datasets the step writes, each with optional SLAs."
    )
    image: Annotated[str, string(512, r.NO_SPACE)] | None = optional(
        "Container image. Required for container, python and api_extract steps; sql steps default to "
        f"the Headwater image ({DEFAULT_IMAGE}), which runs `headwater step sql`.", validate_default=True,
    )
    command: list[Annotated[str, string(8192, min_length=0)]] = Field(
        default_factory=list, max_length=32, description="Entrypoint of the container (the image's if empty)."
    )
    args: list[Annotated[str, string(8192, min_length=0)]] = Field(
        default_factory=list, max_length=128, description="Arguments to the entrypoint."
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Environment variables.")
    env_from: list[EnvFromSource] = Field(default_factory=list, max_length=16,
                                          description="Secrets and ConfigMaps whose keys become variables.")
    resources: Resources | None = optional("CPU and memory requests and limits of the step's container.")
    service_account_name: Name | None = optional(
        "ServiceAccount of the step's Pod (default: the namespace's default). The operator may restrict "
        "which ones steps can name (HEADWATER_ALLOWED_SERVICE_ACCOUNTS); a step naming another one fails."
    )
    automount_service_account_token: bool = Field(
        False, description="Mount the ServiceAccount's API token into the step's Pod. Off by default: a step "
        "needs it only to call the Kubernetes API.",
    )
    security_context: SecurityContext | None = optional(
        "Security settings of the step's container, over the pipeline's securityContext and Headwater's "
        "restricted defaults (runAsNonRoot, seccomp RuntimeDefault, no privilege escalation, drop ALL)."
    )
    pod_metadata: PodMetadata | None = optional("Extra labels and annotations for the step's Pod.")
    sql: Annotated[str, string(65536)] | None = optional(
        "The SQL to run. Required for steps of type sql, not allowed on others.", validate_default=True
    )
    connection_secret_ref: SecretKeyRef | None = optional(
        "Secret key holding a libpq connection string (postgresql://...) for a sql step; without it the "
        "step connects with the PG* variables from env/envFrom.", validate_default=True,
    )
    timeout_seconds: int = Field(300, ge=1, le=604800, description="Seconds one attempt may run (1 or more).")
    retries: int = Field(2, ge=0, le=10, description="How often a failed attempt is retried (0-10).")

    @field_validator("outputs")
    @classmethod
    def _sql_checks(cls, value: list[OutputDataset], info: ValidationInfo) -> list[OutputDataset]:
        ok = info.data.get("type") == StepType.SQL or all(c.sql is None for o in value for c in o.all_checks)
        _step_rule(r.SQL_CHECK_ONLY_FOR_SQL, ok, info)
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None, info: ValidationInfo) -> str | None:
        _step_rule(r.IMAGE_REQUIRED, value is not None or info.data.get("type") == StepType.SQL, info)
        return value

    @field_validator("sql")
    @classmethod
    def _sql(cls, value: str | None, info: ValidationInfo) -> str | None:
        is_sql = info.data.get("type") == StepType.SQL
        _step_rule(r.SQL_REQUIRED, not is_sql or value is not None, info)
        _step_rule(r.SQL_ONLY_FOR_SQL, is_sql or value is None, info)
        return value

    @field_validator("connection_secret_ref")
    @classmethod
    def _connection(cls, value: SecretKeyRef | None, info: ValidationInfo) -> SecretKeyRef | None:
        _step_rule(r.CONNECTION_ONLY_FOR_SQL, info.data.get("type") == StepType.SQL or value is None, info)
        return value

    def resolved_image(self, default: str = DEFAULT_IMAGE) -> str:
        """The image the step's Job runs: its own, or the Headwater image (for sql steps)."""
        return self.image or default


class TriggerMode(StrEnum):
    """all: run once every input has a new version; any: run once per new version of any input."""

    ALL = "all"
    ANY = "any"


class WithSchedule(StrEnum):
    """How the Pipeline's cron schedule combines with its dataset triggers."""

    WHICHEVER_FIRST = "WhicheverFirst"
    """Both fire: each slot runs, and so does each trigger firing."""
    NO_LATER_THAN = "NoLaterThan"
    """Datasets, but no later than the schedule: a slot runs only if no dataset-triggered run was created since
    the slot before it."""


class DatasetTriggers(SpecModel):
    """Run the Pipeline when its input datasets get new published versions (from Headwater runs or from
    OpenLineage COMPLETE events of other tools)."""

    mode: TriggerMode = Field(TriggerMode.ALL, description="all: one run once every input has at least one new "
                              "version since the last firing; any: one run per new version of any input.")
    inputs: list[Dataset] = Field(min_length=1, max_length=32, description="The datasets whose new versions "
                                  "trigger a run (1 to 32).")
    with_schedule: WithSchedule = Field(
        WithSchedule.WHICHEVER_FIRST, description="With a schedule: WhicheverFirst (slots and triggers both "
        "run) or NoLaterThan (a slot runs only when no dataset-triggered run was created since the slot before).",
    )


class Triggers(SpecModel):
    """What starts the Pipeline besides its schedule."""

    datasets: DatasetTriggers | None = optional("Run on new published versions of input datasets.")


class TriggerVersion(SpecModel):
    """A dataset version that triggered a run."""

    namespace: str = Field(description="Dataset namespace, e.g. postgres://warehouse.", max_length=253)
    name: str = Field(description="Dataset name, e.g. analytics.revenue.", max_length=512)
    version: int = Field(ge=1, description="Id of the version in the lineage store.")
    run: str = Field(description="The run that wrote it (namespace/name/uid8, or an OpenLineage run id).",
                     max_length=512)
    written_at: Timestamp | None = optional("When it was written.")
    superseded: int = Field(0, ge=0, description="Earlier new versions of the same dataset this one folds in "
                            "(mode all).")


class Notifications(SpecModel):
    """Where people hear about failed runs and missed freshness SLAs: every alert goes to the operator's
    webhook (HEADWATER_ALERT_WEBHOOK_URL) and names this channel, so that one receiver routes per team."""

    slack_channel: Annotated[str, string(81, r.SLACK_CHANNEL)] = Field(
        description="Slack channel of the pipeline's alerts (channel in the message), e.g. #data-alerts."
    )


class PipelineSpec(SpecModel):
    """The desired pipeline: its steps as a DAG, its owner and its schedule."""

    description: Annotated[str, string(4096, min_length=0)] | None = optional("What the pipeline is for.")
    owner: Annotated[str, string(254, r.EMAIL)] | None = optional("Email of the person or team that owns it.")
    notifications: Notifications | None = optional("Where failures and freshness SLA misses are announced.")
    schedule: Annotated[str, string(128, r.CRON)] | None = optional(
        "Cron schedule with 5 fields (minute hour day-of-month month day-of-week), e.g. '0 6 * * *', or "
        "@hourly, @daily, @weekly, @monthly, @yearly. Without a schedule the pipeline runs on demand only."
    )
    time_zone: Annotated[str, string(64, r.TIME_ZONE)] | None = optional(
        "IANA time zone of the schedule, e.g. Europe/Berlin. Default: UTC."
    )
    triggers: Triggers | None = optional("Run on new published versions of input datasets (besides, or "
                                         "instead of, a schedule).")
    concurrency_policy: ConcurrencyPolicy = Field(
        ConcurrencyPolicy.FORBID, description="When a scheduled run is due while another run is active: "
        "Allow (run both), Forbid (skip the new one) or Replace (cancel the active one).",
    )
    suspend: bool = Field(False, description="Pause scheduling; runs already started go on.")
    starting_deadline_seconds: int | None = optional(
        "Skip a scheduled run that could not start within this many seconds of its time.", ge=1
    )
    successful_runs_history_limit: int = Field(10, ge=0, le=1000, description="Succeeded runs to keep.")
    failed_runs_history_limit: int = Field(10, ge=0, le=1000, description="Failed or cancelled runs to keep.")
    max_parallelism: int | None = optional("Run at most this many steps at once. Default: no limit.", ge=1,
                                       le=r.MAX_STEPS)
    fail_fast: bool = Field(False, description="Stop the other running steps as soon as one step fails.")
    security_context: SecurityContext | None = optional(
        "Security settings of every step's container, over Headwater's restricted defaults; a step's own "
        "securityContext goes over these."
    )
    steps: list[StepSpec] = Field(
        min_length=1, max_length=r.MAX_STEPS,
        json_schema_extra=r.cel(r.UNIQUE_STEP_IDS, r.KNOWN_DEPENDENCIES),
        description=f"The steps (1 to {r.MAX_STEPS}); dependsOn makes them a DAG.",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return parsing.check_cron(value)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return parsing.check_zone(value)

    @field_validator("steps")
    @classmethod
    def _graph(cls, steps: list[StepSpec]) -> list[StepSpec]:
        problems = dag.validate(steps, check_cycles=False)
        if problems:
            raise parsing.error("step_graph", "; ".join(map(str, problems)))
        return steps

    def step(self, step_id: str) -> StepSpec:
        """The step with this id (KeyError if there is none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


class Condition(StatusModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: Annotated[str, string(316)] = Field(description="Type of the condition, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = optional("metadata.generation the condition was set from.", ge=0)
    last_transition_time: Timestamp = Field(description="When the status last changed.")
    reason: Annotated[str, string(1024, r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")] = Field(
        description="Why, in CamelCase, e.g. InvalidDAG."
    )
    message: Text = Field("", description="Details for people.")


_CONDITIONS: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class DatasetStatus(StatusModel):
    """Freshness of one output dataset of the pipeline."""

    namespace: str = Field(description="Dataset namespace, e.g. postgres://warehouse.", max_length=253)
    name: str = Field(description="Dataset name, e.g. analytics.daily_revenue.", max_length=512)
    last_updated: Timestamp | None = optional("When a run of this pipeline last wrote the dataset successfully.")
    last_run: Name | None = optional("The PipelineRun of that write.")
    stale: bool = Field(False, description="True while the dataset is past its freshness SLA.")
    at_risk: str | None = optional("Why the dataset is at risk (an upstream failure or stale source), if it is.",
                                   max_length=1024)
    at_risk_source: str | None = optional("The pipeline whose failure or stale output put the dataset at risk; "
                                          "its next successful run clears the risk.", max_length=253)


class AlertDataset(StatusModel):
    """A dataset an incident puts at risk."""

    namespace: str = Field(description="Dataset namespace, e.g. postgres://warehouse.", max_length=253)
    name: str = Field(description="Dataset name, e.g. analytics.daily_revenue.", max_length=512)


MAX_ALERT_DATASETS = 50


class Alert(StatusModel):
    """An incident of this pipeline and its notification: kept here before it is sent, and until the alert
    webhook acknowledges it, so that a crash or an unreachable receiver never loses it."""

    id: str = Field(max_length=128, description="Stable id of the incident (also in the message), so the same "
                    "incident is announced once, and a receiver can drop a message it has seen.")
    raised_at: Timestamp = Field(description="When the incident was raised.")
    cause: str = Field(max_length=1024, description="What happened, e.g. a failed step and its error.")
    source: str = Field(max_length=253, description="namespace/pipeline at fault.")
    affected_datasets: list[AlertDataset] = Field(
        default_factory=list, max_length=MAX_ALERT_DATASETS,
        description=f"Datasets at risk, downstream first by distance (the first {MAX_ALERT_DATASETS}).")
    affected_count: int = Field(0, ge=0, description="How many datasets are at risk in all.")
    owners: list[Annotated[str, string(254)]] = Field(
        default_factory=list, max_length=32, description="Owners of the pipelines that produce them.")
    channel: Annotated[str, string(81)] | None = optional("The pipeline's notifications.slackChannel.")
    notified_at: Timestamp | None = optional("When the alert webhook acknowledged the message (2xx); unset "
                                             "while it is still being sent.")
    refused: Annotated[str, string(256)] | None = optional(
        "Why the alert webhook refused the message (a 4xx or a redirect): it is not sent again.")


class PipelineStatus(StatusModel):
    """Observed state of a Pipeline, written by the operator."""

    observed_generation: int | None = optional("metadata.generation last processed.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, json_schema_extra=_CONDITIONS,
        description="Ready=True when the spec is valid; Ready=False with reason InvalidDAG (a dependency "
        "cycle, its path in the message) or InvalidSpec otherwise.",
    )
    last_run: str | None = optional("Name of the most recent PipelineRun.")
    last_run_phase: RunPhase | None = optional("Phase of the most recent PipelineRun.")
    last_schedule_time: Timestamp | None = optional("Time slot of the last scheduled run.")
    next_schedule_time: Timestamp | None = optional("Time slot of the next scheduled run.")
    steps: int | None = optional("Number of steps in the spec.", ge=0)
    datasets: list[DatasetStatus] = Field(
        default_factory=list, max_length=256,
        description="Output datasets: when each was last written, and whether it is stale or at risk.",
    )
    alerts: list[Alert] = Field(
        default_factory=list, max_length=32,
        description="Incidents of this pipeline: pending until the alert webhook acknowledges them, then kept "
        "for a while with notifiedAt (or refused).",
    )


class PipelineRef(SpecModel):
    """The Pipeline to run, in the same namespace."""

    name: Name = Field(description="Name of the Pipeline.")


class PipelineRunSpec(SpecModel):
    """A request to run a pipeline once. Only cancel can change after creation."""

    model_config = ConfigDict(json_schema_extra=r.cel(
        r.RETRY_OF_NEEDS_RETRY, r.RETRY_NEEDS_RETRY_OF, r.SCHEDULED_FOR_NEEDS_SCHEDULE,
        r.RUN_SPEC_IMMUTABLE, r.CANCEL_IS_FINAL,
    ))
    pipeline_ref: PipelineRef = Field(description="The Pipeline to run.")
    trigger: Trigger = Field(Trigger.MANUAL, description="Why the run exists: manual, schedule or retry.")
    retry_of: Name | None = optional(
        "Earlier run to retry (needs trigger: retry): its failed, skipped and cancelled steps run again, "
        "its succeeded steps are reused.",
        validate_default=True,
    )
    from_step: StepId | None = optional("Run this step and everything downstream of it, nothing upstream.")
    cancel: bool = Field(False, description="Set to true to cancel the run: running steps are stopped.")
    scheduled_for: Timestamp | None = optional("The schedule slot this run is for (trigger: schedule or "
                                               "backfill): its logical time.", validate_default=True)
    triggered_by: list[TriggerVersion] = Field(
        default_factory=list, max_length=32, description="The dataset versions that triggered the run "
        "(trigger: dataset), one per input.")

    @field_validator("retry_of")
    @classmethod
    def _retry_of(cls, value: str | None, info: ValidationInfo) -> str | None:
        is_retry = info.data.get("trigger") == Trigger.RETRY
        if value is not None and "trigger" in info.data and not is_retry:
            raise r.RETRY_OF_NEEDS_RETRY.error()
        if value is None and is_retry:
            raise r.RETRY_NEEDS_RETRY_OF.error()
        return value

    @field_validator("scheduled_for")
    @classmethod
    def _scheduled_for(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "trigger" in info.data and info.data["trigger"] not in (Trigger.SCHEDULE,
                                                                                         Trigger.BACKFILL):
            raise r.SCHEDULED_FOR_NEEDS_SCHEDULE.error()
        return value


class CheckResult(StatusModel):
    """One check's verdict on the version of an output the step wrote."""

    dataset: Annotated[str, string(768)] = Field(description="The output, as namespace/name.")
    name: Annotated[str, string(63)] = Field(description="Name of the check.")
    kind: Annotated[str, string(32)] = Field(description="rowCount, change, schemaUnchanged, sql or freshness.")
    severity: CheckSeverity = Field(description="error or warn.")
    outcome: CheckOutcome = Field(description="Passed, Failed, or Skipped (no baseline to compare with yet).")
    observed: Annotated[str, string(256, min_length=0)] | None = optional("What was observed, e.g. 28788 rows.")
    baseline: Annotated[str, string(256, min_length=0)] | None = optional(
        "What it was compared with, e.g. median 47980 rows of the last 7 published versions.")
    message: Annotated[str, string(1024, min_length=0)] = Field("", description="The verdict, for people.")


MAX_CHECK_RESULTS = 320
"""Every check a step can declare: 32 outputs with 10 checks each."""


class StepStatus(StatusModel):
    """Observed state of one step of a run."""

    name: StepId = Field(description="Id of the step.")
    phase: StepPhase = Field(StepPhase.PENDING,
                             description="Pending, Running, Succeeded, Failed, Skipped or Cancelled.")
    job: Annotated[str, string(63)] | None = optional("Name of the step's Job.")
    attempts: int = Field(0, ge=0, description="Attempts started so far (Pods of the Job).")
    started_at: Timestamp | None = optional("When the step's Job was created.")
    finished_at: Timestamp | None = optional("When the step finished.")
    reason: Annotated[str, string(256)] | None = optional("Why the step is in this phase, in CamelCase.")
    message: Annotated[str, string(4096, min_length=0)] | None = optional("Details for people.")
    result: FreeForm | None = optional("What the step reported (its termination message, a JSON object), "
                                   "e.g. {rowsAffected: 1234}.")
    checks: list[CheckResult] | None = optional(
        "Verdicts of the checks on the outputs the step wrote, once its Job succeeded.", max_length=MAX_CHECK_RESULTS)


class PipelineRunStatus(StatusModel):
    """Observed state of a run, written by the operator."""

    phase: RunPhase = Field(RunPhase.PENDING, description="Pending, Running, Succeeded, Failed or Cancelled.")
    observed_generation: int | None = optional("metadata.generation last processed.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16, json_schema_extra=_CONDITIONS,
                                        description="Standard conditions.")
    started_at: Timestamp | None = optional("When the run started.")
    finished_at: Timestamp | None = optional("When the run reached a final phase.")
    duration: Annotated[str, string(32)] | None = optional(
        "How long the run took (or has taken so far), e.g. 1m32s; written by the operator because a "
        "printer column cannot compute it."
    )
    progress: Annotated[str, string(16)] | None = optional("Finished steps out of all steps, e.g. 3/4.")
    steps: list[StepStatus] = Field(
        default_factory=list, max_length=r.MAX_STEPS, description="State of every step, keyed by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    triggered_by: list[TriggerVersion] = Field(
        default_factory=list, max_length=32, description="The dataset versions that triggered the run "
        "(copied from the spec when it starts).")
    logical_time: Timestamp | None = optional(
        "The time the run processes (its schedule slot; else when it was created): steps read it as "
        "HEADWATER_LOGICAL_TIME, and the lineage store records it with every version the run writes.")
    pipeline_spec: PipelineSpec | None = optional(
        "Snapshot of the Pipeline's spec taken when the run started: the run executes this, so editing "
        "the Pipeline never changes a run in flight."
    )


MAX_BACKFILL_SLOTS = 1000
"""Schedule slots one Backfill may cover; a longer range is refused (Ready=False, TooManySlots)."""


class BackfillSpec(SpecModel):
    """Run a Pipeline once for every slot of its schedule in a time range (inclusive), oldest first."""

    pipeline_ref: PipelineRef = Field(description="The Pipeline to backfill (it needs a schedule).")
    from_: Timestamp = Field(alias="from", description="The first time of the range (RFC 3339), inclusive.")
    to: Timestamp = Field(description="The last time of the range (RFC 3339), inclusive.")
    max_concurrent: int = Field(1, ge=1, le=50, description="Runs of this backfill active at once (1-50); the "
                                "Pipeline's scheduled runs do not count against it, nor it against them.")
    suspend: bool = Field(False, description="Create no further runs; those started go on.")


class BackfillStatus(StatusModel):
    """Progress of a backfill, written by the operator."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed"] = Field(
        "Pending", description="Pending, Running, Succeeded (every slot's run succeeded) or Failed (every slot ran, "
        "some failed, or the backfill cannot run: see conditions).")
    observed_generation: int | None = optional("metadata.generation last processed.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16, json_schema_extra=_CONDITIONS,
                                        description="Ready=False when the backfill cannot run, and why.")
    slots: int = Field(0, ge=0, description="Schedule slots in the range.")
    created: int = Field(0, ge=0, description="Slots whose run was created.")
    active: int = Field(0, ge=0, description="Runs not finished yet.")
    succeeded: int = Field(0, ge=0, description="Runs that succeeded.")
    failed: int = Field(0, ge=0, description="Runs that failed or were cancelled.")
    progress: Annotated[str, string(24)] | None = optional("Finished slots out of all slots, e.g. 12/30.")
    next_slot: Timestamp | None = optional("The next slot to get a run.")
    last_run: Name | None = optional("The run of the latest slot created so far.")
