"""Fixtures of the integration tier: a lineage store on a database of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from headwater.lineage.store import LineageStore
from helpers import fresh_database


@pytest.fixture
def store(database_url: str) -> Iterator[LineageStore]:
    """A migrated lineage store on a new database, dropped after the test."""
    with fresh_database(database_url) as url, LineageStore.open(url) as opened:
        yield opened
