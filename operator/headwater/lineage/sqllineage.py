"""Datasets read and written by a sql step, inferred from its SQL text with openlineage-sql.

Inference only knows table names (``schema.table``), not where the database is, so it is
compared with the declared datasets by name; a disagreement becomes a warning condition on
the Pipeline, never an error: the SQL parser does not understand every statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import openlineage_sql

from headwater.spec.models import PipelineSpec, StepSpec, StepType

__all__ = ["Inferred", "infer", "mismatches", "undeclared"]


@dataclass(frozen=True)
class Inferred:
    """What the parser found: tables read and written, and column lineage (output column -> input columns)."""

    inputs: frozenset[str]
    outputs: frozenset[str]
    columns: tuple[tuple[str, tuple[str, ...]], ...] = ()
    errors: tuple[str, ...] = field(default=(), compare=False)


@lru_cache(maxsize=512)
def infer(sql: str) -> Inferred:
    """Parse ``sql`` (PostgreSQL dialect); unparsable statements are reported in ``errors``."""
    meta = openlineage_sql.parse([sql], dialect="postgres")
    columns = tuple(
        (col.descendant.name, tuple(f"{src.origin.qualified_name}.{src.name}" if src.origin else src.name
                                    for src in col.lineage))
        for col in meta.column_lineage or [])
    errors = tuple(getattr(err, "message", str(err)) for err in meta.errors or [])
    return Inferred(frozenset(t.qualified_name for t in meta.in_tables),
                    frozenset(t.qualified_name for t in meta.out_tables), columns, errors)


def undeclared(step: StepSpec) -> tuple[frozenset[str], frozenset[str]]:
    """Tables the SQL of a sql step reads and writes that its declared datasets do not name.

    A table of another database is read through a foreign table whose local schema differs, so an
    input declared in another dataset namespace than the step's outputs matches by table name.
    """
    if step.type != StepType.SQL or not step.sql:
        return frozenset(), frozenset()
    found = infer(step.sql)
    home = {d.namespace for d in step.outputs}
    remote = {d.name.rsplit(".", 1)[-1] for d in step.inputs if home and d.namespace not in home}
    reads = {t for t in found.inputs - {d.name for d in step.inputs} if t.rsplit(".", 1)[-1] not in remote}
    return frozenset(reads), found.outputs - {d.name for d in step.outputs}


def _step_mismatch(step: StepSpec) -> str | None:
    reads, writes = undeclared(step)
    problems = []
    if reads:
        problems.append(f"reads undeclared {', '.join(sorted(reads))}")
    if writes:
        problems.append(f"writes undeclared {', '.join(sorted(writes))}")
    found = infer(step.sql) if step.type == StepType.SQL and step.sql else None
    missing = {d.name for d in step.outputs} - found.outputs if found and found.outputs else set()
    if missing:
        problems.append(f"declares outputs its SQL does not write: {', '.join(sorted(missing))}")
    return f"step {step.id}: {'; '.join(problems)}" if problems else None


def mismatches(spec: PipelineSpec) -> list[str]:
    """For each sql step whose SQL disagrees with its declared datasets, what differs."""
    return [m for step in spec.steps if (m := _step_mismatch(step))]
