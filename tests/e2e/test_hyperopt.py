"""Hyperparameter grids end to end: `train deploy -s … -d … -h …` trains one model per combination even though
the build finishes after the upload (the original's callback reset them: §11.6), and `train info` sorts
numerically in either direction."""
import json
import re

import pytest

from tests.support.platform import LocalPlatform, tiny_data_bundle, tiny_train_bundle, wait_for, wait_terminal

TRAIN = """import glob, json, os, sys
out = sys.argv[1]
params = {}
for path in glob.glob(os.path.join(os.environ["KAOS_TRAIN_HYPER"], "**", "*.json"), recursive=True):
    params.update(json.load(open(path)))
print("training with", json.dumps(params, sort_keys=True), flush=True)
os.makedirs(os.path.join(out, "model"))
os.makedirs(os.path.join(out, "metrics"))
json.dump({"loss": float(params["a"]), "label": "not a number"},
          open(os.path.join(out, "metrics", "metrics.json"), "w"))
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    deployed = LocalPlatform(tmp_path_factory.mktemp("hyperopt-project"))
    deployed.deploy()
    yield deployed
    deployed.destroy()


def test_grid_survives_the_build_and_sorts_numerically(platform, tmp_path):
    platform.workspace("grid")
    code = tiny_train_bundle(tmp_path / "code", TRAIN)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"a": [3, 1, 12], "b": ["x"]}))
    deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d")),
                             "-h", str(params), "-p", "2")
    assert deployed.code == 0, deployed
    assert "CURRENT HYPERPARAMETERS (3)" in deployed.out
    assert re.search(r"✔ Setting hyperparameters bundle: /[0-9a-f]{5}/\*", deployed.out), deployed.out

    job_id = wait_for(lambda: platform.jobs("grid")["training"], what="a train job")[0]["job_id"]
    assert wait_terminal(platform, "grid", job_id)["state"] == "JOB_SUCCESS"
    listed = platform.kaos("train", "list").out
    assert re.search(rf"\|\s*True\s*\|\s*{job_id}", listed), listed

    ascending = platform.kaos("train", "info", "-i", "0", "-s", "loss", "--ascending")
    assert ascending.code == 0, ascending
    scores = re.findall(r"\b(\d+\.\d{4})\b", ascending.out)
    assert scores == ["1.0000", "3.0000", "12.0000"], ascending.out  # numeric, not "12" < "3"
    assert re.search(r"Path: /[0-9a-f]{5}/a=1_b=x\.json", ascending.out), ascending.out

    descending = platform.kaos("train", "info", "-i", "0", "-s", "loss")
    assert re.findall(r"\b(\d+\.\d{4})\b", descending.out) == ["12.0000", "3.0000", "1.0000"]

    unknown = platform.kaos("train", "info", "-i", "0", "-s", "accuracy")
    assert unknown.code == 1 and "Metric accuracy not found" in unknown.text
    not_numeric = platform.kaos("train", "info", "-i", "0", "-s", "label")
    assert not_numeric.code == 1 and "not numeric" in not_numeric.text
    assert "Traceback" not in unknown.text + not_numeric.text


def test_a_deploy_with_new_data_and_hyperparameters_starts_one_training_with_them(platform, tmp_path):
    """`train deploy -s -d -h` uploads its inputs one by one; with the code's image built already, the data's
    upload used to start a training of (code, data, no hyperparameters) before the hyperparameters arrived, then a
    second one with them. The CLI says `inputs_follow` on every upload but the last: one training, the grid's."""
    platform.workspace("onedeploy")
    code = tiny_train_bundle(tmp_path / "code", TRAIN)
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"a": [1]}))
    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d1")),
                         "-h", str(first)).code == 0
    [built] = wait_for(lambda: platform.jobs("onedeploy")["training"], what="the first training")
    assert wait_terminal(platform, "onedeploy", built["job_id"])["state"] == "JOB_SUCCESS"

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"a": [2, 5]}))
    for attempt in range(3):  # each with new data: the race had three chances
        deployed = platform.kaos("train", "deploy", "-s", str(code), "-d",
                                 str(tiny_data_bundle(tmp_path / f"d-{attempt}", marker=f"new {attempt}")),
                                 "-h", str(grid))
        assert deployed.code == 0, deployed
        jobs = wait_for(lambda: [job for job in platform.jobs("onedeploy")["training"]
                                 if job["job_id"] != built["job_id"]] if len(platform.jobs("onedeploy")["training"])
                        > attempt + 1 else None, what="the new training")
        for job in jobs:
            assert wait_terminal(platform, "onedeploy", job["job_id"])["state"] == "JOB_SUCCESS"
    new = [job for job in platform.jobs("onedeploy")["training"] if job["job_id"] != built["job_id"]]
    assert len(new) == 3, new  # one training a deploy
    for job in new:
        info = platform.kaos("train", "info", "-j", job["job_id"])
        assert info.code == 0 and len(re.findall(r"a=[25]\.json", info.out)) == 2, info.out  # the grid's two
