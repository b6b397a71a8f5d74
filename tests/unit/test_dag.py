"""The step graph: validation with paths and messages, order, readiness, closures (with property tests)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from headwater.spec import dag
from headwater.spec.dag import CycleError, Node

pytestmark = pytest.mark.unit


def graph(*edges: str) -> list[Node]:
    """``graph("a", "b<a", "c<a,b")``: c depends on a and b."""
    nodes = []
    for text in edges:
        step_id, _, deps = text.partition("<")
        nodes.append(Node(step_id, tuple(d for d in deps.split(",") if d)))
    return nodes


REVENUE = graph(
    "extract-orders", "extract-payments", "transform<extract-orders,extract-payments", "aggregate<transform"
)


def test_a_valid_dag_has_no_problems() -> None:
    assert dag.validate(REVENUE) == []


def test_a_duplicate_id_is_reported_once_at_its_second_occurrence() -> None:
    problems = dag.validate(graph("a", "b", "a", "a"))
    assert [(p.path, p.message) for p in problems] == [
        ("steps[2].id", "step id 'a' is used by more than one step; step ids must be unique")
    ]


def test_an_unknown_dependency_names_the_step_the_dependency_and_the_known_steps() -> None:
    problems = dag.validate(graph("extract", "load", "transform<extrct"))
    assert [str(p) for p in problems] == [
        "steps[2].dependsOn: step 'transform' depends on unknown step 'extrct'; "
        "known steps: extract, load, transform"
    ]


def test_a_self_dependency_is_reported_as_such_and_not_as_a_cycle() -> None:
    problems = dag.validate(graph("a", "b<a,b"))
    assert [str(p) for p in problems] == ["steps[1].dependsOn: step 'b' depends on itself"]


def test_a_cycle_of_three_is_reported_with_its_path_and_reason_invalid_dag() -> None:
    problems = dag.validate(graph("a<c", "b<a", "c<b"))
    assert [(p.path, p.message, p.reason) for p in problems] == [
        ("steps", "dependency cycle: a -> b -> c -> a", "InvalidDAG")
    ]


def test_cycles_can_be_left_to_the_caller() -> None:
    assert dag.validate(graph("a<b", "b<a"), check_cycles=False) == []


def test_find_cycle_returns_none_for_a_dag() -> None:
    assert dag.find_cycle(REVENUE) is None


def test_topological_order_prefers_spec_order_among_ready_steps() -> None:
    steps = graph("z", "y<z", "x", "w<x,y")
    assert dag.topological_order(steps) == ["z", "y", "x", "w"]


def test_topological_order_of_a_cycle_raises_with_the_cycle() -> None:
    with pytest.raises(CycleError) as raised:
        dag.topological_order(graph("a<b", "b<a"))
    assert raised.value.cycle == ["a", "b", "a"]
    assert str(raised.value) == "dependency cycle: a -> b -> a"


def test_topological_order_treats_a_self_dependency_as_a_cycle() -> None:
    with pytest.raises(CycleError, match="a -> a"):
        dag.topological_order(graph("a<a"))


def test_ready_steps_start_with_the_roots() -> None:
    assert dag.ready_steps(REVENUE, succeeded=set()) == ["extract-orders", "extract-payments"]


def test_a_step_is_ready_only_when_every_dependency_succeeded() -> None:
    assert dag.ready_steps(REVENUE, succeeded={"extract-orders"}, started={"extract-payments"}) == []
    both = {"extract-orders", "extract-payments"}
    assert dag.ready_steps(REVENUE, succeeded=both) == ["transform"]


def test_started_or_finished_steps_are_never_ready_again() -> None:
    assert dag.ready_steps(REVENUE, succeeded=set(), started={"extract-orders"}) == ["extract-payments"]
    assert dag.ready_steps(REVENUE, succeeded={"extract-orders", "extract-payments"},
                           started={"transform"}) == []


def test_downstream_closure_is_transitive() -> None:
    assert dag.downstream_closure(REVENUE, "extract-orders") == {"transform", "aggregate"}
    assert dag.downstream_closure(REVENUE, "aggregate") == set()
    assert dag.downstream_closure(REVENUE, "transform", include_self=True) == {"transform", "aggregate"}


def test_upstream_closure_is_transitive() -> None:
    assert dag.upstream_closure(REVENUE, "aggregate") == {"transform", "extract-orders", "extract-payments"}
    assert dag.upstream_closure(REVENUE, "extract-orders", include_self=True) == {"extract-orders"}


# --- properties over random DAGs -------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_size: int = 30) -> list[Node]:
    """A random DAG (edges only point to lower-numbered steps), listed in a random order."""
    size = draw(st.integers(min_value=2, max_value=max_size))
    ids = [f"s{i}" for i in range(size)]
    deps: list[list[int]] = [[]]
    deps += [sorted(draw(st.sets(st.integers(0, i - 1), max_size=4))) for i in range(1, size)]
    deps[1] = sorted({0, *deps[1]})  # at least one edge
    order = draw(st.permutations(range(size)))
    return [Node(ids[i], tuple(ids[j] for j in deps[i])) for i in order]


@given(dags())
def test_topological_order_respects_every_edge(steps: list[Node]) -> None:
    order = dag.topological_order(steps)
    position = {step_id: i for i, step_id in enumerate(order)}
    assert sorted(order) == sorted(s.id for s in steps)
    assert all(position[dep] < position[s.id] for s in steps for dep in s.depends_on)


@given(dags())
def test_topological_order_is_deterministic(steps: list[Node]) -> None:
    assert dag.topological_order(steps) == dag.topological_order(list(steps))


@given(dags())
def test_random_dags_are_valid_and_acyclic(steps: list[Node]) -> None:
    assert dag.validate(steps) == []
    assert dag.find_cycle(steps) is None


@given(dags())
def test_downstream_and_upstream_closures_mirror_each_other(steps: list[Node]) -> None:
    ids = [s.id for s in steps]
    down = {x: dag.downstream_closure(steps, x) for x in ids}
    up = {x: dag.upstream_closure(steps, x) for x in ids}
    for x in ids:
        assert down[x] == {y for y in ids if x in up[y]}
        assert x not in down[x]
        assert all(down[y] <= down[x] for y in down[x]), "downstream closure must be transitive"
        direct = {s.id for s in steps if x in s.depends_on}
        assert direct <= down[x]


@given(dags())
def test_walking_the_topological_order_makes_each_next_step_ready(steps: list[Node]) -> None:
    order = dag.topological_order(steps)
    for i, step_id in enumerate(order):
        succeeded = set(order[:i])
        ready = dag.ready_steps(steps, succeeded=succeeded)
        assert step_id in ready
        by_id = {s.id: s for s in steps}
        assert all(set(by_id[r].depends_on) <= succeeded for r in ready)


@given(dags(), st.data())
def test_a_back_edge_always_yields_a_real_cycle(steps: list[Node], data: st.DataObject) -> None:
    with_upstream = [s.id for s in steps if dag.upstream_closure(steps, s.id)]
    assume(with_upstream)
    target = data.draw(st.sampled_from(with_upstream))
    source = data.draw(st.sampled_from(sorted(dag.upstream_closure(steps, target))))
    cyclic = [Node(s.id, (*s.depends_on, target)) if s.id == source else s for s in steps]

    cycle = dag.find_cycle(cyclic)

    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1 >= 2
    deps = {s.id: set(s.depends_on) for s in cyclic}
    assert all(before in deps[after] for before, after in itertools.pairwise(cycle))
    assert [p.reason for p in dag.validate(cyclic)] == ["InvalidDAG"]
