"""Datasets inferred from a sql step's SQL, and the warning when they disagree with the declared ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.lineage.sqllineage import infer, mismatches
from headwater.pipelines.status import pipeline_status
from headwater.spec.models import PipelineSpec
from manifests import step

pytestmark = pytest.mark.unit

WH = "postgres://warehouse"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
JOIN = ("INSERT INTO analytics.daily_revenue (day, net) SELECT o.day, sum(p.amount) FROM raw.orders o "
        "JOIN raw.payments p ON p.order_id = o.id GROUP BY 1")


def sql_step(sql: str, inputs: list[str], outputs: list[str], **extra: Any) -> dict[str, Any]:
    return step("t", type="sql", sql=sql, inputs=[{"namespace": WH, "name": n} for n in inputs],
                outputs=[{"namespace": WH, "name": n} for n in outputs], **extra)


def test_tables_and_column_lineage_are_inferred_from_the_sql() -> None:
    found = infer(JOIN)
    assert found.inputs == {"raw.orders", "raw.payments"}
    assert found.outputs == {"analytics.daily_revenue"}
    assert ("_1", ("raw.payments.amount",)) in found.columns or any(
        "raw.payments.amount" in sources for _, sources in found.columns)


def test_matching_declarations_raise_no_warning() -> None:
    spec = PipelineSpec.model_validate({"steps": [sql_step(JOIN, ["raw.orders", "raw.payments"],
                                                           ["analytics.daily_revenue"])]})
    assert mismatches(spec) == []
    status = pipeline_status(spec.model_dump(by_alias=True, exclude_none=True), None, 1, NOW)
    assert status is not None
    cond = next(c for c in status["conditions"] if c["type"] == "SqlLineageConsistent")
    assert cond["status"] == "True"


def test_an_undeclared_input_and_a_wrong_output_set_a_warning_condition_naming_the_step() -> None:
    spec = PipelineSpec.model_validate({"steps": [sql_step(JOIN, ["raw.orders"], ["analytics.revenue"])]})
    assert mismatches(spec) == ["step t: reads undeclared raw.payments; writes undeclared analytics.daily_revenue; "
                                "declares outputs its SQL does not write: analytics.revenue"]
    status = pipeline_status(spec.model_dump(by_alias=True, exclude_none=True), None, 1, NOW)
    assert status is not None
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["SqlLineageConsistent"]["status"] == "False"
    assert "raw.payments" in conditions["SqlLineageConsistent"]["message"]
    assert conditions["Ready"]["status"] == "True"  # a warning, not an error


def test_an_input_from_another_database_matches_its_foreign_table_by_name() -> None:
    sql = "INSERT INTO raw.orders SELECT * FROM production_public.orders"
    spec = PipelineSpec.model_validate({"steps": [step(
        "t", type="sql", sql=sql, inputs=[{"namespace": "postgres://production", "name": "public.orders"}],
        outputs=[{"namespace": WH, "name": "raw.orders"}])]})
    assert mismatches(spec) == []
