"""The step graph of a pipeline: validation, topological order, ready steps and closures.

Pure functions over anything with an ``id`` and a ``depends_on`` list (``models.StepSpec``
or :class:`Node`).  An edge ``x -> y`` means "y depends on x": x runs before y.

The message templates here are the single source of the texts that the apiserver
(CEL ``messageExpression``), ``headwater validate`` and the operator report.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "CYCLE",
    "DUPLICATE_ID",
    "SELF_DEPENDENCY",
    "UNKNOWN_DEPENDENCY",
    "CycleError",
    "Node",
    "Problem",
    "StepLike",
    "cycle_message",
    "downstream_closure",
    "find_cycle",
    "ready_steps",
    "topological_order",
    "upstream_closure",
    "validate",
]

DUPLICATE_ID = "step id '{id}' is used by more than one step; step ids must be unique"
UNKNOWN_DEPENDENCY = "step '{id}' depends on unknown step '{dep}'; known steps: {known}"
SELF_DEPENDENCY = "step '{id}' depends on itself"
CYCLE = "dependency cycle: {path}"


class StepLike(Protocol):
    """What the graph functions need of a step."""

    @property
    def id(self) -> str: ...

    @property
    def depends_on(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Node:
    """A step reduced to its graph: its id and the ids it depends on."""

    id: str
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest: where (a field path) and what, in words for people."""

    path: str
    message: str
    reason: str = field(default="Invalid", compare=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class CycleError(ValueError):
    """The steps do not form a DAG; ``cycle`` is the path, first id repeated at the end."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(cycle_message(self.cycle))


def cycle_message(cycle: Sequence[str]) -> str:
    """``dependency cycle: a -> b -> c -> a`` (each step depends on the one before it)."""
    return CYCLE.format(path=" -> ".join(cycle))


def validate(steps: Sequence[StepLike], *, check_cycles: bool = True) -> list[Problem]:
    """Every problem of the step graph, in spec order; paths are relative to the pipeline spec.

    Duplicate ids, unknown dependencies and self-dependencies are also rejected at admission
    (CEL); a cycle can only be found here.
    """
    ids = [s.id for s in steps]
    known = set(ids)
    problems = [
        Problem(f"steps[{ids.index(dup, ids.index(dup) + 1)}].id", DUPLICATE_ID.format(id=dup), "Duplicate")
        for dup in dict.fromkeys(i for i in ids if ids.count(i) > 1)
    ]
    known_text = ", ".join(dict.fromkeys(ids))
    for index, step in enumerate(steps):
        for dep in step.depends_on:
            if dep not in known:
                message = UNKNOWN_DEPENDENCY.format(id=step.id, dep=dep, known=known_text)
                problems.append(Problem(f"steps[{index}].dependsOn", message, "NotFound"))
        if step.id in step.depends_on:
            problems.append(Problem(f"steps[{index}].dependsOn", SELF_DEPENDENCY.format(id=step.id)))
    if check_cycles:
        cycle = find_cycle(steps)
        if cycle is not None:
            problems.append(Problem("steps", cycle_message(cycle), "InvalidDAG"))
    return problems


def _dependencies(steps: Iterable[StepLike]) -> dict[str, list[str]]:
    """id -> known dependencies (self-edges and unknown ids dropped, duplicates merged)."""
    graph: dict[str, list[str]] = {}
    for step in steps:
        graph.setdefault(step.id, [])
    for step in steps:
        deps = graph[step.id]
        deps.extend(d for d in step.depends_on if d in graph and d != step.id and d not in deps)
    return graph


def _dependents(graph: dict[str, list[str]]) -> dict[str, list[str]]:
    """id -> the ids that depend on it directly, in spec order."""
    out: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            out[dep].append(node)
    return out


def find_cycle(steps: Sequence[StepLike]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, c, a]`` where each step depends on the one before.

    Deterministic (depth-first in spec order); self-dependencies and unknown ids are ignored
    because :func:`validate` reports them on their own.  ``None`` for a DAG.
    """
    graph = _dependents(_dependencies(steps))
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if state.get(root):
            continue
        path = [root]
        iterators = [iter(graph[root])]
        state[root] = 1
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iterators.append(iter(graph[nxt]))
    return None


def topological_order(steps: Sequence[StepLike]) -> list[str]:
    """Ids in an order where every step comes after its dependencies.

    Stable: among steps that could go next, the one listed first in the spec goes first.
    Raises :class:`CycleError` when there is a cycle (or a self-dependency).
    """
    for step in steps:
        if step.id in step.depends_on:
            raise CycleError([step.id, step.id])
    cycle = find_cycle(steps)
    if cycle is not None:
        raise CycleError(cycle)
    graph = _dependencies(steps)
    position = {node: i for i, node in enumerate(graph)}
    waiting = {node: len(deps) for node, deps in graph.items()}
    dependents = _dependents(graph)
    ready = sorted((n for n, count in waiting.items() if count == 0), key=position.__getitem__)
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in dependents[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
        ready.sort(key=position.__getitem__)
    return order


def ready_steps(
    steps: Sequence[StepLike], succeeded: Collection[str], started: Collection[str] = ()
) -> list[str]:
    """Steps that can start now, in spec order.

    ``succeeded``: steps that finished successfully; ``started``: every step that is running
    or has finished in any other way (failed, skipped, cancelled).  A step is ready when it is
    in neither and all of its dependencies succeeded.
    """
    return [
        s.id
        for s in steps
        if s.id not in succeeded
        and s.id not in started
        and all(dep in succeeded for dep in s.depends_on)
    ]


def _reachable(graph: dict[str, list[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph.get(start, ()))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return seen


def downstream_closure(steps: Sequence[StepLike], step_id: str, *, include_self: bool = False) -> set[str]:
    """Every step that depends on ``step_id``, directly or transitively (and the step if asked)."""
    found = _reachable(_dependents(_dependencies(steps)), step_id) - {step_id}
    return found | {step_id} if include_self else found


def upstream_closure(steps: Sequence[StepLike], step_id: str, *, include_self: bool = False) -> set[str]:
    """Every step ``step_id`` depends on, directly or transitively (and the step if asked)."""
    found = _reachable(_dependencies(steps), step_id) - {step_id}
    return found | {step_id} if include_self else found
