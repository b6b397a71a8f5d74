"""Data checks as pure verdicts: what a step reported about each output, against its bounds and baseline.

:func:`evaluate_step` turns a succeeded step's result (its termination message), the time it wrote and
the baselines read from the lineage store into one :class:`~headwater.spec.models.CheckResult` per
check; the planner publishes or blocks on them.  Nothing here reads the store or the cluster: the engine
hands in :class:`Baseline` values for the datasets :func:`baseline_requests` names.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from headwater.spec.models import (
    Check,
    CheckOutcome,
    CheckResult,
    CheckSeverity,
    OutputDataset,
    PipelineRunStatus,
    PipelineSpec,
    StepPhase,
    StepSpec,
)
from headwater.spec.text import clean
from headwater.spec.times import parse_time

__all__ = [
    "BASELINE_KINDS", "Baseline", "Observation", "baseline_requests", "blocking", "dataset_label", "describe",
    "evaluate", "evaluate_step", "failed_warnings", "observe", "schema_fingerprint", "split_label",
]

BASELINE_KINDS = frozenset({"change", "schemaUnchanged"})
"""Kinds that compare with earlier published versions (read from the lineage store)."""


@dataclass(frozen=True)
class Baseline:
    """Earlier published versions of a dataset: their row counts (newest first) and the latest one's schema."""

    rows: tuple[int, ...] = ()
    schema: str | None = None


@dataclass(frozen=True)
class Observation:
    """What the step reported about one output it wrote."""

    rows: int | None = None
    schema: str | None = None
    columns: tuple[str, ...] | None = None
    newest: datetime | None = None
    assertions: Mapping[str, int] | None = None


def dataset_label(output: OutputDataset) -> str:
    return f"{output.namespace}/{output.name}"


def split_label(label: str) -> tuple[str, str]:
    """``namespace/name`` back into its parts: the namespace is scheme://authority, without a '/' of its own."""
    start = label.index("://") + 3
    slash = label.index("/", start)
    return label[:slash], label[slash + 1:]


def schema_fingerprint(columns: list[str] | tuple[str, ...]) -> str:
    """A short stable digest of a column list (order matters: it is part of the table's shape)."""
    return hashlib.sha256(json.dumps(list(columns)).encode()).hexdigest()[:16]


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def observe(result: Mapping[str, Any] | None, output: OutputDataset, only_output: bool) -> Observation:
    """The output's values in a step result: ``outputs[<name>]`` (or ``outputs[<namespace/name>]``), and for a
    step with one output also the top level (``rowsAffected``, ``columns``, ``newestRecordAt``, ``checks``)."""
    result = result or {}
    per = result.get("outputs")
    own = (per.get(output.name) or per.get(dataset_label(output))) if isinstance(per, dict) else None
    block = {**(result if only_output else {}), **(own if isinstance(own, dict) else {})}
    rows = _count(block.get("rowCount", block.get("rowsAffected")))
    raw_columns = block.get("columns")
    columns = tuple(str(c) for c in raw_columns) if isinstance(raw_columns, list) else None
    schema = block.get("schemaFingerprint") if isinstance(block.get("schemaFingerprint"), str) else None
    if columns is not None:
        schema = schema_fingerprint(columns)
    newest = None
    if isinstance(block.get("newestRecordAt"), str):
        try:
            newest = parse_time(block["newestRecordAt"])
        except ValueError:
            newest = None
    raw = block.get("checks")
    assertions = {str(k): n for k, v in raw.items() if (n := _count(v)) is not None} if isinstance(raw, dict) \
        else None
    return Observation(rows, schema, columns, newest, assertions)


def _result(output: OutputDataset, check: Check, outcome: CheckOutcome, message: str,
            observed: str | None = None, baseline: str | None = None) -> CheckResult:
    return CheckResult(dataset=dataset_label(output), name=check.name, kind=check.kind, severity=check.severity,
                       outcome=outcome, observed=observed, baseline=baseline, message=clean(message, 1024))


