"""Run the kopf operator: the run engine, schedules, and (when configured) the lineage API and metrics."""

from __future__ import annotations

import asyncio
import logging

import kopf

import headwater.controller.handlers  # noqa: F401  (importing registers the kopf handlers)
from headwater.controller.config import load_settings

__all__ = ["run_operator"]


def run_operator(namespaces: list[str] | None = None, *, verbose: bool = False) -> None:
    """Block running the operator, cluster-wide or limited to ``namespaces``."""
    settings = load_settings()
    scope = list(namespaces or settings.namespaces)
    # The namespaces given here reach the periodic loops (resync, schedules, freshness) too.
    settings = settings.model_copy(update={"namespaces": scope})
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.INFO if verbose else logging.WARNING)
    asyncio.run(kopf.operator(standalone=True, clusterwide=not scope, namespaces=scope,
                              memo=kopf.Memo(settings=settings)))
