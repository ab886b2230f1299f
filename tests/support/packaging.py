"""What the packaging and quick-start tests share (tests/e2e/test_packaging.py, tests/e2e/test_quickstart.py): the
sdist and the wheel of a source tree, fresh virtualenvs that install them as a user would, and what such an install
put into its site-packages.

    build(source, outdir)            -> {"sdist": Path, "wheel": Path}   (`python -m build`: the wheel from the sdist)
    fresh_venv(root)                 -> root/bin (a new virtualenv with pip, no system site-packages)
    install(bin_dir, spec, cwd)      pip install spec (a file, a directory, with extras) into that virtualenv
    module_files(bin_dir, cwd)       -> {module: its __init__.py} for kaos's packages, as imported there
    installed_files(bin_dir, name)   -> {path: sha256 from pip's RECORD} of the distribution `name` there
    run_quickstart(bin_dir, where)   scripts/quickstart.py run by that virtualenv's python; the platform destroyed
"""
import csv
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Dict

from tests.support.backend import free_port

REPO = Path(__file__).resolve().parents[2]
# What an install must import from its site-packages (kaos_backend.control: once left out of the wheel).
MODULES = ("kaos_backend", "kaos_backend.control", "kaos_cli", "kaos_model", "kaos_templates")
QUICKSTART_TIMEOUT = 1800  # seconds; a cold template build downloads scikit-learn and friends


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run of args (made strings) with its output captured as text; a 600 s bound unless told."""
    kwargs.setdefault("timeout", 600)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


def user_env(**extra) -> dict:
    """The environment of a user's shell: nothing that points Python at this checkout or at our .venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return dict(env, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)


def fresh_venv(root: Path) -> Path:
    """A new virtualenv at root (with pip, without system site-packages); returns its bin/ directory."""
    venv.EnvBuilder(with_pip=True).create(root)
    return root / "bin"


def build(source: Path, outdir: Path) -> dict:
    """`python -m build` of source: the sdist, then the wheel built from it. Returns {"sdist": Path, "wheel": Path}
    of the files in outdir. Fails (AssertionError with the build's output) when the build fails."""
    built = run(sys.executable, "-m", "build", "--outdir", outdir, source, cwd=outdir.parent, env=user_env())
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,), (wheel,) = sorted(outdir.glob("*.tar.gz")), sorted(outdir.glob("*.whl"))
    return {"sdist": sdist, "wheel": wheel}


def install(bin_dir: Path, spec: str, cwd: Path) -> None:
    """`pip install -q spec` by the virtualenv of bin_dir, from cwd (outside the checkout)."""
    installed = run(bin_dir / "python", "-m", "pip", "install", "-q", spec, cwd=cwd, env=user_env())
    assert installed.returncode == 0, installed.stderr


def module_files(bin_dir: Path, cwd: Path) -> Dict[str, Path]:
    """{module of MODULES: the file it is imported from} in the virtualenv of bin_dir, run from cwd."""
    where = run(bin_dir / "python", "-c", "import importlib; print('\\n'.join(importlib.import_module(name).__file__ "
                f"for name in {MODULES!r}))", cwd=cwd, env=user_env())
    assert where.returncode == 0, where.stderr
    return dict(zip(MODULES, (Path(line) for line in where.stdout.split())))


def site_packages(bin_dir: Path) -> Path:
    """The site-packages folder of the virtualenv of bin_dir."""
    (found,) = (bin_dir.parent / "lib").glob("python*/site-packages")
    return found


def installed_files(bin_dir: Path, distribution: str) -> Dict[str, str]:
    """{path relative to site-packages: its sha256 as pip's RECORD gives it} of every file that installing
    `distribution` put into the virtualenv of bin_dir, less what pip writes per install (the console scripts, made
    for that virtualenv's python, and the dist-info's RECORD, INSTALLER, REQUESTED and direct_url.json)."""
    (dist_info,) = site_packages(bin_dir).glob(f"{distribution}-*.dist-info")
    per_install = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    with open(dist_info / "RECORD", newline="") as record:
        rows = list(csv.reader(record))
    return {path: digest for path, digest, *_ in rows
            if not path.startswith("../") and "__pycache__" not in path
            and not (path.startswith(dist_info.name + "/") and path.split("/", 1)[1] in per_install)}


def run_quickstart(bin_dir: Path, where: Path) -> subprocess.CompletedProcess:
    """scripts/quickstart.py run by the virtualenv of bin_dir in where/ (its demo in where/demo, on a free port),
    as a user's shell would run it; the platform destroyed afterwards, whatever happened."""
    demo = where / "demo"
    env = user_env(KAOS_DEMO_DIR=str(demo), KAOS_DEMO_PORT=str(free_port()))
    try:
        return run(bin_dir / "python", REPO / "scripts" / "quickstart.py", cwd=where, env=env,
                   timeout=QUICKSTART_TIMEOUT)
    finally:
        if demo.exists():
            run(bin_dir / "kaos", "destroy", "-c", "LOCAL", "-y", cwd=demo, env=user_env(), timeout=120)
