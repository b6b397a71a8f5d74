"""The Lease elector: reads and writes the operator's coordination.k8s.io Lease by the rules of ``leases``.

A standby calls :meth:`LeaseElector.try_lead` every retry period until it leads; the leader then runs
:meth:`LeaseElector.keep` in a thread of its own (with its own API client, so busy engine threads never
delay a renewal), which calls ``on_lost`` as soon as another holder shows up or the renew deadline passes
without a renewal.  :meth:`LeaseElector.release` frees the Lease on a clean stop, so the standby takes
over at its next try instead of after the lease duration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from headwater.controller.leases import LeaseRecord, Move, Observed, decide, observe, released, still_leading, written

__all__ = ["LeaseElector"]

log = logging.getLogger(__name__)


def _micro_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return _micro_time(value) if isinstance(value, datetime) else str(value)


class LeaseElector:
    """One candidate, ``identity``, for the Lease ``namespace/name``."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str, identity: str, *,
                 duration_seconds: int, renew_deadline_seconds: float, retry_seconds: float) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew_deadline, self.retry = duration_seconds, renew_deadline_seconds, retry_seconds
        self._observed: Observed | None = None
        self._version: str | None = None
        self._renewed_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one read-decide-write at a time (keep's thread, release)

    @property
    def leading(self) -> bool:
        return still_leading(self._renewed_at, time.monotonic(), self.renew_deadline)

    def holder(self) -> str | None:
        """The holder as last read."""
        record = self._observed.record if self._observed else None
        return record.holder if record else None

    # --- one round --------------------------------------------------------------------------
    def try_lead(self) -> bool:
        """Read the Lease, take or renew it when the rules allow; True when this candidate holds it now."""
        with self._lock:
            started = time.monotonic()
            current = self._read()
            self._observed = observe(self._observed, current, started)
            move = decide(self.identity, self._observed, started)
            if move is Move.WAIT:
                return False
            record = written(self.identity, move, current, self.duration, _micro_time())
            try:
                self._write(record, create=move is Move.CREATE)
            except ApiException as exc:
                if exc.status in (404, 409):  # someone else wrote first (or deleted it): read again next round
                    return False
                raise
            if move is not Move.RENEW:
                log.info("leading: took the Lease %s/%s as %s (transition %d)", self.namespace, self.name,
                         self.identity, record.transitions)
            self._observed = Observed(record, started)
            self._renewed_at = started
            return True

    def _read(self) -> LeaseRecord | None:
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout())
        except ApiException as exc:
            if exc.status == 404:
                self._version = None
                return None
            raise
        self._version = lease.metadata.resource_version
        spec = lease.spec
        return LeaseRecord(spec.holder_identity or "", int(spec.lease_duration_seconds or self.duration),
                           _text(spec.acquire_time), _text(spec.renew_time), int(spec.lease_transitions or 0))

    def _write(self, record: LeaseRecord, *, create: bool) -> None:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"holderIdentity": record.holder or None, "leaseDurationSeconds": record.duration_seconds,
                     "acquireTime": record.acquire_time, "renewTime": record.renew_time,
                     "leaseTransitions": record.transitions},
        }
        if create:
            self.api.create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout())
        else:  # guarded by the version read: a concurrent writer makes this 409
            body["metadata"]["resourceVersion"] = self._version
            self.api.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=self._timeout())

    def _timeout(self) -> float:
        # a hung request must not outlast the renew deadline
        return max(1.0, min(self.retry * 2, self.renew_deadline / 2))

    # --- while leading ----------------------------------------------------------------------
    def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period in a daemon thread; ``on_lost(reason)`` once leadership is gone."""
        def renew() -> None:
            while not self._stop.wait(self.retry):
                try:
                    if self.try_lead():
                        continue
                    holder = self.holder()
                    if holder and holder != self.identity:
                        on_lost(f"the Lease is held by {holder}")
                        return
                except Exception as exc:  # the API is unreachable: keep trying until the deadline
                    log.warning("renewing the Lease %s/%s failed: %s", self.namespace, self.name, exc)
                if not self.leading:
                    on_lost(f"not renewed for {self.renew_deadline:g}s (the renew deadline)")
                    return
        self._thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and, while still the holder, free the Lease for the next candidate."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout() + 1)
        with self._lock:
            try:
                current = self._read()
                if current is None or current.holder != self.identity:
                    return
                self._write(released(current, _micro_time()), create=False)
                log.info("released the Lease %s/%s", self.namespace, self.name)
            except Exception as exc:  # the standby takes over after the lease duration instead
                log.warning("could not release the Lease %s/%s: %s", self.namespace, self.name, exc)
