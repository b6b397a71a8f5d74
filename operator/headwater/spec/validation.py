"""Offline validation of Headwater manifests, with the rules and words of the apiserver and the operator.

Each problem names the field and what is wrong with it: ``spec.steps[2].dependsOn: step
'transform' depends on unknown step 'extrct'; known steps: extract, load``.  Pydantic does the
schema checks (the same patterns and bounds as the CRDs), ``headwater.spec.rules`` the cross-field
rules (the same messages as the CEL rules), ``headwater.spec.dag`` what CEL cannot see (cycles).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from headwater.spec import dag, models
from headwater.spec.constants import API_VERSION, BACKFILL_KIND, PIPELINE_KIND, PIPELINERUN_KIND
from headwater.spec.dag import Problem
from headwater.spec.models import BackfillSpec, PipelineRunSpec, PipelineSpec
from headwater.spec.names import MAX_PIPELINE_NAME
from headwater.spec.rules import DNS_SUBDOMAIN, PATTERN_HINTS, PIPELINE_NAME_LENGTH

__all__ = [
    "Finding",
    "Problem",
    "document_problems",
    "pipeline_run_spec_problems",
    "pipeline_spec_problems",
    "run_against_pipeline",
    "validate_paths",
    "validate_text",
]

UNKNOWN_FROM_STEP = "unknown step '{id}'; known steps: {known}"
_KINDS = (PIPELINE_KIND, PIPELINERUN_KIND, BACKFILL_KIND)
_OWN_MESSAGES = {"headwater_rule", "step_graph", "cron", "time_zone", "duration", "quantity", "date_time"}


@dataclass(frozen=True)
class Finding:
    """A problem found in a file: ``file:document: Kind/name: field: message``."""

    source: str
    document: int | None
    kind: str | None
    name: str | None
    problem: Problem

    def __str__(self) -> str:
        where = self.source if self.document is None else f"{self.source}:{self.document}"
        what = f"{self.kind or '?'}/{self.name or '?'}: " if self.kind or self.name else ""
        return f"{where}: {what}{self.problem}"


def _wire_names() -> dict[str, str]:
    """snake_case field name -> camelCase wire name (pydantic names defaulted fields the Python way)."""
    classes = [v for v in vars(models).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    return {
        name: field.alias
        for model in classes
        for name, field in model.model_fields.items()
        if field.alias and field.alias != name
    }


_WIRE_NAMES = _wire_names()


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = _WIRE_NAMES.get(part, part)
            out += f".{name}" if out else name
    return out


def _describe(error: Mapping[str, Any]) -> str:
    """A pydantic error in the apiserver's words (and a hint where the apiserver can only quote a pattern)."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in _OWN_MESSAGES:
        return str(error["msg"])
    if kind == "missing":
        return "Required value"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(ctx.get("pattern", ""))
        expected = f"must be {hint}" if hint else f"should match {ctx['pattern']!r}"
        return f'Invalid value: "{value}": {expected}'
    if kind == "string_too_long":
        return f"Too long: may not be longer than {ctx['max_length']} characters"
    if kind == "string_too_short":
        return f'Invalid value: "{value}": should be at least {ctx["min_length"]} characters long'
    if kind == "too_long":
        return f"Too many: {ctx.get('actual_length')}: must have at most {ctx['max_length']} items"
    if kind == "too_short":
        return f"Too few: must have at least {ctx['min_length']} item(s)"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound, word = (ctx["ge"], "greater") if kind == "greater_than_equal" else (ctx["le"], "less")
        return f"Invalid value: {value!r}: should be {word} than or equal to {bound}"
    if kind in ("enum", "literal_error"):
        return f"Unsupported value: {value!r}: supported values: {ctx['expected']}"
    return f"Invalid value: {value!r}: {error['msg']}"


def _model_problems(model: type[BaseModel], data: Any, prefix: str, skip: frozenset[str]) -> list[Problem]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [
            Problem(_path(prefix, e["loc"]), _describe(e))
            for e in exc.errors(include_url=False)
            if e["type"] not in skip
        ]
    return []


def _nodes(raw_steps: Any) -> list[dag.Node] | None:
    """The step graph of a raw spec, or None when some step has no usable id (pydantic says so)."""
    if not isinstance(raw_steps, list):
        return None
    nodes: list[dag.Node] = []
    for item in raw_steps:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            return None
        deps: list[Any] = item["dependsOn"] if isinstance(item.get("dependsOn"), list) else []
        nodes.append(dag.Node(item["id"], tuple(d for d in deps if isinstance(d, str))))
    return nodes


def pipeline_spec_problems(spec: Any, prefix: str = "spec") -> list[Problem]:
    """Everything wrong with a Pipeline spec (camelCase dict): schema, cross-field rules and cycles.

    The operator reports the same list on the Pipeline's Ready condition.
    """
    problems = _model_problems(PipelineSpec, spec, prefix, frozenset({"step_graph"}))
    nodes = _nodes(spec.get("steps")) if isinstance(spec, Mapping) else None
    if nodes:
        problems += [Problem(_path(prefix, [p.path]), p.message, p.reason) for p in dag.validate(nodes)]
    return problems


def pipeline_run_spec_problems(spec: Any, prefix: str = "spec") -> list[Problem]:
    """Everything wrong with a PipelineRun spec on its own (its Pipeline is checked by the operator)."""
    return _model_problems(PipelineRunSpec, spec, prefix, frozenset())


def backfill_spec_problems(spec: Any, prefix: str = "spec") -> list[Problem]:
    """Everything wrong with a Backfill spec on its own (its Pipeline's schedule is checked by the operator)."""
    return _model_problems(BackfillSpec, spec, prefix, frozenset())


