"""The OpenAPI description (kaos_backend/openapi.yaml): a valid OpenAPI 3.1 document, served without a token,
naming every route of the app and no other, and strict enough (once closed) to catch drift."""
import json
import re

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from kaos_backend import __version__
from kaos_backend.app import create_app
from kaos_backend.config import Config
from kaos_backend.openapi import openapi_description
from tests.support.openapi import METHODS, closed, operations

TOKEN = "openapi-token"
JOB_ID = "0" * 32


@pytest.fixture
def app(tmp_path):
    app = create_app(Config.from_env({}, data_dir=tmp_path / "data", token=TOKEN))
    yield app
    app.extensions["kaos"].dispose()


def test_the_description_is_valid_openapi_3_1():
    description = openapi_description()
    assert description["openapi"].startswith("3.1.")
    validate(description)
    validate(closed(description))


def test_served_as_json_without_a_token(app):
    client = app.test_client()
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    served = response.get_json()
    assert served == openapi_description() and served["info"]["version"] == __version__
    # the token still guards everything else, and the description says so
    assert client.get("/api/workspace").status_code == 401
    scheme = served["components"]["securitySchemes"]["token"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Token")
    assert served["security"] == [{"token": []}]
    assert served["paths"]["/openapi.json"]["get"]["security"] == []


def test_served_by_a_real_backend_through_its_front_door(module_backend):
    response = requests.get(module_backend.url + "openapi.json", timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == openapi_description()


def _shape(template: str) -> str:
    """`/inference/{}/{}` for `/inference/{workspace}/{name}` and `/inference/<workspace>/<model_id>`."""
    return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", template)


def test_every_route_of_the_app_is_described_and_nothing_else(app):
    routes = {(method, _shape(rule.rule[len("/api"):]))
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
              for method in rule.methods if method.lower() in METHODS and method not in ("HEAD", "OPTIONS")}
    described = {(method, _shape(path)) for method, path in operations(openapi_description())}
    assert routes - described == set(), "routes of the app missing from kaos_backend/openapi.yaml"
    assert described - routes == set(), "operations described that the app does not have"


def test_every_operation_documents_its_errors():
    for method, path in operations(openapi_description()):
        responses = openapi_description()["paths"][path][method.lower()]["responses"]
        assert {"500", "503"} <= set(responses), (method, path)
        if path != "/openapi.json":
            assert "401" in responses, (method, path)
        for status, response in responses.items():
            assert "default" != status and re.fullmatch(r"[1-5][0-9][0-9]", status), (method, path, status)
            if status >= "400":
                assert "application/json" in _resolved(response)["content"], (method, path, status)


def _resolved(node):
    description = openapi_description()
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = description["components"][kind][name]
    return node


def _answer(body, path=f"/api/train/ws/{JOB_ID}", status=200, content_type="application/json"):
    """Check an invented answer of GET `path` against the closed description; the error, or None."""
    openapi = OpenAPI.from_dict(closed(openapi_description()))
    request = MockRequest("http://127.0.0.1:8080", "get", path, headers={"X-Token": "t"})
    response = MockResponse(json.dumps(body).encode(), status_code=status, content_type=content_type)
    try:
        openapi.validate_response(request, response)
    except Exception as error:  # openapi-core's validation errors
        return error
    return None


JOB_INFO = {"page_id": 0, "page_count": 1, "response": {
    "job_id": JOB_ID, "state": "JOB_SUCCESS", "reason": None, "available_metrics": ["accuracy"], "process_time": 3,
    "partitions": [{"datum_id": f"{JOB_ID}-0",
                    "code": {"repo": "source-train-ws", "commit": "ab" * 16, "path": "/mnist:1909d",
                             "branch": "master", "author": "me"},
                    "data": {"repo": "ingestion-ws", "commit": "cd" * 16, "path": "/features:9fd9d",
                             "branch": "master", "author": "me"},
                    "image": {"repo": "build-train-ws", "commit": "ef" * 16, "path": "/build-train-ws:1909d",
                              "branch": "master", "author": None},
                    "output": {"repo": "train-ws", "commit": JOB_ID, "path": "1909d_9fd9d:828c4e",
                               "branch": "1909d_9fd9d", "author": "me", "model_id": "1909d_9fd9d:828c4e",
                               "model_path": "/828c4e/model/"},
                    "hyperparams": None, "metrics": {"accuracy": 0.9}, "score": None, "state": "JOB_SUCCESS",
                    "reason": None}],
    "failed_partitions": [], "failed_count": 0}}


def test_the_closed_description_accepts_a_described_answer():
    assert _answer(JOB_INFO) is None


@pytest.mark.parametrize("change, what", [
    (lambda info: info["response"].update(surprise=1), "an undescribed field"),
    (lambda info: info["response"]["partitions"][0]["output"].update(surprise=1), "an undescribed nested field"),
    (lambda info: info["response"].update(process_time="3"), "a field of the wrong type"),
    (lambda info: info["response"]["partitions"][0].update(score=0.9), "a score that is not a string"),
    (lambda info: info["response"].pop("available_metrics"), "a required field missing"),
    (lambda info: info["response"].update(state="DONE"), "a state that is not one of the job states"),
])
def test_the_closed_description_refuses_drift(change, what):
    info = json.loads(json.dumps(JOB_INFO))
    change(info)
    assert _answer(info) is not None, what


def test_the_closed_description_refuses_an_undocumented_status_or_error_code():
    assert _answer({"error_code": "JOB_NOT_FOUND", "message": "x"}, status=418) is not None
    assert _answer({"error_code": "WORKSPACE_EXISTS", "message": "x"}, status=404) is not None
    assert _answer({"error_code": "JOB_NOT_FOUND", "message": "x"}, status=404) is None


def test_the_published_description_leaves_objects_open_for_additions():
    """1.x clients ignore fields they do not know; the published description lets the API add some."""
    text = json.dumps(openapi_description())
    assert '"additionalProperties": false' not in text and '"unevaluatedProperties": false' not in text


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/api/train/ws/inspect", "GET"),
    ("POST", "/api/inference/ws/logs", "GET"),
    ("DELETE", "/api/inference/ws/logs", "GET"),
])
def test_a_literal_segment_owns_its_url_for_every_method(app, method, path, allowed):
    """Found by the fuzzing: `/train/{ws}/inspect` and `/inference/{endpoint}/logs` are literal paths of the
    description, so no other method is served there (Flask used to kill a job named "inspect", deploy a model
    named "logs"), and OPTIONS lists exactly the described methods."""
    client = app.test_client()
    client.environ_base["HTTP_X_TOKEN"] = TOKEN
    answer = client.open(path, method=method)
    assert answer.status_code == 405 and answer.get_json()["error_code"] == "BAD_REQUEST"
    assert set(answer.headers["Allow"].split(", ")) - {"HEAD", "OPTIONS"} == {allowed}
    options = client.open(path, method="OPTIONS")
    assert set(options.headers["Allow"].split(", ")) - {"HEAD", "OPTIONS"} == {allowed}
    # a job id or model id merely containing the word is still one
    assert client.open(path + "x", method=method).status_code == 404
