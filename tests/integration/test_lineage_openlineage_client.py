"""Events sent by the official OpenLineage Python client land in the lineage answers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import output_statistics_output_dataset, schema_dataset
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

from headwater.lineage import LineageStore
from headwater.lineage.api import ApiAuth, create_app
from lineage_support import WAREHOUSE

pytestmark = pytest.mark.integration

TOKEN, READ_TOKEN = "client-write-token", "dashboard-read-token"
TIME = "2026-11-23T06:00:00.000Z"


def _events(run_id: str) -> list[RunEvent]:
    job = Job(namespace="airflow-prod", name="revenue.extract_payments")
    stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=600)
    schema = schema_dataset.SchemaDatasetFacet(fields=[
        schema_dataset.SchemaDatasetFacetFields(name="id", type="bigint"),
        schema_dataset.SchemaDatasetFacetFields(name="amount", type="numeric"),
    ])
    inputs = [InputDataset(namespace="api://stripe", name="payments")]
    outputs = [OutputDataset(namespace=WAREHOUSE, name="raw.stripe_payments",
                             facets={"schema": schema}, outputFacets={"outputStatistics": stats})]
    return [
        RunEvent(eventType=RunState.START, eventTime=TIME, run=Run(runId=run_id), job=job,
                 producer="https://example.test/airflow", inputs=inputs, outputs=outputs),
        RunEvent(eventType=RunState.COMPLETE, eventTime=TIME, run=Run(runId=run_id), job=job,
                 producer="https://example.test/airflow", inputs=inputs, outputs=outputs),
    ]


def _emit_all(url: str, events: list[RunEvent]) -> None:
    config = HttpConfig(url=url, auth=ApiKeyTokenProvider({"apiKey": TOKEN}),
                        retry={"total": 0, "allowed_methods": ["POST"]})
    client = OpenLineageClient(transport=HttpTransport(config))
    for event in events:
        client.emit(event)
    client.close()


def test_events_from_the_official_client_appear_upstream_and_downstream(store: LineageStore) -> None:
    run_id = str(uuid.uuid4())

    async def scenario() -> tuple[Any, Any]:
        async with TestClient(TestServer(create_app(store, auth=ApiAuth(READ_TOKEN, TOKEN)), host="127.0.0.1")) as http:
            await asyncio.to_thread(_emit_all, str(http.make_url("/")), _events(run_id))
            headers = {"Authorization": f"Bearer {READ_TOKEN}"}
            async with http.get("/v1/lineage/upstream/raw.stripe_payments", headers=headers) as up:
                upstream = await up.json()
            async with http.get("/v1/lineage/downstream/payments", headers=headers) as down:
                downstream = await down.json()
            return upstream, downstream

    upstream, downstream = asyncio.run(scenario())
    assert [(n["dataset"], n["depth"]) for n in upstream["nodes"]] == [
        ({"namespace": "api://stripe", "name": "payments"}, 1)
    ]
    assert [(e["pipeline"], e["step"]) for e in upstream["edges"]] == [
        ("airflow-prod", "revenue.extract_payments")
    ]
    assert [n["dataset"]["name"] for n in downstream["nodes"]] == ["raw.stripe_payments"]
    version = store.dataset("raw.stripe_payments").versions[0]
    assert (version.run_id, version.row_count) == (run_id, 600)
    assert version.schema_fingerprint is not None
    assert store.counts()["openlineage_events"] == 2
    assert store.run(run_id).steps[0].phase == "Succeeded"
