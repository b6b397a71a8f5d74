"""The web UI in a real browser (Debian's Chromium through Selenium) over the API and a real PostgreSQL
seeded with the demo's data: day 1, then day 2 when Stripe's extract writes 40 % fewer rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from browser_support import (
    DROP_CHECK,
    MIN_ROWS_CHECK,
    STRIPE_ERROR,
    chromium,
    day2_board,
    demo_board,
    screenshot,
    seed_checks,
    seed_demo,
    seed_large,
    served,
    sign_in,
    wait_ready,
    wait_text,
)
from headwater.lineage import DatasetRef, EdgeRecord, RunRecord
from headwater.lineage.store import LineageStore
from helpers import ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    with chromium() as opened:
        yield opened


def graph_labels(driver: WebDriver) -> set[str]:
    return set(driver.execute_script(
        "return window.headwater.cy ? window.headwater.cy.nodes().map(n => n.data('label').split('\\n')[0]) : []"))


def open_business_metrics(driver: WebDriver, base: str) -> None:
    sign_in(driver, base)
    box = driver.find_element(By.ID, "search")
    box.send_keys("analytics.business_metrics", Keys.ENTER)
    wait_text(driver, "#title", "analytics.business_metrics")
    wait_ready(driver)


def test_searching_a_dataset_shows_its_upstream_graph_with_freshness_and_rows_written(
        store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    with served(store, freshness=day2_board) as base:
        open_business_metrics(driver, base)
        labels = wait_for(lambda: graph_labels(driver) or None, timeout=30, message="the graph")
        assert {"analytics.business_metrics", "analytics.daily_revenue", "raw.orders", "raw.stripe_payments",
                "public.orders", "payments"} <= labels
        assert "reporting.revenue_dashboard" not in labels  # downstream of daily_revenue, not of the centre
        # every colour is also written: freshness and the latest write are in each node's text
        listing = driver.find_element(By.CSS_SELECTOR, ".node-list")
        listing.find_element(By.TAG_NAME, "summary").click()
        assert "raw.stripe_payments" in listing.text
        assert "fresh" in listing.text and "no SLA" in listing.text
        assert "-40.0%" in listing.text
        versions = driver.find_elements(By.CSS_SELECTOR, "#versions li")
        assert len(versions) == 3 and "12 rows by revenue-pipeline/aggregate-metrics" in versions[0].text
        screenshot(driver, "dataset-business-metrics")


def test_the_explain_overlay_on_day_two_ranks_stripes_extract_first(store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    with served(store, freshness=day2_board) as base:
        open_business_metrics(driver, base)
        driver.find_element(By.ID, "explain-toggle").click()
        first = wait_text(driver, "#causes > li", "raw.stripe_payments")
        causes = driver.find_elements(By.CSS_SELECTOR, "#causes > li")
        assert causes[0] == first, [c.text for c in causes]
        assert "row drop" in first.text and "40" in first.text
        assert driver.find_element(By.ID, "explain-toggle").get_attribute("aria-pressed") == "true"
        ranked = driver.execute_script(
            "return window.headwater.cy.getElementById('postgres://warehouse\\u0001raw.stripe_payments')"
            ".data('label')")
        assert ranked.startswith("#1 raw.stripe_payments")
        # the cause links to the run that wrote it
        link = first.find_element(By.PARTIAL_LINK_TEXT, "extract-payments")
        assert "run?id=" in link.get_attribute("href")
        shot = screenshot(driver, "explain-day2")
        assert shot.stat().st_size > 10_000


def test_a_failed_run_shows_the_failing_steps_message_and_the_commands_to_retry(
        store: LineageStore, driver: WebDriver) -> None:
    ids = seed_demo(store, day3_failure=True)
    with served(store) as base:
        sign_in(driver, base, f"#/run?id={ids['day3']}")
        row = wait_text(driver, "#steps tr[data-step='extract-payments']", "Failed")
        assert STRIPE_ERROR in row.text
        skipped = driver.find_element(By.CSS_SELECTOR, "#steps tr[data-step='transform-revenue']")
        assert "Skipped" in skipped.text and "did not succeed" in skipped.text
        timeline = driver.find_element(By.CSS_SELECTOR, ".gantt")
        assert "extract-payments" in timeline.text and "Failed" in timeline.text
        commands = driver.find_element(By.CSS_SELECTOR, ".commands").text
        assert "kubectl headwater run revenue-pipeline -n data --from-step extract-payments" in commands
        screenshot(driver, "run-day3-failed")


def test_the_runs_listing_leads_to_a_run(store: LineageStore, driver: WebDriver) -> None:
    ids = seed_demo(store, day3_failure=True)
    with served(store) as base:
        sign_in(driver, base, "#/runs")
        wait_text(driver, "table.list", ids["day3"]).find_element(By.LINK_TEXT, ids["day3"]).click()
        wait_text(driver, "h1", "Failed")


def test_searching_a_pipeline_name_two_teams_share_lists_each_and_opens_only_its_runs(
        store: LineageStore, driver: WebDriver) -> None:
    at = datetime(2026, 11, 23, 6, tzinfo=UTC)
    for namespace in ("team-a", "team-b"):
        run_id = f"{namespace}/etl-1/0000"
        store.record(RunRecord(run_id, "etl", namespace, "Succeeded", trigger="schedule", started_at=at, name="etl-1"),
                     EdgeRecord(run_id, "etl", "load", (DatasetRef("postgres://wh", "raw.x"),),
                                (DatasetRef("postgres://wh", f"{namespace}.y"),), seen_at=at, namespace=namespace))
    with served(store) as base:
        sign_in(driver, base, "#/search?q=etl")
        hits = wait_text(driver, "#hits-pipelines", "team-b")
        assert [li.text for li in hits.find_elements(By.TAG_NAME, "li")] == ["etl (team-a)", "etl (team-b)"]
        hits.find_elements(By.TAG_NAME, "a")[1].click()
        wait_text(driver, "h1", "Runs of etl in team-b")
        wait_ready(driver)
        rows = driver.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
        assert [row.find_element(By.TAG_NAME, "a").get_attribute("href").split("id=")[1] for row in rows] == \
            ["team-b%2Fetl-1%2F0000"]


def test_column_lineage_toggles_on_and_off(store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    with served(store) as base:
        open_business_metrics(driver, base)
        driver.find_element(By.ID, "columns-toggle").click()
        panel = wait_text(driver, "#columns-panel", "net_cents")
        assert "analytics.daily_revenue.net_cents → analytics.business_metrics.net_revenue_cents" in panel.text
        drawn = driver.execute_script("return window.headwater.cy.edges('.column').length")
        assert drawn == 2
        driver.find_element(By.ID, "columns-toggle").click()
        wait_for(lambda: not driver.find_elements(By.ID, "columns-panel"), timeout=10, message="the panel to close")
        assert driver.execute_script("return window.headwater.cy.edges('.column').length") == 0


def test_the_keyboard_moves_between_nodes_and_recentres(store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    with served(store) as base:
        open_business_metrics(driver, base)
        graph = driver.find_element(By.ID, "graph")
        assert driver.switch_to.active_element == graph
        status = driver.find_element(By.ID, "focus-status")
        assert status.get_attribute("data-focused") == "analytics.business_metrics"
        graph.send_keys(Keys.ARROW_LEFT)
        wait_for(lambda: status.get_attribute("data-focused") == "analytics.daily_revenue", timeout=10,
                 message="focus on daily_revenue")
        assert "1 hops upstream" in status.text
        graph.send_keys(Keys.ARROW_LEFT)
        wait_for(lambda: status.get_attribute("data-focused") in {"raw.orders", "raw.stripe_payments"}, timeout=10,
                 message="focus two hops upstream")
        graph.send_keys(Keys.ARROW_DOWN, Keys.ARROW_UP)
        focused = status.get_attribute("data-focused")
        graph.send_keys(Keys.ENTER)
        wait_text(driver, "#title", focused)


def test_selecting_two_nodes_highlights_the_paths_between_them(store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    with served(store) as base:
        open_business_metrics(driver, base)
        graph = driver.find_element(By.ID, "graph")
        graph.send_keys(" ")  # the centre
        graph.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
        graph.send_keys(" ")
        path = wait_text(driver, "#path-status", "lie on paths")
        assert "3 datasets and 2 edges" in path.text


def test_the_freshness_board_writes_each_state_and_the_open_incident(store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    with served(store, freshness=demo_board) as base:
        sign_in(driver, base, "#/freshness")
        board = wait_text(driver, "#board", "raw.stripe_payments")
        rows = {r.find_elements(By.TAG_NAME, "td")[0].text: r.text
                for r in board.find_elements(By.CSS_SELECTOR, "tbody tr")}
        assert "stale" in rows["raw.stripe_payments"]
        assert "at risk" in rows["analytics.daily_revenue"]
        assert "fresh" in rows["raw.orders"] and "max age 26h" in rows["raw.orders"]
        assert "by 07:00 Europe/Berlin" in rows["analytics.daily_revenue"]
        incident = driver.find_element(By.ID, "incidents").text
        assert STRIPE_ERROR in incident and "analytics.business_metrics" in incident
        assert "null" not in driver.find_element(By.ID, "main").text  # no placeholder leaks into the page
        screenshot(driver, "freshness-board")


def test_the_page_asks_for_the_token_and_never_puts_it_in_a_url(store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    with served(store) as base:
        driver.get(f"{base}/ui/#/dataset?name=analytics.business_metrics")
        wait_for(lambda: driver.find_elements(By.ID, "login-token"), timeout=30, message="the sign-in form")
        driver.find_element(By.ID, "login-token").send_keys("wrong-token", Keys.ENTER)
        wait_ready(driver)  # the refused token's answer has come back: the form is the new one
        assert driver.find_element(By.ID, "login-token").get_attribute("value") == ""
        driver.find_element(By.ID, "login-token").send_keys("ui-read-s3cret", Keys.ENTER)
        wait_text(driver, "#title", "analytics.business_metrics")
        assert "s3cret" not in driver.current_url
        entries = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert entries and not any("s3cret" in e for e in entries)



def test_a_failed_blocking_check_and_a_warning_are_marked_on_their_nodes_and_explained_in_the_details(
        store: LineageStore, driver: WebDriver) -> None:
    seed_demo(store)
    seed_checks(store)
    with served(store, freshness=day2_board) as base:
        sign_in(driver, base, "#/dataset?name=analytics.daily_revenue&depth=1")
        wait_text(driver, "#title", "analytics.daily_revenue")
        wait_ready(driver)
        wait_for(lambda: driver.execute_script("return window.headwater.renders.length"), timeout=60,
                 message="the graph")
        marks = driver.execute_script(
            "const cy = window.headwater.cy;"
            "return Object.fromEntries(cy.nodes().map(n => [n.data('label').split('\\n')[0],"
            " {classes: n.classes(), shape: n.style('shape'), border: n.style('border-style'),"
            " label: n.data('label')}]))")
        stripe, orders, centre = marks["raw.stripe_payments"], marks["raw.orders"], marks["analytics.daily_revenue"]
        # not colour alone: a shape, a border style and words
        assert "check-failed" in stripe["classes"]
        assert (stripe["shape"], stripe["border"]) == ("cut-rectangle", "double")
        assert "CHECK FAILED: no-drop" in stripe["label"]
        assert "check-warning" in orders["classes"] and orders["border"] == "dashed"
        assert orders["shape"] == centre["shape"] == "round-rectangle"
        assert "CHECK WARNING: enough-orders" in orders["label"]
        assert "CHECK" not in centre["label"] and centre["border"] == "solid"
        notes = driver.find_element(By.ID, "graph-notes").text
        assert "held back by a failed blocking check (latest version not published): raw.stripe_payments" in notes
        assert "with a warning: raw.orders" in notes
        # the details of a node, reached with the keyboard: its failed check, observed value and baseline
        graph = driver.find_element(By.ID, "graph")
        graph.send_keys(Keys.ARROW_LEFT)
        details = wait_text(driver, "#focused-details", "raw.orders")
        assert (f"enough-orders (rowCount, warning): observed 812 rows; baseline {MIN_ROWS_CHECK.baseline}."
                in details.text)
        graph.send_keys(Keys.ARROW_DOWN)
        details = wait_text(driver, "#focused-details", "raw.stripe_payments")
        assert "latest version not published" in details.text
        assert f"no-drop (change, blocking): observed 28788 rows; baseline {DROP_CHECK.baseline}." in details.text
        assert DROP_CHECK.message in details.text
        assert "CHECK FAILED" in driver.find_element(By.ID, "focus-status").text
        screenshot(driver, "checks-on-nodes")
        # re-centred on the held-back dataset, its own panel says the same
        graph.send_keys(Keys.ENTER)
        centre_checks = wait_text(driver, "#centre-checks", "no-drop")
        assert f"observed 28788 rows; baseline {DROP_CHECK.baseline}" in centre_checks.text


def test_a_generated_graph_of_two_thousand_datasets_renders_and_stays_responsive(
        store: LineageStore, driver: WebDriver) -> None:
    """Times are measured by benchmarks/ui_bench.py, not asserted: this checks that it draws, and reacts."""
    seed_large(store, 2000)
    with served(store) as base:
        sign_in(driver, base, "#/dataset?name=hub&depth=3")
        wait_text(driver, "#title", "hub")
        render = wait_for(lambda: driver.execute_script("return window.headwater.renders.at(-1)"), timeout=120,
                          message="the first render")
        assert (render["nodes"], render["collapsedTo"]) == (2000, None)
        # the first frame draws the nodes in and around the view, the rest follows in chunks
        assert 0 < render["firstNodes"] < 2000
        wait_for(lambda: driver.execute_script("return window.headwater.renders.at(-1).complete"), timeout=120,
                 message="the rest of the graph")
        assert driver.execute_script("return window.headwater.cy.nodes().length") == 2000
        assert driver.execute_script("return window.headwater.cy.edges().length") == 1999
        assert "Collapsed" not in driver.find_element(By.ID, "graph-notes").text
        # pan and zoom, then move by keyboard: the page answers each
        zoom = driver.execute_script("const cy = window.headwater.cy; cy.zoom(cy.zoom() * 0.5);"
                                     "cy.panBy({x: 300, y: 80}); return cy.zoom()")
        assert zoom == pytest.approx(driver.execute_script("return window.headwater.cy.zoom()"))
        graph = driver.find_element(By.ID, "graph")
        graph.send_keys(Keys.ARROW_RIGHT)
        status = driver.find_element(By.ID, "focus-status")
        wait_for(lambda: (status.get_attribute("data-focused") or "").startswith("down."), timeout=60,
                 message="the keyboard focus to move downstream")
        ticks = driver.execute_async_script(
            "const done = arguments[arguments.length - 1]; let n = 0;"
            "const tick = () => (++n < 10 ? requestAnimationFrame(tick) : done(n)); requestAnimationFrame(tick);")
        assert ticks == 10
        screenshot(driver, "large-graph-2000")


def test_beyond_the_threshold_the_graph_collapses_by_depth_and_says_so(store: LineageStore, driver: WebDriver) -> None:
    seed_large(store, 3000)
    with served(store) as base:
        sign_in(driver, base, "#/dataset?name=hub&depth=5")
        note = wait_text(driver, "#graph-notes .note", "Collapsed by depth", timeout=120)
        assert "3000 datasets are more than 2500" in note.text and "within 3 hops" in note.text
        render = driver.execute_script("return window.headwater.renders.at(-1)")
        assert render["collapsedTo"] == 3 and render["nodes"] == 2221


def test_the_readme_shows_the_explain_screenshot() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/images/explain-day2.png" in readme
    assert (ROOT / "docs" / "images" / "explain-day2.png").stat().st_size > 10_000
