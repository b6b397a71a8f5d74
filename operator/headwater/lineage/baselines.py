"""Check baselines for the run engine, read from the lineage store on demand.

The engine asks only when a step with change or schema checks has just succeeded, so the store is
opened on first use (a small pool of its own) and kept.  A store that cannot be reached raises: the
run is reconciled again later and its checks are evaluated then, never without their baseline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from headwater.lineage.records import DatasetRef
from headwater.lineage.store import LineageStore
from headwater.runs.checks import Baseline, split_label

__all__ = ["StoreBaselines"]


class StoreBaselines:
    """``Baselines`` for :class:`~headwater.runs.engine.RunEngine`: ``namespace/name`` → :class:`Baseline`."""

    def __init__(self, open_store: Callable[[], LineageStore]) -> None:
        self._open_store = open_store
        self._store: LineageStore | None = None
        self._lock = threading.Lock()

    def __call__(self, labels: list[str]) -> Mapping[str, Baseline]:
        refs = {label: DatasetRef(*split_label(label)) for label in labels}
        found = self._get().baselines(list(refs.values()))
        return {label: found[ref] for label, ref in refs.items()}

    def _get(self) -> LineageStore:
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
