"""`kaos train get` and `kaos train provenance` against the scripted HTTP server."""
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from kaos_cli import state
from kaos_cli.client import KaosClient
from kaos_cli.errors import RequestError
from tests.cli.conftest import one_line

JOB = "7a74b6974ba346238baf0a5f397774df"
MODEL = "1909d_5c3ca_3fbf2:828c4e"
MODEL_PATH = "1909d_5c3ca_3fbf2%3A828c4e"  # the model id in a path (Flask decodes %3A)
BUNDLE_PATH = f"train/mnist/{JOB}/bundle"
PROVENANCE_PATH = f"train/mnist/{MODEL_PATH}/provenance"


def zip_bytes(members) -> bytes:
    """A zip of `{name: bytes}` (names ending in / are directories); `train` files are executable."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            entry = zipfile.ZipInfo(name)
            entry.create_system = 3
            mode = 0o40755 if name.endswith("/") else 0o100755 if name.endswith("/train") else 0o100644
            entry.external_attr = mode << 16
            archive.writestr(entry, content)
    return buffer.getvalue()


BUNDLE = {
    "code/mnist:1909d/Dockerfile": b"FROM python:3.11\n",
    "code/mnist:1909d/model/train": b"#!/usr/bin/env python\n",
    "data/features:5c3ca/training/data.csv": b"1,0,0\n",
    "models/828c4e/model/model.pkl": b"\x80\x04pickled model" * 1000,
    "models/828c4e/metrics/metrics.json": b'{"accuracy": 0.9}',
    "models/828c4e/3fbf2/degree=3.json": b'{"degree": 3}',
}


def stderr_last(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    return result.stderr.splitlines()[-1]


def flags(request):
    return {key: request.query[key] for key in ("include_code", "include_data", "include_model", "model_id")
            if key in request.query}


# -- get -------------------------------------------------------------------------------------------------------
def test_get_extracts_code_and_models_by_default(kaos, ws, project, terminal):
    ws.route("GET", BUNDLE_PATH, body=zip_bytes(BUNDLE), content_type="application/zip")
    result = kaos("train", "get", "-j", JOB)
    assert result.exit_code == 0, result.output
    target = Path("mnist") / JOB
    assert result.stdout == f"Info - Extracting train bundle: {target}\n"
    assert "Downloading train bundle" in result.stderr and "Extracting train bundle" in result.stderr
    request, = ws.requests_to("GET", BUNDLE_PATH)
    assert flags(request) == {"include_code": ["True"], "include_data": ["False"], "include_model": ["True"]}
    root = project / target
    assert (root / "models" / "828c4e" / "model" / "model.pkl").read_bytes() == BUNDLE["models/828c4e/model/model.pkl"]
    assert json.loads((root / "models" / "828c4e" / "3fbf2" / "degree=3.json").read_text()) == {"degree": 3}
    assert os.access(root / "code" / "mnist:1909d" / "model" / "train", os.X_OK)
    assert not os.access(root / "code" / "mnist:1909d" / "Dockerfile", os.X_OK)


@pytest.mark.parametrize("args, expected", [
    (["-d"], ("False", "True", "False")),
    (["-c"], ("True", "False", "False")),
    (["-m"], ("False", "False", "True")),
    (["-cdm"], ("True", "True", "True")),
    (["--include_data", "--include_model"], ("False", "True", "True")),
])
def test_get_flags(kaos, ws, args, expected):
    ws.route("GET", BUNDLE_PATH, body=zip_bytes(BUNDLE), content_type="application/zip")
    result = kaos("train", "get", "-j", JOB, *args)
    assert result.exit_code == 0, result.output
    request, = ws.requests_to("GET", BUNDLE_PATH)
    assert flags(request) == {"include_code": [expected[0]], "include_data": [expected[1]],
                              "include_model": [expected[2]]}


def test_get_one_model_by_index_into_out_dir(kaos, ws, tmp_path):
    state.write_cache("train", ["other", JOB])
    ws.route("GET", BUNDLE_PATH, body=zip_bytes(BUNDLE), content_type="application/zip")
    result = kaos("train", "get", "-i", "1", "-o", str(tmp_path), "--model_id", MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Info - Extracting train bundle: {tmp_path / 'mnist' / JOB}\n"
    request, = ws.requests_to("GET", BUNDLE_PATH)
    assert flags(request)["model_id"] == [MODEL]
    assert (tmp_path / "mnist" / JOB / "data" / "features:5c3ca" / "training" / "data.csv").read_text() == "1,0,0\n"
    missing = kaos("train", "get", "-j", JOB, "-o", str(tmp_path / "missing"))
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_get_warns_when_the_job_has_no_model(kaos, ws, project):
    ws.route("GET", BUNDLE_PATH, body=zip_bytes({"code/mnist:1909d/Dockerfile": b"FROM x\n"}),
             content_type="application/zip")
    result = kaos("train", "get", "-j", JOB)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == f"Warning - Job {JOB} has no trained model"
    assert (project / "mnist" / JOB / "code" / "mnist:1909d" / "Dockerfile").is_file()
    data_only = kaos("train", "get", "-j", JOB, "-d")
    assert data_only.exit_code == 0 and "Warning" not in data_only.stderr


@pytest.mark.parametrize("status, code, message", [
    (404, "MODEL_NOT_FOUND", f"There is no model with id: {MODEL}"),
    (404, "JOB_NOT_FOUND", f"There is no job with id: {JOB}"),
    (400, "BAD_REQUEST", f"Job {JOB} is still running"),
])
def test_get_errors_are_one_line(kaos, ws, project, status, code, message):
    ws.route("GET", BUNDLE_PATH, status, {"error_code": code, "message": message})
    assert one_line(kaos("train", "get", "-j", JOB, "--model_id", MODEL)) == f"Error - {message}"
    assert not (project / "mnist").exists()


@pytest.mark.parametrize("evil", ["../x", "models/../../x", "/tmp/kaos-evil-train-x"])
def test_get_refuses_a_member_outside_the_target(kaos, ws, project, evil):
    ws.route("GET", BUNDLE_PATH, body=zip_bytes(dict(BUNDLE, **{evil: b"gotcha"})), content_type="application/zip")
    result = kaos("train", "get", "-j", JOB)
    assert stderr_last(result) == (f"Error - Refused the train bundle of {JOB}: its member {evil!r} would be "
                                   f"written outside {Path('mnist') / JOB} (nothing was extracted)")
    assert not (project / "mnist" / JOB).exists() and not Path("/tmp/kaos-evil-train-x").exists()


def test_get_of_a_damaged_zip(kaos, ws, project):
    ws.route("GET", BUNDLE_PATH, body=b"not a zip", content_type="application/zip")
    assert stderr_last(kaos("train", "get", "-j", JOB)).startswith(
        f"Error - The train bundle of {JOB} is not a valid zip archive")
    assert not (project / "mnist" / JOB).exists()


def test_get_usage(kaos, ws):
    assert one_line(kaos("train", "get")) == "Error - Missing either --job_id or --ind as arguments"
    both = kaos("train", "get", "-j", JOB, "-i", "0")
    assert both.exit_code == 2 and "Illegal usage: --job_id is mutually exclusive with --ind" in both.output
    assert one_line(kaos("train", "get", "-i", "0")) == "Error - Index not available until running `kaos train list`"
    for name in ("../x", "a/b", ".hidden"):
        assert one_line(kaos("train", "get", "-j", name)) == f"Error - Invalid job id {name!r}"
    assert one_line(kaos("train", "get", "-j", JOB, "--model_id", " ")) == "Error - --model_id must not be empty"
    assert not [r for r in ws.requests if r.path.startswith("/api/train")]


# -- provenance ------------------------------------------------------------------------------------------------
DOT = 'digraph provenance {\n  "source-train-mnist" -> "build-train-mnist" [label="/mnist:1909d"];\n}'
FAKE_DOT = r"""#!/bin/sh
# a stand-in for graphviz: dot -Tpdf <in> -o <out>
out=""; src=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -T*) shift ;;
    *) src="$1"; shift ;;
  esac
