"""The package's layers, checked over its import graph (docs/architecture.md shows the same map).

Layers, lowest first: ``spec`` < ``adapters`` < the domains (``runs``, ``pipelines``, ``sla``, ``lineage``,
``steps``) < ``controller`` < ``cli``.  A module imports only its own layer or lower ones; a domain
reaches into another domain only through that domain's pure modules; a pure module imports only pure
modules and no library that does I/O.  Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.unit

PACKAGE = ROOT / "operator" / "headwater"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"spec"}),
    frozenset({"adapters"}),
    frozenset({"runs", "pipelines", "sla", "lineage", "steps"}),
    frozenset({"controller"}),
    frozenset({"cli"}),
)
DOMAINS = LAYERS[2]

PURE: frozenset[str] = frozenset({
    "headwater",
    "headwater.spec", "headwater.spec.constants", "headwater.spec.models", "headwater.spec.podspec",
    "headwater.spec.rules", "headwater.spec.parsing", "headwater.spec.dag", "headwater.spec.validation",
    "headwater.spec.crdgen", "headwater.spec.conditions", "headwater.spec.times", "headwater.spec.names",
    "headwater.spec.redaction", "headwater.spec.text", "headwater.spec.shards",
    "headwater.adapters.http_verdicts",
    "headwater.runs", "headwater.runs.planning", "headwater.runs.jobs", "headwater.runs.history",
    "headwater.runs.settling", "headwater.runs.checks",
    "headwater.pipelines", "headwater.pipelines.status", "headwater.pipelines.scheduling",
    "headwater.pipelines.triggering", "headwater.pipelines.backfilling",
    "headwater.sla", "headwater.sla.freshness", "headwater.sla.alerts", "headwater.sla.evaluation",
    "headwater.sla.incidents", "headwater.sla.exporting",
    "headwater.sla.board",
    "headwater.lineage", "headwater.lineage.records", "headwater.lineage.openlineage",
    "headwater.lineage.validation", "headwater.lineage.sqllineage", "headwater.lineage.emitting",
    "headwater.lineage.run_records", "headwater.lineage.declarations",
    "headwater.controller.leases",
})
"""Modules that decide without doing I/O: no network, database, threads or clock of their own."""

IO_LIBRARIES = frozenset({
    "kubernetes", "kopf", "psycopg", "psycopg_pool", "aiohttp", "prometheus_client", "threading", "socket",
    "subprocess", "urllib.request", "http.client", "asyncio", "queue", "requests",
})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, by absolute name (``from x import y`` counts x.y when y is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = imports_of(path)
        graph[name] = {t for t in targets if t in modules} | {t for t in targets if not t.startswith("headwater")}
    return graph


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _layer(room: str | None) -> int:
    return next((i for i, rooms in enumerate(LAYERS) if room in rooms), -1)


def _is_io_library(name: str) -> bool:
    return any(name == lib or name.startswith(lib + ".") for lib in IO_LIBRARIES)


def violations(graph: Mapping[str, Iterable[str]], pure: frozenset[str] = PURE) -> list[str]:
    """Every import that breaks a rule of the module docstring, as ``importer -> imported: why``."""
    found = []
    for importer, targets in sorted(graph.items()):
        room = _room(importer)
        for target in sorted(targets):
            if not target.startswith("headwater"):
                if importer in pure and _is_io_library(target):
                    found.append(f"{importer} -> {target}: a pure module uses an I/O library")
                continue
            other = _room(target)
            if other is None or other == room:
                if importer in pure and target not in pure:
                    found.append(f"{importer} -> {target}: a pure module imports an I/O module")
                continue
            if _layer(other) > _layer(room):
                found.append(f"{importer} -> {target}: {room} is below {other}")
            elif importer in pure and target not in pure:
                found.append(f"{importer} -> {target}: a pure module imports an I/O module")
            elif room in DOMAINS and other in DOMAINS and target not in pure:
                found.append(f"{importer} -> {target}: another domain is reached only through its pure modules")
    return found


def test_every_module_belongs_to_a_layer() -> None:
    rooms = {_room(m) for m in import_graph()} - {None}
    assert rooms <= set().union(*LAYERS), f"packages missing from LAYERS: {rooms - set().union(*LAYERS)}"


def test_every_pure_module_exists() -> None:
    assert set(import_graph()) >= PURE


def test_the_package_keeps_its_layers() -> None:
    assert violations(import_graph()) == []


@pytest.mark.parametrize(("graph", "expected"), [
    ({"headwater.runs.planning": ["headwater.runs.engine"]},
     "headwater.runs.planning -> headwater.runs.engine: a pure module imports an I/O module"),
    ({"headwater.runs.planning": ["headwater.adapters.kube"]},
     "headwater.runs.planning -> headwater.adapters.kube: a pure module imports an I/O module"),
    ({"headwater.spec.models": ["psycopg"]}, "headwater.spec.models -> psycopg: a pure module uses an I/O library"),
    ({"headwater.runs.planning": ["urllib.request"]},
     "headwater.runs.planning -> urllib.request: a pure module uses an I/O library"),
    ({"headwater.spec.dag": ["headwater.runs.jobs"]}, "headwater.spec.dag -> headwater.runs.jobs: spec is below runs"),
    ({"headwater.runs.engine": ["headwater.controller.config"]},
     "headwater.runs.engine -> headwater.controller.config: runs is below controller"),
    ({"headwater.runs.engine": ["headwater.lineage.recorder"]},
     "headwater.runs.engine -> headwater.lineage.recorder: another domain is reached only through its pure modules"),
])
def test_the_check_names_each_broken_rule(graph: dict[str, list[str]], expected: str) -> None:
    assert violations(graph) == [expected]


@pytest.mark.parametrize("graph", [
    {"headwater.runs.engine": ["headwater.runs.planning", "headwater.adapters.kube", "kubernetes"]},
    {"headwater.runs.engine": ["headwater.lineage.run_records", "headwater.spec.models"]},
    {"headwater.controller.runtime": ["headwater.lineage.recorder", "headwater.runs.engine"]},
    {"headwater.cli.main": ["headwater.controller.main"]},
    {"headwater.spec.models": ["pydantic", "datetime"]},
])
def test_the_check_allows_what_the_layers_allow(graph: dict[str, list[str]]) -> None:
    assert violations(graph) == []
