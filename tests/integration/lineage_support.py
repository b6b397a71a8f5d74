"""Helpers of the lineage tests (no tests here): a fresh database per test and the revenue example."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.conninfo import conninfo_to_dict

from headwater.lineage import (
    DatasetRef,
    DatasetVersionRecord,
    EdgeRecord,
    LineageStore,
    Record,
    RunRecord,
    StepRecord,
)
from headwater.lineage.migrations import MIGRATIONS

WAREHOUSE = "postgres://warehouse"


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url)["dbname"])


def wh(name: str) -> DatasetRef:
    """A dataset of the warehouse."""
    return DatasetRef(WAREHOUSE, name)


ORDERS_SOURCE = DatasetRef("postgres://production", "public.orders")
STRIPE_SOURCE = DatasetRef("api://stripe", "payments")


@dataclass(frozen=True)
class Step:
    pipeline: str
    step: str
    inputs: tuple[DatasetRef, ...]
    output: DatasetRef
    depends_on: tuple[str, ...] = ()


REVENUE_STEPS = (
    Step("revenue-pipeline", "extract-orders", (ORDERS_SOURCE,), wh("raw.orders")),
    Step("revenue-pipeline", "extract-payments", (STRIPE_SOURCE,), wh("raw.stripe_payments")),
    Step("revenue-pipeline", "transform-revenue", (wh("raw.orders"), wh("raw.stripe_payments")),
         wh("analytics.daily_revenue"), ("extract-orders", "extract-payments")),
    Step("revenue-pipeline", "aggregate-metrics", (wh("analytics.daily_revenue"),),
         wh("analytics.business_metrics"), ("transform-revenue",)),
)
REPORTING_STEPS = (
    Step("revenue-reporting", "build-dashboard", (wh("analytics.daily_revenue"),),
         wh("reporting.revenue_dashboard")),
)
BASE_ROWS = {"extract-orders": 5000, "extract-payments": 1000, "transform-revenue": 30,
             "aggregate-metrics": 12, "build-dashboard": 30}


def _step_records(run_id: str, step: Step, phase: str, at: datetime, rows: int | None) -> list[Record]:
    done = at + timedelta(minutes=1)
    records: list[Record] = [StepRecord(run_id, step.pipeline, step.step, phase, attempts=1, started_at=at,
                                        finished_at=done, rows_affected=rows,
                                        error="exit code 1" if phase == "Failed" else None)]
    if phase == "Succeeded":
        records.append(EdgeRecord(run_id, step.pipeline, step.step, step.inputs, (step.output,),
                                  seen_at=done, namespace="data"))
        records.append(DatasetVersionRecord(step.output, run_id, step.pipeline, step.step, done, rows))
    return records


def pipeline_run_records(
    run_id: str, steps: tuple[Step, ...], at: datetime, rows: Mapping[str, int] | None = None,
    failed: frozenset[str] = frozenset(),
) -> list[Record]:
    """Records of one run of ``steps``: the ``failed`` ones fail and everything after them is skipped."""
    counts = {**BASE_ROWS, **(rows or {})}
    records: list[Record] = [RunRecord(run_id, steps[0].pipeline, "data", "Running", trigger="schedule",
                                       started_at=at)]
    broken: set[str] = set()
    for offset, step in enumerate(steps):
        skipped = any(dep in broken for dep in step.depends_on)
        phase = "Skipped" if skipped else "Failed" if step.step in failed else "Succeeded"
        if phase != "Succeeded":
            broken.add(step.step)
        written = counts[step.step] if phase == "Succeeded" else None
        records += _step_records(run_id, step, phase, at + timedelta(minutes=offset), written)
    final = "Failed" if broken else "Succeeded"
    records.append(RunRecord(run_id, steps[0].pipeline, "data", final, trigger="schedule", started_at=at,
                             finished_at=at + timedelta(minutes=len(steps) + 1)))
    return records


def record_revenue_day(
    store: LineageStore, day: datetime, rows: Mapping[str, int] | None = None,
    failed: frozenset[str] = frozenset(),
) -> str:
    """One daily run of both pipelines of the use case; returns the revenue run's id."""
    run_id = f"data/revenue-{day:%Y%m%d-%H%M}"
    store.record(*pipeline_run_records(run_id, REVENUE_STEPS, day, rows, failed))
    store.record(*pipeline_run_records(f"data/reporting-{day:%Y%m%d-%H%M}", REPORTING_STEPS,
                                       day + timedelta(minutes=30), rows))
    return run_id


def store_at_version(url: str, version: int) -> None:
    """Give the empty database at ``url`` the schema as it was at ``version`` (what an older Headwater left)."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for migration in MIGRATIONS[:version]:
            conn.execute(migration.sql.encode())
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
