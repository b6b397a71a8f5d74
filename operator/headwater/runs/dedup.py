"""Skipping reconciles that cannot change anything.

:class:`Coalescer` keeps at most one pass in flight per run and at most one
more requested: a burst of events for a run costs one extra pass, not one
each, and no thread waits behind another.  :class:`RunMemory` remembers, per
run, its last few resourceVersions reconciled or written and each step's
(phase, attempts, Job) as the latest shows it, so that the echo of the engine's own status write, or a Job
update that leaves its step as it was, can be dropped.  Both only ever skip
work: what they do not know is reconciled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from headwater.runs.jobs import observe_job
from headwater.spec import constants as c
from headwater.spec.models import PipelineRunStatus, StepPhase

__all__ = ["Coalescer", "RunMemory"]

T = TypeVar("T")


class Coalescer:
    """Runs work for a key in one thread at a time; requests that arrive meanwhile fold into one more pass."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._busy: set[Hashable] = set()
        self._again: set[Hashable] = set()

    def run(self, key: Hashable, work: Callable[[], T]) -> T | None:
        """Call ``work`` until no request for ``key`` arrived during the last call; returns its last result.

        Returns None at once when another thread is running work for ``key``: that thread calls
        ``work`` once more after its current call, so whatever prompted this request is seen.
        """
        with self._guard:
            if key in self._busy:
                self._again.add(key)
                return None
            self._busy.add(key)
        try:
            while True:
                with self._guard:
                    self._again.discard(key)
                result = work()
                with self._guard:
                    if key not in self._again:
                        self._busy.discard(key)
                        return result
        except BaseException:
            with self._guard:
                self._busy.discard(key)
                self._again.discard(key)
            raise


_VERSIONS = 4
"""How many of a run's latest versions are remembered."""

StepKey = tuple[StepPhase, int, str | None]
"""What a Job can change about its step: phase, attempts and Job name."""


@dataclass(frozen=True)
class _Seen:
    resource_versions: tuple[str, ...]  # the latest first: a run's events may trail its last write
    finished: bool
    steps: dict[str, StepKey]


class RunMemory:
    """The last reconciled version of each run, and its steps as that version shows them."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._runs: dict[tuple[str, str], _Seen] = {}

    def remember(self, run: dict[str, Any], status: PipelineRunStatus) -> None:
        """``run`` (as read or as written) was reconciled and its status is ``status``."""
        meta = run["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._guard:
            before = self._runs.get(key)
            versions = (meta.get("resourceVersion", ""),) + (before.resource_versions[:_VERSIONS - 1] if before else ())
            self._runs[key] = _Seen(tuple(dict.fromkeys(versions)), status.phase.final,
                                    {s.name: (s.phase, s.attempts, s.job) for s in status.steps})

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._runs.pop((namespace, name), None)

    def is_known(self, namespace: str, name: str, resource_version: str) -> bool:
        """Whether this version of the run was already reconciled, or written by the engine since.

        True for the echoes of the engine's own status writes, including an earlier write of the
        same pass that arrives after the last one; a version someone else wrote is never known.
        """
        seen = self._runs.get((namespace, name))
        return seen is not None and resource_version in seen.resource_versions

    def job_changes_run(self, namespace: str, run: str, job: dict[str, Any], deleted: bool = False) -> bool:
        """Whether an event about ``job`` can change its run.

        False only when the run's last reconciled status already shows the Job's step as the Job
        does, or shows the step or the whole run finished (outcomes are final).
        """
        seen = self._runs.get((namespace, run))
        if seen is None:
            return True
        if seen.finished:
            return False
        step = seen.steps.get((job.get("metadata") or {}).get("labels", {}).get(c.LABEL_STEP, ""))
        if step is None:
            return True
        if step[0].final:
            return False
        if deleted:
            return True
        observed = observe_job(job, [])
        return (observed.phase, observed.attempts, observed.job) != step
