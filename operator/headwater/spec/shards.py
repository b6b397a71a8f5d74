"""Shards: which operator instance owns which namespace, when several split one cluster between them.

A shard ``i/N`` owns the namespaces whose stable hash (SHA-256, never Python's per-process ``hash``)
is ``i`` modulo ``N``: every instance computes the same split, so each namespace, with its Pipelines,
runs, Jobs and schedules, belongs to exactly one shard.  No shard means one instance owns everything.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["MAX_SHARDS", "Shard", "shard_of"]

MAX_SHARDS = 64
"""Most shards one cluster may be split into (each is a Deployment of its own)."""

_FORM = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_of(namespace: str, count: int) -> int:
    """The index of the shard (0 .. count-1) that owns ``namespace``."""
    digest = hashlib.sha256(namespace.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be 1..{MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be 0..{self.count - 1}, not {self.index}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/N"`` (e.g. ``"0/3"``); anything else raises ValueError naming the expected form."""
        match = _FORM.match(text)
        if not match:
            raise ValueError(f"a shard is written i/N (e.g. 0/3), not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, namespace: str) -> bool:
        return self.count == 1 or shard_of(namespace, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        """The shard in object names, e.g. the Lease of shard 1/3 is ``<lease>-shard-1-of-3``."""
        return f"shard-{self.index}-of-{self.count}"
