"""The shared `docker_engine` fixture without an engine: skipped on a developer's machine, failed in CI."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("ci,outcome", [("", "1 skipped"), ("true", "1 error")])
def test_no_engine_skips_or_fails_in_ci(tmp_path, ci, outcome):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_needs_docker.py").write_text("def test_needs_docker(docker_engine):\n    pass\n")
    env = dict(os.environ, CI=ci, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.support.docker_engine", "-q", "-rs",
                             "-p", "no:cacheprovider", "test_needs_docker.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert outcome in result.stdout, result.stdout + result.stderr
    assert f"no Docker engine answers at unix://{tmp_path}/no-engine.sock" in result.stdout
    if ci:
        assert "CI must run the Docker tests" in result.stdout
