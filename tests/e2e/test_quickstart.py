"""The README's main command: scripts/quickstart.py (what `make demo` runs) prints the expected prediction.
CI also runs `make demo` itself from its fresh clone (.ci/run)."""
import json
import os
import subprocess
import sys

from tests.support.backend import free_port
from tests.support.platform import REPO


def test_quickstart_prints_the_prediction(tmp_path):
    demo = tmp_path / "demo"
    env = dict(os.environ, KAOS_DEMO_DIR=str(demo), KAOS_DEMO_PORT=str(free_port()))
    try:
        run = subprocess.run([sys.executable, str(REPO / "scripts/quickstart.py")], env=env, text=True,
                             capture_output=True, timeout=1800)
        expected = json.loads((REPO / "templates/mnist/test_payload.expected.json").read_text())
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert f"Prediction: {expected}" in run.stdout
        assert "destroy -c LOCAL -y" in run.stdout.splitlines()[-1]
    finally:
        kaos = os.path.join(os.path.dirname(sys.executable), "kaos")
        subprocess.run([kaos, "destroy", "-c", "LOCAL", "-y"], cwd=demo, capture_output=True)
