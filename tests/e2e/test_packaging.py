"""What users install runs.

- The sdist and the wheel of this checkout (built by `python -m build`, the wheel from the sdist) carry every
  package and every data file of kaos_model, kaos_cli and kaos_backend, including folders added later.
- Each of them, installed without `-e` into a fresh virtualenv (`pip install '<file>[backend]'`), runs the quick
  start from that virtualenv's site-packages, never from the checkout: the wheel's install runs it (once a session,
  tests/e2e/conftest.py, whose run test_quickstart.py checks too), the sdist's install is file for file the
  wheel's (pip's RECORD), so it runs the same code.
- `pip install .` gives `kaos` and `kaos-backend`; the CLI alone pulls no server-side dependency.
"""
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.support.packaging import (REPO, QUICKSTART_TIMEOUT, build, fresh_venv, install, installed_files,
                                     module_files, run)

CODE_PACKAGES = ("kaos_model", "kaos_cli", "kaos_backend")
SERVER_SIDE = {"flask", "sqlalchemy", "docker", "kubernetes", "gunicorn", "werkzeug"}
# What a source tree may hold that is not part of it: never copied, never expected in a distribution.
NOT_SOURCE = (".git", ".venv", "build", "dist", "demo", ".kaos", ".pytest_cache", "__pycache__", "*.egg-info",
              "*.pyc", "*.pyo")


def _members(dist: Path) -> set:
    """The files of a wheel or an sdist, as paths relative to the project root (the sdist's top folder dropped)."""
    if dist.suffix == ".whl":
        with zipfile.ZipFile(dist) as wheel:
            return {name for name in wheel.namelist() if not name.endswith("/")}
    with tarfile.open(dist) as sdist:
        return {member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()}


def _source_files_that_must_ship(source: Path) -> set:
    """Every package's __init__.py and every non-Python file under the code packages of source, relative to it."""
    expected = set()
    for top in CODE_PACKAGES:
        for folder, dirs, files in os.walk(source / top):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name == "__init__.py" or not name.endswith((".py", ".pyc", ".pyo")):
                    expected.add(str((Path(folder) / name).relative_to(source)))
    return expected


def _assert_ships(source: Path, dists: dict) -> None:
    expected = _source_files_that_must_ship(source)
    assert any(path.startswith("kaos_backend/") and path.endswith("/__init__.py") for path in expected)
    for kind, dist in dists.items():
        members = _members(dist)
        assert not expected - members, f"missing from the {kind}: {sorted(expected - members)}"
        assert not [m for m in members if "__pycache__" in m or m.endswith(".pyc")], f"bytecode in the {kind}"


def test_the_sdist_and_the_wheel_carry_every_package_and_data_file(dists):
    _assert_ships(REPO, dists)
    # The package the scheduler's controllers live in (left out once, when packages were listed by hand).
    assert "kaos_backend/control/__init__.py" in _members(dists["wheel"])
    # The backend's Kubernetes manifests, which `kaos build deploy -c KUBERNETES|MINIKUBE` applies without kubectl.
    from kaos_cli.kube_manifests import TARGETS
    for dist in dists.values():
        assert {f"kaos_cli/manifests/{target}.yaml" for target in TARGETS} <= _members(dist)


def test_a_package_added_later_ships_with_its_data_files(tmp_path):
    """A checkout with an Alembic-style kaos_backend/migrations/ (versions/ without __init__.py, a *.mako
    template, a .gitkeep) builds into distributions that carry all of it, without touching setup.py."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    migrations = source / "kaos_backend" / "migrations"
    (migrations / "versions" / "__pycache__").mkdir(parents=True)
    for name, text in {"__init__.py": "", "env.py": "# env\n", "script.py.mako": "# ${message}\n",
                       "versions/0001_first.py": "revision = '0001'\n", "versions/.gitkeep": "",
                       "versions/__pycache__/0001_first.cpython-311.pyc": ""}.items():
        (migrations / name).write_text(text)

    built = build(source, tmp_path / "out")

    _assert_ships(source, built)
    for dist in built.values():
        assert "kaos_backend/migrations/versions/0001_first.py" in _members(dist)


def _assert_imported_from(bin_dir: Path, modules: dict) -> None:
    site_packages = (bin_dir.parent / "lib").resolve()
    for name, module_file in modules.items():
        assert site_packages in module_file.resolve().parents, (name, module_file)


@pytest.mark.timeout(2 * QUICKSTART_TIMEOUT)
def test_the_installed_wheel_runs_the_quickstart(wheel_quickstart):
    """The wheel, installed with [backend] into a fresh virtualenv outside the checkout (tests/e2e/conftest.py),
    imports kaos from that virtualenv's site-packages and runs the quick start to the expected prediction."""
    _assert_imported_from(wheel_quickstart.bin_dir, wheel_quickstart.modules)
    quickstart = wheel_quickstart.run
    expected = json.loads((REPO / "templates/mnist/test_payload.expected.json").read_text())
    assert quickstart.returncode == 0, quickstart.stdout[-3000:] + quickstart.stderr[-3000:]
    assert f"Prediction: {expected}" in quickstart.stdout


