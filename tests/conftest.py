"""Session fixtures: the local Kubernetes control plane and a PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from helpers import CLUSTER_NAME, ROOT, Cluster, start_cluster, stop_cluster, throwaway_postgres, wait_for

# No test may depend on how fast the machine is: hypothesis' default 200 ms per example failed
# test_dag under a load average of 20.  Examples stay bounded by max_examples.
settings.register_profile("headwater", deadline=None)
settings.load_profile("headwater")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The real local control plane (etcd, apiserver, controller-manager, scheduler, kwok nodes).

    HEADWATER_TEST_KUBECONFIG points the tests at an existing cluster instead;
    HEADWATER_KEEP_CLUSTER=1 leaves the one started here running for the next session (and reuses one
    left running); otherwise each session starts from a fresh cluster.
    """
    external = os.environ.get("HEADWATER_TEST_KUBECONFIG")
    if external:
        yield Cluster(kubeconfig=external)
        return
    if os.environ.get("HEADWATER_KEEP_CLUSTER") != "1":
        # A cluster under this name now is what a killed session left (this session holds its name): its
        # namespaces, objects and components' state are unknown, so it goes and a fresh one comes up.
        stop_cluster(CLUSTER_NAME)
    started = start_cluster(CLUSTER_NAME)
    crds = ROOT / "crds"
    if any(crds.glob("*.yaml")):
        started.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
        started.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
    try:
        yield started
    finally:
        if os.environ.get("HEADWATER_KEEP_CLUSTER") != "1":
            stop_cluster(CLUSTER_NAME)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace with its default ServiceAccount, deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0,
        timeout=120, message=f"the default ServiceAccount in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """DATABASE_URL when set, else a throwaway PostgreSQL server for the session."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with throwaway_postgres() as server:
        yield server.url


@pytest.fixture
def repo_root() -> Path:
    return ROOT
