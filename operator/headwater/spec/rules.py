"""Headwater's validation rules in one place: patterns, limits and cross-field rules.

A :class:`Rule` has one definition used twice: as CEL (``x-kubernetes-validations``) that the
apiserver checks at admission, and as the message Python raises in ``headwater.spec.models`` (so
``headwater validate``, the operator and the apiserver say the same thing).  Checks CEL cannot
do (a full cron parse, IANA time zones, dependency cycles) are in :mod:`headwater.spec.parsing`
and :mod:`headwater.spec.dag`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticCustomError

from headwater.spec import dag
from headwater.spec.names import MAX_PIPELINE_NAME

# Patterns (RE2 syntax: the apiserver and pydantic's Rust engine read them the same way).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _cron_field(value: str, extra: str = "") -> str:
    """A list of values, ranges and steps whose numbers are all in range (``extra``: more item forms)."""
    item = rf"(\*|\?|({value})(-({value}))?{extra})(/[1-9][0-9]?)?"
    return rf"{item}(,{item})*"


_NAME = "[A-Za-z]{3}"  # JAN..DEC, SUN..SAT: the names themselves are checked by the full parse
CRON_FIELDS = (
    _cron_field("[0-5]?[0-9]"),  # minute 0-59
    _cron_field("([01]?[0-9]|2[0-3])"),  # hour 0-23
    _cron_field("(0?[1-9]|[12][0-9]|3[01])|L"),  # day of month 1-31, L (last)
    _cron_field(f"(0?[1-9]|1[0-2]|{_NAME})"),  # month 1-12 or a name
    _cron_field(f"([0-7]|{_NAME})", "(#[1-5])?"),  # day of week 0-7 (0 and 7 are Sunday) or a name, #n
)
CRON = "^(@(yearly|annually|monthly|weekly|daily|hourly)|" + " +".join(f"({f})" for f in CRON_FIELDS) + ")$"
TIME_ZONE_AREAS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Brazil",
                   "Canada", "Chile", "Etc", "Europe", "Indian", "Mexico", "Pacific", "US")
"""The areas of the IANA time zone database: Area/Location names must start with one of them."""
TIME_ZONE = rf"^([A-Za-z][A-Za-z0-9_+-]*|({'|'.join(TIME_ZONE_AREAS)})(/[A-Za-z0-9_+-]+){{1,2}})$"
DATASET_NAMESPACE = r"^[a-z][a-z0-9+.-]*://[^\s/?#]+$"
DATASET_NAME = r"^[^\s\x00-\x1f\x7f]+$"
DURATION = r"^([0-9]+[smhd])+$"
CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
SLACK_CHANNEL = r"^#?[a-z0-9][a-z0-9._-]{0,79}$"
NO_SPACE = r"^\S+$"
SQL_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
CAPABILITY = r"^[A-Z][A-Z0-9_]*$"
LOCAL_PATH = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$"
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
PATTERN_HINTS = {
    DNS_LABEL: "a DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric",
    DNS_SUBDOMAIN: "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.'",
    CONFIG_KEY: "a Secret or ConfigMap key: letters, digits, '-', '_' and '.'",
    ENV_NAME: "a variable name: letters, digits, '-', '_' and '.', not starting with a digit",
    EMAIL: "an email address such as data-team@company.com",
    CRON: "5 cron fields with values in range (minute 0-59, hour 0-23, day of month 1-31, month 1-12, "
          "day of week 0-7) such as '0 6 * * *', or @hourly, @daily, @weekly, @monthly, @yearly",
    TIME_ZONE: "an IANA time zone such as Europe/Berlin (Area/Location with a known area, or a single name "
               "such as UTC)",
    DATASET_NAMESPACE: "scheme://authority, such as postgres://warehouse:5432 or api://stripe",
    DATASET_NAME: "a name without spaces or control characters, such as raw.orders",
    DURATION: "a duration such as 30m, 6h, 1d or 1h30m",
    CLOCK: "a time of day HH:MM (24-hour clock), such as 07:00",
    SLACK_CHANNEL: "a Slack channel such as #data-alerts",
    NO_SPACE: "a value without spaces",
    SQL_IDENTIFIER: "a SQL column name: letters, digits and '_', not starting with a digit",
    CAPABILITY: "a Linux capability in capitals, such as NET_BIND_SERVICE or ALL",
    LOCAL_PATH: "a relative path without '..', such as profiles/audit.json",
}
"""What each pattern means, for messages to people (the apiserver can only quote the pattern)."""
MAX_STEPS = 200
MAX_DEPENDENCIES = 50


@dataclass(frozen=True)
class Rule:
    """A cross-field rule with one definition: CEL for the apiserver, the same words for Python.

    ``summary`` is the static CEL ``message``.  ``message`` (optional) is a ``str.format``
    template Python fills in; when ``args`` gives a CEL expression for each placeholder it is
    also the ``messageExpression``, so the apiserver says exactly what Python says.  Rules over
    the whole step list have no ``args``: CEL cannot build such strings within its cost budget,
    so there the apiserver says the summary and Python the details.
    """

    rule: str
    summary: str
    message: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    field_path: str | None = None
    reason: str | None = None

    def text(self, **values: object) -> str:
        """The message Python reports (with ``args``, exactly what the apiserver says)."""
        return (self.message or self.summary).format(**values)

    def error(self, **values: object) -> PydanticCustomError:
        """The validation error a pydantic validator raises when the rule does not hold."""
        return PydanticCustomError("headwater_rule", "{message}", {"message": self.text(**values)})

    def to_cel(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry."""
        out = {"rule": self.rule, "message": self.summary}
        if self.message and self.args:
            out["messageExpression"] = _message_expression(self.message, self.args)
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def _message_expression(template: str, args: Mapping[str, str]) -> str:
    parts: list[str] = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        if literal:
            parts.append(json.dumps(literal))
        if name is not None:
            parts.append(f"({args[name]})" if " " in args[name] else args[name])
    return " + ".join(parts)


