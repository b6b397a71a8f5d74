"""Root-cause view of a dataset: its upstream tree, each node scored by how likely it explains a problem.

Signals and their scores (a node's score is its strongest signal; see docs/lineage.md):

======================  =====================================================================
check_failed       110  a check of severity error failed on the latest write (not published)
producer_failed    100  the latest run of a step that writes the dataset failed
producer_skipped    90  ... was skipped or cancelled (often because something upstream failed)
row_count_drop   56-80  the latest write has ≥ 20 % fewer rows than the one before: 50 + 0.3 x drop %
schema_changed      40  the schema fingerprint differs from the previous write's
check_warned        60  a check of severity warn failed on the latest write
row_count_spike     30  the latest write has at least twice the rows of the one before
not_scheduled       25  no producing step has run within ``stale_after``: nothing ran it since
stale / never       20  the latest write is older than ``stale_after``, or a producer never wrote it
no_run_yet          20  a Ready Pipeline's step declares it and no run of it is recorded yet
======================  =====================================================================

A dataset is known from its writes and from the steps that declare it as an output (every recorded
run's snapshot), so a dataset never written is explained too: its producer's latest run says why
(failed with its error, skipped and because of what); when that run failed elsewhere, the failed
steps' declared outputs join the tree one level up, so the step at the origin and its error come first.
A Ready Pipeline's declared outputs are known before its first run (:mod:`headwater.lineage.declarations`):
such a dataset is explained by the step that declares it and has not run yet.

Nodes are ordered by score, then by the number of signals, then deepest first (the further
upstream, the closer to the origin of a problem that propagates down), then by name.  At most
``limit`` upstream datasets are scored, the nearest first (``truncated`` says when there were more),
and at most :data:`MAX_PRODUCERS` producing jobs per dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from headwater.lineage.queries import (
    DEFAULT_DEPTH,
    DEFAULT_LIMIT,
    LineageEdge,
    VersionInfo,
    check_depth,
    check_limit,
    resolve,
    subgraph,
)
from headwater.lineage.records import DatasetRef

__all__ = [
    "DEFAULT_STALE_AFTER", "DROP_THRESHOLD_PCT", "MAX_PRODUCERS", "ExplainNode", "Explanation", "NodeFacts", "Reason",
    "StepOutcome", "explain", "rank", "score",
]

Conn = psycopg.Connection[Any]
DEFAULT_STALE_AFTER: Final = timedelta(hours=24)
DROP_THRESHOLD_PCT: Final = 20.0
SPIKE_THRESHOLD_PCT: Final = 100.0
MAX_PRODUCERS: Final = 20
_PROBLEM_PHASES: Final = {"Failed": ("producer_failed", 100.0), "Skipped": ("producer_skipped", 90.0),
                          "Cancelled": ("producer_skipped", 90.0)}


@dataclass(frozen=True)
class Reason:
    code: str
    score: float
    message: str


@dataclass(frozen=True)
class StepOutcome:
    """The latest run of a step that writes a dataset."""

    pipeline: str
    step: str
    run_id: str
    phase: str
    error: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class NodeFacts:
    """What the store knows about one upstream dataset, before scoring."""

    dataset: DatasetRef
    depth: int
    latest: VersionInfo | None
    previous: VersionInfo | None
    run_phase: str | None
    producers: tuple[StepOutcome, ...]
    has_producer: bool
    failed_checks: tuple[tuple[str, str, str], ...] = ()
    """(name, severity, message) of the checks that failed on the latest write."""
    unrun: tuple[tuple[str, str], ...] = ()
    """(pipeline, step) that declare the dataset with no recorded run declaring it yet."""


@dataclass(frozen=True)
class ExplainNode:
    dataset: DatasetRef
    depth: int
    score: float
    reasons: tuple[Reason, ...]
    latest_version: VersionInfo | None
    producer_run_phase: str | None
    age_seconds: float | None
    row_count_change_pct: float | None
    schema_changed: bool
    failed_steps: tuple[StepOutcome, ...]


@dataclass(frozen=True)
class Explanation:
    dataset: DatasetRef
    generated_at: datetime
    depth: int
    nodes: tuple[ExplainNode, ...]
    edges: tuple[LineageEdge, ...]
    limit: int = DEFAULT_LIMIT
    truncated: bool = False


def _change_pct(latest: VersionInfo | None, previous: VersionInfo | None) -> float | None:
    if latest is None or previous is None or latest.row_count is None or not previous.row_count:
        return None
    return round((latest.row_count - previous.row_count) * 100.0 / previous.row_count, 2)


def _schema_changed(latest: VersionInfo | None, previous: VersionInfo | None) -> bool:
    if latest is None or previous is None:
        return False
    fingerprints = (latest.schema_fingerprint, previous.schema_fingerprint)
    return None not in fingerprints and fingerprints[0] != fingerprints[1]


def _check_reasons(facts: NodeFacts) -> list[Reason]:
    reasons = []
    run = facts.latest.run_id if facts.latest else "?"
    for name, severity, message in facts.failed_checks:
        if severity == "error":
            reasons.append(Reason("check_failed", 110.0,
                                  f"check {name} failed on the write of run {run}, which is not published: {message}"))
        else:
            reasons.append(Reason("check_warned", 60.0, f"check {name} (warn) failed on the write of run {run}: "
                                                        f"{message}"))
    return reasons


def _step_reasons(failed: Iterable[StepOutcome]) -> list[Reason]:
    reasons = []
    for outcome in failed:
        code, points = _PROBLEM_PHASES[outcome.phase]
        detail = f": {outcome.error}" if outcome.error else ""
        where = f"step {outcome.step} of {outcome.pipeline}"
        reasons.append(Reason(code, points, f"{where} is {outcome.phase} in run {outcome.run_id}{detail}"))
    return reasons


def _write_reasons(facts: NodeFacts, change: float | None, age: float | None,
                   stale_after: timedelta) -> list[Reason]:
    reasons = []
    if change is not None and change <= -DROP_THRESHOLD_PCT:
        drop = min(-change, 100.0)
        reasons.append(Reason("row_count_drop", round(50.0 + 0.3 * drop, 2),
                              f"{drop:g}% fewer rows than the previous write"))
    if change is not None and change >= SPIKE_THRESHOLD_PCT:
        reasons.append(Reason("row_count_spike", 30.0, f"{change:g}% more rows than the previous write"))
    if _schema_changed(facts.latest, facts.previous):
        reasons.append(Reason("schema_changed", 40.0, "schema differs from the previous write"))
    if age is not None and age > stale_after.total_seconds():
        reasons.append(Reason("stale", 20.0, f"last written {timedelta(seconds=int(age))} ago"))
    if facts.latest is None and facts.unrun:
        reasons.extend(Reason("no_run_yet", 20.0, f"declared by pipeline {pipeline} step {step}, never written: "
                                                  "no run yet") for pipeline, step in facts.unrun)
    elif facts.latest is None and facts.has_producer:
        reasons.append(Reason("never_written", 20.0, "a step writes it but no write was recorded"))
    return reasons


def _idle_reasons(facts: NodeFacts, now: datetime, stale_after: timedelta) -> list[Reason]:
    """Producers that have not run for ``stale_after``: the dataset is old because nothing ran it, not
    because a run failed (a suspended pipeline, a schedule removed, a step no longer selected)."""
    ran = [p for p in facts.producers if p.finished_at is not None]
    if not ran or len(ran) != len(facts.producers) or any(now - p.finished_at <= stale_after for p in ran
                                                          if p.finished_at is not None):
        return []
    last = max(ran, key=lambda p: p.finished_at or now)
    assert last.finished_at is not None
    idle = timedelta(seconds=int((now - last.finished_at).total_seconds()))
    return [Reason("not_scheduled", 25.0, f"step {last.step} of {last.pipeline} last ran in run {last.run_id}, "
                                          f"{idle} ago ({last.phase}); it has not been scheduled since")]


def score(facts: NodeFacts, now: datetime, stale_after: timedelta = DEFAULT_STALE_AFTER) -> ExplainNode:
    """Score one node (pure): its signals, strongest first, and the figures behind them."""
    change = _change_pct(facts.latest, facts.previous)
    age = (now - facts.latest.written_at).total_seconds() if facts.latest else None
    failed = tuple(p for p in facts.producers if p.phase in _PROBLEM_PHASES)
    reasons = sorted(_check_reasons(facts) + _step_reasons(failed) + _idle_reasons(facts, now, stale_after)
                     + _write_reasons(facts, change, age, stale_after), key=lambda r: -r.score)
    return ExplainNode(
        dataset=facts.dataset, depth=facts.depth, score=reasons[0].score if reasons else 0.0,
        reasons=tuple(reasons), latest_version=facts.latest, producer_run_phase=facts.run_phase,
        age_seconds=age, row_count_change_pct=change,
        schema_changed=_schema_changed(facts.latest, facts.previous), failed_steps=failed,
    )


def rank(nodes: Iterable[ExplainNode]) -> list[ExplainNode]:
    """Most likely cause first (see the module docstring)."""
    return sorted(nodes, key=lambda n: (-n.score, -len(n.reasons), -n.depth, n.dataset))


_VERSIONS = """
SELECT n.id, v.run_id, v.pipeline, v.step, v.written_at, v.row_count, v.schema_fingerprint, r.phase, r.namespace
FROM unnest(%s::bigint[]) AS n (id)
CROSS JOIN LATERAL (
    SELECT * FROM dataset_versions v WHERE v.dataset_id = n.id ORDER BY v.written_at DESC, v.id DESC LIMIT 2
) v
LEFT JOIN pipeline_runs r ON r.id = v.run_id
ORDER BY n.id, v.written_at DESC, v.id DESC
"""
_PRODUCER_JOBS = """
SELECT n.id, p.namespace, p.pipeline, p.step FROM unnest(%s::bigint[]) AS n (id)
CROSS JOIN LATERAL (
    SELECT DISTINCT j.namespace, j.pipeline, j.step FROM (
        SELECT e.job_id FROM lineage_edges e WHERE e.output_id = n.id
        UNION SELECT o.job_id FROM step_outputs o WHERE o.dataset_id = n.id
    ) x JOIN jobs j ON j.id = x.job_id ORDER BY 1, 2, 3 LIMIT %s
) p
"""
_FAILED_CHECKS = """
SELECT n.id, c.name, c.severity, c.message FROM unnest(%s::bigint[]) AS n (id)
CROSS JOIN LATERAL (
    SELECT v.id FROM dataset_versions v WHERE v.dataset_id = n.id ORDER BY v.written_at DESC, v.id DESC LIMIT 1
) v
JOIN check_results c ON c.version_id = v.id AND c.outcome = 'Failed'
ORDER BY n.id, c.severity, c.name
"""
_ORIGINS = """
SELECT DISTINCT o.dataset_id, d.namespace, d.name FROM step_runs s
JOIN pipeline_runs r ON r.id = s.run_id
JOIN jobs j ON j.namespace = r.namespace AND j.pipeline = s.pipeline AND j.step = s.step
JOIN step_outputs o ON o.job_id = j.id
JOIN datasets d ON d.id = o.dataset_id
WHERE s.run_id = ANY(%s) AND s.phase = 'Failed'
ORDER BY 1 LIMIT %s
"""
_UNRUN = """
SELECT n.id, p.pipeline, p.step FROM unnest(%s::bigint[]) AS n (id)
CROSS JOIN LATERAL (
    SELECT j.pipeline, j.step FROM step_outputs o JOIN jobs j ON j.id = o.job_id
    WHERE o.dataset_id = n.id AND o.last_run_id IS NULL ORDER BY 1, 2 LIMIT %s
) p
"""
_LATEST_STEP_RUNS = """
SELECT x.id, x.pipeline, x.step, s.run_id, s.phase, s.error, s.finished_at
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS x (id, namespace, pipeline, step)
JOIN LATERAL (
    SELECT s.* FROM step_runs s JOIN pipeline_runs r ON r.id = s.run_id
    WHERE s.pipeline = x.pipeline AND s.step = x.step AND r.namespace = x.namespace
    ORDER BY coalesce(s.started_at, s.created_at) DESC LIMIT 1
) s ON true
"""


Written = tuple[VersionInfo, str | None, str]
"""A version, the phase of the run that wrote it, and that run's Kubernetes namespace ("" when unknown)."""


