"""The Jobs of the runs in flight, as the Job watch shows them, so that a pass plans without listing them.

A run's Jobs are listed from the apiserver once, the first time this process looks at the run (or started it:
a run just started has none); from then on the Job watch's events and the answers to the engine's own creates
keep them, each Job at the newest resourceVersion seen.  This is an informer's cache, for the runs being
reconciled only, with the engine's writes folded in.

What keeps it right:

- Events that arrive while a run's Jobs are being listed are kept and merged with the list, newest version
  first, so nothing seen during the list is lost; a Job deleted meanwhile stays deleted (its tombstone).
- A create that answers 409 (the Job exists, and this process did not see it made) drops the run: its next pass
  lists again.  So a Job that a pass believes missing is one the apiserver did not have when listed or since.
- The resync lists the Jobs of its namespace once, a page at a time (:meth:`JobIndex.relist_begin`, then
  :meth:`JobIndex.relisted`), and every run tracked there takes its Jobs from that list, merged with the events
  seen since the list began: a deletion the watch never delivered (a watch restarted after the object was
  gone) is corrected within one resync, with one list per namespace, not one per run.
- A finished, forgotten or deleted run is dropped; so is everything when the index holds :data:`MAX_JOBS` Jobs:
  a run not tracked is listed on every pass, as before the index existed.

Jobs are kept slim: the metadata the engine reads (name, uid, version, creation time, labels, owners) and the
status; their pod templates, which can be large, are not kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from headwater.runs.latest import is_newer
from headwater.spec import constants as c

__all__ = ["MAX_JOBS", "JobIndex", "Listing", "Relist", "owning_run", "slim"]

MAX_JOBS = 100_000
"""Jobs kept at most, over all runs; a run that would pass it is not tracked (its passes list its Jobs)."""

_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "labels", "ownerReferences")


def slim(job: dict[str, Any]) -> dict[str, Any]:
    """What a pass reads of a Job: its identifying metadata and its status."""
    meta = job.get("metadata") or {}
    kept: dict[str, Any] = {"metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta}}
    if job.get("status"):
        kept["status"] = job["status"]
    return kept


def owning_run(job: dict[str, Any]) -> dict[str, Any] | None:
    """The run a Job belongs to: its controller owner (the run label may be a shortened name)."""
    for owner in (job.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == c.PIPELINERUN_KIND and owner.get("controller"):
            return dict(owner)
    return None


@dataclass(eq=False)
class Listing:
    """One run's Jobs (by name) and the versions of those deleted; complete once its list was merged in."""

    uid: str
    complete: bool = False
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: dict[str, str] = field(default_factory=dict)  # name → resourceVersion of its deletion
    next: Listing | None = None  # while a relist runs: what the watch showed since it began

    def see(self, job: dict[str, Any], deleted: bool = False) -> int:
        """:meth:`merge`, and the same into the relist under way, if any."""
        if self.next is not None:
            self.next.merge(job, deleted)
        return self.merge(job, deleted)

    def merge(self, job: dict[str, Any], deleted: bool = False) -> int:
        """Keep ``job`` unless a newer version of it (or of its deletion) is kept; returns the change in the
        number of Jobs kept."""
        meta = job["metadata"]
        name, version = meta["name"], meta.get("resourceVersion", "")
        kept = self.jobs.get(name)  # (a Job made again under its name has a newer version than the first)
        if kept is not None and not is_newer(version, kept["metadata"].get("resourceVersion", "")):
            return 0
        if name in self.gone and not is_newer(version, self.gone[name]):
            return 0
        if deleted:
            self.gone[name] = version
            return -1 if self.jobs.pop(name, None) is not None else 0
        self.gone.pop(name, None)
        self.jobs[name] = slim(job)
        return 0 if kept is not None else 1


