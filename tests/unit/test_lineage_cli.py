"""The lineage CLI renders the API's answers as trees people can read."""

from __future__ import annotations

import pytest

from headwater.cli.lineage import render_explain, render_graph

pytestmark = pytest.mark.unit


def ref(name: str, namespace: str = "postgres://warehouse") -> dict[str, str]:
    return {"namespace": namespace, "name": name}


def edge(src: str, dst: str, step: str, src_ns: str = "postgres://warehouse") -> dict[str, object]:
    return {"input": ref(src, src_ns), "output": ref(dst), "pipeline": "revenue", "step": step}


def test_upstream_renders_a_tree_naming_the_connecting_steps() -> None:
    graph = {"direction": "upstream", "dataset": ref("analytics.daily_revenue"), "edges": [
        edge("raw.orders", "analytics.daily_revenue", "transform"),
        edge("raw.payments", "analytics.daily_revenue", "transform"),
        edge("payments", "raw.payments", "extract-payments", "api://stripe")]}
    assert render_graph(graph).splitlines() == [
        "postgres://warehouse/analytics.daily_revenue",
        "├── postgres://warehouse/raw.orders  <- revenue/transform",
        "└── postgres://warehouse/raw.payments  <- revenue/transform",
        "    └── api://stripe/payments  <- revenue/extract-payments",
    ]


def test_a_cycle_is_marked_and_not_followed() -> None:
    graph = {"direction": "downstream", "dataset": ref("a"), "edges": [edge("a", "b", "s1"), edge("b", "a", "s2")]}
    assert render_graph(graph).splitlines()[-1].endswith("postgres://warehouse/a  -> revenue/s2 (cycle)")


def test_explain_lists_the_most_likely_cause_first_with_its_reasons() -> None:
    explanation = {"dataset": ref("analytics.business_metrics"), "nodes": [
        {"dataset": ref("raw.stripe_payments"), "depth": 2, "score": 0.8, "rowCountChangePct": -40.0,
         "latestVersion": {"pipeline": "revenue", "step": "extract-payments", "runId": "data/rev-2"},
         "producerRunPhase": "Succeeded", "reasons": [{"message": "row count fell 40% from the previous version"}]},
        {"dataset": ref("raw.orders"), "depth": 2, "score": 0.0, "reasons": []}]}
    lines = render_explain(explanation).splitlines()
    assert lines[1] == "1. postgres://warehouse/raw.stripe_payments  (score 0.80)"
    assert "rows -40.0% vs previous" in lines[2]
    assert lines[3] == "   - row count fell 40% from the previous version"
    assert len(lines) == 4


def test_a_truncated_answer_says_so_and_how_to_see_more() -> None:
    graph = {"direction": "upstream", "dataset": ref("a"), "edges": [edge("b", "a", "s")], "truncated": True,
             "limit": 1}
    assert render_graph(graph).splitlines()[-1] == (
        "(truncated: more than 1 datasets or edges; raise --limit, lower --depth, or page with -o json and the "
        "answer's nextCursor)")
    explanation = {"dataset": ref("a"), "nodes": [], "truncated": True, "limit": 5}
    assert "only the nearest 5 upstream datasets were looked at" in render_explain(explanation)
