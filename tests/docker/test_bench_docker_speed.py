"""bench/docker_speed.py runs: its cheapest part (first-log, one round) on a real engine prints both executors'
figures and their ratio and leaves no image or container of its run behind, and without an engine every part
says it is skipped. Figures are printed, never judged here (no timing assertion)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "docker_speed.py"
BOUND = 300  # seconds: a bound against hanging, not a speed check
FIGURES = re.compile(r"deploy -> first training log line on a warm image: docker executor (\d+\.\d+) s, "
                     r"local executor (\d+\.\d+) s \(medians of 1\) -> ratio docker/local (\d+\.\d+)")


def run_bench(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=BOUND)


@pytest.mark.docker
def test_first_log_prints_both_executors_figures_and_removes_what_it_made(docker_engine, base_image):
    result = run_bench("--only", "first-log", "--rounds", "1", KAOS_BASE_IMAGE=base_image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert FIGURES.search(result.stdout), result.stdout
    assert re.search(r"round 1: docker +deploy -> first log line \d+\.\d+ s", result.stdout)
    assert re.search(r"round 1: local +deploy -> first log line \d+\.\d+ s", result.stdout)
    assert "load average" in result.stdout
    label = re.search(r"labelled (io\.kaos\.bench=first-log-[0-9a-f]+)\)", result.stdout).group(1)
    assert docker_engine.images.list(all=True, filters={"label": label}) == []
    assert docker_engine.containers.list(all=True, filters={"label": label}) == []


def test_every_part_is_skipped_with_its_reason_when_no_engine_answers(tmp_path):
    result = run_bench(DOCKER_HOST=f"unix://{tmp_path / 'no-engine.sock'}")
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("rebuild", "first-log", "gateway"):
        assert f"docker_speed {part}: skipped, no Docker engine answers at unix://{tmp_path}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
