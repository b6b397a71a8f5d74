"""Two operator replicas with leader election, and two shards, on the real control plane."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, free_port, scrape, wait_run
from headwater.spec.shards import shard_of
from helpers import Cluster, wait_for
from manifests import pipeline, run, step
from test_schedules_and_crashes import JobWatcher, runs_of

pytestmark = pytest.mark.e2e

LEASE = "headwater-operator"
CREATED_JOB = re.compile(r"Created Job (\S+)/(\S+)")


def lease_holder(cluster: Cluster, namespace: str, name: str = LEASE) -> str | None:
    lease = cluster.get("lease", name, namespace)
    holder: str | None = lease["spec"].get("holderIdentity")
    return holder


def replica(cluster: Cluster, namespace: str, log: Path, identity: str, **settings: str) -> OperatorProcess:
    """One replica of the operator: leader election on, its Lease in the test's namespace."""
    return OperatorProcess(cluster, namespace, log, HEADWATER_LEADER_ELECTION="true",
                           HEADWATER_LEASE_NAMESPACE=namespace, HEADWATER_LEADER_IDENTITY=identity,
                           HEADWATER_METRICS_PORT=str(free_port()), **settings)


def leader_gauge(proc: OperatorProcess) -> float | None:
    return scrape(int(proc.env["HEADWATER_METRICS_PORT"])).get("headwater_leader")


@pytest.fixture
def replicas(cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
             ) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    a = replica(cluster, namespace, tmp_path / "a.log", "replica-a")
    b = replica(cluster, namespace, tmp_path / "b.log", "replica-b")
    yield a, b
    for proc in (a, b):
        proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in (a, b):
            print(f"--- {proc.log_path} ---\n{proc.logs()[-15000:]}")


def created_jobs(*procs: OperatorProcess) -> Counter[str]:
    """How often each Job was created, by the operators' own account (their logs)."""
    return Counter(f"{m.group(1)}/{m.group(2)}" for proc in procs for m in CREATED_JOB.finditer(proc.logs()))


def _until_seconds_before_a_minute(seconds: float) -> None:
    """Wait for the wall clock to be ``seconds`` before the next minute (cron's slots are minutes)."""
    now = datetime.now(UTC)
    left = 60 - now.second - now.microsecond / 1e6
    threading.Event().wait((left - seconds) % 60)


