"""Building blocks of a step's container, shared by the API models: names, quantities, timestamps,
Secret and ConfigMap references, env, envFrom, resources, pod metadata and the security context.

Part of the one source of truth for the CRDs (``headwater.spec.crdgen``); ``headwater.spec.models``
re-exports everything public here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from headwater.spec import parsing
from headwater.spec import rules as r

__all__ = [
    "Capabilities", "ConfigMapKeyRef", "EnvFromSource", "EnvVar", "EnvVarSource", "FreeForm", "Name", "NamedRef",
    "PodMetadata", "Quantity", "Resources", "SeccompProfile", "SeccompProfileType", "SecretKeyRef",
    "SecurityContext", "SpecModel", "StatusModel", "StepId", "Text", "Timestamp", "optional", "string",
]


def string(max_length: int, pattern: str | None = None, min_length: int = 1) -> Any:
    """Length bounds (which keep CEL within its cost budget) and an optional pattern."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)


def optional(description: str, **kwargs: Any) -> Any:
    """An optional field (None when absent; left out of dumps with exclude_none)."""
    return Field(None, description=description, **kwargs)


StepId = Annotated[str, string(40, r.DNS_LABEL)]
Name = Annotated[str, string(253, r.DNS_SUBDOMAIN)]
Text = Annotated[str, string(32768, min_length=0)]
Timestamp = Annotated[
    str,
    BeforeValidator(parsing.to_timestamp),
    AfterValidator(parsing.check_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": 64}),
]
Quantity = Annotated[
    int | str,
    PlainValidator(parsing.check_quantity),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": r.QUANTITY,
                    "x-kubernetes-int-or-string": True}),
]
FreeForm = Annotated[
    dict[str, Any], WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
]


class SpecModel(BaseModel):
    """Base of spec models: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StatusModel(BaseModel):
    """Base of status models: camelCase on the wire, unknown fields ignored (newer operators may add some)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SecretKeyRef(SpecModel):
    """A key of a Secret in the pipeline's namespace."""

    name: Name = Field(description="Name of the Secret.")
    key: Annotated[str, string(253, r.CONFIG_KEY)] = Field(description="Key within the Secret.")


class ConfigMapKeyRef(SpecModel):
    """A key of a ConfigMap in the pipeline's namespace."""

    name: Name = Field(description="Name of the ConfigMap.")
    key: Annotated[str, string(253, r.CONFIG_KEY)] = Field(description="Key within the ConfigMap.")


