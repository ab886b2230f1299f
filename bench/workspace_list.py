"""Issue 2 speed target: `kaos workspace list` against the local backend, median under 2x a bare
`requests.get` of the health route from a fresh Python process."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import BIN, REPO, median_seconds, report

sys.path.insert(0, str(REPO))
from tests.support.backend import free_port  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as project:
        env = dict(os.environ, USER="bench")
        kaos = str(BIN / "kaos")
        port = free_port()
        subprocess.run([kaos, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port)],
                       cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            for name in ("bench-a", "bench-b", "bench-c"):
                subprocess.run([kaos, "workspace", "create", "-n", name], cwd=project, env=env,
                               check=True, stdout=subprocess.DEVNULL)
            config = Path(project, ".kaos", "config").read_text()
            token = next(line.split("=", 1)[1].strip() for line in config.splitlines()
                         if line.strip().startswith("token"))
            health = (f"import requests; requests.get('http://127.0.0.1:{port}/api/health', "
                      f"headers={{'X-Token': '{token}'}}).raise_for_status()")
            baseline = median_seconds([sys.executable, "-c", health], runs=21)
            measured = median_seconds([kaos, "workspace", "list"], runs=21, cwd=project, env=env)
        finally:
            subprocess.run([kaos, "destroy", "-c", "LOCAL", "-y"], cwd=project, env=env,
                           stdout=subprocess.DEVNULL)
    return 0 if report("kaos workspace list", measured, baseline, 2.0) else 1


if __name__ == "__main__":
    sys.exit(main())
