"""The pytest fixture of the fake cluster; a test module (or a conftest.py) imports it:

    from tests.support.kube.fixtures import kube_cluster  # noqa: F401  (a fixture)
"""
import pytest

from .cluster import FakeCluster


@pytest.fixture
def kube_cluster(tmp_path):
    """A started FakeCluster (host images: every image is this machine), stopped after the test; the test fails
    if the fake itself failed (FakeCluster.errors)."""
    cluster = FakeCluster(tmp_path / "kubefake").start()
    yield cluster
    cluster.stop()
    assert not cluster.errors, f"the fake cluster failed: {cluster.errors}"
