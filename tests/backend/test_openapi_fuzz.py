"""Issue 8, item 3: schemathesis fuzzes a live backend from the OpenAPI description (closed, as in the contract
test), seeded and bounded: no answer may be a 5xx, an error that is not JSON, or anything the description does
not say (status, content type, headers, fields, types); a route must refuse a request without the token, a
method it does not have, and a request outside its description.

Half the generated workspace names are replaced by a workspace that exists and holds data and hyperparameters,
so that cases reach past the workspace look-up; it is made again when a case deleted it (DELETE
/workspace/{workspace} and /internal/resources are fuzzed too). Zip bodies are generated as zips (with hostile
member names) as well as junk. Nothing is excluded: `follow=true` on a log route only streams for a job or
endpoint that exists, which no fuzz case can make here (ids are random and a train needs a built image), so every
follow ends at once.

One schemathesis check is left out: positive_data_acceptance ("a request that fits the schema gets 2xx or 404").
The API refuses requests that fit the schema for reasons no schema can say (the content of a zip, a CPU request
below 10m or above the configured maximum, a hyperparameter grid over 10,000 combinations) with a documented 400.
"""
import io
import json
import zipfile
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from kaos_backend.openapi import openapi_description
from tests.support.backend import BackendProcess
from tests.support.openapi import closed

SEED = 20260801
EXAMPLES_PER_OPERATION = 6  # random cases per operation, beside the examples and coverage phases' ones
WORKSPACE = "fuzz"

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True, "database": "none"},
    # coverage: boundary and negative values of every parameter, and methods a path does not have (three are
    # enough to see 405 with Allow, and an OPTIONS that lists exactly the described methods)
    "phases": {"examples": {"enabled": True},
               "coverage": {"enabled": True, "unexpected-methods": ["PUT", "PATCH", "OPTIONS"]},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
    "request-timeout": 60,
    # a request line over 4 KiB (a long negative value) is refused before routing with 414, as HTTP says, and
    # oversized headers with 431: rejections too, beside schemathesis' default list
    "checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 414, 415,
                                                                 422, 428, 429, 431, "5XX"]}},
})
schema = schemathesis.openapi.from_dict(closed(openapi_description()), config=CONFIG)
CASES = Counter()


def _zip(members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


MEMBER_NAMES = st.lists(st.sampled_from(["features", "tiny", "model", "..", "", ".", "__MACOSX", "Dockerfile",
                                         "train", "serve", "a\nb", "é", "x" * 300]),
                        min_size=1, max_size=4).map("/".join).filter(bool)
ZIPS = st.one_of(st.binary(max_size=64),
                 st.lists(st.tuples(MEMBER_NAMES, st.binary(max_size=32)), max_size=6).map(_zip))
schemathesis.openapi.media_type("application/zip", ZIPS)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    server = BackendProcess(tmp_path_factory.mktemp("openapi-fuzz") / "data").start()
    yield server
    server.stop()
    print(f"\nschemathesis cases (seed {SEED}): {sum(CASES.values())} in all; per operation: {dict(CASES)}")


def _seed_workspace(backend) -> None:
    """The workspace the cases reach into, with data and a hyperparameter grid (made again if a case deleted it)."""
    headers = {"X-Token": backend.token}
    created = requests.post(f"{backend.url}workspace/{WORKSPACE}", headers=headers, timeout=30)
    if created.status_code == 409:
        return
    assert created.status_code == 201, created.text
    requests.post(f"{backend.url}data/{WORKSPACE}/features", headers=headers, timeout=30,
                  data=_zip([("features/training/a.csv", b"1,2\n")])).raise_for_status()
    requests.post(f"{backend.url}data/{WORKSPACE}/params", headers=headers, timeout=30,
                  data=json.dumps({"lr": [1, 2]})).raise_for_status()


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_fuzzed_requests_get_described_answers(case, backend):
    _seed_workspace(backend)
    workspace = (case.path_parameters or {}).get("workspace")
    if isinstance(workspace, str) and len(workspace) % 2 == 0:
        case.path_parameters["workspace"] = WORKSPACE
    CASES[f"{case.operation.method.upper()} {case.operation.path}"] += 1
    case.call_and_validate(base_url=backend.url.rstrip("/"), headers={"X-Token": backend.token},
                           excluded_checks=[positive_data_acceptance])
