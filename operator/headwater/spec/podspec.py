"""Building blocks of a step's container, shared by the API models: names, quantities, timestamps,
Secret and ConfigMap references, env, envFrom, resources and pod metadata.

Part of the one source of truth for the CRDs (``headwater.spec.crdgen``); ``headwater.spec.models``
re-exports everything public here.
"""

from __future__ import annotations

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
    "ConfigMapKeyRef", "EnvFromSource", "EnvVar", "EnvVarSource", "FreeForm", "Name", "NamedRef",
    "PodMetadata", "Quantity", "Resources", "SecretKeyRef", "SpecModel", "StatusModel", "StepId", "Text",
    "Timestamp", "optional", "string",
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
