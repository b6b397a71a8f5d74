"""Shard assignment: deterministic, total, and exclusive."""

from __future__ import annotations

import pytest

from headwater.spec.shards import MAX_SHARDS, Shard, shard_of

pytestmark = pytest.mark.unit

NAMESPACES = [f"team-{i}" for i in range(500)] + ["default", "kube-system", "a", "x" * 63]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_namespace_is_owned_by_exactly_one_shard(count: int) -> None:
    shards = [Shard(i, count) for i in range(count)]
    for namespace in NAMESPACES:
        assert sum(shard.owns(namespace) for shard in shards) == 1


def test_the_assignment_is_a_fixed_function_of_the_name_not_of_the_process() -> None:
    # pinned values: sha256 gives them in every process and on every machine (Python's hash() would not);
    # the worked example in docs/install.md uses these namespaces
    names = ("default", "team-a", "team-b", "analytics", "finance")
    assert [shard_of(ns, 3) for ns in names] == [1, 0, 2, 1, 0]
    assert [shard_of(ns, 2) for ns in names] == [1, 0, 0, 0, 0]


def test_namespaces_spread_over_the_shards() -> None:
    counts = [0, 0, 0, 0]
    for namespace in NAMESPACES:
        counts[shard_of(namespace, 4)] += 1
    assert min(counts) > len(NAMESPACES) / 4 * 0.7


def test_a_shard_is_written_i_of_n() -> None:
    assert Shard.parse("1/3") == Shard(1, 3)
    assert Shard.parse(" 0 / 2 ") == Shard(0, 2)
    assert str(Shard(2, 5)) == "2/5"
    assert Shard(1, 3).suffix == "shard-1-of-3"


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b", "0/0", f"0/{MAX_SHARDS + 1}", "1/2/3"])
def test_a_shard_out_of_range_or_misspelt_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)


def test_one_shard_owns_everything() -> None:
    assert all(Shard(0, 1).owns(ns) for ns in NAMESPACES)
