"""The pytest fixtures of the fake cluster; a test module (or a conftest.py) imports the ones it uses:

    from tests.support.kube.fixtures import kube_cluster  # noqa: F401  (a fixture)

    kube_cluster          a started FakeCluster for one test
    module_kube_cluster   one for a whole module (a suite of many short tests, as the executor contract test)

Both use host images (every image is this machine; `python` is this interpreter) and fail the test (or the
module's last test) if the fake itself failed (FakeCluster.errors).
"""
import pytest

from .cluster import FakeCluster


def _run(root):
    cluster = FakeCluster(root).start()
    yield cluster
    cluster.stop()
    assert not cluster.errors, f"the fake cluster failed: {cluster.errors}"


@pytest.fixture
def kube_cluster(tmp_path):
    yield from _run(tmp_path / "kubefake")


@pytest.fixture(scope="module")
def module_kube_cluster(tmp_path_factory):
    yield from _run(tmp_path_factory.mktemp("kubefake"))