@pytest.mark.timeout(900)
def test_the_standby_takes_over_from_a_killed_leader_with_no_lost_or_doubled_job_or_cron_slot(
        cluster: Cluster, namespace: str, replicas: tuple[OperatorProcess, OperatorProcess]) -> None:
    a, b = replicas
    a.start()
    wait_for(lambda: lease_holder(cluster, namespace) == "replica-a", timeout=120, message="replica-a to lead")
    b.start()
    wait_for(lambda: leader_gauge(b) == 0, timeout=120, message="replica-b to stand by, serving /metrics")
    assert leader_gauge(a) == 1
    assert "Created Job" not in b.logs()

    runs = [f"ha-{i:02d}" for i in range(30)]
    cluster.apply(pipeline("ha", [step("a"), step("b", "a"), step("c", "b")], successfulRunsHistoryLimit=100),
                  # Allow: every slot gets its run, however long the last one takes on a loaded machine
                  pipeline("tick", [step("tick")], schedule="* * * * *", concurrencyPolicy="Allow",
                           successfulRunsHistoryLimit=100),
                  namespace=namespace)
    first = wait_for(lambda: runs_of(cluster, namespace, "tick"), timeout=150, interval=0.5,
                     message="the first scheduled run")
    with JobWatcher(cluster, namespace) as watcher:
        # kill the leader 5 s before a minute: the next cron slot falls due while nobody leads
        _until_seconds_before_a_minute(8)
        cluster.apply(*[run(name, "ha") for name in runs], namespace=namespace)
        wait_for(lambda: sum(1 for job in created_jobs(a) if "/ha-" in job) >= 5, timeout=60,
                 message="the leader to start the runs")
        a.kill()
        killed, killed_at = time.monotonic(), datetime.now(UTC)
        gap_slot = (killed_at + timedelta(seconds=30)).replace(second=0, microsecond=0)
        # nobody writes run status now: what is unfinished was in flight at the kill
        in_flight = sum(1 for r in cluster.list("pipelineruns", namespace) if r["metadata"]["name"] in runs
                        and (r.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
        print(f"leader killed at {killed_at:%H:%M:%S.%f}, the slot {gap_slot:%H:%M} is "
              f"{(gap_slot - killed_at).total_seconds():+.1f} s from the kill")
        wait_for(lambda: lease_holder(cluster, namespace) == "replica-b", timeout=120, interval=0.1,
                 message="replica-b to take the Lease")
        handover = time.monotonic() - killed
        print(f"handover after SIGKILL: {handover:.1f} s (lease 10 s, retry 2 s; {in_flight} of 30 runs in flight)")
        wait_for(lambda: leader_gauge(b) == 1, timeout=30, message="replica-b's headwater_leader to be 1")
        a.start()  # the killed pod restarts, and stands by
        wait_for(lambda: leader_gauge(a) == 0, timeout=120, message="the restarted replica-a to stand by")

        finished = [wait_run(cluster, namespace, name, timeout=600) for name in runs]
        after_gap = gap_slot + timedelta(minutes=1)
        wait_for(lambda: any(_slot(r) >= after_gap for r in runs_of(cluster, namespace, "tick")), timeout=180,
                 interval=1, message="the slot after the leaderless one")
        ticks = runs_of(cluster, namespace, "tick")
        for tick in ticks:
            wait_run(cluster, namespace, tick["metadata"]["name"], timeout=300)

    assert handover <= 2 * 10, "the standby took over only after twice the lease duration"
    assert [r["status"]["phase"] for r in finished] == ["Succeeded"] * len(runs)
    slots = sorted(_slot(r) for r in ticks)
    assert _slot(first[0]) == slots[0]
    minutes = round((slots[-1] - slots[0]).total_seconds() / 60)
    expected = [slots[0] + timedelta(minutes=i) for i in range(minutes + 1)]
    assert slots == expected, "a cron slot was missed or run twice"
    assert gap_slot in slots
    jobs = cluster.list("jobs", namespace)
    per_step = Counter((j["metadata"]["labels"]["headwater.dev/run"], j["metadata"]["labels"]["headwater.dev/step"])
                       for j in jobs)
    assert len([k for k in per_step if k[0].startswith("ha-")]) == 3 * len(runs)
    assert set(per_step.values()) == {1}
    assert {name: uids for name, uids in watcher.uids.items() if len(uids) > 1} == {}
    assert max(created_jobs(a, b).values()) == 1
    assert created_jobs(b), "the new leader created none of the remaining Jobs"


def _slot(run_obj: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run_obj["spec"]["scheduledFor"].replace("Z", "+00:00"))


@pytest.fixture
def shard_namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """Two fresh namespaces, the first owned by shard 0/2, the second by shard 1/2."""
    chosen: dict[int, str] = {}
    while len(chosen) < 2:
        name = f"t-{uuid.uuid4().hex[:10]}"
        chosen.setdefault(shard_of(name, 2), name)
    names = [chosen[0], chosen[1]]
    for name in names:
        cluster.kubectl("create", "namespace", name)
        wait_for(lambda n=name: cluster.kubectl("-n", n, "get", "serviceaccount", "default",
                                                check=False).returncode == 0, timeout=120,
                 message=f"the default ServiceAccount in {name}")
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.timeout(600)
def test_two_shards_on_one_cluster_each_handle_only_their_own_namespaces_runs(
        cluster: Cluster, shard_namespaces: list[str], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ns0, ns1 = shard_namespaces
    shards = [OperatorProcess(cluster, ns0, tmp_path / f"shard-{i}.log", ns1, HEADWATER_SHARD=f"{i}/2",
                              HEADWATER_LEADER_ELECTION="true", HEADWATER_LEASE_NAMESPACE=ns0)
              for i in range(2)]
    try:
        for proc in shards:
            proc.start()
        for ns in (ns0, ns1):
            cluster.apply(pipeline("sharded", [step("a"), step("b", "a")], successfulRunsHistoryLimit=100),
                          namespace=ns)
            cluster.apply(*[run(f"sharded-{i:02d}", "sharded") for i in range(10)], namespace=ns)
        finished = [wait_run(cluster, ns, f"sharded-{i:02d}", timeout=300) for ns in (ns0, ns1) for i in range(10)]
        assert [r["status"]["phase"] for r in finished] == ["Succeeded"] * 20
        # one Lease per shard, each held
        assert lease_holder(cluster, ns0, f"{LEASE}-shard-0-of-2")
        assert lease_holder(cluster, ns0, f"{LEASE}-shard-1-of-2")
        by_shard = [created_jobs(proc) for proc in shards]
        assert {job.split("/")[0] for job in by_shard[0]} == {ns0}
        assert {job.split("/")[0] for job in by_shard[1]} == {ns1}
        jobs = {f"{ns}/{j['metadata']['name']}" for ns in (ns0, ns1) for j in cluster.list("jobs", ns)}
        assert len(jobs) == 2 * 20
        assert set(by_shard[0]) | set(by_shard[1]) == jobs
        assert max((by_shard[0] + by_shard[1]).values()) == 1
    finally:
        for proc in shards:
            proc.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for proc in shards:
                print(f"--- {proc.log_path} ---\n{proc.logs()[-15000:]}")


@pytest.mark.timeout(300)
def test_a_leader_stopped_cleanly_releases_the_lease_and_the_standby_takes_over_at_once(
        cluster: Cluster, namespace: str, replicas: tuple[OperatorProcess, OperatorProcess]) -> None:
    a, b = replicas
    a.start()
    wait_for(lambda: lease_holder(cluster, namespace) == "replica-a", timeout=120, message="replica-a to lead")
    b.start()
    wait_for(lambda: leader_gauge(b) == 0, timeout=120, message="replica-b to stand by")
    a.stop()  # SIGTERM, as in a rolling update or a drain
    stopped = time.monotonic()
    assert a.proc is not None and a.proc.returncode == 0
    wait_for(lambda: lease_holder(cluster, namespace) == "replica-b", timeout=60, interval=0.1,
             message="replica-b to take the released Lease")
    took = time.monotonic() - stopped
    print(f"handover after a clean stop: {took:.1f} s")
    # without the release it would wait out the 10 s lease duration
    assert took < 10
    assert "released the Lease" in a.logs()
    cluster.apply(pipeline("after", [step("a")]), run("after-1", "after"), namespace=namespace)
    assert wait_run(cluster, namespace, "after-1", timeout=180)["status"]["phase"] == "Succeeded"


@pytest.mark.timeout(300)
def test_a_leader_whose_lease_was_taken_stops_at_once(
        cluster: Cluster, namespace: str, replicas: tuple[OperatorProcess, OperatorProcess]) -> None:
    a, _ = replicas
    a.start()
    wait_for(lambda: lease_holder(cluster, namespace) == "replica-a", timeout=120, message="replica-a to lead")
    cluster.kubectl("-n", namespace, "patch", "lease", LEASE, "--type", "merge",
                    "-p", '{"spec": {"holderIdentity": "someone-else"}}')
    assert a.proc is not None
    code = wait_for(lambda: a.proc.poll() if a.proc else None, timeout=60, interval=0.2,
                    message="the deposed leader to exit")
    assert code == 1
    assert "lost leadership (the Lease is held by someone-else)" in a.logs()
