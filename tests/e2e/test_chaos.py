"""Chaos: concurrent runs while the operator is SIGKILLed, PostgreSQL is away and the kube-apiserver dies.

Driven by the cluster's state, not by the clock: each blow lands once the runs have got somewhere.
Every run must finish, no step may ever get a second Job, and every run must end up in the store.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest_e2e import OperatorProcess
from control_plane import ControlPlane
from headwater.lineage.store import LineageStore
from helpers import Cluster, throwaway_postgres, wait_for
from manifests import pipeline, run, step
from test_schedules_and_crashes import JobWatcher

pytestmark = pytest.mark.e2e

RUNS = 30
STEPS = 3
OUTAGE_SECONDS = 60


def phases(cluster: Cluster, namespace: str) -> Counter[str]:
    items = cluster.list("pipelineruns", namespace)
    return Counter((r.get("status") or {}).get("phase", "New") for r in items)


def finished(cluster: Cluster, namespace: str) -> int:
    counts = phases(cluster, namespace)
    return counts["Succeeded"] + counts["Failed"] + counts["Cancelled"]


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


def test_runs_survive_operator_kills_a_database_outage_and_an_apiserver_crash(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    control_plane = ControlPlane(cluster)
    if not control_plane.available():
        pytest.skip("needs the local kwok control plane (its kube-apiserver is killed)")
    names = [f"chaos-{i:02d}" for i in range(RUNS)]
    slow = {"annotations": {"headwater.dev/test-duration": "3s"}}
    with throwaway_postgres() as server:
        LineageStore.open(server.url).close()
        operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_DATABASE_URL=server.url,
                                   HEADWATER_RECORD_RESCAN_SECONDS="2")
        operator.start()
        try:
            with JobWatcher(cluster, namespace) as watcher:
                cluster.apply(pipeline("chaos", [step("a", podMetadata=slow), step("b", "a", podMetadata=slow),
                                                 step("c", "a", podMetadata=slow)],
                                       successfulRunsHistoryLimit=100, failedRunsHistoryLimit=100),
                              *[run(n, "chaos") for n in names], namespace=namespace)
                wait_for(lambda: len(watcher.uids) >= RUNS // 2, timeout=90, interval=0.5,
                         message="half the runs to have a Job")
                operator.kill()
                operator.start()
                wait_for(lambda: finished(cluster, namespace) >= 3, timeout=120, interval=0.5,
                         message="the first runs to finish")
                server.stop()
                outage = threading.Timer(OUTAGE_SECONDS, server.start)
                outage.start()
                try:
                    wait_for(lambda: len(watcher.uids) >= RUNS + RUNS // 2, timeout=90, interval=0.5,
                             message="more steps to start while the database is away")
                    control_plane.kill("kube-apiserver")
                    assert not control_plane.ready()
                    operator.kill()  # and the operator too, while the apiserver is down
                    control_plane.start("kube-apiserver")
                    wait_for(control_plane.ready, timeout=90, interval=0.5, message="the apiserver to be ready")
                    control_plane.heal()
                    operator.start()
                    wait_for(lambda: finished(cluster, namespace) == RUNS, timeout=180, interval=1,
                             message="every run to finish")
                finally:
                    outage.join(timeout=OUTAGE_SECONDS + 10)
                wait_for(lambda: all(conditions(r).get("Recorded") == "True"
                                     for r in cluster.list("pipelineruns", namespace)),
                         timeout=120, interval=1, message="every run to be recorded once the database is back")
        finally:
            operator.stop()
        assert operator.starts == 3
        assert_every_run_ran_once_and_is_recorded(cluster, namespace, names, watcher, server.url)


def assert_every_run_ran_once_and_is_recorded(cluster: Cluster, namespace: str, names: list[str],
                                              watcher: JobWatcher, url: str) -> None:
    runs = {r["metadata"]["name"]: r for r in cluster.list("pipelineruns", namespace)}
    assert sorted(runs) == names
    assert {r["status"]["phase"] for r in runs.values()} == {"Succeeded"}
    assert all(conditions(r).get("Settled") == "True" for r in runs.values())
    jobs = cluster.list("jobs", namespace)
    per_step = Counter((j["metadata"]["labels"]["headwater.dev/run"], j["metadata"]["labels"]["headwater.dev/step"])
                       for j in jobs)
    assert len(per_step) == RUNS * STEPS and set(per_step.values()) == {1}
    assert {name: uids for name, uids in watcher.uids.items() if len(uids) > 1} == {}
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT name, count(*) FROM pipeline_runs GROUP BY name").fetchall()
        steps = conn.execute("SELECT count(*) FROM step_runs").fetchone()
    assert sorted(stored) == [(n, 1) for n in names]
    assert steps == (RUNS * STEPS,)