UNIQUE_STEP_IDS = Rule(
    "self.all(s, self.exists_one(t, t.id == s.id))", "step ids must be unique", dag.DUPLICATE_ID
)
KNOWN_DEPENDENCIES = Rule(
    "self.all(s, sets.contains(self.map(t, t.id), s.dependsOn))",
    "every dependsOn entry must be the id of a step of this pipeline", dag.UNKNOWN_DEPENDENCY,
)
NO_SELF_DEPENDENCY = Rule(
    "!(self.id in self.dependsOn)", "a step cannot depend on itself", dag.SELF_DEPENDENCY,
    {"id": "self.id"}, field_path=".dependsOn",
)
IMAGE_REQUIRED = Rule(
    "self.type == 'sql' || has(self.image)", "steps of type container, python and api_extract need an image",
    "step '{id}' of type {type} needs an image", {"id": "self.id", "type": "self.type"},
    field_path=".image", reason="FieldValueRequired",
)
SQL_REQUIRED = Rule(
    "self.type != 'sql' || has(self.sql)", "steps of type sql need sql",
    "step '{id}' of type sql needs sql: the statement to run", {"id": "self.id"},
    field_path=".sql", reason="FieldValueRequired",
)
SQL_ONLY_FOR_SQL = Rule(
    "self.type == 'sql' || !has(self.sql)", "sql is only for steps of type sql",
    "step '{id}' of type {type} cannot have sql; sql is only for steps of type sql",
    {"id": "self.id", "type": "self.type"}, field_path=".sql", reason="FieldValueForbidden",
)
CONNECTION_ONLY_FOR_SQL = Rule(
    "self.type == 'sql' || !has(self.connectionSecretRef)",
    "connectionSecretRef is only for steps of type sql",
    "step '{id}' of type {type} cannot have connectionSecretRef; it is only for steps of type sql",
    {"id": "self.id", "type": "self.type"}, field_path=".connectionSecretRef", reason="FieldValueForbidden",
)
FRESHNESS_ONE_OF = Rule("has(self.maxAge) != has(self.deadline)", "set exactly one of maxAge or deadline")
FRESHNESS_TIME_ZONE = Rule(
    "!has(self.timeZone) || has(self.deadline)", "timeZone applies only to a deadline",
    field_path=".timeZone", reason="FieldValueForbidden",
)
CHECK_ONE_KIND = Rule(
    "[has(self.rowCount), has(self.change), has(self.schemaUnchanged), has(self.sql), has(self.freshness)]"
    ".filter(x, x).size() == 1",
    "a check needs exactly one of rowCount, change, schemaUnchanged, sql or freshness",
    "check '{name}' needs exactly one of rowCount, change, schemaUnchanged, sql or freshness",
    {"name": "self.name"},
)
ROW_COUNT_BOUNDS = Rule(
    "(has(self.min) || has(self.max)) && (!has(self.min) || !has(self.max) || self.min <= self.max)",
    "rowCount needs min, max or both, with min <= max",
)
CHANGE_BOUNDS = Rule(
    "has(self.maxDropPercent) || has(self.maxGrowthPercent)",
    "change needs maxDropPercent, maxGrowthPercent or both",
)
UNIQUE_CHECK_NAMES = Rule(  # Python only: the apiserver keeps names unique as the keys of a list map
    "self.all(c, self.exists_one(d, d.name == c.name))", "check names must be unique within an output",
)
SQL_CHECK_ONLY_FOR_SQL = Rule(
    "self.type == 'sql' || !has(self.outputs) || self.outputs.all(o, !has(o.checks) || o.checks.all(c, !has(c.sql)))",
    "checks with sql are only for steps of type sql",
    "step '{id}' of type {type} cannot have a check with sql; sql checks run in steps of type sql",
    {"id": "self.id", "type": "self.type"}, field_path=".outputs", reason="FieldValueForbidden",
)
ENV_ONE_OF = Rule(
    "!has(self.value) || !has(self.valueFrom)", "value and valueFrom cannot both be set",
    "env var '{name}' has both value and valueFrom; set one of them", {"name": "self.name"},
)
ENV_SOURCE_ONE_OF = Rule(
    "has(self.secretKeyRef) != has(self.configMapKeyRef)",
    "valueFrom needs exactly one of secretKeyRef or configMapKeyRef",
)
ENV_FROM_ONE_OF = Rule(
    "has(self.secretRef) != has(self.configMapRef)",
    "envFrom entries need exactly one of secretRef or configMapRef",
)
SECCOMP_LOCALHOST_PROFILE = Rule(
    "(self.type == 'Localhost') == has(self.localhostProfile)",
    "localhostProfile is required with type Localhost and allowed with no other type",
    field_path=".localhostProfile",
)
PRIVILEGED_ESCALATION = Rule(
    "!has(self.allowPrivilegeEscalation) || self.allowPrivilegeEscalation || "
    "!((has(self.privileged) && self.privileged) || "
    "(has(self.capabilities) && has(self.capabilities.add) && 'CAP_SYS_ADMIN' in self.capabilities.add))",
    "allowPrivilegeEscalation cannot be false with privileged: true or with capability CAP_SYS_ADMIN added",
    field_path=".allowPrivilegeEscalation",
)
ROOT_NEEDS_RUN_AS_NON_ROOT_FALSE = Rule(
    "!has(self.runAsUser) || self.runAsUser != 0 || (has(self.runAsNonRoot) && !self.runAsNonRoot)",
    "runAsUser: 0 (root) needs runAsNonRoot: false", field_path=".runAsUser",
)
RETRY_OF_NEEDS_RETRY = Rule(
    "!has(self.retryOf) || self.trigger == 'retry'", "retryOf is only allowed with trigger: retry",
    field_path=".retryOf", reason="FieldValueForbidden",
)
RETRY_NEEDS_RETRY_OF = Rule(
    "self.trigger != 'retry' || has(self.retryOf)",
    "trigger: retry needs retryOf, the name of the run to retry",
    field_path=".retryOf", reason="FieldValueRequired",
)
SCHEDULED_FOR_NEEDS_SCHEDULE = Rule(
    "!has(self.scheduledFor) || self.trigger == 'schedule' || self.trigger == 'backfill'",
    "scheduledFor is only allowed with trigger: schedule or backfill",
    field_path=".scheduledFor", reason="FieldValueForbidden",
)
_SAME = "(has(self.{0}) ? has(oldSelf.{0}) && self.{0} == oldSelf.{0} : !has(oldSelf.{0}))"
RUN_SPEC_IMMUTABLE = Rule(  # transition rule: apiserver only (needs the old object)
    "self.pipelineRef.name == oldSelf.pipelineRef.name && self.trigger == oldSelf.trigger && "
    + " && ".join(_SAME.format(f) for f in ("retryOf", "fromStep", "scheduledFor", "triggeredBy")),
    "only spec.cancel can change after a PipelineRun is created",
)
PIPELINE_NAME_LENGTH = Rule(  # on the whole object: CEL sees metadata.name only there
    f"self.metadata.name.size() <= {MAX_PIPELINE_NAME}",
    f"metadata.name: Too long: a Pipeline name may be at most {MAX_PIPELINE_NAME} characters, so that "
    "the names of its scheduled runs (<pipeline>-<yyyymmddhhmm>) fit in 253",
)
CANCEL_IS_FINAL = Rule("!oldSelf.cancel || self.cancel", "spec.cancel cannot be set back to false")


def cel(*rules: Rule) -> dict[str, Any]:
    """``json_schema_extra`` attaching these rules to a model or field."""
    return {"x-kubernetes-validations": [r.to_cel() for r in rules]}
