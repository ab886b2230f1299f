"""The templates' Dockerfiles on a real engine, built on the base image (no registry): the train image trains
on the 1.x layout (/pfs/data/<bundle:hash>/, /pfs/hyper, writing /pfs/out/<hex6>), the serve image, holding that
model, answers /ping and /invocations on 8080, and a change to the code reuses the installed packages' layer."""
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

from tests.support.docker_engine import (TEST_LABEL, build_image, published_address, remove_images, unique_tag,
                                         wait_for_exit)
from tests.support.platform import wait_for

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = ("mnist", "property-val")
DATA_BUNDLE = "features:3f2a1"  # /pfs/data/<data bundle's name:hash5>, as 1.x mounted it
HYPERPARAMETERS = {"mnist": {"gamma": 0.01, "kernel": "rbf"}, "property-val": {"hidden_layers": 10, "alpha": 1}}
MODEL_ID = "a1b2c3"


def model_dir(template: str, kind: str) -> Path:
    return REPO / "templates" / template / f"model-{kind}" / template / "model"


def dockerfile(template: str, kind: str) -> Path:
    return model_dir(template, kind).parent / "Dockerfile"


def context(tmp: Path, template: str, kind: str, model_pkl: Optional[Path] = None) -> Path:
    """What kaos builds from: the bundle's model/ with its Dockerfile (1.x: `-f Dockerfile`, context model/);
    a serve context also holds the trained model.pkl next to `serve`."""
    target = tmp / f"{template}-{kind}-context"
    shutil.copytree(model_dir(template, kind), target)
    shutil.copy(dockerfile(template, kind), target / "Dockerfile")
    if model_pkl:
        shutil.copy(model_pkl, target / "model.pkl")
    return target


def mount(source: Path, target: str, read_only: bool):
    """A bind mount in the engine's structured form: a target like /pfs/data/features:3f2a1 holds a colon,
    which the `-v source:target:mode` form cannot say."""
    from docker.types import Mount
    return Mount(target=target, source=str(source), type="bind", read_only=read_only)


