"""Cron schedules and crash safety of the operator on the real control plane."""

from __future__ import annotations

import random
import re
import threading
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, wait_run
from helpers import Cluster, wait_for
from manifests import held_pods, pipeline, run, step

pytestmark = pytest.mark.e2e


def runs_of(cluster: Cluster, namespace: str, pipeline_name: str) -> list[dict[str, Any]]:
    return cluster.list("pipelineruns", namespace, f"headwater.dev/pipeline={pipeline_name}")


def events_with_reason(cluster: Cluster, namespace: str, reason: str) -> list[str]:
    out = cluster.kubectl("-n", namespace, "get", "events", "--field-selector", f"reason={reason}",
                          "-o", "jsonpath={range .items[*]}{.message}{'\\n'}{end}").stdout
    return [line for line in out.splitlines() if line]


def test_a_cron_pipeline_runs_on_schedule_forbids_overlap_and_never_runs_a_slot_twice(
        cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    # the tick is held: the first run is still running at every later slot, however slow the restart
    cluster.apply(pipeline("every-minute", [step("tick", podMetadata=held_pods())], schedule="* * * * *",
                           concurrencyPolicy="Forbid"), namespace=namespace)
    first = wait_for(lambda: runs_of(cluster, namespace, "every-minute"), timeout=180, interval=0.5,
                     message="the first scheduled run")
    assert len(first) == 1
    name = first[0]["metadata"]["name"]
    assert first[0]["spec"]["trigger"] == "schedule"
    operator.kill()  # right after the slot was handled
    operator.start()

    def later_slots_skipped() -> list[str]:
        # a kill between creating the run and recording its slot may also skip that same slot: not the point here
        slots = [m.group(1) for e in events_with_reason(cluster, namespace, "SkippedSchedule")
                 if (m := re.search(r"slot (\S+) skipped", e))]
        return [slot for slot in slots if slot > first[0]["spec"]["scheduledFor"]]

    wait_for(later_slots_skipped, timeout=240, interval=1,
             message="a later slot to be skipped while the first run is still running")
    runs = runs_of(cluster, namespace, "every-minute")
    assert [r["metadata"]["name"] for r in runs] == [name]
    assert cluster.get("pipelinerun", name, namespace)["status"]["phase"] == "Running"


class JobWatcher:
    """Polls the namespace's Jobs in the background and remembers every uid seen per Job name."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.uids: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> JobWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _poll(self) -> None:
        while not self._stop.wait(0.3):
            proc = self.cluster.kubectl("-n", self.namespace, "get", "jobs", "-o",
                                        "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid}{'\\n'}{end}",
                                        check=False)
            for line in proc.stdout.splitlines():
                job, uid = line.split()
                self.uids.setdefault(job, set()).add(uid)


@pytest.mark.timeout(1200)  # 96 Jobs and 7 operator starts: minutes on a loaded 2-core machine
def test_sigkill_at_random_moments_during_concurrent_runs_loses_nothing_and_never_doubles_a_job(
        cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    seed = random.randrange(1_000_000)
    print(f"random seed: {seed}")
    rng = random.Random(seed)
    runs = [f"crash-{i:02d}" for i in range(24)]
    cluster.apply(pipeline("crash", [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")],
                           successfulRunsHistoryLimit=100),
                  namespace=namespace)
    with JobWatcher(cluster, namespace) as watcher:
        cluster.apply(*[run(name, "crash") for name in runs], namespace=namespace)
        for _ in range(6):
            crash_after = rng.uniform(0.5, 4.0)
            _pause(crash_after)
            operator.kill()
            _pause(rng.uniform(0.0, 1.5))
            operator.start()
        finished = [wait_run(cluster, namespace, name, timeout=900) for name in runs]
    assert [r["status"]["phase"] for r in finished] == ["Succeeded"] * len(runs)
    assert all(r["status"]["progress"] == "4/4" for r in finished)
    jobs = cluster.list("jobs", namespace)
    assert len(jobs) == 4 * len(runs)
    assert all(j["status"].get("succeeded") == 1 for j in jobs)
    doubled = {name: uids for name, uids in watcher.uids.items() if len(uids) > 1}
    assert doubled == {}
    assert operator.starts == 7


def _pause(seconds: float) -> None:
    """Let the operator work for a while (this is the load under test, not a wait for a condition)."""
    stop = threading.Event()
    stop.wait(seconds)
