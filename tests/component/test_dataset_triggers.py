"""Dataset triggers against real PostgreSQL and the in-memory Kubernetes API: exactly one run per firing
whatever is replayed, repeated, interrupted or run twice at once.

Component tests that also need a PostgreSQL server (the throwaway one of the integration tier)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from fakekube import PIPELINES, RUNS, FakeKube, ManualClock
from headwater.adapters.isolation import Isolation
from headwater.adapters.metrics import Metrics
from headwater.controller import triggerer
from headwater.controller.start_gate import StartGate
from headwater.controller.triggerer import Triggerer, WatchedPipelines, trigger_pipeline
from headwater.lineage import triggers as outbox
from headwater.lineage.records import DatasetRef, DatasetVersionRecord
from headwater.lineage.store import LineageStore
from headwater.pipelines import triggering
from headwater.pipelines.scheduler import schedule_pipeline
from headwater.spec.models import DatasetTriggers
from headwater.spec.times import parse_time
from helpers import fresh_database, wait_for
from manifests import pipeline, step
from wiring import Operator

pytestmark = [pytest.mark.component, pytest.mark.integration]

NS = "data"
WH = "postgres://warehouse"
REVENUE, ORDERS = DatasetRef(WH, "analytics.revenue"), DatasetRef(WH, "analytics.orders")


@pytest.fixture
def store(database_url: str) -> Iterator[LineageStore]:
    with fresh_database(database_url) as url, LineageStore.open(url) as opened:
        yield opened


def downstream(kube: FakeKube, operator: Operator, mode: str, *inputs: DatasetRef, with_schedule: str | None = None,
               **fields: Any) -> dict[str, Any]:
    """Pipeline reporting, triggered by ``inputs``; Ready (the triggers wait for that)."""
    datasets: dict[str, Any] = {"mode": mode, "inputs": [{"namespace": d.namespace, "name": d.name} for d in inputs]}
    if with_schedule:
        datasets["withSchedule"] = with_schedule
    triggers = {"datasets": datasets}
    kube.seed(pipeline("reporting", [step("report")], triggers=triggers, **fields), NS)
    operator.deliver()
    return kube.read(PIPELINES, NS, "reporting")


def write(store: LineageStore, dataset: DatasetRef, run: str, pipeline_name: str = "revenue") -> None:
    store.record(DatasetVersionRecord(dataset, f"{NS}/{run}/0000aaaa", pipeline_name, "load",
                                      datetime.now(UTC)))


def fire(kube: FakeKube, store: LineageStore) -> list[str]:
    return trigger_pipeline(kube, store, kube.read(PIPELINES, NS, "reporting"))


def triggered(kube: FakeKube) -> list[str]:
    return kube.names(RUNS, NS, "headwater.dev/trigger=dataset")


def dbt_event(run_id: str, event_time: str = "2026-12-01T06:00:00Z") -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": event_time, "producer": "https://github.com/dbt-labs/dbt-core",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
        "run": {"runId": run_id}, "job": {"namespace": "dbt", "name": "jaffle.revenue"},
        "inputs": [], "outputs": [{"namespace": REVENUE.namespace, "name": REVENUE.name}],
    }


def test_any_fires_one_run_per_new_version_and_a_second_pass_fires_nothing(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE)
    for i in range(3):
        write(store, REVENUE, f"revenue-{i}")
    assert len(fire(kube, store)) == 3
    assert fire(kube, store) == []
    assert len(triggered(kube)) == 3


def test_all_fires_once_per_new_input_pair(kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "all", REVENUE, ORDERS)
    write(store, REVENUE, "revenue-1")
    assert fire(kube, store) == []
    write(store, REVENUE, "revenue-2")
    write(store, ORDERS, "orders-1", "orders")
    assert len(fire(kube, store)) == 1
    write(store, ORDERS, "orders-2", "orders")
    assert fire(kube, store) == []
    write(store, REVENUE, "revenue-3")
    assert len(fire(kube, store)) == 1
    assert len(triggered(kube)) == 2


def test_a_replayed_openlineage_event_from_another_tool_triggers_once(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE)
    event = dbt_event("0193b6a0-0000-7000-8000-000000000001")
    assert not store.ingest_openlineage(event).duplicate
    assert store.ingest_openlineage(event).duplicate
    created = fire(kube, store)
    assert len(created) == 1
    run = kube.read(RUNS, NS, created[0])
    assert [(v["name"], v["run"]) for v in run["spec"]["triggeredBy"]] == [
        (REVENUE.name, "0193b6a0-0000-7000-8000-000000000001")]
    store.ingest_openlineage(event)
    assert fire(kube, store) == []


def test_two_passes_at_once_create_each_run_once(kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE)
    for i in range(20):
        write(store, REVENUE, f"revenue-{i}")
    results: list[list[str]] = []
    passes = [threading.Thread(target=lambda: results.append(fire(kube, store))) for _ in range(2)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join()
    assert sorted(results[0] + results[1]) == sorted(triggered(kube))
    assert len(triggered(kube)) == 20


def test_a_run_whose_creation_failed_is_created_by_the_next_pass_under_the_same_name(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE)
    write(store, REVENUE, "revenue-1")
    kube.fail("create_run", 500)
    with pytest.raises(Exception, match="injected"):
        fire(kube, store)
    assert triggered(kube) == []
    write(store, REVENUE, "revenue-2")
    created = fire(kube, store)
    assert len(created) == 2
    assert fire(kube, store) == []


def test_a_pass_interrupted_after_creating_the_run_does_not_create_another(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    body = downstream(kube, operator, "any", REVENUE)
    write(store, REVENUE, "revenue-1")
    meta = body["metadata"]
    consumer = triggering.consumer_key(NS, "reporting", meta["uid"])
    triggers = DatasetTriggers.model_validate(body["spec"]["triggers"]["datasets"])
    with store.transaction() as conn:  # what a pass did before the operator was killed
        outbox.register(conn, consumer, parse_time(meta["creationTimestamp"]))
        pending = outbox.pending_versions(conn, consumer, [(REVENUE.namespace, REVENUE.name)])
    firing = triggering.decide("reporting", consumer, triggers, pending)[0]
    with store.transaction() as conn:
        assert outbox.claim(conn, consumer, firing) is not None
    kube.create_run(NS, triggering.triggered_run(body, firing.run_name, firing.versions))
    assert fire(kube, store) == []  # the run exists: the firing is confirmed, nothing else fires
    assert triggered(kube) == [firing.run_name]
    with store.transaction() as conn:
        assert outbox.unconfirmed(conn, consumer) == []


def test_versions_written_while_suspended_are_kept_and_fire_on_resume(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE, suspend=True)
    write(store, REVENUE, "revenue-1")
    assert fire(kube, store) == []
    kube.patch(PIPELINES, NS, "reporting", {"spec": {"suspend": False}})
    operator.deliver()
    assert len(fire(kube, store)) == 1


def test_a_triggered_run_says_in_its_status_which_versions_triggered_it(
        kube: FakeKube, operator: Operator, store: LineageStore, clock: ManualClock) -> None:
    downstream(kube, operator, "any", REVENUE)
    write(store, REVENUE, "revenue-1")
    name = fire(kube, store)[0]
    operator.deliver()
    status = kube.read(RUNS, NS, name)["status"]
    assert [(v["name"], v["run"]) for v in status["triggeredBy"]] == [(REVENUE.name, f"{NS}/revenue-1/0000aaaa")]
    assert status["logicalTime"]


def test_no_later_than_skips_a_slot_after_a_dataset_run_and_runs_the_next_slot_without_one(
        kube: FakeKube, operator: Operator, store: LineageStore, clock: ManualClock) -> None:
    downstream(kube, operator, "any", REVENUE, with_schedule="NoLaterThan", schedule="0 7 * * *",
               concurrencyPolicy="Allow")
    clock.advance(60)
    write(store, REVENUE, "revenue-1")
    assert len(fire(kube, store)) == 1
    first = datetime(2026, 11, 23, 7, 0, 5, tzinfo=UTC)
    schedule_pipeline(kube, kube.read(PIPELINES, NS, "reporting"), now=first, post_event=operator.events)
    assert kube.names(RUNS, NS, "headwater.dev/trigger=schedule") == []
    assert "SatisfiedByDatasets" in [reason for _, reason, _ in kube.events_about("reporting")]
    second = datetime(2026, 11, 24, 7, 0, 5, tzinfo=UTC)
    schedule_pipeline(kube, kube.read(PIPELINES, NS, "reporting"), now=second, post_event=operator.events)
    assert kube.names(RUNS, NS, "headwater.dev/trigger=schedule") == ["reporting-202611240700"]


def test_the_trigger_thread_is_woken_by_a_new_versions_notification_and_fires_only_its_readers(
        kube: FakeKube, operator: Operator, database_url: str) -> None:
    with fresh_database(database_url) as url:
        LineageStore.open(url).close()
        downstream(kube, operator, "any", REVENUE)
        kube.seed(pipeline("other", [step("x")], triggers={"datasets": {"inputs": [
            {"namespace": ORDERS.namespace, "name": ORDERS.name}]}}), NS)
        operator.deliver()
        isolation = Isolation()
        # a rescan far beyond the test's waits: only a notification can wake the thread in time
        thread = Triggerer(url, lambda: LineageStore.open(url, apply_migrations=False), kube, [NS], isolation,
                           rescan_seconds=3600)
        thread.start()
        try:
            wait_for(lambda: thread.passes >= 1, timeout=30, message="the first (full) pass")
            with LineageStore.open(url, apply_migrations=False) as store:
                write(store, REVENUE, "revenue-1")
            wait_for(lambda: len(triggered(kube)) == 1, timeout=30, message="the run of the new version")
            wait_for(lambda: thread.passes >= 2, timeout=30, message="the woken pass to end")
        finally:
            thread.stop()
        assert [run["spec"]["pipelineRef"]["name"] for run in kube.select(RUNS, NS)] == ["reporting"]


def test_versions_committed_just_after_the_one_that_woke_the_thread_join_its_pass(database_url: str) -> None:
    with fresh_database(database_url) as url, LineageStore.open(url) as store, \
            psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
        write(store, REVENUE, "revenue-1")
        later = threading.Timer(0.05, write, (store, ORDERS, "orders-1"))  # within the gather window below
        later.start()
        try:
            changed = outbox.wait_for_versions(listener, timeout=30, gather=5.0)
        finally:
            later.join()
    assert changed == {outbox.dataset_hex(REVENUE.namespace, REVENUE.name),
                       outbox.dataset_hex(ORDERS.namespace, ORDERS.name)}


def sample(metrics: Metrics, name: str, pipeline_name: str = "reporting") -> float | None:
    return metrics.registry.get_sample_value(name, {"namespace": NS, "pipeline": pipeline_name})


def test_each_run_a_trigger_creates_counts_once_with_its_latency_from_the_versions_commit(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE)
    metrics = Metrics()
    started = datetime.now(UTC)
    for i in range(3):
        write(store, REVENUE, f"revenue-{i}")
    assert len(trigger_pipeline(kube, store, kube.read(PIPELINES, NS, "reporting"), metrics=metrics)) == 3
    assert trigger_pipeline(kube, store, kube.read(PIPELINES, NS, "reporting"), metrics=metrics) == []
    elapsed = (datetime.now(UTC) - started).total_seconds()
    assert sample(metrics, "headwater_trigger_firings_total") == 3
    assert sample(metrics, "headwater_trigger_latency_seconds_count") == 3
    latency = sample(metrics, "headwater_trigger_latency_seconds_sum")
    assert latency is not None and 0 < latency <= 3 * elapsed  # each from its version's commit, not from zero


def test_a_failed_trigger_evaluation_is_counted_and_the_retry_counts_the_run_it_creates(
        kube: FakeKube, operator: Operator, store: LineageStore, database_url: str) -> None:
    downstream(kube, operator, "any", REVENUE)
    now = [0.0]
    metrics = Metrics()
    thread = Triggerer(database_url, lambda: store, kube, [NS], Isolation(clock=lambda: now[0]), metrics=metrics)
    thread.store = store  # passes run here, not on the thread
    try:
        failing_then_retried(kube, store, thread, metrics, now)
    finally:
        thread.store = None  # the fixture's to close
        thread.stop()


def failing_then_retried(kube: FakeKube, store: LineageStore, thread: Triggerer, metrics: Metrics,
                         now: list[float]) -> None:
    thread.run_pass()
    assert (sample(metrics, "headwater_trigger_firings_total"), sample(metrics, "headwater_trigger_failures_total"),
            sample(metrics, "headwater_trigger_latency_seconds_count")) == (0, 0, 0)  # exported before any firing
    write(store, REVENUE, "revenue-1")
    kube.fail("create_run", 500)
    thread.run_pass()
    assert (sample(metrics, "headwater_trigger_firings_total"), sample(metrics, "headwater_trigger_failures_total"),
            sample(metrics, "headwater_trigger_latency_seconds_count")) == (0, 1, 0)
    now[0] += 3600  # past the Pipeline's backoff
    thread.run_pass()
    assert len(triggered(kube)) == 1
    assert (sample(metrics, "headwater_trigger_firings_total"), sample(metrics, "headwater_trigger_failures_total"),
            sample(metrics, "headwater_trigger_latency_seconds_count")) == (1, 1, 1)


def reader(kube: FakeKube, operator: Operator, name: str, dataset: DatasetRef) -> None:
    kube.seed(pipeline(name, [step("x")], triggers={"datasets": {"inputs": [
        {"namespace": dataset.namespace, "name": dataset.name}]}}), NS)
    operator.deliver()


def test_one_pass_over_many_pipelines_creates_each_run_once_and_one_failed_create_stops_only_its_pipeline(
        kube: FakeKube, operator: Operator, store: LineageStore, database_url: str) -> None:
    tables = [DatasetRef(WH, f"analytics.table_{i}") for i in range(5)]
    for i, table in enumerate(tables):
        reader(kube, operator, f"reader-{i}", table)
    now = [0.0]
    metrics = Metrics()
    thread = Triggerer(database_url, lambda: store, kube, [NS], Isolation(clock=lambda: now[0]), metrics=metrics)
    thread.store = store  # passes run here, not on the thread
    try:
        thread.run_pass()
        for table in tables:
            write(store, table, f"load-{table.name}")
        kube.fail("create_run", 500)  # the first create of the pass: one of the five Pipelines
        thread.run_pass()
        assert len(triggered(kube)) == 4
        thread.run_pass()  # the failed one backs off; nothing fires twice
        assert len(triggered(kube)) == 4
        now[0] += 3600
        thread.run_pass()
    finally:
        thread.store = None  # the fixture's to close
        thread.stop()
    assert sorted(run["spec"]["pipelineRef"]["name"] for run in kube.select(RUNS, NS)) == [
        f"reader-{i}" for i in range(5)]
    assert [sample(metrics, "headwater_trigger_firings_total", f"reader-{i}") for i in range(5)] == [1] * 5
    assert sum(sample(metrics, "headwater_trigger_failures_total", f"reader-{i}") or 0 for i in range(5)) == 1


def test_when_the_store_refuses_the_shared_claim_each_pipeline_claims_alone_and_only_the_bad_one_fails(
        kube: FakeKube, operator: Operator, store: LineageStore, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tables = [DatasetRef(WH, f"analytics.table_{i}") for i in range(3)]
    for i, table in enumerate(tables):
        reader(kube, operator, f"reader-{i}", table)
    shared_claim = triggerer.claim_pass

    # the store refuses reader-1's rows, whoever claims them
    def refusing(conn: Any, evaluations: Any, *rest: Any) -> None:
        if any(e.pipeline["metadata"]["name"] == "reader-1" for e in evaluations):
            conn.execute("SELECT 1 / 0")
        shared_claim(conn, evaluations, *rest)

    monkeypatch.setattr(triggerer, "claim_pass", refusing)
    now = [0.0]
    metrics = Metrics()
    thread = Triggerer(database_url, lambda: store, kube, [NS], Isolation(clock=lambda: now[0]), metrics=metrics)
    thread.store = store  # passes run here, not on the thread
    try:
        for table in tables:
            write(store, table, f"load-{table.name}")
        thread.run_pass()
        assert sorted(run["spec"]["pipelineRef"]["name"] for run in kube.select(RUNS, NS)) == ["reader-0", "reader-2"]
        conditions = kube.read(PIPELINES, NS, "reader-1")["status"]["conditions"]
        assert [(x["status"], x["reason"]) for x in conditions if x["type"] == "Triggered"] == [
            ("False", "TriggerFailed")]
        assert sample(metrics, "headwater_trigger_failures_total", "reader-1") == 1
        monkeypatch.undo()
        now[0] += 3600  # past reader-1's backoff
        thread.run_pass()
    finally:
        thread.store = None  # the fixture's to close
        thread.stop()
    assert sorted(run["spec"]["pipelineRef"]["name"] for run in kube.select(RUNS, NS)) == [
        "reader-0", "reader-1", "reader-2"]


def test_claiming_many_firings_at_once_refuses_one_whose_rows_another_pass_took_in_part_and_gives_back_the_rest(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    body = downstream(kube, operator, "any", REVENUE)
    for i in range(3):
        write(store, REVENUE, f"revenue-{i}")
    consumer = triggering.consumer_key(NS, "reporting", body["metadata"]["uid"])
    with store.transaction() as conn:
        outbox.register_all(conn, [(consumer, parse_time(body["metadata"]["creationTimestamp"]))])
        pending = outbox.pending_all(conn, {consumer: [(REVENUE.namespace, REVENUE.name)]})[consumer]
    first, second, third = pending
    with store.transaction() as conn:  # another pass took the second version
        taken = triggering.Firing("reporting-dtaken", (second.outbox_id,), ())
        assert outbox.claim(conn, consumer, taken) is not None
    both = triggering.Firing("reporting-dboth", (first.outbox_id, second.outbox_id), ())
    alone = triggering.Firing("reporting-dalone", (third.outbox_id,), ())
    with store.transaction() as conn:
        ids = outbox.claim_all(conn, [(consumer, both), (consumer, alone)])
    assert ids[0] is None and ids[1] is not None
    with store.transaction() as conn:
        assert [v.outbox_id for v in outbox.pending_versions(conn, consumer, [(REVENUE.namespace, REVENUE.name)])] \
            == [first.outbox_id]  # the refused firing's other row is pending again
        assert sorted(u.run_name for u in outbox.unconfirmed(conn, consumer)) == ["reporting-dalone",
                                                                                 "reporting-dtaken"]
        assert outbox.confirm_all(conn, [ids[1], ids[1] + 1000])[ids[1] + 1000] is None


def test_a_woken_pass_takes_the_pipelines_from_the_watch_and_a_rescan_lists_them(
        kube: FakeKube, operator: Operator, store: LineageStore, database_url: str) -> None:
    body = downstream(kube, operator, "any", REVENUE)
    reader(kube, operator, "not-yet-watched", ORDERS)
    watched = WatchedPipelines()
    watched.saw(body)
    thread = Triggerer(database_url, lambda: store, kube, [NS], Isolation(), watched=watched)
    thread.store = store  # passes run here, not on the thread
    try:
        thread.run_pass()  # the first pass lists: both register
        write(store, REVENUE, "revenue-1")
        write(store, ORDERS, "orders-1", "orders")
        refusal = kube.fail("list_pipelines", 500, times=None)
        thread.run_pass({outbox.dataset_hex(REVENUE.namespace, REVENUE.name),
                         outbox.dataset_hex(ORDERS.namespace, ORDERS.name)})
        assert [run["spec"]["pipelineRef"]["name"] for run in kube.select(RUNS, NS)] == ["reporting"]
        refusal.stop()
        thread.run_pass()  # a rescan: the Pipeline the watch has not shown yet fires now
    finally:
        thread.store = None  # the fixture's to close
        thread.stop()
    assert sorted(run["spec"]["pipelineRef"]["name"] for run in kube.select(RUNS, NS)) == [
        "not-yet-watched", "reporting"]


def started_thread(kube: FakeKube, url: str) -> Triggerer:
    """The trigger thread, woken by notifications alone (its rescan is far beyond the tests' waits), after its
    first (full) pass."""
    thread = Triggerer(url, lambda: LineageStore.open(url, apply_migrations=False), kube, [NS], Isolation(),
                       rescan_seconds=3600)
    thread.start()
    wait_for(lambda: thread.passes >= 1, timeout=30, message="the first (full) pass")
    return thread


def held_create(kube: FakeKube) -> threading.Event:
    """The next PipelineRun create waits until the returned event is set (an apiserver slow to answer it)."""
    gate = threading.Event()
    kube.before("create_run", lambda: gate.wait(timeout=60))
    return gate


def test_a_pass_woken_while_an_earlier_one_still_creates_its_runs_creates_its_own_at_once(
        kube: FakeKube, operator: Operator, database_url: str) -> None:
    with fresh_database(database_url) as url, LineageStore.open(url) as store:
        tables = [DatasetRef(WH, f"analytics.table_{i}") for i in range(2)]
        for i, table in enumerate(tables):
            reader(kube, operator, f"reader-{i}", table)
        thread = started_thread(kube, url)
        gate = held_create(kube)
        try:
            write(store, tables[0], "load-0")
            wait_for(lambda: kube.count("create_run") == 1, timeout=30, message="reader-0's create, held")
            write(store, tables[1], "load-1")
            wait_for(lambda: [r["spec"]["pipelineRef"]["name"] for r in kube.select(RUNS, NS)] == ["reader-1"],
                     timeout=30, message="reader-1's run while reader-0's create is still held")
            gate.set()
            wait_for(lambda: len(triggered(kube)) == 2, timeout=30, message="reader-0's run once let through")
        finally:
            gate.set()
            thread.stop()
    assert sorted(run["spec"]["pipelineRef"]["name"] for run in kube.select(RUNS, NS)) == ["reader-0", "reader-1"]
    assert kube.count("create_run") == 2


def test_a_run_arriving_while_a_trigger_pass_creates_runs_starts_once_those_creates_are_done(
        kube: FakeKube, operator: Operator, database_url: str) -> None:
    operator.start_gate = StartGate(operator.reconcile, max_hold=60)
    with fresh_database(database_url) as url, LineageStore.open(url) as store:
        downstream(kube, operator, "any", REVENUE)
        thread = Triggerer(url, lambda: LineageStore.open(url, apply_migrations=False), kube, [NS], Isolation(),
                           rescan_seconds=3600, gate=operator.start_gate)
        thread.start()
        wait_for(lambda: thread.passes >= 1, timeout=30, message="the first (full) pass")
        held = held_create(kube)
        try:
            write(store, REVENUE, "revenue-1")
            wait_for(lambda: kube.count("create_run") == 1, timeout=30, message="the pass's create, held")
            kube.seed({"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": "by-hand"},
                       "spec": {"pipelineRef": {"name": "reporting"}}}, NS)
            operator.deliver()
            assert "status" not in kube.read(RUNS, NS, "by-hand")  # not started among the pass's creates
            assert operator.start_gate.held == 1
            held.set()
            wait_for(lambda: (kube.read(RUNS, NS, "by-hand").get("status") or {}).get("phase") == "Running",
                     timeout=30, message="the held run to start once the pass's creates are done")
        finally:
            held.set()
            thread.stop()
            operator.start_gate.close()
    assert len(triggered(kube)) == 1
    assert operator.errors == []


def test_one_pipelines_runs_claimed_by_overlapping_passes_are_created_once_each_in_claim_order(
        kube: FakeKube, operator: Operator, database_url: str) -> None:
    with fresh_database(database_url) as url, LineageStore.open(url) as store:
        body = downstream(kube, operator, "any", REVENUE)
        consumer = triggering.consumer_key(NS, "reporting", body["metadata"]["uid"])
        thread = started_thread(kube, url)
        gate = held_create(kube)

        def claimed() -> list[str]:
            with store.transaction() as conn:
                return [u.run_name for u in outbox.unconfirmed(conn, consumer)]
        try:
            write(store, REVENUE, "revenue-1")
            wait_for(lambda: kube.count("create_run") == 1, timeout=30, message="the first run's create, held")
            write(store, REVENUE, "revenue-2")
            wait_for(lambda: len(claimed()) == 2, timeout=30, message="the second version claimed meanwhile")
            order = claimed()  # oldest first
            gate.set()
            wait_for(lambda: len(triggered(kube)) == 2 and not claimed(), timeout=30, message="both runs confirmed")
        finally:
            gate.set()
            thread.stop()
    # the second pass neither asked for the first run again (it was in flight) nor overtook it
    assert [name for call, name in kube.calls if call == "create_run"] == order
    assert [r["metadata"]["name"] for r in sorted(kube.select(RUNS, NS),
                                                  key=lambda r: int(r["metadata"]["resourceVersion"]))] == order


def test_a_run_its_triggers_created_starts_from_the_pipeline_the_watch_showed_without_reading_it_again(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE)
    write(store, REVENUE, "revenue-1")
    [name] = fire(kube, store)
    reads = kube.count("get_pipeline", "reporting")
    operator.deliver()
    assert kube.read(RUNS, NS, name)["status"]["phase"] == "Running"
    assert kube.count("get_pipeline", "reporting") == reads  # the version whose triggers fired it
    kube.seed({"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": "by-hand"},
               "spec": {"pipelineRef": {"name": "reporting"}}}, NS)
    operator.deliver()
    assert kube.read(RUNS, NS, "by-hand")["status"]["phase"] == "Running"
    assert kube.count("get_pipeline", "reporting") == reads + 1  # a run made by hand reads its Pipeline
    assert operator.errors == []


def test_a_triggered_run_whose_pipeline_was_made_again_under_its_name_reads_the_new_one(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    downstream(kube, operator, "any", REVENUE)
    write(store, REVENUE, "revenue-1")
    [name] = fire(kube, store)
    operator.watched_pipelines.saw({**kube.read(PIPELINES, NS, "reporting"), "metadata": {
        **kube.read(PIPELINES, NS, "reporting")["metadata"], "uid": "another-uid"}})  # as the watch shows it now
    reads = kube.count("get_pipeline", "reporting")
    operator.deliver()
    assert kube.read(RUNS, NS, name)["status"]["phase"] == "Running"
    assert kube.count("get_pipeline", "reporting") == reads + 1  # not the run's owner: read from the apiserver
