"""--cpu, --memory and --gpu of `train deploy`, `serve deploy` and `notebook deploy`, against a scripted server: a
request the backend would refuse for its grammar or minimums is one line and exit 1 before anything is uploaded
(`train deploy --cpu 500m`, what the refusal message itself suggests, was a click usage error of four lines, exit 2,
while `notebook deploy` took it), and what is given is sent as typed."""
import pytest

from tests.cli.conftest import one_line

BAD = [
    (("--cpu", "abc"), "Error - Incorrect CPU request abc. Give a number of cores such as 0.5, 2 or 500m."),
    (("--cpu", "-1"), "Error - Incorrect CPU request -1. Give a number of cores such as 0.5, 2 or 500m."),
    (("--cpu", "1m"), "Error - CPU request 1m too low. Minimum allowed is 0.01 (10m)."),
    (("--gpu", "1.5"), "Error - Incorrect GPU request 1.5. Give a whole number of GPUs such as 0 or 1."),
    (("--memory", "12XB"), "Error - Incorrect memory request 12XB. Please check memory specs: "
                           "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/"),
    (("--memory", "1Mi"), "Error - Memory request 1Mi too low. Minimum allowed is 6Mi."),
    # above what any platform can mean (kaos_model.resources.MAX_*): `--cpu 1e308` was taken, and its job failed
    # in the scheduler (OverflowError: cannot convert float infinity to integer, cgroups' quota)
    (("--cpu", "1e308"), "Error - CPU request 1e308 too high. Maximum allowed is 1024."),
    (("--cpu", "1000000"), "Error - CPU request 1000000 too high. Maximum allowed is 1024."),
    (("--cpu", "1e999"), "Error - CPU request 1e999 too high. Maximum allowed is 1024."),
    (("--memory", "99999999999999999999Gi"), "Error - Memory request 99999999999999999999Gi too high. Maximum "
                                             "allowed is 1Pi."),
    (("--memory", "1e400"), "Error - Memory request 1e400 too high. Maximum allowed is 1Pi."),
    (("--gpu", "65"), "Error - GPU request 65 too high. Maximum allowed is 64."),
    (("--gpu", "99999999999999999999"), "Error - GPU request 99999999999999999999 too high. Maximum allowed is 64."),
]


@pytest.fixture
def bundle(tmp_path):
    """A directory that is a train, serve and notebook source bundle at once (the CLI checks only its layout)."""
    root = tmp_path / "bundle"
    (root / "mnist" / "model").mkdir(parents=True)
    (root / "mnist" / "Dockerfile").write_text("FROM python:3.11\n")
    for script in ("train", "serve"):
        (root / "mnist" / "model" / script).write_text("#!/usr/bin/env python\n")
    return root


def uploads(server) -> list:
    return [request for request in server.requests if request.method == "POST"]


@pytest.mark.parametrize("command", ["train", "serve", "notebook"])
@pytest.mark.parametrize("option, message", BAD, ids=lambda value: "=".join(value) if isinstance(value, tuple)
                         else None)
def test_a_bad_request_is_one_line_and_exit_1_before_any_upload(kaos, ws, bundle, command, option, message):
    result = kaos(command, "deploy", "-s", str(bundle), *option)
    assert one_line(result) == message, result.output
    assert result.exit_code == 1 and not uploads(ws)


@pytest.mark.parametrize("command, route", [("train", "train/mnist"), ("serve", "inference/mnist/None")])
def test_millicores_and_quantities_are_sent_as_typed(kaos, ws, bundle, command, route):
    ws.route("POST", route, body={"glob_name": "mnist:1909d", "job_id": None, "endpoint": "serve-mnist-53d3da"})
    ws.route("GET", "train/mnist/inspect", body={"response": {"image": {"state": "none"}}})
    kaos(command, "deploy", "-s", str(bundle), "--cpu", "500m", "--memory", "1.5Gi", "--gpu", "1")
    upload, = ws.requests_to("POST", route)
    assert {name: upload.query[name] for name in ("cpu", "memory", "gpu")} == \
        {"cpu": ["500m"], "memory": ["1.5Gi"], "gpu": ["1"]}
