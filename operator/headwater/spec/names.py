"""Names and label values derived from user-given names, each within its Kubernetes limit.

One function, :func:`bounded`, shortens every derived name the same way: a value that fits is kept
as it is; a longer one becomes a prefix of it, ``-`` and a hash, so distinct values stay distinct and
the same value always gives the same result (selectors and re-created objects find each other).
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["LABEL_VALUE_MAX", "MAX_PIPELINE_NAME", "NAME_MAX", "RUN_SUFFIX_LENGTH", "bounded", "job_name",
           "label_value"]

NAME_MAX = 253
"""Names of most objects (DNS-1123 subdomains), PipelineRuns included."""
LABEL_VALUE_MAX = 63
"""Label values, and the names of Jobs (the Job controller puts them in its pods' labels)."""
RUN_SUFFIX_LENGTH = len("-yyyymmddhhmm")
MAX_PIPELINE_NAME = NAME_MAX - RUN_SUFFIX_LENGTH
"""The longest Pipeline name: its scheduled runs are called ``<pipeline>-<yyyymmddhhmm>``."""
HASH_LENGTH = 10
"""Base32 characters of the hash: 50 bits, so that distinct values practically never meet."""


def _digest(key: str) -> str:
    raw = hashlib.sha256(key.encode()).digest()
    return base64.b32encode(raw).decode().lower()[:HASH_LENGTH]


def bounded(value: str, limit: int = LABEL_VALUE_MAX, *, key: str | None = None, always: bool = False) -> str:
    """``value`` when it fits ``limit`` (and not ``always``); else a prefix of it, ``-`` and a hash of ``key``.

    ``key`` (default: ``value``) is what the hash tells apart; the result starts and ends with a letter
    or digit whenever ``value`` starts with one, as names and label values must.
    """
    if len(value) <= limit and not always:
        return value
    prefix = value[: limit - HASH_LENGTH - 1].rstrip("-._")
    digest = _digest(value if key is None else key)
    return f"{prefix}-{digest}" if prefix else digest


def label_value(name: str) -> str:
    """A user-given name as a label value (at most 63 characters); selectors use the same function."""
    return bounded(name)


def job_name(run: str, step: str) -> str:
    """The Job of a step: ``<run>-<step>`` (shortened to 63) followed by a hash of the (run, step) pair.

    The hash is always there: ``a-b`` + ``c`` and ``a`` + ``b-c`` would otherwise both be ``a-b-c``.
    Deterministic, so a Job re-created after a crash collides with the first one (HTTP 409)
    instead of running the step twice.
    """
    return bounded(f"{run}-{step}", key=f"{run}/{step}", always=True)

