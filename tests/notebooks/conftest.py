import pytest

from tests.support.platform import LocalPlatform


@pytest.fixture(scope="session")
def notebook_platform(tmp_path_factory):
    """One LOCAL platform for every notebook test: the default notebook's virtualenv (jupyterlab) is built once,
    by the first deploy, and every later deploy of the default bundle finds it built."""
    platform = LocalPlatform(tmp_path_factory.mktemp("notebooks") / "project")
    platform.project.mkdir()
    platform.deploy()
    yield platform
    platform.destroy()


@pytest.fixture(scope="session")
def gateway(notebook_platform) -> str:
    return f"http://127.0.0.1:{notebook_platform.port}"
