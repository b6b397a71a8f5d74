"""Lineage store benchmark: traversal on a large synthetic graph, the naive per-run query, and ingest.

    .venv/bin/python benchmarks/lineage_bench.py [--scale 0.1] [--database-url URL] [--baseline DIR]

With ``--baseline DIR`` (an older checkout's tree, e.g. ``git archive <commit> operator | tar -x -C DIR``)
the traversal percentiles, the ingest rates (``--side-events``: each tree its own events, direct and over HTTP)
and the schedule-lag scenario run twice on the same loaded database, side by side: once with that tree's
``headwater`` package, once with this one, each in a subprocess of its own (``--rounds N``: N times, taking
turns).
The schedule-lag scenario serves the API in an event loop that also runs a loop like the operator's
periodic passes (``asyncio.to_thread`` every ``--tick`` seconds) and measures how late each pass starts
while ``--clients`` concurrent clients keep slow explain queries running for ``--lag-seconds``.

The graph has ``--datasets`` datasets in layers; every dataset past the first layer is written by its
own job reading 1-3 datasets of the layer before (near its own position, as real pipelines are
local).  ``--records`` run-level lineage records are spread over the distinct edges (each edge is
seen in several runs).  They are bulk-loaded (COPY) into both the store's deduplicated
``lineage_edges`` and, for comparison, a ``data_lineage`` table with one row per run as in the use
case, queried with the use case's recursive CTE (``UNION ALL`` over per-run rows).  Without
``--database-url`` (or DATABASE_URL) a throwaway server is started with hack/postgres.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestServer
from psycopg import sql

from headwater.lineage import DatasetRef, EdgeRecord, LineageStore, build_run_event, migrate, step_run_uuid
from headwater.lineage import api as lineage_api
from headwater.lineage.api import create_app
from headwater.lineage.records import dataset_key

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import fresh_database, throwaway_postgres  # noqa: E402  (the tests' PostgreSQL helpers)

NAMESPACE = "postgres://bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

NAIVE_TABLE = """
CREATE TABLE data_lineage (run_id text, step_id text, source text, source_table text, destination text,
                           destination_table text, recorded_at timestamptz);