def run_against_pipeline(run_spec: PipelineRunSpec, pipeline: PipelineSpec) -> list[Problem]:
    """What is wrong with running ``pipeline`` as ``run_spec`` asks (fromStep must be one of its steps)."""
    ids = [s.id for s in pipeline.steps]
    if run_spec.from_step is not None and run_spec.from_step not in ids:
        message = UNKNOWN_FROM_STEP.format(id=run_spec.from_step, known=", ".join(ids))
        return [Problem("spec.fromStep", message, "NotFound")]
    return []


def _header_problems(doc: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"Unsupported value: {doc.get('apiVersion')!r}: "
                                f"supported values: '{API_VERSION}'"))
    meta: Mapping[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), Mapping) else {}
    name = meta.get("name")
    if name is None and not meta.get("generateName"):
        problems.append(Problem("metadata.name", "Required value: name or generateName is required"))
    elif not (isinstance(name, str) and len(name) <= 253 and re.fullmatch(DNS_SUBDOMAIN, name)):
        hint = PATTERN_HINTS[DNS_SUBDOMAIN]
        problems.append(Problem("metadata.name", f"Invalid value: {name!r}: must be {hint} (at most 253)"))
    elif doc.get("kind") == PIPELINE_KIND and len(name) > MAX_PIPELINE_NAME:
        problems.append(Problem("metadata.name", PIPELINE_NAME_LENGTH.text().removeprefix("metadata.name: ")))
    if "spec" not in doc:
        problems.append(Problem("spec", "Required value"))
    return problems


def document_problems(doc: Any) -> list[Problem]:
    """Everything wrong with one manifest (a parsed YAML document)."""
    if not isinstance(doc, Mapping):
        return [Problem("", "a manifest must be a mapping with apiVersion, kind, metadata and spec")]
    kind = doc.get("kind")
    if kind not in _KINDS:
        return [Problem("kind", f"unknown kind {kind!r}: headwater validate checks {', '.join(_KINDS)} "
                        f"({API_VERSION})")]
    problems = _header_problems(doc)
    if "spec" in doc:
        check = {PIPELINE_KIND: pipeline_spec_problems, PIPELINERUN_KIND: pipeline_run_spec_problems,
                 BACKFILL_KIND: backfill_spec_problems}[kind]
        problems += check(doc["spec"])
    return problems


def _identity(doc: Any) -> tuple[str | None, str | None, str | None]:
    """kind, name and namespace of a document, as far as it has them."""
    if not isinstance(doc, Mapping):
        return None, None, None
    meta: Mapping[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), Mapping) else {}
    name = meta.get("name") or meta.get("generateName")
    return _text(doc.get("kind")), _text(name), _text(meta.get("namespace"))


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _cross_document(docs: list[tuple[str, int, Any]]) -> list[Finding]:
    """Checks between documents: a run's fromStep against its Pipeline when that is among the files."""
    pipelines: dict[tuple[str | None, str], PipelineSpec] = {}
    for _, _, doc in docs:
        kind, name, namespace = _identity(doc)
        if kind == PIPELINE_KIND and name and not document_problems(doc):
            pipelines[namespace, name] = PipelineSpec.model_validate(doc["spec"])
    findings: list[Finding] = []
    for source, index, doc in docs:
        kind, name, namespace = _identity(doc)
        if kind != PIPELINERUN_KIND or document_problems(doc):
            continue
        run = PipelineRunSpec.model_validate(doc["spec"])
        pipeline = pipelines.get((namespace, run.pipeline_ref.name))
        if pipeline is not None:
            findings += [Finding(source, index, kind, name, p) for p in run_against_pipeline(run, pipeline)]
    return findings


def _documents(text: str, source: str) -> tuple[list[tuple[str, int, Any]], list[Finding]]:
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        return [], [Finding(source, None, None, None, Problem("", _yaml_error(exc)))]
    return [(source, i, doc) for i, doc in enumerate(loaded, start=1) if doc is not None], []


def _yaml_error(exc: yaml.YAMLError) -> str:
    """One line: invalid YAML at line 2, column 7: mapping values are not allowed here."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}"


def validate_text(text: str, source: str = "<stdin>") -> list[Finding]:
    """Every problem in a (multi-document) YAML text; documents are numbered from 1."""
    docs, findings = _documents(text, source)
    return findings + _check(docs)


def _check(docs: list[tuple[str, int, Any]]) -> list[Finding]:
    findings: list[Finding] = []
    for source, index, doc in docs:
        kind, name, _ = _identity(doc)
        findings += [Finding(source, index, kind, name, p) for p in document_problems(doc)]
    return findings + _cross_document(docs)


def _files(paths: Iterable[str]) -> Iterable[tuple[str, str | OSError]]:
    """(source, its text or why it cannot be read); a directory stands for its *.yaml and *.yml files."""
    for raw in paths:
        path = Path(raw)
        children = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for child in children:
            try:
                yield str(child), child.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                yield str(child), exc if isinstance(exc, OSError) else OSError(str(exc))


def validate_paths(paths: Iterable[str], stdin: str | None = None) -> tuple[list[Finding], int]:
    """Every problem in these files (``-`` is ``stdin``), and the number of documents checked."""
    docs: list[tuple[str, int, Any]] = []
    findings: list[Finding] = []
    for source, text in _files(p for p in paths if p != "-"):
        if isinstance(text, OSError):
            reason = text.strerror or str(text)
            findings.append(Finding(source, None, None, None, Problem("", f"cannot read the file: {reason}")))
            continue
        found, errors = _documents(text, source)
        docs += found
        findings += errors
    if "-" in paths and stdin is not None:
        found, errors = _documents(stdin, "<stdin>")
        docs += found
        findings += errors
    return findings + _check(docs), len(docs)
