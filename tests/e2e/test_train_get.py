"""`kaos train get` and `kaos train provenance` end to end: a tiny bundle trained on a 2-combination grid by a
LOCAL platform, its code, data, models and combination files downloaded, and a model's provenance graph saved."""
import json
import re
import shutil

import pytest

from tests.support.platform import LocalPlatform, tiny_data_bundle, tiny_train_bundle, wait_for, wait_terminal

TRAIN = """import glob, json, os, sys
out = sys.argv[1]
params = {}
for path in glob.glob(os.path.join(os.environ["KAOS_TRAIN_HYPER"], "**", "*.json"), recursive=True):
    params.update(json.load(open(path)))
os.makedirs(os.path.join(out, "model"))
os.makedirs(os.path.join(out, "metrics"))
open(os.path.join(out, "model", "model.txt"), "w").write("depth=%s" % params["depth"])
json.dump({"score": float(params["depth"])}, open(os.path.join(out, "metrics", "metrics.json"), "w"))
"""
MODEL_ID = re.compile(r"\b[0-9a-f]{5}_[0-9a-f]{5}_[0-9a-f]{5}:([0-9a-f]{6})\b")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    deployed = LocalPlatform(tmp_path_factory.mktemp("train-get-project"))
    deployed.deploy()
    yield deployed
    deployed.destroy()


def test_get_and_provenance_of_a_grid(platform, tmp_path):
    platform.workspace("getter")
    code = tiny_train_bundle(tmp_path / "code", TRAIN)
    data = tiny_data_bundle(tmp_path / "data", marker="42")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"depth": [2, 7]}))
    deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(data), "-h", str(params))
    assert deployed.code == 0, deployed
    hyper_hash = re.search(r"Setting hyperparameters bundle: /([0-9a-f]{5})/\*", deployed.out).group(1)

    job_id = wait_for(lambda: platform.jobs("getter")["training"], what="a train job")[0]["job_id"]
    assert wait_terminal(platform, "getter", job_id)["state"] == "JOB_SUCCESS"
    assert platform.kaos("train", "list").code == 0  # fills the index cache for -i
    info = platform.kaos("train", "info", "-i", "0")
    models = dict((match.group(1), match.group(0)) for match in MODEL_ID.finditer(info.out))
    assert len(models) == 2, info.out

    # -d alone: only the data (no flag at all means code and models, as the original)
    only_data = platform.kaos("train", "get", "-i", "0", "-d", "-o", str(tmp_path))
    assert only_data.code == 0, only_data
    root = tmp_path / "getter" / job_id
    assert f"Info - Extracting train bundle: {root}" in only_data.out
    assert [path.name for path in (root / "data").iterdir()][0].startswith("features:")
    assert (next((root / "data").iterdir()) / "training" / "data.csv").read_text() == "42,0,0\n"
    assert not (root / "code").exists() and not (root / "models").exists()

    got = platform.kaos("train", "get", "-i", "0", "-c", "-d", "-m")
    assert got.code == 0, got
    root = platform.project / "getter" / job_id
    code_dirs = [path.name for path in (root / "code").iterdir()]
    assert len(code_dirs) == 1 and code_dirs[0].startswith("tiny:"), code_dirs
    assert (root / "code" / code_dirs[0] / "model" / "train").read_text().endswith(TRAIN)
    assert (root / "code" / code_dirs[0] / "Dockerfile").is_file()
    assert (next((root / "data").iterdir()) / "training" / "data.csv").read_text() == "42,0,0\n"
    assert sorted(path.name for path in (root / "models").iterdir()) == sorted(models)
    depths = {}
    for hex6 in models:
        model_dir = root / "models" / hex6
        combination, = (model_dir / hyper_hash).glob("*.json")
        depth = json.loads(combination.read_text())["depth"]
        assert combination.name == f"depth={depth}.json"
        assert (model_dir / "model" / "model.txt").read_text() == f"depth={depth}"
        assert json.loads((model_dir / "metrics" / "metrics.json").read_text()) == {"score": float(depth)}
        depths[hex6] = depth
    assert sorted(depths.values()) == [2, 7]

    hex6, model_id = next(iter(models.items()))
    (tmp_path / "one").mkdir()
    one = platform.kaos("train", "get", "-j", job_id, "--model_id", model_id, "-o", str(tmp_path / "one"))
    assert one.code == 0, one
    assert [path.name for path in (tmp_path / "one" / "getter" / job_id / "models").iterdir()] == [hex6]
    unknown = platform.kaos("train", "get", "-j", job_id, "--model_id", "nope")
    assert unknown.code == 1 and "There is no model with id: nope" in unknown.err and "Traceback" not in unknown.text

    provenance = platform.kaos("train", "provenance", "-m", model_id)
    assert provenance.code == 0, provenance
    assert f"Info - Retrieving provenance from {model_id}" in provenance.out
    dot_file = platform.project / "getter" / "provenance" / f"model-{model_id}.dot"
    dot = dot_file.read_text()
    assert dot.startswith("digraph") and f'"/{code_dirs[0]}"' in dot
    assert f'"/{next((root / "data").iterdir()).name}"' in dot
    assert f"/{hyper_hash}/depth={depths[hex6]}.json" in dot and model_id in dot
    assert f"/{hex6}/model/model.txt" in dot and "Trained model with kaos" in dot
    if shutil.which("dot"):
        assert dot_file.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    missing = platform.kaos("train", "provenance", "-m", "nope:123456")
    assert missing.code == 1 and "There is no model with id: nope:123456" in missing.err