@pytest.mark.timeout(2 * QUICKSTART_TIMEOUT)
def test_the_installed_sdist_is_the_installed_wheel(dists, wheel_quickstart, tmp_path):
    """The sdist, installed with [backend] into a fresh virtualenv outside the checkout (pip builds its own wheel
    from it, in isolation), imports kaos from that virtualenv's site-packages and puts there file for file, byte for
    byte (pip's RECORD: paths and sha256), what the wheel's install did, the same metadata and entry points
    included: so it runs the quick start as the wheel's install does (the test above), without a second run."""
    assert REPO not in tmp_path.parents, "the test must run outside the checkout"
    bin_dir = fresh_venv(tmp_path / "venv")
    install(bin_dir, f"{dists['sdist']}[backend]", tmp_path)
    _assert_imported_from(bin_dir, module_files(bin_dir, tmp_path))
    from_sdist, from_wheel = installed_files(bin_dir, "kaos"), installed_files(wheel_quickstart.bin_dir, "kaos")
    assert any(path.startswith("kaos_backend/control/") for path in from_sdist)
    assert any(path.endswith(".dist-info/entry_points.txt") for path in from_sdist)
    assert set(from_sdist) == set(from_wheel), sorted(set(from_sdist) ^ set(from_wheel))
    assert from_sdist == from_wheel, sorted(p for p in from_sdist if from_sdist[p] != from_wheel[p])
    for script in ("kaos", "kaos-backend"):
        assert (bin_dir / script).exists(), script


@pytest.fixture(scope="module")
def cli_venv(tmp_path_factory):
    bin_dir = fresh_venv(tmp_path_factory.mktemp("venv"))
    installed = run(bin_dir / "python", "-m", "pip", "install", "-q", str(REPO))
    assert installed.returncode == 0, installed.stderr
    return bin_dir


def _installed_names(bin_dir: Path) -> set:
    listed = run(bin_dir / "python", "-m", "pip", "list", "--format=freeze")
    return {line.split("==")[0].lower() for line in listed.stdout.splitlines()}


def test_cli_only_install_has_both_scripts_and_no_server_dependencies(cli_venv, tmp_path):
    assert (cli_venv / "kaos").exists() and (cli_venv / "kaos-backend").exists()
    assert not SERVER_SIDE & _installed_names(cli_venv)

    help_text = run(cli_venv / "kaos", "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "Open source cloud agnostic minimal DevOps private versioned ML platform." in help_text.stdout

    listed = run(cli_venv / "kaos", "template", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "mnist" in listed.stdout, listed

    backend = run(cli_venv / "kaos-backend", "serve", "--port", "1", cwd=tmp_path)
    assert backend.returncode == 1
    assert "pip install 'kaos[backend]'" in backend.stdout + backend.stderr
    assert "Traceback" not in backend.stdout + backend.stderr

    deploy = run(cli_venv / "kaos", "build", "deploy", "-c", "LOCAL", "-y", cwd=tmp_path)
    assert deploy.returncode == 1
    assert "pip install 'kaos[backend]'" in deploy.stdout + deploy.stderr


def test_backend_extra_installs_the_server(cli_venv, tmp_path):
    installed = run(cli_venv / "python", "-m", "pip", "install", "-q", f"{REPO}[backend]")
    assert installed.returncode == 0, installed.stderr
    assert {"flask", "sqlalchemy", "gunicorn"} <= _installed_names(cli_venv)
    assert not {"docker", "kubernetes"} & _installed_names(cli_venv)
    usage = run(cli_venv / "kaos-backend", "serve", "--help", cwd=tmp_path)
    assert usage.returncode == 0 and "--data-dir" in usage.stdout, usage