"""
NAIVE_INDEXES = """
CREATE INDEX ON data_lineage (destination_table);
CREATE INDEX ON data_lineage (source_table);
"""
NAIVE_UPSTREAM = """
WITH RECURSIVE upstream AS (
  SELECT source, source_table, destination, destination_table, step_id, 1 as depth
  FROM data_lineage WHERE destination_table = %(table)s
  UNION ALL
  SELECT l.source, l.source_table, l.destination, l.destination_table, l.step_id, u.depth + 1
  FROM data_lineage l JOIN upstream u ON l.destination_table = u.source_table
  WHERE u.depth < %(depth)s
)
SELECT DISTINCT source, source_table, destination, destination_table, depth
FROM upstream ORDER BY depth
"""
NAIVE_DOWNSTREAM = """
WITH RECURSIVE downstream AS (
  SELECT source, source_table, destination, destination_table, step_id, 1 as depth
  FROM data_lineage WHERE source_table = %(table)s
  UNION ALL
  SELECT l.source, l.source_table, l.destination, l.destination_table, l.step_id, d.depth + 1
  FROM data_lineage l JOIN downstream d ON l.source_table = d.destination_table
  WHERE d.depth < %(depth)s
)
SELECT DISTINCT source, source_table, destination, destination_table, depth
FROM downstream ORDER BY depth
"""


@dataclass(frozen=True)
class Graph:
    layers: list[list[str]]
    jobs: list[tuple[str, str, list[str]]]  # (output, step, inputs)

    @property
    def edges(self) -> list[tuple[str, str, str]]:
        return [(i, step, out) for out, step, inputs in self.jobs for i in inputs]


def make_graph(datasets: int, layers: int, seed: int) -> Graph:
    rng = random.Random(seed)
    width = datasets // layers
    names = [[f"l{layer:02d}.t{i:06d}" for i in range(width)] for layer in range(layers)]
    jobs = []
    window = max(3, width // 200)
    for layer in range(1, layers):
        for i, out in enumerate(names[layer]):
            fan_in = rng.choices((1, 2, 3), weights=(4, 4, 2))[0]
            near = [min(width - 1, max(0, i + rng.randint(-window, window))) for _ in range(fan_in)]
            inputs = sorted({names[layer - 1][j] for j in near})
            jobs.append((out, f"build-{out}", inputs))
    return Graph(names, jobs)


@contextmanager
def database(server_url: str | None) -> Iterator[str]:
    """A fresh database on the given server, or on a throwaway server started for the benchmark."""
    if server_url:
        with fresh_database(server_url) as url:
            yield url
        return
    with throwaway_postgres() as server, fresh_database(server.url) as url:
        yield url


def _copy(conn: psycopg.Connection[Any], statement: str, rows: Iterator[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(statement.encode()) as copy:
        for row in rows:
            copy.write_row(row)


def load(url: str, graph: Graph, records: int) -> dict[str, float]:
    """Bulk-load the store's tables and the naive per-run table; seconds per phase."""
    timings: dict[str, float] = {}
    edges = graph.edges
    runs = max(1, records // len(edges))
    migrate(url)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        all_names = [n for layer in graph.layers for n in layer]
        _copy(conn, "COPY datasets (ident, namespace, name) FROM STDIN",
              ((dataset_key(NAMESPACE, n), NAMESPACE, n) for n in all_names))
        ids = {str(n): int(i) for i, n in conn.execute("SELECT id, name FROM datasets")}
        _copy(conn, "COPY jobs (ident, pipeline, step) FROM STDIN",
              ((dataset_key(_pipeline(s), s), _pipeline(s), s) for _, s, _ in graph.jobs))
        job_ids = {str(s): int(i) for i, s in conn.execute("SELECT id, step FROM jobs")}
        last = T0 + timedelta(days=runs - 1)
        _copy(conn, "COPY lineage_edges (input_id, job_id, output_id, first_seen, last_seen, last_run_id) "
              "FROM STDIN", ((ids[i], job_ids[s], ids[o], T0, last, f"run-{runs - 1}") for i, s, o in edges))
        _copy(conn, "COPY dataset_versions (dataset_id, run_id, pipeline, step, written_at, row_count) "
              "FROM STDIN", ((ids[o], f"run-{r}", _pipeline(s), s, T0 + timedelta(days=r), 1000 + r)
                             for r in range(runs) for o, s, _ in graph.jobs))
        conn.commit()
        timings["store_load_s"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(NAIVE_TABLE)
        _copy(conn, "COPY data_lineage FROM STDIN", (
            (f"run-{k // len(edges)}", s, NAMESPACE, i, NAMESPACE, o, T0 + timedelta(days=k // len(edges)))
            for k, (i, s, o) in ((k, edges[k % len(edges)]) for k in range(records))))
        conn.execute(NAIVE_INDEXES)
        conn.commit()
        timings["naive_load_s"] = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return timings


def _pipeline(step: str) -> str:
    return f"pipeline-{step[6:9]}"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(p99 * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}


def open_app(store: LineageStore) -> web.Application:
    """The API without authentication, whichever version of it is imported (older ones had none)."""
    if "auth" in inspect.signature(create_app).parameters:
        return create_app(store, auth=lineage_api.ApiAuth(enabled=False))
    return create_app(store)


def bench_store(store: LineageStore, names: list[str], direction: str, depth: int) -> dict[str, Any]:
    method = store.upstream if direction == "upstream" else store.downstream
    sizes: list[int] = []
    times: list[float] = []
    for name in names:
        started = time.perf_counter()
        sizes.append(len(method(name, namespace=NAMESPACE, depth=depth).nodes))
        times.append(time.perf_counter() - started)
    return {**percentiles(times), "median_nodes": statistics.median(sizes)}


def bench_naive(url: str, names: list[str], direction: str, depth: int, timeout_ms: int) -> dict[str, Any]:
    query = NAIVE_UPSTREAM if direction == "upstream" else NAIVE_DOWNSTREAM
    times: list[float] = []
    timeouts = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(timeout_ms)))
        for name in names:
            started = time.perf_counter()
            try:
                conn.execute(query, {"table": name, "depth": depth}).fetchall()
                times.append(time.perf_counter() - started)
            except psycopg.errors.QueryCanceled:
                timeouts += 1
    result: dict[str, Any] = percentiles(times) if times else {"n": 0}
    return {**result, "timeouts": timeouts, "timeout_ms": timeout_ms}


def _events(count: int, graph: Graph, seed: int, prefix: str = "ingest") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for k in range(count):
        target, step, inputs = graph.jobs[rng.randrange(len(graph.jobs))]
        refs = [DatasetRef(NAMESPACE, n) for n in inputs]
        output = DatasetRef(NAMESPACE, target)
        out.append(build_run_event("COMPLETE", run_id=f"{prefix}/run-{k}", pipeline=_pipeline(step), step=step,
                                   event_time=T0 + timedelta(seconds=k), inputs=refs, outputs=[output],
                                   row_counts={output: 100 + k}))
    return out


def bench_ingest(store: LineageStore, events: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for event in events:
        store.ingest_openlineage(event)
    return len(events) / (time.perf_counter() - started)


async def _post_all(url: str, events: list[dict[str, Any]], concurrency: int) -> float:
    """POST ``events`` to ``url`` with ``concurrency`` clients, each sending its next once answered: events/s."""
    async with ClientSession() as session:
        queue = list(events)

        async def worker() -> None:
            while queue:
                async with session.post(url, data=json.dumps(queue.pop())) as response:
                    assert response.status == 201, await response.text()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(events) / (time.perf_counter() - started)


def bench_http_ingest(store: LineageStore, events: list[dict[str, Any]], concurrency: int,
                      client_process: bool = False) -> float:
    """OpenLineage events/s through the API; its clients run in the server's process and event loop, or in
    a process of their own (``client_process``: as real producers do, they then take no CPU of the server's)."""
    async def main() -> float:
        async with TestServer(open_app(store), host="127.0.0.1") as server:
            url = str(server.make_url("/api/v1/lineage"))
            if not client_process:
                return await _post_all(url, events, concurrency)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--http-clients", json.dumps([url, concurrency]),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate(json.dumps(events).encode())
            if proc.returncode != 0:
                raise RuntimeError(f"the HTTP clients' process failed ({proc.returncode})")
            return float(out)

    return asyncio.run(main())


def http_clients(spec: str) -> float:
    """The clients' process of ``bench_http_ingest``: the events come on stdin, the rate goes to stdout."""
    url, concurrency = json.loads(spec)
    return asyncio.run(_post_all(url, json.load(sys.stdin), concurrency))


def bench_record_writes(store: LineageStore, graph: Graph, count: int) -> float:
    jobs = graph.jobs[:count]
    started = time.perf_counter()
    for out, step, inputs in jobs:
        store.record(EdgeRecord(step_run_uuid("writes", step), _pipeline(step), step,
                                        tuple(DatasetRef(NAMESPACE, n) for n in inputs),
                                        (DatasetRef(NAMESPACE, out),), seen_at=T0 + timedelta(days=400)))
    return len(jobs) / (time.perf_counter() - started)


def _samples(graph: Graph, direction: str, depth: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    layers = graph.layers[depth:] if direction == "upstream" else graph.layers[: len(graph.layers) - depth]
    pool = [n for layer in (layers or graph.layers) for n in layer]
    return [rng.choice(pool) for _ in range(count)]


async def schedule_lag(store: LineageStore, names: list[str], depth: int, clients: int, seconds: float,
                       tick: float) -> dict[str, Any]:
    """How late a periodic pass (``asyncio.to_thread`` every ``tick`` s, as the operator's loops) starts
    while ``clients`` clients keep explain queries of ``names`` running against the API in the same loop."""
    runner = web.AppRunner(open_app(store), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    lags: list[float] = []
    answers: list[float] = []
    statuses: dict[int, int] = {}
    end = time.monotonic() + seconds

    def load() -> None:  # the clients, in a thread of their own (they stand for other processes)
        async def client(session: ClientSession, k: int) -> None:
            while time.monotonic() < end:
                name = names[(k + len(answers)) % len(names)]
                asked = time.monotonic()
                url = f"http://127.0.0.1:{port}/v1/explain/{quote(name, safe='')}?namespace={quote(NAMESPACE)}"
                async with session.get(f"{url}&depth={depth}&limit=10000") as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                answers.append(time.monotonic() - asked)

        async def main() -> None:
            async with ClientSession(timeout=ClientTimeout(total=600)) as session:
                await asyncio.gather(*(client(session, k) for k in range(clients)))

        asyncio.run(main())

    thread = threading.Thread(target=load, name="bench-clients")
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(tick)
        due = time.monotonic()
        started = await asyncio.to_thread(time.monotonic)
        lags.append(started - due)
    await runner.cleanup()
    return {"ticks": percentiles(lags), "queries": percentiles(answers) if answers else {"n": 0},
            "statuses": statuses, "clients": clients, "seconds": seconds, "tick_s": tick}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The side-by-side part, with whichever ``headwater`` this process imports (see ``--baseline``)."""
    import headwater  # noqa: PLC0415

    out: dict[str, Any] = {"headwater": str(Path(headwater.__file__).parent), "load_average_at_start": os.getloadavg()}
    with LineageStore.open(spec["url"], max_size=4, apply_migrations=False) as store:
        for direction in ("upstream", "downstream"):
            out[f"store_{direction}"] = bench_store(store, spec[direction], direction, spec["depth"])
        if spec["events"]:  # each tree ingests events of its own (the same shapes), so none is a duplicate
            graph = make_graph(spec["datasets"], spec["layers"], spec["seed"])
            prefix = spec["label"] + (f"-{spec['round']}" if spec.get("round") else "")  # new events each round
            events = _events(spec["events"], graph, spec["seed"], prefix=prefix)
            half = len(events) // 2
            out["ingest_events_per_s"] = round(bench_ingest(store, events[:half]), 1)
            out["http_ingest_events_per_s"] = round(bench_http_ingest(store, events[half:], spec["concurrency"],
                                                                      spec["client_process"]), 1)
            out["load_average"] = os.getloadavg()
        if spec["clients"]:
            out["schedule_lag"] = asyncio.run(schedule_lag(store, spec["explain"], spec["explain_depth"],
                                                           spec["clients"], spec["lag_seconds"], spec["tick"]))
    return out


def side_by_side(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """``worker`` in a subprocess per tree: the baseline's (when given) first, then this one's.

    With ``--rounds N`` the trees take turns N times (baseline, current, current, baseline, ...): the first
    round's figures stay under each tree's label, every round's are under ``rounds`` and the median of each
    traversal percentile under ``medians``."""
    trees = ([("baseline", Path(args.baseline).resolve() / "operator")] if args.baseline else []) + [
        ("current", ROOT / "operator")]
    rounds = [_one_round({**spec, "round": k}, trees if k % 2 == 0 else trees[::-1]) for k in range(args.rounds)]
    out: dict[str, Any] = dict(rounds[0])
    if args.rounds > 1:
        out["rounds"] = rounds
        out["medians"] = {label: {f"store_{d}": {m: statistics.median(r[label][f"store_{d}"][m] for r in rounds)
                                                 for m in ("p50_ms", "p99_ms", "max_ms")}
                                  for d in ("upstream", "downstream")} for label, _ in trees}
    return out


def _one_round(spec: dict[str, Any], trees: list[tuple[str, Path]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, tree in trees:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT / "tests")])}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker",
                               json.dumps({**spec, "label": label})],
                              env=env, capture_output=True, text=True, check=False, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"{label} worker failed: {proc.stderr[-4000:]}")
        out[label] = json.loads(proc.stdout)
        # Queries the clients gave up on may still run in the server: end them before the next tree.
        with psycopg.connect(spec["url"], autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    datasets, records = int(args.datasets * args.scale), int(args.records * args.scale)
    graph = make_graph(datasets, args.layers, args.seed)
    report: dict[str, Any] = {"datasets": datasets, "records": records, "distinct_edges": len(graph.edges),
                              "depth": args.depth}
    with database(args.database_url) as url:
        report["machine"] = _machine(url)
        report["load"] = load(url, graph, records)
        spec = {"url": url, "depth": args.depth, "clients": args.clients, "lag_seconds": args.lag_seconds,
                "tick": args.tick, "explain_depth": args.explain_depth, "events": args.side_events,
                "concurrency": args.concurrency, "client_process": args.client_process, "datasets": datasets,
                "layers": args.layers, "seed": args.seed,
                "upstream": _samples(graph, "upstream", args.depth, args.queries, args.seed),
                "downstream": _samples(graph, "downstream", args.depth, args.queries, args.seed),
                "explain": _samples(graph, "upstream", min(args.explain_depth, args.layers - 1), 200, args.seed + 1)}
        report["side_by_side"] = side_by_side(args, spec)
        if args.only_side_by_side:
            return report
        with LineageStore.open(url, max_size=8) as store:
            for direction in ("upstream", "downstream"):
                names = _samples(graph, direction, args.depth, args.queries, args.seed)
                report[f"store_{direction}"] = bench_store(store, names, direction, args.depth)
                naive = names[: args.naive_queries]
                if not naive:
                    continue
                report[f"naive_{direction}"] = bench_naive(url, naive, direction, args.depth, args.timeout_ms)
                report[f"store_{direction}_d3"] = bench_store(store, naive, direction, 3)
                report[f"naive_{direction}_d3"] = bench_naive(url, naive, direction, 3, args.timeout_ms)
            events = _events(args.events, graph, args.seed)
            report["ingest_events_per_s"] = round(bench_ingest(store, events[: len(events) // 2]), 1)
            report["http_ingest_events_per_s"] = round(
                bench_http_ingest(store, events[len(events) // 2:], args.concurrency, args.client_process), 1)
            report["record_lineage_per_s"] = round(bench_record_writes(store, graph, args.writes), 1)
            report["counts"] = dict(store.counts())
    return report


def _machine(url: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
            "cpu": models[0] if models else platform.processor(), "python": platform.python_version(),
            "postgres": row[0] if row else "?", "system": platform.platform()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply --datasets and --records")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--naive-queries", type=int, default=20)
    parser.add_argument("--timeout-ms", type=int, default=5000, help="statement timeout of a naive query")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients of the HTTP ingest")
    parser.add_argument("--side-events", type=int, default=4000, help="OpenLineage events each tree of the side by "
                        "side ingests (half directly, half over HTTP); 0 skips it")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--baseline", type=Path, help="an older tree (with operator/) to measure side by side")
    parser.add_argument("--clients", type=int, default=50, help="concurrent slow queries of the lag scenario; "
                        "0 skips it")
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument("--tick", type=float, default=0.5, help="period of the stand-in for the operator's loops")
    parser.add_argument("--explain-depth", type=int, default=19, help="depth of the lag scenario's explain queries")
    parser.add_argument("--only-side-by-side", action="store_true", help="skip the naive and ingest parts")
    parser.add_argument("--client-process", action="store_true", help="run the HTTP ingest's clients in a process "
                        "of their own (by default they share the server's process and event loop)")
    parser.add_argument("--rounds", type=int, default=1, help="side by side: how many times the trees take turns")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--http-clients", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.http_clients:
        print(http_clients(args.http_clients))
        return 0
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
