"""The newest version seen of each watched run, so that a reconcile pass starts without reading it again.

The run's watch events and the answers to the engine's own writes both carry a whole run; a pass that
starts from the newest of them needs no GET.  A version can still be older than the apiserver's (an event
not delivered yet): every write of a pass is guarded by the run's resourceVersion, so a pass planned on an
old version conflicts (409), and the engine reads the run afresh and plans again.  A pass that writes
nothing planned on what the cluster showed a moment ago, and the newer version's own event brings the run
back.  This is an informer's cache, for one kind, with the engine's writes folded in.

Runs are kept as compact JSON (a parsed run costs several times its JSON in Python objects), the least
recently seen dropped first once they pass ``max_bytes`` (a dropped run is read with a GET).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["DEFAULT_MAX_BYTES", "LatestRuns", "is_newer"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Bound of the runs kept (their JSON), beyond which the least recently seen are dropped."""


def is_newer(version: str, than: str) -> bool:
    """Whether resourceVersion ``version`` is newer than ``than``.

    etcd's versions are increasing integers, which the apiserver passes through; versions that are not
    compare as newer whenever they differ, so that a pass conflicts (and reads afresh) rather than plans
    on a version older than one already seen.
    """
    if version.isdigit() and than.isdigit():
        return int(version) > int(than)
    return version != than


class LatestRuns:
    """Per run (namespace, name): its newest version seen, as JSON; safe to use from many threads."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._guard = threading.Lock()
        self._runs: OrderedDict[tuple[str, str], tuple[str, str, bytes]] = OrderedDict()  # uid, version, JSON
        self._bytes = 0

    def saw(self, run: dict[str, Any]) -> None:
        """``run`` came from the watch or from the answer to a write; kept unless a newer version is."""
        meta = run.get("metadata") or {}
        key, uid, version = (meta.get("namespace", ""), meta.get("name", "")), meta.get("uid", ""), \
            meta.get("resourceVersion", "")
        if not key[1] or not version:
            return
        with self._guard:
            kept = self._runs.get(key)
            if kept is not None and kept[0] == uid and not is_newer(version, kept[1]):
                return
        encoded = json.dumps(run, separators=(",", ":")).encode()
        with self._guard:
            kept = self._runs.get(key)
            if kept is not None and kept[0] == uid and not is_newer(version, kept[1]):
                return  # a newer one arrived meanwhile
            if kept is not None:
                self._bytes -= len(kept[2])
            self._runs[key] = (uid, version, encoded)
            self._runs.move_to_end(key)
            self._bytes += len(encoded)
            while self._bytes > self.max_bytes and self._runs:
                _, (_, _, dropped) = self._runs.popitem(last=False)
                self._bytes -= len(dropped)

    def get(self, namespace: str, name: str, uid: str | None = None) -> dict[str, Any] | None:
        """A copy of the newest version seen of the run (of that UID, when given); None when none is kept."""
        with self._guard:
            kept = self._runs.get((namespace, name))
        if kept is None or (uid and kept[0] != uid):
            return None
        run: dict[str, Any] = json.loads(kept[2])
        return run

    def drop(self, namespace: str, name: str) -> None:
        """Forget the run: it was deleted, left the watch, or a pass found its version out of date."""
        with self._guard:
            kept = self._runs.pop((namespace, name), None)
            if kept is not None:
                self._bytes -= len(kept[2])

    def __len__(self) -> int:
        return len(self._runs)

    @property
    def size(self) -> int:
        """Bytes of JSON kept."""
        return self._bytes
