"""The README's main command: scripts/quickstart.py (what `make demo` runs) prints the expected prediction, and
last how to stop the platform. It is run as `make demo` runs it: by a fresh virtualenv that installed the wheel of
this checkout, outside the checkout (the session's run, tests/e2e/conftest.py, which test_packaging.py checks too).
CI also runs `make demo` itself from its fresh clone (.ci/run)."""
import json

import pytest

from tests.support.packaging import QUICKSTART_TIMEOUT, REPO


@pytest.mark.timeout(2 * QUICKSTART_TIMEOUT)
def test_quickstart_prints_the_prediction(wheel_quickstart):
    run = wheel_quickstart.run
    expected = json.loads((REPO / "templates/mnist/test_payload.expected.json").read_text())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"Prediction: {expected}" in run.stdout
    assert "destroy -c LOCAL -y" in run.stdout.splitlines()[-1]