def http(method: str, url: str, body: Optional[bytes] = None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def made(docker_engine):
    """Images and containers the module made, removed at its end."""
    things = {"images": [], "containers": []}
    yield things
    for container in things["containers"]:
        container.remove(force=True)
    remove_images(docker_engine, things["images"])


# Templates whose images other modules build too (test_platform.py): their builds here first ask the session's
# template_layers (tests/support/docker_engine.py) for the bundle, so that pip's work is done once a session.
SHARED = ("mnist",)


def share_layers(template_layers, template: str, kind: str) -> None:
    if template in SHARED:
        template_layers(f"{template}/model-{kind}/{template}")


@pytest.fixture(scope="module")
def trained(docker_engine, base_image, made, tmp_path_factory, template_layers):
    """template -> (the run's output folder on the host, the training's log): trained once per module."""
    results = {}

    def train(template):
        if template not in results:
            share_layers(template_layers, template, "train")
            results[template] = _train(docker_engine, base_image, made, tmp_path_factory.mktemp(template), template)
        return results[template]
    return train


def _train(client, base_image, made, tmp: Path, template: str):
    tag = unique_tag(f"{template}-train")
    made["images"].append(tag)
    build_image(client, context(tmp, template, "train"), tag, base_image)
    hyper = tmp / "hyper"
    (hyper / "hyperparams").mkdir(parents=True)
    (hyper / "hyperparams" / "params.json").write_text(json.dumps(HYPERPARAMETERS[template]))
    out = tmp / "out"
    out.mkdir()
    data = REPO / "templates" / template / "data" / "features"
    container = client.containers.create(
        tag, ["./train", f"/pfs/out/{MODEL_ID}"], labels={TEST_LABEL: "true"},
        mounts=[mount(data, f"/pfs/data/{DATA_BUNDLE}", True), mount(hyper, "/pfs/hyper", True),
                mount(out, "/pfs/out", False)])
    made["containers"].append(container)
    container.start()
    state = wait_for_exit(container)
    log = container.logs().decode(errors="replace")
    assert state["ExitCode"] == 0, log
    return out / MODEL_ID, log


@pytest.mark.parametrize("template", TEMPLATES)
def test_train_image_trains_on_the_1x_layout(trained, template):
    output, log = trained(template)
    assert f"Loading training data from /pfs/data/{DATA_BUNDLE}/training" in log
    assert "Merging hyperparameters from /pfs/hyper/hyperparams/params.json" in log
    assert (output / "model" / "model.pkl").stat().st_size > 0
    metrics = json.loads((output / "metrics" / "metrics.json").read_text())
    assert {"mnist": "accuracy_validation", "property-val": "R2_vld"}[template] in metrics


PAYLOADS = {"mnist": ("test_payload.jpg", "application/octet-stream"),
            "property-val": ("test_payload.json", "application/json")}


@pytest.mark.parametrize("template", TEMPLATES)
def test_serve_image_answers_on_8080(docker_engine, base_image, made, trained, tmp_path, template, template_layers):
    output, _ = trained(template)
    share_layers(template_layers, template, "serve")
    tag = unique_tag(f"{template}-serve")
    made["images"].append(tag)
    build_image(docker_engine, context(tmp_path, template, "serve", output / "model" / "model.pkl"), tag, base_image)
    container = docker_engine.containers.run(tag, detach=True, labels={TEST_LABEL: "true"},
                                             environment={"MODEL_SERVER_WORKERS": "1"},
                                             ports={"8080/tcp": ("127.0.0.1", None)})
    made["containers"].append(container)
    host, port = published_address(container)
    url = f"http://{host}:{port}"

    def pinged():
        container.reload()
        if container.status != "running":
            pytest.fail("the serve container stopped:\n" + container.logs().decode(errors="replace"))
        try:
            return http("GET", url + "/ping")[0] == 200
        except OSError:  # not listening yet (the proxy accepts, then resets)
            return False
    wait_for(pinged, timeout=180, what="/ping of the serve container")
    name, content_type = PAYLOADS[template]
    status, body = http("POST", url + "/invocations", (REPO / "templates" / template / name).read_bytes(),
                        {"Content-Type": content_type})
    assert status == 200, body
    result = json.loads(body)["result"]
    if template == "mnist":
        assert result == [3]
    else:
        assert len(result) == 1 and result[0] > 0


CODE_CHANGES = {"train": ("train", "\n# a code-only change\n"), "serve": ("predict.py", "\n# a code-only change\n")}


@pytest.mark.parametrize("kind", ["train", "serve"])
def test_a_code_change_reuses_the_installed_packages(docker_engine, base_image, made, tmp_path, kind, template_layers):
    template = "mnist"
    share_layers(template_layers, template, kind)
    first_context = context(tmp_path / "first", template, kind)
    second_context = context(tmp_path / "second", template, kind)
    name, addition = CODE_CHANGES[kind]
    with open(second_context / name, "a") as handle:
        handle.write(addition)
    first_tag, second_tag = unique_tag(f"{template}-{kind}"), unique_tag(f"{template}-{kind}")
    made["images"] += [first_tag, second_tag]
    first, _ = build_image(docker_engine, first_context, first_tag, base_image)
    second, output = build_image(docker_engine, second_context, second_tag, base_image)

    def pip_layer(image):
        steps = [step for step in image.history() if "pip install" in step["CreatedBy"]]
        assert steps, image.history()
        return steps[0]["Id"]
    assert pip_layer(second) == pip_layer(first), "\n".join(output)
    assert first.id != second.id


STOCK_DEBIAN_PYTHON = """FROM {base}
# Debian's python3 as it comes: no `python` command, and pip refusing to install into it (PEP 668).
RUN rm /usr/bin/python
ENV PIP_BREAK_SYSTEM_PACKAGES=0
"""


def test_the_train_template_builds_on_a_stock_debian_python(docker_engine, base_image, made, tmp_path):
    """The train template's Dockerfile on Debian's python3 as it comes: its packages go into its virtualenv, whose
    `python` runs the code. Its requirements here are one of the template's own pins (joblib, pure Python): the
    Dockerfile's steps are what this proves; that the template's whole requirements install on Debian bookworm's
    python3 (the base image's, the same interpreter) test_train_image_trains_on_the_1x_layout[mnist] proves, and
    a second install of scikit-learn, scipy, numpy and pandas from PyPI here cost about 20 s."""
    import docker.errors

    stock_context = tmp_path / "stock"
    stock_context.mkdir()
    (stock_context / "Dockerfile").write_text(STOCK_DEBIAN_PYTHON.format(base=base_image))
    stock_tag, train_tag = unique_tag("stock-debian-python"), unique_tag("mnist-train-on-stock")
    made["images"] += [stock_tag, train_tag]
    build_image(docker_engine, stock_context, stock_tag, base_image)
    with pytest.raises(docker.errors.ContainerError, match="externally-managed-environment"):
        docker_engine.containers.run(stock_tag, ["sh", "-c", "command -v python || pip3 install --no-index six"],
                                     remove=True, stderr=True, labels={TEST_LABEL: "true"})
    train_context = context(tmp_path, "mnist", "train")
    joblib = [pin for pin in (train_context / "requirements.txt").read_text().split() if pin.startswith("joblib==")]
    assert joblib, "the mnist train template no longer pins joblib: pick another of its pins here"
    (train_context / "requirements.txt").write_text(joblib[0] + "\n")
    build_image(docker_engine, train_context, train_tag, stock_tag)
    output = docker_engine.containers.run(train_tag, ["python", "-c", "import sys, joblib; print(sys.prefix)"],
                                          remove=True, labels={TEST_LABEL: "true"})
    assert output.decode().strip() == "/opt/venv"


def test_the_notebook_image_has_jupyter_lab(docker_engine, base_image, made, tmp_path, template_layers):
    template_layers("notebook/base")  # test_notebook.py's platform builds it too: pip's work done once a session
    notebook = REPO / "templates" / "notebook" / "base"
    target = tmp_path / "notebook-context"
    shutil.copytree(notebook / "model", target)
    shutil.copy(notebook / "Dockerfile", target / "Dockerfile")
    tag = unique_tag("notebook")
    made["images"].append(tag)
    build_image(docker_engine, target, tag, base_image)
    output = docker_engine.containers.run(tag, ["sh", "-c", "jupyter lab --version && ls -A /opt/program/.jupyter"],
                                          remove=True, labels={TEST_LABEL: "true"})
    pinned = (notebook / "model" / "requirements.txt").read_text().split("jupyterlab==")[1].split()[0]
    assert output.decode().split() == [pinned, "jupyter_notebook_config.py"]
