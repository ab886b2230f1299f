"""The manifests the CLI ships (kaos_cli/manifests/<target>.yaml, what `kaos build deploy -c KUBERNETES|MINIKUBE`
applies without kubectl) are infrastructure/kubernetes as `kubectl kustomize` renders it now, so that they never
drift from it, and every object in them validates against the official schemas."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kaos_cli import kube_manifests
from tests.kubernetes.object_checks import assert_valid

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "render_manifests.py"


def check(shipped: Path):
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--shipped", str(shipped)], capture_output=True,
                          text=True, timeout=300)


def test_the_shipped_manifests_are_a_fresh_render_and_a_stale_one_is_named(tmp_path):
    fresh = check(ROOT / "kaos_cli" / "manifests")
    assert fresh.returncode == 0, fresh.stderr

    stale = tmp_path / "manifests"
    shutil.copytree(ROOT / "kaos_cli" / "manifests", stale)
    text = (stale / "minikube.yaml").read_text()
    assert "storage: 20Gi" in text
    (stale / "minikube.yaml").write_text(text.replace("storage: 20Gi", "storage: 21Gi"))
    (stale / "kubernetes-postgres.yaml").unlink()
    found = check(stale)
    assert found.returncode == 1
    assert "minikube.yaml" in found.stderr and "kubernetes-postgres.yaml" in found.stderr
    assert "kubernetes.yaml," not in found.stderr and "make manifests" in found.stderr


@pytest.mark.parametrize("target", kube_manifests.TARGETS)
def test_every_shipped_object_validates(target):
    objects = kube_manifests.load(target)
    assert objects == [document for document in yaml.safe_load_all(
        (ROOT / "kaos_cli" / "manifests" / f"{target}.yaml").read_text()) if document]
    for obj in objects:
        assert_valid(obj)
    kinds = {obj["kind"] for obj in objects}
    assert ("StatefulSet" in kinds) == target.endswith("-postgres")
