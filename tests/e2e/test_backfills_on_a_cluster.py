"""Backfills on the local control plane: every slot of the range runs once, in order, at most maxConcurrent at
once, while the Pipeline's own schedule keeps firing on time."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, release
from helpers import Cluster, wait_for
from manifests import HOLD_LABEL, held_pods, pipeline, step

pytestmark = pytest.mark.e2e

SCHEDULED = "headwater.dev/trigger=schedule"


def headwater(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "headwater"), *args], capture_output=True, text=True,
                          check=True, timeout=60, env={**os.environ, "KUBECONFIG": cluster.kubeconfig})


def runs(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return cluster.list("pipelineruns", namespace, selector)


def unfinished(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in items if (r.get("status") or {}).get("phase") not in ("Succeeded", "Failed", "Cancelled")]


def created(obj: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


@pytest.mark.timeout(900)
def test_a_thirty_slot_backfill_with_three_at_once_runs_every_slot_once_in_order_while_the_schedule_fires_on_time(
        cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    # Every attempt is held until released: the test decides when each run ends, so the backfill is still
    # going when a scheduled slot comes, however fast the machine is.
    cluster.apply(pipeline("revenue", [step("load", podMetadata=held_pods())], schedule="* * * * *",
                           concurrencyPolicy="Allow", successfulRunsHistoryLimit=100), namespace=namespace)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(minutes=40), now - timedelta(minutes=11)
    common = ["revenue", "--from", start.isoformat(), "--to", end.isoformat(), "--max-concurrent", "3",
              "--name", "bf", "-n", namespace]
    listed = headwater(cluster, "backfill", *common, "--dry-run").stdout.splitlines()
    expected = [f"bf-{start + timedelta(minutes=i):%Y%m%d%H%M}" for i in range(30)]
    assert [line.split()[1] for line in listed[:-1]] == expected and "30 slot(s)" in listed[-1]
    assert runs(cluster, namespace, "headwater.dev/backfill=bf") == []  # the dry run created nothing
    headwater(cluster, "backfill", *common)
    began = datetime.now(UTC)
    released: list[str] = []
    waited_for_a_slot = False
    while len(released) < 30:
        mine = runs(cluster, namespace, "headwater.dev/backfill=bf")
        assert len(unfinished(mine)) <= 3
        if len(released) == 15 and not waited_for_a_slot:  # a scheduled slot passes while the backfill runs
            wait_for(lambda: any(created(r) > began for r in runs(cluster, namespace, SCHEDULED)),
                     timeout=90, message="a scheduled run during the backfill")
            waited_for_a_slot = True

        def next_held() -> str | None:
            pods = cluster.list("pods", namespace, f"{HOLD_LABEL}=true")
            ours = sorted((p["metadata"]["labels"].get("headwater.dev/run", ""), p["metadata"]["name"]) for p in pods
                          if p["metadata"]["labels"].get("headwater.dev/run", "").startswith("bf-")
                          and not p["metadata"].get("deletionTimestamp"))
            return ours[0][1] if ours else None
        pod = wait_for(next_held, timeout=120, interval=0.3, message="the next held pod of the backfill")
        release(cluster, namespace, pod)
        released.append(pod)

    def finished() -> dict[str, Any] | None:
        status = cluster.get("backfill", "bf", namespace).get("status") or {}
        return status if status.get("phase") == "Succeeded" else None
    status = wait_for(finished, timeout=180, message="the backfill to succeed")
    assert (status["progress"], status["succeeded"], status["failed"]) == ("30/30", 30, 0)
    mine = runs(cluster, namespace, "headwater.dev/backfill=bf")
    assert sorted(r["metadata"]["name"] for r in mine) == expected  # every slot once
    by_slot = sorted(mine, key=lambda r: r["spec"]["scheduledFor"])
    assert [created(r) for r in by_slot] == sorted(created(r) for r in by_slot)  # created in slot order
    assert [r["status"]["logicalTime"] for r in by_slot] == [r["spec"]["scheduledFor"] for r in by_slot]
    scheduled = [r for r in runs(cluster, namespace, SCHEDULED) if created(r) > began]
    assert scheduled, "no scheduled slot came during the backfill"
    late = {r["metadata"]["name"]: (created(r) - datetime.fromisoformat(r["spec"]["scheduledFor"].replace(
        "Z", "+00:00"))).total_seconds() for r in scheduled}
    assert all(seconds < 15 for seconds in late.values()), late
