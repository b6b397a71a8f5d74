"""Scoring of the explain view: failures before drops before schema changes before staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from headwater.lineage.explain import NodeFacts, StepOutcome, rank, score
from headwater.lineage.queries import VersionInfo
from headwater.lineage.records import DatasetRef

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _version(rows: int | None, hours_ago: float = 2, fingerprint: str | None = "v1") -> VersionInfo:
    return VersionInfo("r", "p", "s", NOW - timedelta(hours=hours_ago), rows, fingerprint)


def _facts(name: str, *, latest: VersionInfo | None = None, previous: VersionInfo | None = None,
           phase: str | None = None, depth: int = 1, has_producer: bool = True) -> NodeFacts:
    producers = (StepOutcome("p", "s", "run-2", phase, "exit 1", NOW),) if phase else ()
    return NodeFacts(DatasetRef("postgres://w", name), depth, latest, previous, "Succeeded", producers,
                     has_producer)


def test_a_forty_percent_drop_scores_sixty_two_and_reports_the_change() -> None:
    node = score(_facts("t", latest=_version(600), previous=_version(1000, 26)), NOW)
    assert (node.score, node.row_count_change_pct) == (62.0, -40.0)
    assert node.reasons[0].message == "40% fewer rows than the previous write"


def test_small_changes_and_first_writes_are_not_signals() -> None:
    assert score(_facts("t", latest=_version(950), previous=_version(1000, 26)), NOW).reasons == ()
    first = score(_facts("t", latest=_version(10)), NOW)
    assert (first.reasons, first.row_count_change_pct) == ((), None)


def test_a_dataset_emptied_scores_the_highest_drop() -> None:
    assert score(_facts("t", latest=_version(0), previous=_version(10, 26)), NOW).score == 80.0


def test_a_failed_producer_outranks_every_other_signal() -> None:
    failed = score(_facts("a", latest=_version(10, 50), phase="Failed"), NOW)
    dropped = score(_facts("b", latest=_version(0, 1, "v2"), previous=_version(10, 26, "v1")), NOW)
    skipped = score(_facts("c", phase="Skipped"), NOW)
    assert [n.dataset.name for n in rank([dropped, skipped, failed])] == ["a", "c", "b"]
    assert [r.code for r in failed.reasons] == ["producer_failed", "stale"]
    assert [r.code for r in dropped.reasons] == ["row_count_drop", "schema_changed"]


def test_schema_change_outranks_staleness_and_a_spike() -> None:
    changed = score(_facts("a", latest=_version(10, 1, "v2"), previous=_version(10, 26, "v1")), NOW)
    stale = score(_facts("b", latest=_version(10, 48)), NOW)
    spike = score(_facts("c", latest=_version(30), previous=_version(10, 26)), NOW)
    assert [n.dataset.name for n in rank([stale, spike, changed])] == ["a", "c", "b"]
    assert changed.schema_changed and not stale.schema_changed


def test_equal_scores_put_the_deeper_dataset_first() -> None:
    near = score(_facts("near", latest=_version(5), previous=_version(10, 26), depth=1), NOW)
    far = score(_facts("far", latest=_version(5), previous=_version(10, 26), depth=3), NOW)
    assert [n.dataset.name for n in rank([near, far])] == ["far", "near"]


def test_a_source_without_producer_or_writes_is_not_suspect_but_an_unwritten_output_is() -> None:
    assert score(_facts("source", has_producer=False), NOW).score == 0.0
    assert [r.code for r in score(_facts("output"), NOW).reasons] == ["never_written"]


def test_staleness_uses_the_given_threshold() -> None:
    facts = _facts("t", latest=_version(10, hours_ago=3))
    assert score(facts, NOW).reasons == ()
    assert [r.code for r in score(facts, NOW, stale_after=timedelta(hours=1)).reasons] == ["stale"]