class JobIndex:
    """Per run (namespace, name): its Jobs as last seen; safe to use from many threads."""

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self._guard = threading.Lock()
        self._runs: dict[tuple[str, str], Listing] = {}
        self._count = 0  # Jobs kept, over all runs

    def jobs(self, namespace: str, run: str, uid: str) -> list[dict[str, Any]] | None:
        """The run's Jobs (copies of the slim Jobs kept), or None when they must be listed."""
        with self._guard:
            listing = self._runs.get((namespace, run))
            if listing is None or not listing.complete or listing.uid != uid:
                return None
            return [{"metadata": dict(j["metadata"]), "status": j.get("status") or {}} for j in listing.jobs.values()]

    def begin(self, namespace: str, run: str, uid: str) -> Listing | None:
        """About to list the run's Jobs: events from now on are kept for the list (:meth:`listed`).  None when
        the index is full (the run stays untracked)."""
        with self._guard:
            if self._count >= self.max_jobs:
                return None
            replaced = self._runs.get((namespace, run))
            self._count -= len(replaced.jobs) if replaced is not None else 0
            listing = self._runs[namespace, run] = Listing(uid)
            return listing

    def listed(self, namespace: str, run: str, listing: Listing, jobs: list[dict[str, Any]]) -> None:
        """The list begun with ``listing`` answered ``jobs``: merged with what the watch showed meanwhile.  A
        listing dropped or begun again meanwhile is left as it is."""
        with self._guard:
            if self._runs.get((namespace, run)) is not listing:
                return
            for job in jobs:
                self._count += listing.merge(job)
            listing.complete = True

    def started(self, namespace: str, run: str, uid: str) -> None:
        """The run was started by this process: it has no Job, and every Job of it will be seen made."""
        listing = self.begin(namespace, run, uid)
        if listing is not None:
            self.listed(namespace, run, listing, [])

    def saw(self, job: dict[str, Any], deleted: bool = False) -> None:
        """A Job from the watch, or the answer to a create; kept when its run is tracked."""
        owner = owning_run(job)
        meta = job.get("metadata") or {}
        if owner is None or not meta.get("name"):
            return
        with self._guard:
            listing = self._runs.get((meta.get("namespace", ""), owner.get("name", "")))
            if listing is not None and listing.uid == owner.get("uid"):
                self._count += listing.see(job, deleted)

    def drop(self, namespace: str, run: str) -> None:
        """Stop tracking the run: its next pass lists its Jobs again."""
        with self._guard:
            dropped = self._runs.pop((namespace, run), None)
            self._count -= len(dropped.jobs) if dropped is not None else 0

    def relist_begin(self, namespace: str | None) -> Relist:
        """About to list every Job of ``namespace`` (None: of every namespace): from now on, what the watch shows
        of the runs tracked there is also kept for :meth:`relisted`, while their passes go on with what is kept."""
        with self._guard:
            relist = Relist()
            for (ns, run), listing in self._runs.items():
                if listing.complete and namespace in (None, ns):
                    listing.next = Listing(listing.uid)
                    relist.runs[ns, run] = listing
            return relist

    def relisted(self, relist: Relist, jobs: Iterable[dict[str, Any]]) -> None:
        """The list begun with ``relist`` answered ``jobs``: each run it tracked now has the Jobs of that list,
        merged with what the watch showed since it began (so a Job missing from both is gone).  Runs dropped,
        listed again or started again meanwhile are left as they are."""
        listed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for job in jobs:
            owner, meta = owning_run(job), job.get("metadata") or {}
            key = (meta.get("namespace", ""), (owner or {}).get("name", ""))
            if owner is not None and key in relist.runs and relist.runs[key].uid == owner.get("uid"):
                listed.setdefault(key, []).append(slim(job))
        with self._guard:
            for key, listing in relist.runs.items():
                fresh = listing.next
                if self._runs.get(key) is not listing or fresh is None:
                    continue
                for job in listed.get(key, []):
                    fresh.merge(job)
                self._count += len(fresh.jobs) - len(listing.jobs)
                listing.jobs, listing.gone, listing.next = fresh.jobs, fresh.gone, None

    def relist_end(self, relist: Relist) -> None:
        """The list begun with ``relist`` is over (after :meth:`relisted`, or instead of it when the list failed):
        stop keeping events for it."""
        with self._guard:
            for listing in relist.runs.values():
                listing.next = None

    @property
    def size(self) -> int:
        """Jobs kept, over all runs."""
        return self._count

    def __len__(self) -> int:
        """Runs tracked."""
        return len(self._runs)


@dataclass(eq=False)
class Relist:
    """A list of every Job of a namespace (or of every namespace) under way: the runs it corrects."""

    runs: dict[tuple[str, str], Listing] = field(default_factory=dict)
