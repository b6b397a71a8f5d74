"""The real tier: Headwater as users run it, on a real node (hack/cluster.sh up --real-node).

The session's cluster has the local control plane and one real node (containerd, kubelet, kube-proxy,
CoreDNS) and no simulated node. The images are built and loaded into the node, and the chart is installed
with Helm from them, following docs/install.md. The cluster is torn down at the end; the last test checks
that the teardown leaves nothing on the machine. Needs root (containerd, mounts, iptables).
HEADWATER_KEEP_CLUSTER=1 keeps the cluster for the next session.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import yaml

from helpers import HACK, machine_lock, wait_for
from real_support import (
    CHART,
    REAL_CLUSTER,
    RELEASE,
    RELEASE_NAMESPACE,
    RealCluster,
    Release,
    chart_values,
    postgres_volume,
    start_real_cluster,
    stop_real_cluster,
)


@pytest.fixture(scope="session")
def real_node_lock() -> Iterator[None]:
    """The machine has room for one real node (containerd's and the kubelet's paths, iptables): a second test
    session waits here until the first has torn its node down."""
    if os.geteuid() != 0:
        pytest.skip("the real tier needs root: it runs containerd, a kubelet and kube-proxy on this machine")
    with machine_lock("real-node", timeout=3600):
        yield


@pytest.fixture(scope="session")
def image_builds(real_node_lock: None) -> Iterator[subprocess.Popen[bytes]]:
    """The images' builds, started first: mostly downloads, they overlap the node's Go builds."""
    proc = subprocess.Popen(["bash", str(HACK / "images.sh"), "build", "headwater", "postgres"],
                            stdout=subprocess.DEVNULL)
    yield proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait()


@pytest.fixture(scope="session")
def real_cluster(image_builds: subprocess.Popen[bytes]) -> Iterator[RealCluster]:
    real = start_real_cluster(REAL_CLUSTER)
    try:
        yield real
    finally:
        if os.environ.get("HEADWATER_KEEP_CLUSTER") != "1":
            stop_real_cluster(REAL_CLUSTER)


@pytest.fixture(scope="session")
def images(real_cluster: RealCluster, image_builds: subprocess.Popen[bytes]) -> dict[str, str]:
    """The Headwater image (the project's Dockerfile) and PostgreSQL's, built and loaded into the node."""
    assert image_builds.wait(timeout=3600) == 0, "hack/images.sh build failed (its output is above)"
    return real_cluster.load_images("headwater", "postgres")


@pytest.fixture(scope="session")
def release(real_cluster: RealCluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Release:
    """`helm install` of the chart with the local images; the operator and PostgreSQL Ready on the node."""
    real_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(postgres_volume(real_cluster)))
    values_file = tmp_path_factory.mktemp("chart") / "values.yaml"
    values_file.write_text(yaml.safe_dump(chart_values(images)))
    installed = real_cluster.kubectl("-n", RELEASE_NAMESPACE, "get", "deployment", RELEASE, check=False)
    verb = "upgrade" if installed.returncode == 0 else "install"
    real_cluster.helm(verb, RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
                      "-f", str(values_file), "--wait", "--timeout", "5m")
    return Release(real_cluster, images, values_file)


@pytest.fixture
def namespace(real_cluster: RealCluster, release: Release) -> Iterator[str]:
    """A fresh namespace with a Secret warehouse-db (key url: the bundled PostgreSQL, by its DNS name)."""
    name = f"r-{uuid.uuid4().hex[:10]}"
    real_cluster.kubectl("create", "namespace", name)
    wait_for(lambda: real_cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False)
             .returncode == 0, timeout=60, message=f"the default ServiceAccount in {name}")
    real_cluster.kubectl("-n", name, "create", "secret", "generic", "warehouse-db",
                         f"--from-literal=url={release.database_url()}")
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def _operator_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "release" in request.fixturenames:
        release: Release = request.getfixturevalue("release")
        print(f"--- operator log ---\n{release.operator_logs()[-20000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of modules with RUNS_LAST (upgrade, uninstall, teardown) run after every other test."""
    items.sort(key=lambda item: bool(getattr(getattr(item, "module", None), "RUNS_LAST", False)))
