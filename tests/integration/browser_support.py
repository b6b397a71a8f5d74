"""Helpers of the web UI's browser tests (no tests here): the API served from a thread, Chromium through
Selenium, the demo's data, screenshots kept under test-artifacts/browser/ (gitignored)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from headwater.lineage import DatasetVersionRecord, EdgeRecord, LineageStore, Record, StepRecord
from headwater.lineage.api import ApiAuth, FreshnessBoard, create_app
from headwater.lineage.records import CheckRecord
from helpers import ROOT, wait_for
from lineage_support import (
    BASE_ROWS,
    REVENUE_STEPS,
    pipeline_run_records,
    record_revenue_day,
    wh,
)

ARTIFACTS = ROOT / "test-artifacts" / "browser"
READ = "ui-read-s3cret"
AUTH = ApiAuth(READ, "ui-write-s3cret")
# Day 2 is this morning (so nothing is stale by age), day 1 the day before.
DAY2 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
DAY1 = DAY2 - timedelta(days=1)
STRIPE_ERROR = "stripe: 401 Unauthorized: the API key was rotated (extract-payments exited with code 1)"


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromium-driver (hack/setup.sh installs them)."""
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [p for p in (browser, driver) if not Path(p).exists()]
    if missing:
        raise RuntimeError(f"missing {missing}: install Debian's chromium and chromium-driver (bash hack/setup.sh)")
    return browser, driver


@contextmanager
def chromium(width: int = 1500, height: int = 950) -> Iterator[WebDriver]:
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def served(store: LineageStore, *, auth: ApiAuth = AUTH, freshness: FreshnessBoard | None = None) -> Iterator[str]:
    """The API (and so the UI) on a free loopback port, served from a thread; yields its base URL."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: list[web.AppRunner] = []

    async def start() -> None:
        runner = web.AppRunner(create_app(store, auth=auth, freshness=freshness), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runner_box.append(runner)

    def run() -> None:
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "the API did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


COLUMN_EVENT_RUN = "2b0c5a8e-4f7e-4a52-9d1e-6f0e1f6b9a01"


def column_event(at: datetime) -> dict[str, Any]:
    """An OpenLineage COMPLETE event of aggregate-metrics that reports its column lineage."""
    warehouse = "postgres://warehouse"
    fields = {
        "net_revenue_cents": {"inputFields": [{"namespace": warehouse, "name": "analytics.daily_revenue",
                                               "field": "net_cents"}]},
        "orders": {"inputFields": [{"namespace": warehouse, "name": "analytics.daily_revenue", "field": "orders"}]},
    }
    return {
        "eventType": "COMPLETE", "eventTime": at.isoformat(), "producer": "https://example.com/dbt",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": COLUMN_EVENT_RUN}, "job": {"namespace": "revenue-pipeline", "name": "aggregate-metrics"},
        "inputs": [{"namespace": warehouse, "name": "analytics.daily_revenue"}],
        "outputs": [{"namespace": warehouse, "name": "analytics.business_metrics",
                     "outputFacets": {"outputStatistics": {"_producer": "https://example.com/dbt",
                                                           "_schemaURL": "https://openlineage.io/spec/facets/1-0-2/"
                                                                         "OutputStatisticsOutputDatasetFacet.json",
                                                           "rowCount": BASE_ROWS["aggregate-metrics"]}},
                     "facets": {"columnLineage": {
                         "_producer": "https://example.com/dbt",
                         "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
                         "fields": fields}}}],
    }


def seed_demo(store: LineageStore, *, day3_failure: bool = False) -> dict[str, str]:
    """The demo's data: day 1, then day 2 when Stripe's extract writes 40 % fewer rows (and, when asked,
    day 3 when extract-payments fails).  Returns the revenue runs' ids by day."""
    ids = {"day1": record_revenue_day(store, DAY1)}
    store.ingest_openlineage(column_event(DAY1 + timedelta(minutes=20)))
    ids["day2"] = record_revenue_day(store, DAY2, {"extract-payments": round(BASE_ROWS["extract-payments"] * 0.6)})
    if day3_failure:
        day3 = DAY2 + timedelta(days=1)
        run_id = f"data/revenue-{day3:%Y%m%d-%H%M}"
        records = [replace(r, error=STRIPE_ERROR, attempts=1) if isinstance(r, StepRecord) and r.phase == "Failed"
                   else r for r in pipeline_run_records(run_id, REVENUE_STEPS, day3,
                                                        failed=frozenset({"extract-payments"}))]
        store.record(*records)
        ids["day3"] = run_id
    return ids


CHECKED_AT = DAY2 + timedelta(hours=1)
DROP_CHECK = CheckRecord("no-drop", "change", "error", "Failed", observed="28788 rows",
                         baseline="47980 rows (median of the last 1 published version)",
                         message="28788 rows, 40.0% below the median 47980 rows (max drop 30%)")
MIN_ROWS_CHECK = CheckRecord("enough-orders", "rowCount", "warn", "Failed", observed="812 rows", baseline="min 1000",
                             message="812 rows, fewer than the minimum 1000")