def evaluate(output: OutputDataset, check: Check, seen: Observation, baseline: Baseline | None,
             written_at: datetime) -> CheckResult:
    """One check's verdict.  A value the step did not report fails the check (a check that cannot look
    never passes); a missing baseline (the first versions) skips it."""
    passed, failed, skipped = CheckOutcome.PASSED, CheckOutcome.FAILED, CheckOutcome.SKIPPED
    if check.row_count is not None:
        bounds = check.row_count
        if seen.rows is None:
            return _result(output, check, failed, "the step reported no row count for this output")
        wanted = f"between {bounds.min if bounds.min is not None else 0} and " \
                 f"{bounds.max if bounds.max is not None else 'any number of'} rows"
        ok = (bounds.min is None or seen.rows >= bounds.min) and (bounds.max is None or seen.rows <= bounds.max)
        return _result(output, check, passed if ok else failed, f"{seen.rows} rows; expected {wanted}",
                       f"{seen.rows} rows", wanted)
    if check.change is not None:
        return _change(output, check, seen, baseline)
    if check.schema_unchanged is not None:
        if not check.schema_unchanged:
            return _result(output, check, passed, "schemaUnchanged is false: nothing to check")
        if seen.schema is None:
            return _result(output, check, failed, "the step reported no columns for this output")
        shown = ", ".join(seen.columns) if seen.columns is not None else f"schema {seen.schema}"
        if baseline is None or baseline.schema is None:
            return _result(output, check, skipped, "no published version with columns to compare with yet",
                           shown[:256])
        same = seen.schema == baseline.schema
        return _result(output, check, passed if same else failed,
                       "columns as in the last published version" if same
                       else f"columns changed since the last published version: now {shown}",
                       shown[:256], f"schema {baseline.schema} of the last published version")
    if check.sql is not None:
        bad = (seen.assertions or {}).get(check.name)
        if bad is None:
            return _result(output, check, failed, "the step did not report this check's result")
        return _result(output, check, passed if bad == 0 else failed,
                       "the query returned no rows" if bad == 0 else f"the query returned {bad} row(s)",
                       f"{bad} row(s)", "0 rows")
    assert check.freshness is not None
    if seen.newest is None:
        return _result(output, check, failed, "the step reported no newestRecordAt for this output")
    age = written_at - seen.newest
    minutes = max(int(age.total_seconds() // 60), 0)
    ok = age <= check.freshness.max_age_delta
    return _result(output, check, passed if ok else failed,
                   f"the newest record was {minutes} min old when written (maxAge {check.freshness.max_age})",
                   f"newest record {minutes} min old", f"maxAge {check.freshness.max_age}")


def _change(output: OutputDataset, check: Check, seen: Observation, baseline: Baseline | None) -> CheckResult:
    change = check.change
    assert change is not None
    if seen.rows is None:
        return _result(output, check, CheckOutcome.FAILED, "the step reported no row count for this output")
    history = (baseline.rows if baseline else ())[: change.versions]
    if not history:
        return _result(output, check, CheckOutcome.SKIPPED, "no published version to compare with yet",
                       f"{seen.rows} rows")
    median = statistics.median(history)
    base = f"median {median:g} rows of the last {len(history)} published version(s)"
    if median == 0:
        grew = seen.rows > 0 and change.max_growth_percent is not None
        return _result(output, check, CheckOutcome.FAILED if grew else CheckOutcome.PASSED,
                       f"{seen.rows} rows against a baseline of 0", f"{seen.rows} rows", base)
    percent = (seen.rows - median) / median * 100
    direction = f"{abs(percent):.1f}% {'below' if percent < 0 else 'above'}"
    limits = []
    if change.max_drop_percent is not None:
        limits.append(f"max drop {change.max_drop_percent}%")
    if change.max_growth_percent is not None:
        limits.append(f"max growth {change.max_growth_percent}%")
    broke = (change.max_drop_percent is not None and -percent > change.max_drop_percent) or (
        change.max_growth_percent is not None and percent > change.max_growth_percent)
    return _result(output, check, CheckOutcome.FAILED if broke else CheckOutcome.PASSED,
                   f"{seen.rows} rows, {direction} the {base} ({', '.join(limits)})",
                   f"{seen.rows} rows ({direction})", base)


def evaluate_step(step: StepSpec, result: Mapping[str, Any] | None, written_at: datetime,
                  baselines: Mapping[str, Baseline]) -> list[CheckResult]:
    """Every check of every output of a step whose Job succeeded, in declaration order."""
    only = len(step.outputs) == 1
    out: list[CheckResult] = []
    for output in step.outputs:
        if not output.all_checks:
            continue
        seen = observe(result, output, only)
        for check in output.all_checks:
            out.append(evaluate(output, check, seen, baselines.get(dataset_label(output)), written_at))
    return out


def blocking(results: list[CheckResult]) -> CheckResult | None:
    """The first failed check of severity error: the step's outputs are not published."""
    return next((r for r in results if r.outcome == CheckOutcome.FAILED and r.severity == CheckSeverity.ERROR), None)


def failed_warnings(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.outcome == CheckOutcome.FAILED and r.severity == CheckSeverity.WARN]


def describe(result: CheckResult) -> str:
    """One line for people: the check, the dataset and the verdict with the observed value and the baseline."""
    verdict = {CheckOutcome.FAILED: "failed", CheckOutcome.PASSED: "passed", CheckOutcome.SKIPPED: "skipped"}
    return f"check {result.name} ({result.kind}, {result.severity.value}) on {result.dataset} " \
           f"{verdict[result.outcome]}: {result.message}"


def baseline_requests(pipeline: PipelineSpec, status: PipelineRunStatus,
                      succeeded: set[str]) -> list[str]:
    """Datasets whose baseline the planner will need now: outputs with change or schema checks of the steps
    whose Jobs just succeeded (``succeeded``) and whose status is not final yet."""
    final = {s.name for s in status.steps if s.phase.final and s.phase != StepPhase.PENDING}
    wanted: list[str] = []
    for step in pipeline.steps:
        if step.id not in succeeded or step.id in final:
            continue
        for output in step.outputs:
            if any(c.kind in BASELINE_KINDS for c in output.all_checks):
                wanted.append(dataset_label(output))
    return sorted(set(wanted))