class EnvVarSource(SpecModel):
    """Where a variable's value comes from: exactly one of secretKeyRef or configMapKeyRef."""

    model_config = ConfigDict(json_schema_extra=r.cel(r.ENV_SOURCE_ONE_OF))
    secret_key_ref: SecretKeyRef | None = optional("Take the value from a key of a Secret.")
    config_map_key_ref: ConfigMapKeyRef | None = optional("Take the value from a key of a ConfigMap.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise r.ENV_SOURCE_ONE_OF.error()
        return self


class EnvVar(SpecModel):
    """An environment variable of the step's container: a literal value or one read from a key."""

    model_config = ConfigDict(json_schema_extra=r.cel(r.ENV_ONE_OF))
    name: Annotated[str, string(256, r.ENV_NAME)] = Field(description="Name of the variable, e.g. LOG_LEVEL.")
    value: Text | None = optional("Literal value.")
    value_from: EnvVarSource | None = optional("Read the value from a Secret or ConfigMap key.")

    @model_validator(mode="after")
    def _one_value(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise r.ENV_ONE_OF.error(name=self.name)
        return self


class NamedRef(SpecModel):
    """A Secret or ConfigMap in the pipeline's namespace, by name."""

    name: Name = Field(description="Name of the object.")


class EnvFromSource(SpecModel):
    """Every key of a Secret or ConfigMap as a variable: exactly one of secretRef or configMapRef."""

    model_config = ConfigDict(json_schema_extra=r.cel(r.ENV_FROM_ONE_OF))
    secret_ref: NamedRef | None = optional("Every key of this Secret becomes a variable.")
    config_map_ref: NamedRef | None = optional("Every key of this ConfigMap becomes a variable.")
    prefix: Annotated[str, string(128, r.ENV_NAME)] | None = optional("Prefix added to every variable name.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise r.ENV_FROM_ONE_OF.error()
        return self


class Resources(SpecModel):
    """CPU and memory for the step's container, as in a Pod: requests: {cpu: 500m, memory: 1Gi}."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="Resources the step needs, by resource name."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="Most resources the step may use, by resource name."
    )


class PodMetadata(SpecModel):
    """Extra labels and annotations for the step's Pod (Headwater's own labels always win)."""

    labels: dict[str, Annotated[str, string(63, min_length=0)]] = Field(
        default_factory=dict, max_length=32, description="Labels added to the Pod."
    )
    annotations: dict[str, Annotated[str, string(4096, min_length=0)]] = Field(
        default_factory=dict, max_length=32, description="Annotations added to the Pod."
    )


class Capabilities(SpecModel):
    """Linux capabilities added to and dropped from the container's defaults."""

    add: list[Annotated[str, string(64, r.CAPABILITY)]] | None = optional(
        "Capabilities to add, e.g. NET_BIND_SERVICE.", max_length=64
    )
    drop: list[Annotated[str, string(64, r.CAPABILITY)]] | None = optional(
        "Capabilities to drop; ALL drops every one.", max_length=64
    )


class SeccompProfileType(StrEnum):
    """Which seccomp profile confines the container."""

    RUNTIME_DEFAULT = "RuntimeDefault"
    LOCALHOST = "Localhost"
    UNCONFINED = "Unconfined"


class SeccompProfile(SpecModel):
    """The container's seccomp profile: the runtime's default, one on the node, or none."""

    model_config = ConfigDict(json_schema_extra=r.cel(r.SECCOMP_LOCALHOST_PROFILE))
    type: SeccompProfileType = Field(description="RuntimeDefault, Localhost or Unconfined.")
    localhost_profile: Annotated[str, string(4096, r.LOCAL_PATH)] | None = optional(
        "With type Localhost: the profile's path, relative to the kubelet's seccomp directory."
    )

    @model_validator(mode="after")
    def _profile(self) -> SeccompProfile:
        if (self.type == SeccompProfileType.LOCALHOST) != (self.localhost_profile is not None):
            raise r.SECCOMP_LOCALHOST_PROFILE.error()
        return self


class SecurityContext(SpecModel):
    """Security settings of the step's container; each field given replaces Headwater's default for it.

    By default a step runs as the "restricted" Pod Security Standard asks: runAsNonRoot, the runtime's
    seccomp profile, no privilege escalation and every capability dropped.
    """

    model_config = ConfigDict(json_schema_extra=r.cel(r.PRIVILEGED_ESCALATION, r.ROOT_NEEDS_RUN_AS_NON_ROOT_FALSE))
    run_as_user: int | None = Field(None, ge=0, le=2147483647, description=(
        "User id the container runs as (default: the image's user). Set it for an image whose user is a "
        "name or root, e.g. 1000; 0 (root) needs runAsNonRoot: false."))
    run_as_group: int | None = Field(None, ge=0, le=2147483647,
                                     description="Group id the container runs as (default: the image's).")
    run_as_non_root: bool | None = optional(
        "Refuse to start the container as root (uid 0). Default: true."
    )
    allow_privilege_escalation: bool | None = optional(
        "Whether a process may gain more privileges than its parent (setuid binaries). Default: false "
        "(true when privileged is true or CAP_SYS_ADMIN is added and this is not given)."
    )
    privileged: bool | None = optional("Run the container privileged (never allowed by the restricted standard).")
    read_only_root_filesystem: bool | None = optional("Mount the container's root filesystem read-only.")
    capabilities: Capabilities | None = optional(
        "Capabilities to add and drop, replacing the default drop: [ALL] as a whole."
    )
    seccomp_profile: SeccompProfile | None = optional(
        "Seccomp profile, replacing the default type: RuntimeDefault as a whole."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SecurityContext:
        if self.allow_privilege_escalation is False and self.needs_escalation:
            raise r.PRIVILEGED_ESCALATION.error()
        if self.run_as_user == 0 and self.run_as_non_root is not False:
            raise r.ROOT_NEEDS_RUN_AS_NON_ROOT_FALSE.error()
        return self

    @property
    def needs_escalation(self) -> bool:
        """Privileged, or CAP_SYS_ADMIN added: Kubernetes then refuses allowPrivilegeEscalation: false."""
        added = self.capabilities.add if self.capabilities and self.capabilities.add else []
        return bool(self.privileged) or "CAP_SYS_ADMIN" in added
