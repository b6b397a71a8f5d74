"""The least a dataset trigger can do on this machine: the floor ``trigger_bench.py --floor`` measures beside the
operator.

    KUBECONFIG=... python benchmarks/trigger_floor.py DATABASE_URL NAMESPACE

Not an operator and not a design: it only shows how soon *any* trigger could create runs here.  It listens for
the same notifications the operator's trigger thread listens for, and as each batch arrives (no gathering),
reads the newest version of each notified dataset in one query and creates one PipelineRun per new version at
once (100 threads, one connection each to the apiserver).  It skips everything that makes a trigger correct:
no claim, no firing row, no confirmation, no exactly-once across restarts, no modes, no start of the run.  The
runs it creates carry no finalizer, so that deleting the namespace removes them.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from headwater.lineage.triggers import NOTIFY_CHANNEL, dataset_hex
from headwater.pipelines.triggering import triggered_run
from headwater.spec.models import TriggerVersion

WORKERS = 100

_NEWEST = """
SELECT DISTINCT ON (o.dataset_id) encode(d.ident, 'hex'), d.namespace, d.name, v.id, v.run_id, v.written_at
FROM datasets d
JOIN trigger_outbox o ON o.dataset_id = d.id
JOIN dataset_versions v ON v.id = o.version_id
WHERE d.ident = ANY(%s)
ORDER BY o.dataset_id, o.id DESC
"""


def pipelines_by_input(custom: client.CustomObjectsApi, namespace: str) -> dict[str, dict[str, Any]]:
    """Each Pipeline of the namespace under the notification key of each of its trigger inputs."""
    found: dict[str, dict[str, Any]] = {}
    for pipeline in custom.list_namespaced_custom_object("headwater.dev", "v1alpha1", namespace,
                                                         "pipelines")["items"]:
        datasets = ((pipeline.get("spec") or {}).get("triggers") or {}).get("datasets") or {}
        for dataset in datasets.get("inputs") or []:
            found[dataset_hex(dataset["namespace"], dataset["name"])] = pipeline
    return found


def main() -> int:
    url, namespace = sys.argv[1], sys.argv[2]
    config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = WORKERS
    custom = client.CustomObjectsApi(client.ApiClient(configuration))
    pipelines = pipelines_by_input(custom, namespace)
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    created: set[int] = set()

    def create(body: dict[str, Any]) -> None:
        try:
            custom.create_namespaced_custom_object("headwater.dev", "v1alpha1", namespace, "pipelineruns", body)
        except client.exceptions.ApiException as exc:
            print(f"create {body['metadata']['name']}: {exc.status} {exc.reason}", flush=True)

    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as reader:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        print(f"trigger floor: listening for {len(pipelines)} dataset(s) in {namespace}", flush=True)
        while True:
            batch = {n.payload for n in listener.notifies(timeout=5.0, stop_after=1)}
            batch |= {n.payload for n in listener.notifies(timeout=0.0)}  # what is already there, no waiting
            wanted = [bytes.fromhex(key) for key in batch if key in pipelines]
            if not wanted:
                continue
            started = time.monotonic()
            rows = reader.execute(_NEWEST, (wanted,)).fetchall()
            for key, ds_namespace, ds_name, version_id, run_id, written_at in rows:
                if version_id in created:
                    continue
                created.add(version_id)
                pipeline = pipelines[key]
                version = TriggerVersion(namespace=ds_namespace, name=ds_name, version=version_id, run=run_id,
                                         written_at=written_at)
                body = triggered_run(pipeline, f"{pipeline['metadata']['name']}-v{version_id}", [version])
                body["metadata"].pop("finalizers", None)
                pool.submit(create, body)
            print(f"trigger floor: {len(batch)} notification(s), {len(rows)} version(s) read in "
                  f"{(time.monotonic() - started) * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    sys.exit(main())
