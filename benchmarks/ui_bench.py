"""Web UI benchmark: first render of a generated lineage graph in Chromium, and frame times while panning.

    .venv/bin/python benchmarks/ui_bench.py [--sizes 200,2000,3000] [--repeat 3] [--database-url URL]

For each size a fresh database gets a generated graph of that many datasets around ``hub`` (half upstream,
half downstream, trees of ten children; tests/integration/browser_support.py:seed_large), the API serves it
on loopback, and headless Chromium (Debian's chromium and chromium-driver, through Selenium) opens the
dataset page.  "First render" is the page's own measure (window.headwater.renders): from asking the API for
the graph to the second animation frame after cytoscape drew it, so it includes the API's answer, the
layout and the first paint.  A graph of more than 300 nodes is drawn in two parts: first the nodes in and
around the opening view ("first frame" says how many), then the rest in chunks; "whole graph in" is
when the last chunk was added.  On a shared machine both grow with the load, so the page's main-thread
CPU time until the whole graph is in (Chrome's ThreadTime metric) is printed beside them.  Panning: 60
animation frames each panning and zooming the whole graph; the mean and the longest frame interval.
Prints a Markdown table; docs/benchmarks.md keeps results.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]
from browser_support import chromium, seed_large, served, sign_in  # noqa: E402
from headwater.lineage import LineageStore  # noqa: E402
from helpers import fresh_database, throwaway_postgres, wait_for  # noqa: E402

PAN = """
const done = arguments[arguments.length - 1];
const cy = window.headwater.cy;
const times = [];
let last = performance.now();
let n = 0;
function frame(now) {
  times.push(now - last);
  last = now;
  cy.panBy({x: 7, y: 3});
  cy.zoom({level: cy.zoom() * (n % 20 < 10 ? 1.03 : 0.97), renderedPosition: {x: 400, y: 300}});
  if (++n < 60) requestAnimationFrame(frame); else done(times.slice(1));
}
requestAnimationFrame(frame);
"""


def cpu_seconds(driver: object) -> float:
    """CPU time of the page's main thread so far (Chrome's Performance.getMetrics ThreadTime): what the
    page itself spent, whatever else the machine's cores were doing."""
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]  # type: ignore[attr-defined]
    return float(next(m["value"] for m in metrics if m["name"] == "ThreadTime"))


def measure(url: str, size: int, repeat: int) -> dict[str, float]:
    depth = 3 if size <= 2221 else 5
    renders, frames = [], []
    for _ in range(repeat):
        with LineageStore.open(url) as store, served(store) as base, chromium() as driver:
            sign_in(driver, base, "#/runs")
            driver.execute_cdp_cmd("Performance.enable", {"timeDomain": "threadTicks"})
            before = cpu_seconds(driver)
            driver.execute_script(f"location.hash = '#/dataset?name=hub&depth={depth}'")
            wait_for(lambda d=driver: d.execute_script("return window.headwater.renders.at(-1)"),
                     timeout=300, message="the first render")
            render = wait_for(lambda d=driver: d.execute_script(
                "const r = window.headwater.renders.at(-1); return r.complete && r"), timeout=300,
                message="the whole graph")
            render["cpuMs"] = (cpu_seconds(driver) - before) * 1000
            renders.append(render)
            frames.extend(driver.execute_async_script(PAN))
    ms = [r["ms"] for r in renders]
    return {"shown": renders[-1]["nodes"], "edges": renders[-1]["edges"], "render_median": statistics.median(ms),
            "render_max": max(ms), "fetch_median": statistics.median(r["fetchMs"] for r in renders),
            "draw_median": statistics.median(r["drawMs"] for r in renders),
            "first_nodes": renders[-1]["firstNodes"],
            "complete_median": statistics.median(r["completeMs"] for r in renders),
            "cpu_median": statistics.median(r["cpuMs"] for r in renders),
            "frame_mean": statistics.mean(frames), "frame_max": max(frames)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,2000,3000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    def run(server: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}, headless Chromium, window 1500x950\n")
        print("| datasets | load avg (start-end) | drawn (nodes/edges) | first frame (nodes) "
              "| first render median (max) | of which API answer | draw + paint | whole graph in "
              "| page main-thread CPU | pan/zoom frame mean (max) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for size in sizes:
            with fresh_database(server) as url:
                with LineageStore.open(url) as store:
                    seed_large(store, size)
                load = os.getloadavg()[0]
                r = measure(url, size, args.repeat)
            print(f"| {size} | {load:.1f}-{os.getloadavg()[0]:.1f} | {r['shown']}/{r['edges']} | {r['first_nodes']} "
                  f"| {r['render_median']:.0f} ms ({r['render_max']:.0f}) "
                  f"| {r['fetch_median']:.0f} ms | {r['draw_median']:.0f} ms | {r['complete_median']:.0f} ms "
                  f"| {r['cpu_median']:.0f} ms "
                  f"| {r['frame_mean']:.1f} ms ({r['frame_max']:.0f}) |", flush=True)

    if args.database_url:
        run(args.database_url)
    else:
        with throwaway_postgres() as server:
            run(server.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
