"""Kubernetes REST calls answered as JSON, without the client's typed API classes.

The kubernetes package builds a class per API group with a validated signature per call, and turns every
answer into typed models.  ``CoreV1Api`` alone costs about 22 MiB of memory and 3 s of CPU to import, and
the operator touches only Jobs, their pods and Events of that surface.  These calls go through the same
:class:`~kubernetes.client.ApiClient` (its configuration, credentials, connection pool and TLS), send and
read plain JSON, and raise the same :class:`~kubernetes.client.exceptions.ApiException` on a non-2xx answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = ["request"]

Query = Mapping[str, str | None]


def request(api_client: client.ApiClient, method: str, path: str, *, params: Mapping[str, str] | None = None,
            query: Query | None = None, body: Any = None) -> Any:
    """``method path`` (with ``{name}`` placeholders filled, URL-quoted, from ``params``); the decoded JSON
    answer, or None when it has no body."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    wanted = [(k, v) for k, v in (query or {}).items() if v is not None]
    serialized = api_client.param_serialize(method=method, resource_path=path, path_params=dict(params or {}),
                                            query_params=wanted, header_params=headers, body=body,
                                            auth_settings=["BearerToken"])
    response = api_client.call_api(*serialized)
    data = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return json.loads(data) if data else None
