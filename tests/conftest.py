import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import packaging
from tests.support.backend import BackendProcess

IN_CI = bool(os.environ.get("CI"))

# The Docker engine and base image fixtures, shared by every test that needs a Docker engine; a real
# container registry for the pushes of images built for Kubernetes; how the tests are grouped on parallel workers.
pytest_plugins = ["tests.support.docker_engine", "tests.support.container_registry", "tests.support.parallel"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip would hide a missing engine or server: every skip there counts as a failure. An expected failure
    (xfail, reported as skipped) is not a skip: it stays what it is (pytest would not count it as failed anyway, and
    `make test` would exit 0 on a failure it reports)."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail") and not item.get_closest_marker("allow_skip_in_ci"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, which must run everything: {reason}"


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
    """The sdist and the wheel of this checkout: {"sdist": Path, "wheel": Path}, built once a session (the only
    build in the checkout: two at once, on two xdist workers, would share its build/ and kaos.egg-info)."""
    return packaging.build(packaging.REPO, tmp_path_factory.mktemp("dist") / "out")


@pytest.fixture
def backend(tmp_path):
    """A real backend on 127.0.0.1 with a fresh data directory."""
    server = BackendProcess(tmp_path / "backend-data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_backend(tmp_path_factory):
    server = BackendProcess(tmp_path_factory.mktemp("backend") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def shared_dir():
    """A directory that the platform's workloads can read and write, for a test to signal them: they run as
    users of their own (when the tests run as root) and see neither the tests' tmp_path, nor the data directory,
    nor the machine's /tmp (theirs is private): so it is made under /run when possible."""
    base = "/run" if os.access("/run", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="kaos-test-shared-", dir=base))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