done
{ printf '%%PDF-1.4 fake\n'; cat "$src"; } > "$out"
"""


@pytest.fixture
def fake_dot(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dot").write_text(FAKE_DOT)
    (bin_dir / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_provenance_without_graphviz_keeps_the_dot_file(kaos, ws, project, no_dot):
    ws.route("GET", PROVENANCE_PATH, body=json.dumps(DOT))
    result = kaos("train", "provenance", "-m", MODEL)
    assert result.exit_code == 0, result.output
    dot_file = Path("mnist") / "provenance" / f"model-{MODEL}.dot"  # the original's name, ':' included
    assert result.stdout.splitlines() == [
        f"Info - Retrieving provenance from {MODEL}",
        f"Info - Provenance saved to {dot_file} (install graphviz to render it as PDF)"]
    assert (project / dot_file).read_text() == DOT + "\n"
    assert len(ws.requests_to("GET", PROVENANCE_PATH)) == 1


def test_provenance_rendered_into_an_out_dir_that_need_not_exist(kaos, ws, fake_dot, tmp_path):
    ws.route("GET", PROVENANCE_PATH, body=json.dumps(DOT))
    out = tmp_path / "not-yet" / "there"
    result = kaos("train", "provenance", "--model_id", MODEL, "--out_dir", str(out))
    assert result.exit_code == 0, result.output
    directory = out / "mnist" / "provenance"
    assert result.stdout.splitlines()[-1] == f"Info - Provenance saved to {directory / f'model-{MODEL}.pdf'}"
    assert (directory / f"model-{MODEL}.pdf").read_text() == "%PDF-1.4 fake\n" + DOT + "\n"
    assert (directory / f"model-{MODEL}.dot").is_file()


def test_provenance_of_a_model_id_pasted_with_a_trailing_space(kaos, ws, project, no_dot):
    ws.route("GET", PROVENANCE_PATH, body=json.dumps(DOT))
    result = kaos("train", "provenance", "-m", MODEL + " ")
    assert result.exit_code == 0, result.output
    assert (project / "mnist" / "provenance" / f"model-{MODEL}.dot").is_file()


def test_provenance_errors(kaos, ws, project, no_dot):
    ws.route("GET", PROVENANCE_PATH, 404, {"error_code": "MODEL_NOT_FOUND",
                                           "message": f"There is no model with id: {MODEL}"})
    assert stderr_last(kaos("train", "provenance", "-m", MODEL)) == f"Error - There is no model with id: {MODEL}"
    assert not (project / "mnist").exists()
    ws.route("GET", PROVENANCE_PATH, body=json.dumps(""))
    assert stderr_last(kaos("train", "provenance", "-m", MODEL)) == \
        f"Error - The backend returned no provenance for model {MODEL}"
    missing = kaos("train", "provenance")
    assert missing.exit_code == 2 and "Missing option '-m' / '--model_id'" in missing.output
    for name in ("../x", "a/b", ".x"):
        assert one_line(kaos("train", "provenance", "-m", name)) == f"Error - Invalid model id {name!r}"


# -- the client ------------------------------------------------------------------------------------------------
def test_client_train_bundle_and_provenance(server, tmp_path):
    server.route("GET", "train/ws/j1/bundle", body=b"PK zip", content_type="application/zip")
    client = KaosClient(server.url, "t", progress=False)
    dest = tmp_path / "b.zip"
    assert client.train_bundle("ws", "j1", dest, include_data=True, model_id="a:b") == str(dest)
    assert dest.read_bytes() == b"PK zip"
    request, = server.requests_to("GET", "train/ws/j1/bundle")
    assert flags(request) == {"include_code": ["True"], "include_data": ["True"], "include_model": ["True"],
                              "model_id": ["a:b"]}
    path = Path(client.train_bundle("ws", "j1"))
    try:
        assert path.read_bytes() == b"PK zip"
    finally:
        path.unlink()
    server.route("GET", "train/ws/a%3Ab/provenance", body=json.dumps("digraph {}"))
    assert client.train_provenance("ws", "a:b") == "digraph {}"
    server.route("GET", "train/ws/j2/bundle", 404, {"error_code": "JOB_NOT_FOUND", "message": "There is no job"})
    with pytest.raises(RequestError) as raised:
        client.train_bundle("ws", "j2", tmp_path / "none.zip")
    assert raised.value.error_code == "JOB_NOT_FOUND" and not (tmp_path / "none.zip").exists()