def _versions(conn: Conn, ids: list[int]) -> dict[int, list[Written]]:
    out: dict[int, list[Written]] = {i: [] for i in ids}
    for node, *version, phase, namespace in conn.execute(_VERSIONS, (ids,)).fetchall():
        out[int(node)].append((VersionInfo(*version), phase, namespace or ""))
    return out


def _producers(conn: Conn, ids: list[int], versions: dict[int, list[Written]]
               ) -> tuple[dict[int, list[StepOutcome]], set[int]]:
    """The latest run of each step that writes each dataset: a step of a pipeline in the namespace of the job
    (a same-named pipeline in another namespace is another job)."""
    jobs = {(int(i), str(n), str(p), str(s))
            for i, n, p, s in conn.execute(_PRODUCER_JOBS, (ids, MAX_PRODUCERS)).fetchall()}
    with_edges = {i for i, _, _, _ in jobs}
    jobs |= {(i, v[0][2], v[0][0].pipeline, v[0][0].step) for i, v in versions.items() if v}
    ordered = sorted(jobs)
    rows = conn.execute(_LATEST_STEP_RUNS, tuple([j[k] for j in ordered] for k in range(4))).fetchall()
    out: dict[int, list[StepOutcome]] = {i: [] for i in ids}
    for node, *outcome in rows:
        out[int(node)].append(StepOutcome(*outcome))
    return out, with_edges


