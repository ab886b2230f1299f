"""The quick start run from an install of this checkout's wheel (`dists`, tests/conftest.py), made once per session:
test_packaging.py checks it, test_quickstart.py checks the quick start's output (what `make demo` runs)."""
from types import SimpleNamespace

import pytest

from tests.support import packaging


@pytest.fixture(scope="session")
def wheel_quickstart(dists, tmp_path_factory):
    """The wheel installed with `[backend]` into a fresh virtualenv (no -e, from outside the checkout), and the
    quick start run by that virtualenv's python, as `make demo` does: bin_dir, where (the folder it ran in),
    modules ({module: file imported}) and run (the quick start's CompletedProcess; the platform destroyed)."""
    where = tmp_path_factory.mktemp("wheel-install")
    assert packaging.REPO not in where.parents, "the install must run outside the checkout"
    bin_dir = packaging.fresh_venv(where / "venv")
    packaging.install(bin_dir, f"{dists['wheel']}[backend]", where)
    modules = packaging.module_files(bin_dir, where)
    return SimpleNamespace(bin_dir=bin_dir, where=where, modules=modules,
                           run=packaging.run_quickstart(bin_dir, where))
