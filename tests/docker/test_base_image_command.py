"""`kaos-backend base-image` refusals: one `Error - ...` line and exit 1, never a traceback (no engine needed)."""
import os
import subprocess
import sys
from pathlib import Path

KAOS_BACKEND = str(Path(sys.executable).with_name("kaos-backend"))


def base_image_command(*args, **env):
    return subprocess.run([KAOS_BACKEND, "base-image", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, **env))


def test_no_engine_is_one_error_line(tmp_path):
    socket = tmp_path / "no-engine.sock"
    result = base_image_command(DOCKER_HOST=f"unix://{socket}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error - no Docker engine answers at unix://{socket} (")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "scripts/start-dockerd.sh" in result.stderr


def test_a_missing_ca_bundle_is_one_error_line(tmp_path):
    result = base_image_command("--ca-bundle", str(tmp_path / "missing.crt"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error - the CA bundle {tmp_path / 'missing.crt'} does not exist\n"
