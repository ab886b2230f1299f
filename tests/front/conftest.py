import pytest

from tests.front.support import FRONT_ENV, deploy_endpoint
from tests.support.backend import BackendProcess


@pytest.fixture(scope="session")
def front_backend(tmp_path_factory):
    """A real backend whose front has small bounds (support.FRONT_ENV)."""
    server = BackendProcess(tmp_path_factory.mktemp("front") / "data", env=FRONT_ENV).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def endpoint(front_backend):
    """The name of a running endpoint of support.SERVE on front_backend."""
    return deploy_endpoint(front_backend, "frontws")
