"""The templates shipped as kaos_templates: layout, data, and their train/serve scripts run for real.

Scripts run as subprocesses the way the local executor runs them: in a copy of the bundle's model/ directory,
with this interpreter's bin directory first on PATH (it has scikit-learn, flask and gunicorn installed).
"""
import contextlib
import importlib.util
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
MNIST = TEMPLATES / "mnist"
PROPERTY = TEMPLATES / "property-val"
NOTEBOOK = TEMPLATES / "notebook"
NOTEBOOK_GPU = TEMPLATES / "notebook-gpu"

TRAIN_FILES = ("__init__.py", "requirements.txt", "train")
SERVE_FILES = ("__init__.py", "serve", "web-requirements.txt")
FIT_LINE = "model = classifier.fit(training_data, training_labels.values)"
SAVE_LINE = "out_path = os.path.join(model_path, 'model.pkl')"
LOAD_LINE = 'ctx = load_ctx("model.pkl")  # load trained model'


def load_templates_package():
    spec = importlib.util.spec_from_file_location("kaos_templates", TEMPLATES / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def visible(path):
    return sorted(entry for entry in path.iterdir() if not entry.name.startswith((".", "_")))


def script_env(**extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAOS_TRAIN_")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update({key: str(value) for key, value in extra.items()})
    return env


def run_train(bundle_model_dir, work_dir, output_dir, data_dir, hyper_dir, argv=True, patch=None):
    """Copy model/ to work_dir and run ./train there; return the CompletedProcess."""
    shutil.copytree(bundle_model_dir, work_dir)
    if patch:
        script = work_dir / "train"
        script.write_text(patch(script.read_text()))
    env = script_env(KAOS_TRAIN_DATA=data_dir, KAOS_TRAIN_HYPER=hyper_dir, KAOS_TRAIN_OUTPUT=output_dir)
    command = ["./train", str(output_dir)] if argv else ["./train"]
    return subprocess.run(command, cwd=work_dir, env=env, capture_output=True, text=True, timeout=120)


def http(method, url, body=None):
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_serve(bundle_model_dir, work_dir, model_pkl, patch_predict=None, **env):
    shutil.copytree(bundle_model_dir, work_dir)
    if model_pkl:
        shutil.copy(model_pkl, work_dir / "model.pkl")
    if patch_predict:
        predict = work_dir / "predict.py"
        predict.write_text(patch_predict(predict.read_text()))
    port = free_port()
    stdout, stderr = open(work_dir / "serve.out", "w"), open(work_dir / "serve.err", "w")
    process = subprocess.Popen(["./serve"], cwd=work_dir, stdout=stdout, stderr=stderr, start_new_session=True,
                               env=script_env(PORT=port, MODEL_SERVER_WORKERS=1, **env))
    stdout.close()
    stderr.close()
    return process, "http://127.0.0.1:%d" % port


def stop_process_group(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def serving(bundle_model_dir, work_dir, model_pkl):
    process, url = start_serve(bundle_model_dir, work_dir, model_pkl)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail("serve exited with %s:\n%s" % (process.returncode, (work_dir / "serve.err").read_text()))
            try:
                if http("GET", url + "/ping")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve did not answer /ping:\n" + (work_dir / "serve.err").read_text())
            time.sleep(0.2)
        yield url
    finally:
        stop_process_group(process)


# ---------------------------------------------------------------------------------------------- layout


def test_metadata_lists_exactly_the_template_dirs():
    metadata = load_templates_package().load_metadata()
    assert [entry["name"] for entry in metadata] == ["mnist", "notebook", "property-val", "notebook-gpu"]  # 1.x's
    assert [entry["input_type"] for entry in metadata] == ["images", "any", "numerical & categorical", "any"]
    assert metadata[3]["description"] == "Deploy a gpu-enabled notebook"
    assert metadata[0]["description"] == "Train an image classification model with the MNIST dataset"
    assert all(set(entry) == {"name", "description", "input_type"} for entry in metadata)
    assert {entry["name"] for entry in metadata} == {path.name for path in visible(TEMPLATES) if path.is_dir()}


def source_bundles():
    """(kind, bundle root) for every source bundle of every template; each submit path holds one root dir."""
    bundles = []
    for template, kind in [(MNIST, "train"), (MNIST, "serve"), (PROPERTY, "train"), (PROPERTY, "serve"),
                           (TEMPLATES, "notebook")]:
        submit_path = {"train": template / "model-train", "serve": template / "model-serve",
                       "notebook": NOTEBOOK}[kind]
        roots = visible(submit_path)
        assert len(roots) == 1 and roots[0].is_dir(), submit_path
        bundles.append((kind, roots[0]))
    return bundles


@pytest.mark.parametrize("kind,root", source_bundles(), ids=lambda value: getattr(value, "name", value))
def test_source_bundles_pass_the_required_files_rule(kind, root):
    assert (root / "Dockerfile").is_file()
    assert (root / "model").is_dir()
    required = {"train": TRAIN_FILES, "serve": SERVE_FILES, "notebook": ("requirements.txt",)}[kind]
    for name in required:
        assert (root / "model" / name).is_file(), name
    for name in ("train", "serve"):
        if name in required:
            assert os.access(root / "model" / name, os.X_OK), "%s is not executable" % name
    assert "python:3.11-slim" in (root / "Dockerfile").read_text()


def test_no_generated_clutter_inside_templates():
    clutter = [path for path in TEMPLATES.rglob("*")
               if path.name in ("__pycache__", ".ipynb_checkpoints") or path.suffix == ".pyc"]
    assert [path for path in clutter if path.parent != TEMPLATES] == []
    size = sum(path.stat().st_size for path in TEMPLATES.rglob("*") if path.is_file())
    assert size < 1_000_000


def read_pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", line.strip())
            assert match, "%s: %r is not pinned with ==" % (path, line)
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_requirements_are_pinned_and_train_matches_serve():
    files = sorted(TEMPLATES.rglob("*requirements.txt"))
    assert len(files) == 8  # notebook-gpu's too: its jupyterlab pinned as the notebook's
    pins = {path: read_pins(path) for path in files}
    seen = {}
    for path, packages in pins.items():
        for name, version in packages.items():
            assert seen.setdefault(name, version) == version, "%s pinned differently in %s" % (name, path)
    for template in (MNIST, PROPERTY):
        train = read_pins(next((template / "model-train").glob("*/model/requirements.txt")))
        serve = read_pins(next((template / "model-serve").glob("*/model/requirements.txt")))
        for name in ("scikit-learn", "numpy", "joblib"):
            assert train[name] == serve[name]
        web = read_pins(next((template / "model-serve").glob("*/model/web-requirements.txt")))
        assert {"flask", "gunicorn"} <= set(web)


def test_a_typo_in_requirements_fails_pip(tmp_path):
    """Seed debugging story 1: `pandas=0.24` makes the build's pip install fail."""
    requirements = tmp_path / "requirements.txt"
    original = (MNIST / "model-train/mnist/model/requirements.txt").read_text()
    requirements.write_text(original + "pandas=0.24\n")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
                             "-r", str(requirements)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "pandas=0.24" in result.stdout + result.stderr


def test_hyperopt_grids_expand_over_known_params():
    for template, bundle, combinations in [(MNIST, "mnist", 12), (PROPERTY, "property-val", 8)]:
        grid = json.loads((template / "hyperopt/params.json").read_text())
        assert all(isinstance(values, list) and values for values in grid.values())
        assert len(list(itertools.product(*grid.values()))) == combinations
        static = json.loads((template / "model-train" / bundle / "model/params.json").read_text())
        assert set(grid) <= set(static)


def test_manifest_lines_are_json_objects_with_url_and_relative_path():
    lines = (MNIST / "data_manifest_micro/data.mf").read_text().splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert set(entry) == {"url", "path"}
        assert entry["url"].startswith("https://")
        assert not entry["path"].startswith("/") and ".." not in entry["path"].split("/")
        assert (MNIST / "data/features" / entry["path"]).is_file()


# ------------------------------------------------------------------------------------------------ data


def test_generate_reproduces_the_committed_data(tmp_path):
    subprocess.run([sys.executable, str(TEMPLATES / "_generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=120, env=script_env())
    generated = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    assert len(generated) == 9
    for path in generated:
        committed = TEMPLATES / path.relative_to(tmp_path)
        assert committed.is_file(), committed
        if path.suffix == ".jpg" and path.read_bytes() != committed.read_bytes():
            # another libjpeg may encode differently; the decoded pixels must still agree
            new, old = (np.asarray(Image.open(p).convert("L"), dtype=int) for p in (path, committed))
            assert np.abs(new - old).max() <= 2, committed
        elif path.suffix != ".jpg":
            assert path.read_bytes() == committed.read_bytes(), committed


def test_mnist_data_shape():
    sizes = {}
    for split, name in [("training", "training_mini.csv"), ("validation", "validation_mini.csv"),
                        ("test", "test_mini.csv")]:
        rows = np.loadtxt(MNIST / "data/features" / split / name, delimiter=",", dtype=int)
        assert rows.shape[1] == 65
        assert rows[:, 0].min() == 0 and rows[:, 0].max() == 9
        assert rows[:, 1:].min() == 0 and rows[:, 1:].max() == 16
        sizes[split] = len(rows)
    assert sizes == {"training": 1200, "validation": 300, "test": 297}


def test_property_data_has_the_params_columns():
    params = json.loads((PROPERTY / "model-train/property-val/model/params.json").read_text())
    for split in ("training", "validation", "test"):
        header = (PROPERTY / "data/features" / split / (split + ".csv")).read_text().splitlines()[0]
        assert header.split(",") == params["features"] + [params["target"]]
    payload = json.loads((PROPERTY / "test_payload.json").read_text())
    assert list(payload) == params["features"]
    assert all(isinstance(value, (int, float)) for value in payload.values())


# ----------------------------------------------------------------------------------------------- mnist


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    base = tmp_path_factory.mktemp("mnist-train")
    result = run_train(MNIST / "model-train/mnist/model", base / "work", base / "out",
                       MNIST / "data/features", base / "no-hyper")
    assert result.returncode == 0, result.stderr
    return base / "out", result


def test_mnist_train_writes_model_and_metrics(mnist_model):
    output, result = mnist_model
    assert (output / "model/model.pkl").is_file()
    metrics = json.loads((output / "metrics/metrics.json").read_text())
    for split in ("train", "validation", "test"):
        assert isinstance(metrics["accuracy_" + split], float) and metrics["accuracy_" + split] > 0.8
        assert isinstance(metrics["metrics_" + split], str) and "precision" in metrics["metrics_" + split]
    ctx = joblib.load(output / "model/model.pkl")
    assert set(ctx) == {"model", "scaler"}
    for line in ("Loading training data from", "Training SVC with", "accuracy_validation:", "Model saved to"):
        assert line in result.stdout


def test_mnist_train_without_test_split(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(MNIST / "data/features", data)
    shutil.rmtree(data / "test")
    result = run_train(MNIST / "model-train/mnist/model", tmp_path / "work", tmp_path / "out", data,
                       tmp_path / "no-hyper")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out/metrics/metrics.json").read_text())
    assert set(metrics) == {"accuracy_train", "accuracy_validation", "metrics_train", "metrics_validation"}


def test_mnist_train_merges_hyperparameters(tmp_path):
    hyper = tmp_path / "hyper" / "3f2a1c"
    hyper.mkdir(parents=True)
    (hyper / "params.json").write_text(json.dumps({"degree": 2, "kernel": "poly", "gamma": 0.1}))
    # the bundle's own root folder (data/ holding features/) also works as KAOS_TRAIN_DATA; no argv[1]
    result = run_train(MNIST / "model-train/mnist/model", tmp_path / "work", tmp_path / "out", MNIST / "data",
                       tmp_path / "hyper", argv=False)
    assert result.returncode == 0, result.stderr
    assert "Merging hyperparameters from" in result.stdout
    model = joblib.load(tmp_path / "out/model/model.pkl")["model"]
    assert (model.kernel, model.degree, model.gamma) == ("poly", 2, 0.1)
    assert json.loads((tmp_path / "out/metrics/metrics.json").read_text())["accuracy_validation"] > 0.8


def test_mnist_train_syntax_error_points_at_train(tmp_path):
    """Seed debugging story 2: an unclosed bracket in `train` is a SyntaxError reported in ./train."""
    source = (MNIST / "model-train/mnist/model/train").read_text()
    assert FIT_LINE in source and SAVE_LINE in source
    assert source.index(FIT_LINE) < source.index(SAVE_LINE)
    result = run_train(MNIST / "model-train/mnist/model", tmp_path / "work", tmp_path / "out",
                       MNIST / "data/features", tmp_path / "no-hyper",
                       patch=lambda text: text.replace(FIT_LINE, FIT_LINE[:-1]))
    assert result.returncode != 0
    assert "SyntaxError" in result.stderr
    assert re.search(r'File ".*\./train", line \d+', result.stderr), result.stderr


def test_mnist_serve_answers_the_payload(mnist_model, tmp_path):
    output, _ = mnist_model
    expected = json.loads((MNIST / "test_payload.expected.json").read_text())
    with serving(MNIST / "model-serve/mnist/model", tmp_path / "serve", output / "model/model.pkl") as url:
        status, body = http("GET", url + "/ping")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, body = http("POST", url + "/invocations", (MNIST / "test_payload.jpg").read_bytes())
        assert (status, json.loads(body)) == (200, expected)
        # the same digit as light ink on a dark background (PNG) gives the same answer
        image = Image.open(MNIST / "test_payload.jpg").convert("L").point(lambda value: 255 - value)
        png = io.BytesIO()
        image.save(png, format="PNG")
        assert json.loads(http("POST", url + "/invocations", png.getvalue())[1]) == expected
    assert "****** Start inference server (1 workers) ******" in (tmp_path / "serve/serve.out").read_text()


def refused(url, body):
    """POST `body` to /invocations, expect a 400 with a JSON body {"error": reason}; return the reason."""
    status, answer = http("POST", url + "/invocations", body)
    assert status == 400, (status, answer)
    error = json.loads(answer)
    assert set(error) == {"error"} and isinstance(error["error"], str), error
    return error["error"]


def bad_ctx(model_pkl, path, **replaced):
    """A copy of the trained context with some parts replaced (so that predicting a valid input fails)."""
    ctx = joblib.load(model_pkl)
    ctx.update(replaced)
    joblib.dump(ctx, path)
    return path


def test_mnist_serve_refuses_a_body_that_is_not_an_image(mnist_model, tmp_path):
    output, _ = mnist_model
    jpg = (MNIST / "test_payload.jpg").read_bytes()
    mangled = jpg.replace(b"\r", b"").replace(b"\n", b"")  # what `curl -d @test_payload.jpg` sends
    assert mangled != jpg
    with serving(MNIST / "model-serve/mnist/model", tmp_path / "serve", output / "model/model.pkl") as url:
        for body in (mangled, b"not an image", jpg[:len(jpg) // 2], jpg[:4]):
            reason = refused(url, body)
            assert reason.startswith("The body is not an image (PIL: "), reason
            assert "curl --data-binary @file, not -d" in reason
        assert refused(url, mangled) == ("The body is not an image (PIL: cannot identify image file): "
                                         "send the file with curl --data-binary @file, not -d "
                                         "(which strips its line breaks)")
        reason = refused(url, b"")
        assert reason.startswith("The body is empty") and "--data-binary" in reason
        status, body = http("POST", url + "/invocations", jpg)  # the server is fine after all that
        assert (status, json.loads(body)) == (200, json.loads((MNIST / "test_payload.expected.json").read_text()))
    assert "Traceback" not in (tmp_path / "serve/serve.err").read_text()


def test_mnist_serve_answers_500_when_predicting_a_valid_image_fails(mnist_model, tmp_path):
    from sklearn.preprocessing import StandardScaler
    output, _ = mnist_model
    model_pkl = bad_ctx(output / "model/model.pkl", tmp_path / "model.pkl",
                        scaler=StandardScaler().fit([[0, 0, 0], [1, 1, 1]]))  # expects 3 pixels, gets 64
    with serving(MNIST / "model-serve/mnist/model", tmp_path / "serve", model_pkl) as url:
        status, body = http("POST", url + "/invocations", (MNIST / "test_payload.jpg").read_bytes())
        assert (status, body) == (500, b"Error while processing the request")
    log = (tmp_path / "serve/serve.err").read_text()
    assert "Error while processing the request" in log and "Traceback" in log
    assert "ValueError" in log and "features" in log


def test_serve_with_a_wrong_model_file_fails_to_boot(mnist_model, tmp_path):
    """Seed debugging story 3: load_ctx("model.docx") -> the workers exit with FileNotFoundError in the logs."""
    output, _ = mnist_model
    process, _ = start_serve(MNIST / "model-serve/mnist/model", tmp_path / "serve", output / "model/model.pkl",
                             patch_predict=lambda text: text.replace(LOAD_LINE, LOAD_LINE.replace(".pkl", ".docx")))
    try:
        returncode = process.wait(timeout=60)
    finally:
        stop_process_group(process)
    stderr = (tmp_path / "serve/serve.err").read_text()
    assert returncode != 0
    assert "FileNotFoundError" in stderr and "model.docx" in stderr
    assert 'load_ctx("model.docx")' in stderr


# ---------------------------------------------------------------------------------------- property-val


@pytest.fixture(scope="module")
def property_model(tmp_path_factory):
    base = tmp_path_factory.mktemp("property-train")
    result = run_train(PROPERTY / "model-train/property-val/model", base / "work", base / "out",
                       PROPERTY / "data/features", base / "no-hyper")
    assert result.returncode == 0, result.stderr
    return base / "out", result


def test_property_train_writes_model_and_metrics(property_model):
    output, result = property_model
    metrics = json.loads((output / "metrics/metrics.json").read_text())
    assert set(metrics) == {"%s_%s" % (name, suffix) for name in ("MAE", "RMSE", "R2")
                            for suffix in ("train", "vld", "test")}
    assert all(isinstance(value, float) for value in metrics.values())
    assert metrics["R2_vld"] > 0.7 and metrics["R2_test"] > 0.7
    assert "Training MLPRegressor with" in result.stdout and "Model saved to" in result.stdout


def test_property_train_merges_hyperparameters_without_test_split(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(PROPERTY / "data/features", data)
    shutil.rmtree(data / "test")
    (tmp_path / "hyper").mkdir()
    (tmp_path / "hyper/combo.json").write_text(json.dumps({"hidden_layers": 10, "alpha": 0.1,
                                                           "activation": "logistic"}))
    result = run_train(PROPERTY / "model-train/property-val/model", tmp_path / "work", tmp_path / "out", data,
                       tmp_path / "hyper")
    assert result.returncode == 0, result.stderr
    regressor = joblib.load(tmp_path / "out/model/model.pkl")["model"].regressor_
    assert (regressor.hidden_layer_sizes, regressor.activation, regressor.alpha) == ((10,), "logistic", 0.1)
    assert "R2_test" not in json.loads((tmp_path / "out/metrics/metrics.json").read_text())


def test_property_serve_prices_the_payload(property_model, tmp_path):
    output, _ = property_model
    payload = (PROPERTY / "test_payload.json").read_bytes()
    true_price = float((PROPERTY / "data/features/test/test.csv").read_text().splitlines()[-1].split(",")[-1])
    with serving(PROPERTY / "model-serve/property-val/model", tmp_path / "serve", output / "model/model.pkl") as url:
        assert http("GET", url + "/ping")[0] == 200
        status, body = http("POST", url + "/invocations", payload)
        assert status == 200
        result = json.loads(body)["result"]
        assert len(result) == 1 and isinstance(result[0], float)
        assert abs(result[0] - true_price) / true_price < 0.35
        # a list of houses is priced house by house
        status, body = http("POST", url + "/invocations", b"[%s, %s]" % (payload, payload))
        assert status == 200 and json.loads(body)["result"] == result * 2


def test_property_serve_refuses_a_body_that_is_not_an_object_of_features(property_model, tmp_path):
    output, _ = property_model
    payload = json.loads((PROPERTY / "test_payload.json").read_text())
    features = list(payload)
    with serving(PROPERTY / "model-serve/property-val/model", tmp_path / "serve", output / "model/model.pkl") as url:
        assert http("GET", url + "/ping")[0] == 200
        for body in (b"lot_area=8450&overall_quality=7", b"not json", b'{"lot_area": 1', b"\xff\xfe\x00"):
            reason = refused(url, body)
            assert reason.startswith("The body is not JSON ("), reason
            assert "--data-binary @test_payload.json" in reason
        assert refused(url, b"[1, 2]").startswith(
            "Expected a JSON object of features (or a non-empty list of such objects), not a list holding a number")
        assert "not an empty list" in refused(url, b"[]")
        assert "not a list holding a string" in refused(url, json.dumps([payload, "house"]).encode())
        assert "not a string" in refused(url, b'"house"')
        assert "not null" in refused(url, b"null")
        assert refused(url, b'{"lot_area": 1}') == "Missing features: " + ", ".join(features[1:])
        assert refused(url, json.dumps([payload, {}]).encode()) == "Missing features: " + ", ".join(features)
        for value, shown in (("big", '"big"'), (None, "null"), (True, "true"), ([1], "[1]")):
            body = json.dumps({**payload, "rooms": value}).encode()
            assert refused(url, body) == "Feature 'rooms' is not a number: " + shown
        assert refused(url, json.dumps({**payload, "rooms": float("nan")}).encode()) == \
            "Feature 'rooms' is not a finite number: NaN"
        for body in (b"", b"  \n"):
            reason = refused(url, body)
            assert reason.startswith("The body is empty") and "--data-binary" in reason
        status, body = http("POST", url + "/invocations", json.dumps({**payload, "extra": "ignored"}).encode())
        assert status == 200 and len(json.loads(body)["result"]) == 1
    assert "Traceback" not in (tmp_path / "serve/serve.err").read_text()


def test_property_serve_answers_500_when_predicting_valid_features_fails(property_model, tmp_path):
    from sklearn.linear_model import LinearRegression
    output, _ = property_model
    model_pkl = bad_ctx(output / "model/model.pkl", tmp_path / "model.pkl",
                        model=LinearRegression().fit([[0, 0], [1, 1]], [0, 1]))  # expects 2 features, gets 18
    with serving(PROPERTY / "model-serve/property-val/model", tmp_path / "serve", model_pkl) as url:
        status, body = http("POST", url + "/invocations", (PROPERTY / "test_payload.json").read_bytes())
        assert (status, body) == (500, b"Error while processing the request")
    log = (tmp_path / "serve/serve.err").read_text()
    assert "Error while processing the request" in log and "Traceback" in log and "ValueError" in log


# -------------------------------------------------------------------------------------------- notebook


def test_notebook_lists_the_data_directory(tmp_path):
    notebook = json.loads((NOTEBOOK / "base/model/example_notebook.ipynb").read_text())
    assert notebook["nbformat"] == 4 and notebook["metadata"]["kernelspec"]["name"] == "python3"
    for cell in notebook["cells"]:
        assert {"cell_type", "metadata", "source"} <= set(cell)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    data = tmp_path / "features"
    (data / "training").mkdir(parents=True)
    (data / "training/a.csv").write_text("1,2\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=script_env(DATA_REPO=str(data)))
    assert result.returncode == 0, result.stderr
    assert os.path.join("training", "a.csv") in result.stdout
    config = NOTEBOOK / "base/model/.jupyter/jupyter_notebook_config.py"
    compile(config.read_text(), str(config), "exec")
    assert "jupyterlab" in (NOTEBOOK / "base/model/requirements.txt").read_text()


def test_the_gpu_notebook_is_a_notebook_bundle_on_a_cuda_image_with_a_gpu_framework():
    """1.x's notebook-gpu (§4.7, §6.12), today: JupyterLab and PyTorch on NVIDIA's CUDA runtime image."""
    [root] = visible(NOTEBOOK_GPU)
    assert (root / "Dockerfile").is_file() and "FROM ${BASE_IMAGE}" in (root / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=nvidia/cuda:" in (root / "Dockerfile").read_text()
    requirements = (root / "model/requirements.txt").read_text().split()
    assert any(line.startswith("jupyterlab==") for line in requirements)
    assert any(line.startswith("torch==") for line in requirements)
    notebook = json.loads((root / "model/example_notebook.ipynb").read_text())
    assert notebook["nbformat"] == 4 and notebook["metadata"]["kernelspec"]["name"] == "python3"
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    compile(code, "example_notebook.ipynb", "exec")
    assert "torch.cuda.is_available()" in code and "KAOS_NOTEBOOK_DATA" in code
    config = root / "model/.jupyter/jupyter_notebook_config.py"
    compile(config.read_text(), str(config), "exec")


def test_kaos_template_lists_and_gets_the_gpu_notebook(tmp_path):
    from tests.support.cli import kaos
    listed = kaos(tmp_path, "template", "list")
    assert listed.code == 0 and "notebook-gpu" in listed.out and "Deploy a gpu-enabled notebook" in listed.out
    got = kaos(tmp_path, "template", "get", "-n", "notebook-gpu")
    assert got.code == 0 and "Successfully loaded notebook-gpu template" in got.text, got
    assert (tmp_path / "templates/notebook-gpu/base/model/.jupyter/jupyter_notebook_config.py").is_file()


def test_a_notebook_deployed_without_a_bundle_with_gpus_runs_the_gpu_template():
    """1.x's `notebook deploy` without -s used notebook-gpu when --gpu > 0 (§4.11, §6.12); so does kaos."""
    import io
    import zipfile

    from kaos_backend.services.notebooks import default_bundle_zip, default_template
    assert [default_template(gpu) for gpu in (None, 0, "0", 1, "2")] == ["notebook"] * 3 + ["notebook-gpu"] * 2
    with zipfile.ZipFile(io.BytesIO(default_bundle_zip(default_template(1)))) as archive:
        assert "nvidia/cuda" in archive.read("base/Dockerfile").decode()
        assert "torch==" in archive.read("base/model/requirements.txt").decode()
    with zipfile.ZipFile(io.BytesIO(default_bundle_zip())) as archive:
        assert "nvidia/cuda" not in archive.read("base/Dockerfile").decode()
