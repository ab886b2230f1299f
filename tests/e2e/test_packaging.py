"""`pip install .` gives `kaos` and `kaos-backend`; the CLI alone pulls no server-side dependency."""
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_SIDE = {"flask", "sqlalchemy", "docker", "kubernetes", "gunicorn", "werkzeug"}


def _run(*args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def cli_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(root)
    bin_dir = root / "bin"
    installed = _run(bin_dir / "python", "-m", "pip", "install", "-q", str(REPO))
    assert installed.returncode == 0, installed.stderr
    return bin_dir


def _installed_names(bin_dir: Path) -> set:
    listed = _run(bin_dir / "python", "-m", "pip", "list", "--format=freeze")
    return {line.split("==")[0].lower() for line in listed.stdout.splitlines()}


def test_cli_only_install_has_both_scripts_and_no_server_dependencies(cli_venv, tmp_path):
    assert (cli_venv / "kaos").exists() and (cli_venv / "kaos-backend").exists()
    assert not SERVER_SIDE & _installed_names(cli_venv)

    help_text = _run(cli_venv / "kaos", "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "Open source cloud agnostic minimal DevOps private versioned ML platform." in help_text.stdout

    listed = _run(cli_venv / "kaos", "template", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "mnist" in listed.stdout, listed

    backend = _run(cli_venv / "kaos-backend", "serve", "--port", "1", cwd=tmp_path)
    assert backend.returncode == 1
    assert "pip install 'kaos[backend]'" in backend.stdout + backend.stderr
    assert "Traceback" not in backend.stdout + backend.stderr

    deploy = _run(cli_venv / "kaos", "build", "deploy", "-c", "LOCAL", "-y", cwd=tmp_path)
    assert deploy.returncode == 1
    assert "pip install 'kaos[backend]'" in deploy.stdout + deploy.stderr


def test_backend_extra_installs_the_server(cli_venv, tmp_path):
    installed = _run(cli_venv / "python", "-m", "pip", "install", "-q", f"{REPO}[backend]")
    assert installed.returncode == 0, installed.stderr
    assert {"flask", "sqlalchemy", "gunicorn"} <= _installed_names(cli_venv)
    assert not {"docker", "kubernetes"} & _installed_names(cli_venv)
    usage = _run(cli_venv / "kaos-backend", "serve", "--help", cwd=tmp_path)
    assert usage.returncode == 0 and "--data-dir" in usage.stdout, usage
