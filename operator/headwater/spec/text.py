"""Text that comes from outside (a pod's termination message, a step's JSON result), made safe to keep.

Such text ends up in the run's status, Events, alerts and the lineage store.  PostgreSQL text cannot
hold NUL, JSON cannot carry unpaired surrogates, and Kubernetes objects have size limits, so this
text is cleaned once, where it enters: control characters other than tab and newline are dropped,
unpaired surrogates become U+FFFD, and the length is bounded (with a mark saying so).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["MESSAGE_LIMIT", "RESULT_LIMIT", "clean", "clean_json"]

MESSAGE_LIMIT: Final = 1024
"""Characters kept of a step's message read from its pods."""
RESULT_LIMIT: Final = 4096
"""Bytes of JSON a step's result may take in the run's status (as much as a termination message holds)."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # a Python str holds a surrogate only when it was unpaired
_CUT = " [cut]"


def clean(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` without control characters and unpaired surrogates, at most ``limit`` characters long."""
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))
    if len(text) > limit:
        text = text[: max(limit - len(_CUT), 0)] + _CUT
    return text


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value, RESULT_LIMIT)
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean(str(k), 256): _clean_value(v) for k, v in value.items()}
    return value


def clean_json(value: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON object with every string cleaned; None when it takes more than :data:`RESULT_LIMIT` bytes."""
    cleaned: dict[str, Any] = _clean_value(value)
    if len(json.dumps(cleaned, separators=(",", ":")).encode()) > RESULT_LIMIT:
        return None
    return cleaned
