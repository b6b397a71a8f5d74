"""Reads about a namespace's Jobs that serve every Job of it for a moment: why the Job controller creates no
pod for a Job (its ``FailedCreate`` Events), and why a Job's pod does not start (the pending step pods).

A Job with no pod a few seconds after its creation is either refused its pods (quota, admission: the Job
controller posts a ``FailedCreate`` Event and no condition says so) or only behind in the Job controller's
queue; a Job whose pod is not ready may have a pod that cannot pull its image or be scheduled, or only one
the Job controller has not counted ready yet.  Reading each such Job's Events and pods cost the apiserver a
scan of the namespace per Job and per recheck (with 100 layered runs waiting for the Job controller: 3.6
LIST events per Job at 125 ms and 8 LIST pods per Job at 36 ms).  Here each is one request per namespace,
selected by the apiserver (Events by reason, pods by phase and label), and its answer serves every Job of
the namespace for :data:`FRESH_SECONDS`; a Job that asks meanwhile waits for the read in flight rather than
making its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["FRESH_SECONDS", "NamespaceReads"]

FRESH_SECONDS = 2.0
"""How long one namespace's answer serves every Job that asks."""

T = TypeVar("T")


class NamespaceReads(Generic[T]):
    """Per namespace, the answer of ``read(namespace)``, read at most once every :data:`FRESH_SECONDS`."""

    def __init__(self, read: Callable[[str], T], fresh_seconds: float = FRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.fresh_seconds = fresh_seconds
        self._clock = clock
        self._guard = threading.Condition()
        self._answers: dict[str, tuple[float, T]] = {}  # namespace → (read at, answer)
        self._reading: set[str] = set()

    def get(self, namespace: str) -> T:
        """The namespace's answer: the one kept while fresh, the one in flight, or a new read's."""
        with self._guard:
            while True:
                kept = self._answers.get(namespace)
                if kept is not None and self._clock() - kept[0] < self.fresh_seconds:
                    return kept[1]
                if namespace not in self._reading:
                    self._reading.add(namespace)
                    break
                self._guard.wait()  # another thread reads it: its answer is as fresh as ours would be
        began = self._clock()
        answered = False
        try:
            answer = self._read(namespace)
            answered = True
            return answer
        finally:
            with self._guard:
                self._reading.discard(namespace)
                if answered:
                    # old answers go (a namespace no Job asks about any more is not kept)
                    self._answers = {ns: kept for ns, kept in self._answers.items()
                                     if began - kept[0] < self.fresh_seconds}
                    self._answers[namespace] = (began, answer)
                self._guard.notify_all()
