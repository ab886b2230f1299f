import pytest

from kaos_backend.config import platform_id
from kaos_backend.executors.containment import stop_platform


@pytest.fixture(autouse=True)
def no_workload_left(tmp_path):
    """After each test: whatever its workloads left is stopped and their platform's cgroups are removed (the
    platform of `tmp_path / "data"`, the data directory these tests give their executors)."""
    yield
    stop_platform(platform_id(tmp_path / "data"))
