"""Two test sessions on one machine never share a local cluster or the real node."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import helpers
from helpers import WaitTimeoutError, machine_lock, try_lock


@pytest.fixture
def own_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The locks these tests take live in a folder of their own (none left behind in the machine's)."""
    monkeypatch.setattr(helpers, "LOCKS", tmp_path / "locks")
    monkeypatch.setenv("HEADWATER_CACHE", str(tmp_path))


def holder(name: str) -> subprocess.Popen[str]:
    """Another process that holds the machine lock ``name`` until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(helpers.ROOT / "tests")!r})
        import helpers
        assert helpers.try_lock({name!r})
        print("held", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "HEADWATER_TEST_CLUSTER": "unused"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.usefixtures("own_locks")
def test_a_lock_held_by_another_session_is_refused_until_that_session_ends() -> None:
    name = f"unit-{os.getpid()}-a"
    other = holder(name)
    try:
        assert not try_lock(name)
    finally:
        other.communicate("")
    assert try_lock(name)


@pytest.mark.usefixtures("own_locks")
def test_a_second_session_waits_for_the_real_node_and_says_why_when_it_gives_up() -> None:
    name = f"unit-{os.getpid()}-b"
    other = holder(name)
    try:
        with (pytest.raises(WaitTimeoutError, match=f"another test session to release {name}"),
              machine_lock(name, timeout=0.5)):
            pass
    finally:
        other.communicate("")
    with machine_lock(name, timeout=5):
        assert not try_lock(name)  # held by this block
    assert try_lock(name)


def test_the_session_cluster_is_its_own_when_the_shared_one_is_in_use() -> None:
    if os.environ.get("HEADWATER_TEST_CLUSTER"):
        pytest.skip("HEADWATER_TEST_CLUSTER names the cluster")
    # This session holds the shared cluster's lock, or another one does: either way a new session may not use it.
    assert helpers.CLUSTER_NAME == "headwater-test" or helpers.CLUSTER_NAME.startswith("headwater-test-")
    tests = str(helpers.ROOT / "tests")
    code = f"import sys; sys.path.insert(0, {tests!r}); import helpers; print(helpers.CLUSTER_NAME)"
    env = {k: v for k, v in os.environ.items() if k != "HEADWATER_TEST_CLUSTER"}
    name = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()
    assert name.startswith("headwater-test-") and name != helpers.CLUSTER_NAME
