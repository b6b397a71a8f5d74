"""``headwater lineage upstream|downstream|explain DATASET``: the lineage API, read by people."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from typing import Any

__all__ = ["LineageApiError", "fetch", "query", "render_explain", "render_graph"]

DEFAULT_API = "http://127.0.0.1:8080"


class LineageApiError(RuntimeError):
    """The API answered with an error (its message is for people) or could not be reached."""


def fetch(path: str, *, api: str | None = None, token: str | None = None, body: dict[str, Any] | None = None,
          **query: Any) -> Any:
    """GET ``path`` from the lineage API (POST ``body`` as JSON when given) and return the decoded JSON."""
    base = (api or os.environ.get("HEADWATER_API_URL") or DEFAULT_API).rstrip("/")
    params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    data = json.dumps({k: v for k, v in body.items() if v is not None}).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}{'?' + params if params else ''}", data=data,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
    token = token or os.environ.get("HEADWATER_API_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise LineageApiError(f"{exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise LineageApiError(f"cannot reach the lineage API at {base}: {exc.reason}") from None


def query(kind: str, dataset: str, *, api: str | None = None, token: str | None = None, **fields: Any) -> Any:
    """``POST /v1/query/<kind>`` with the dataset in the body: names of any length and content work."""
    return fetch(f"/v1/query/{kind}", api=api, token=token, body={"name": dataset, **fields})


def _label(ref: dict[str, str]) -> str:
    return f"{ref['namespace']}/{ref['name']}"


def render_graph(graph: dict[str, Any]) -> str:
    """A tree from the dataset outwards; each branch names the pipeline step that connects it."""
    upstream = graph["direction"] == "upstream"
    children: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    for edge in graph["edges"]:
        here, there = (edge["output"], edge["input"]) if upstream else (edge["input"], edge["output"])
        children[_label(here)].append((_label(there), f"{edge['pipeline']}/{edge['step']}"))
    root = _label(graph["dataset"])
    lines = [root]

    def walk(node: str, prefix: str, seen: frozenset[str]) -> None:
        kids = sorted(set(children.get(node, [])))
        for i, (child, via) in enumerate(kids):
            last = i == len(kids) - 1
            arrow = "<-" if upstream else "->"
            cycle = " (cycle)" if child in seen else ""
            lines.append(f"{prefix}{'└── ' if last else '├── '}{child}  {arrow} {via}{cycle}")
            if not cycle:
                walk(child, prefix + ("    " if last else "│   "), seen | {child})

    walk(root, "", frozenset({root}))
    if len(lines) == 1:
        lines.append(f"(nothing {'upstream' if upstream else 'downstream'})")
    if graph.get("truncated"):
        lines.append(f"(truncated: more than {graph.get('limit')} datasets or edges; raise --limit, lower --depth, "
                     "or page with -o json and the answer's nextCursor)")
    return "\n".join(lines)


def _node_line(rank: int, node: dict[str, Any]) -> list[str]:
    version = node.get("latestVersion") or {}
    facts = [f"depth {node['depth']}"]
    if version:
        facts.append(f"last written by {version.get('pipeline', '?')}/{version.get('step', '?')} "
                     f"in run {version.get('runId', '?')} ({node.get('producerRunPhase') or 'unknown'})")
    if node.get("rowCountChangePct") is not None:
        facts.append(f"rows {node['rowCountChangePct']:+.1f}% vs previous")
    if node.get("schemaChanged"):
        facts.append("schema changed")
    if node.get("ageSeconds") is not None:
        facts.append(f"age {int(node['ageSeconds'])}s")
    out = [f"{rank}. {_label(node['dataset'])}  (score {node['score']:.2f})", "   " + "; ".join(facts)]
    out.extend(f"   - {reason['message']}" for reason in node.get("reasons") or [])
    return out


def render_explain(explanation: dict[str, Any]) -> str:
    """The root-cause view: upstream datasets, most likely cause first."""
    lines = [f"Why might {_label(explanation['dataset'])} be wrong? Most likely causes first:"]
    suspects = [n for n in explanation["nodes"] if n.get("reasons")]
    for rank, node in enumerate(suspects, 1):
        lines.extend(_node_line(rank, node))
    if not suspects:
        lines.append("nothing upstream looks wrong: every producer succeeded, no large row-count or schema change")
    if explanation.get("truncated"):
        lines.append(f"(only the nearest {explanation.get('limit')} upstream datasets were looked at; "
                     "raise --limit or explain a dataset further upstream)")
    return "\n".join(lines)