def explain(conn: Conn, name: str, *, namespace: str | None = None, depth: int = DEFAULT_DEPTH,
            now: datetime, stale_after: timedelta = DEFAULT_STALE_AFTER, limit: int = DEFAULT_LIMIT) -> Explanation:
    """The upstream tree of a dataset (itself at depth 0), most likely cause of a problem first."""
    check_depth(depth)
    check_limit(limit)
    root, ref = resolve(conn, name, namespace)
    graph, nodes = subgraph(conn, root, ref, "upstream", depth, limit)
    places = {node_id: (node.dataset, node.depth) for node_id, node in nodes.items()}
    ids = list(places)
    versions = _versions(conn, ids)
    producers, with_edges = _producers(conn, ids, versions)
    # a producer that did not write in its latest run: the steps that failed in that run are the origin
    unwritten = sorted({p.run_id for i in ids for p in producers[i] if p.phase in _PROBLEM_PHASES})
    if unwritten and len(places) < limit:
        for origin, origin_namespace, origin_name in conn.execute(
                _ORIGINS, (unwritten, limit - len(places))).fetchall():
            if int(origin) not in places:
                places[int(origin)] = (DatasetRef(origin_namespace, origin_name), 1)
        added = [i for i in places if i not in versions]
        if added:
            versions.update(_versions(conn, added))
            more, more_edges = _producers(conn, added, {i: versions[i] for i in added})
            producers.update(more)
            with_edges |= more_edges
    unrun: dict[int, list[tuple[str, str]]] = {}
    for node_id, pipeline, step in conn.execute(_UNRUN, (list(places), MAX_PRODUCERS)).fetchall():
        unrun.setdefault(int(node_id), []).append((str(pipeline), str(step)))
    checks: dict[int, list[tuple[str, str, str]]] = {}
    for node_id, check, severity, message in conn.execute(_FAILED_CHECKS, (list(places),)).fetchall():
        checks.setdefault(int(node_id), []).append((str(check), str(severity), str(message)))
    scored = []
    for node_id, (dataset, node_depth) in places.items():
        history: list[tuple[VersionInfo | None, str | None, str]] = [*versions[node_id], (None, None, ""),
                                                                     (None, None, "")]
        facts = NodeFacts(
            dataset=dataset, depth=node_depth, latest=history[0][0], previous=history[1][0],
            run_phase=history[0][1], producers=tuple(producers[node_id]), has_producer=node_id in with_edges,
            failed_checks=tuple(checks.get(node_id, ())), unrun=tuple(unrun.get(node_id, ())),
        )
        scored.append(score(facts, now, stale_after))
    return Explanation(graph.dataset, now, depth, tuple(rank(scored)), graph.edges, limit, graph.truncated)