def seed_checks(store: LineageStore) -> None:
    """After the demo's data: a re-run an hour after day 2 whose Stripe extract failed its blocking check
    ``no-drop`` (that version is not published) and whose orders extract failed the warning ``enough-orders``."""
    run_id = f"data/revenue-{CHECKED_AT:%Y%m%d-%H%M}"
    store.record(
        DatasetVersionRecord(wh("raw.stripe_payments"), run_id, "revenue-pipeline", "extract-payments", CHECKED_AT,
                             28788, published=False, checks=(DROP_CHECK,)),
        DatasetVersionRecord(wh("raw.orders"), run_id, "revenue-pipeline", "extract-orders", CHECKED_AT, 812,
                             checks=(MIN_ROWS_CHECK,)))


def sign_in(driver: WebDriver, base: str, path: str = "") -> None:
    """Open the UI at ``path`` (a #/... route) and give the read token to its sign-in form."""
    driver.get(f"{base}/ui/{path}")
    token = wait_for(lambda: _find(driver, "login-token"), timeout=30, message="the sign-in form")
    token.send_keys(READ)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait_ready(driver)


def _find(driver: WebDriver, element_id: str) -> WebElement | None:
    found = driver.find_elements(By.ID, element_id)
    return found[0] if found else None


def wait_ready(driver: WebDriver) -> None:
    wait_for(lambda: driver.execute_script("return window.headwater && window.headwater.ready"), timeout=60,
             message="the page to load")


def wait_text(driver: WebDriver, css: str, text: str, timeout: float = 30) -> WebElement:
    """The first element matching ``css`` whose text contains ``text``, once there."""
    def found() -> WebElement | None:
        for element in driver.find_elements(By.CSS_SELECTOR, css):
            if text in element.text:
                return element
        return None
    return wait_for(found, timeout=timeout, message=f"{text!r} in {css}")


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def day2_board() -> dict[str, Any]:
    """The freshness board on day 2: every output written this morning, so every SLA is met."""
    return demo_board(day3=False)


def demo_board(*, day3: bool = True) -> dict[str, Any]:
    """A freshness board as the operator would serve it for the demo's pipelines: after day 3's failure
    (Stripe's table a day old and past its SLA, an incident putting everything downstream at risk), or on
    day 2."""
    from headwater.sla.board import freshness_board  # noqa: PLC0415

    def pipeline(name: str, outputs: list[tuple[str, dict[str, str]]], status: list[dict[str, Any]],
                 alerts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "data"},
                "spec": {"steps": [{"id": f"write-{n}", "outputs": [{"namespace": "postgres://warehouse", "name": n,
                                                                     "freshness": f}]} for n, f in outputs]},
                "status": {"datasets": status, "alerts": alerts or []}}

    def seen(name: str, at: datetime, **state: Any) -> dict[str, Any]:
        return {"namespace": "postgres://warehouse", "name": name, "lastUpdated": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                **state}

    risk = {"atRisk": "revenue failed: extract-payments", "atRiskSource": "data/revenue"} if day3 else {}
    revenue = pipeline("revenue", [("raw.stripe_payments", {"maxAge": "26h"}), ("raw.orders", {"maxAge": "26h"}),
                                   ("analytics.daily_revenue", {"deadline": "07:00", "timeZone": "Europe/Berlin"})], [
        seen("raw.stripe_payments", DAY1, stale=True) if day3 else seen("raw.stripe_payments", DAY2),
        seen("raw.orders", DAY2),
        seen("analytics.daily_revenue", DAY2, **risk),
    ], [{"id": "run-revenue-day3", "raisedAt": (DAY2 + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "cause": "step extract-payments failed: " + STRIPE_ERROR, "source": "data/revenue", "affectedCount": 2,
         "affectedDatasets": [{"namespace": "postgres://warehouse", "name": n}
                              for n in ("analytics.daily_revenue", "analytics.business_metrics")]}] if day3 else [])
    reporting = pipeline("revenue-reporting", [("reporting.revenue_dashboard", {"maxAge": "26h"})],
                         [seen("reporting.revenue_dashboard", DAY2, **risk)])
    return freshness_board([revenue, reporting])


def seed_large(store: LineageStore, datasets: int, *, fan: int = 10) -> str:
    """A generated graph of ``datasets`` datasets around ``hub`` (itself included): half upstream, half
    downstream, as trees of ``fan`` children per node, each edge written by a job of its own in one of
    twenty pipelines.  Returns the hub's name."""
    def tree(side: str, count: int) -> list[tuple[str, str]]:
        parents, links, made = ["hub"], [], 0
        while made < count:
            children = []
            for parent in parents:
                for _ in range(fan):
                    if made == count:
                        break
                    made += 1
                    child = f"{side}.d{made:05d}"
                    links.append((child, parent) if side == "up" else (parent, child))
                    children.append(child)
            parents = children
        return links

    up = (datasets - 1) // 2
    links = tree("up", up) + tree("down", datasets - 1 - up)
    at = datetime.now(UTC) - timedelta(hours=1)
    records: list[Record] = []
    for i, (source, target) in enumerate(links):
        records.append(EdgeRecord(f"gen/run-{i % 20}", f"pipeline-{i % 20:02d}", f"make-{target}", (wh(source),),
                                  (wh(target),), seen_at=at))
        records.append(DatasetVersionRecord(wh(target), f"gen/run-{i % 20}", f"pipeline-{i % 20:02d}",
                                            f"make-{target}", at, 1000 + i))
    for start in range(0, len(records), 500):
        store.record(*records[start:start + 500])
    return "hub"
