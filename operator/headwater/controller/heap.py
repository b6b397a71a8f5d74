"""The operator process' C heap: fewer malloc arenas, and free pages handed back to the system.

glibc's malloc gives each thread that allocates concurrently an arena of its own (up to 8 per core) and keeps
freed memory in them for reuse.  The operator's threads (API, recorder, triggers, Event poster, kopf's
workers) each parse Kubernetes lists into short-lived objects, so the resident size grew to what every
arena once held.  Two arenas and a trim after each periodic pass keep it near what is live.  Elsewhere than
glibc (musl, macOS) both calls are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["limit_arenas", "release_free_memory"]

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018  (both exist only in glibc)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas (as ``MALLOC_ARENA_MAX`` would), before the process starts threads."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, arenas) == 1)


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system; whether any were."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0) == 1)
