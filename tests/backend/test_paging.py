"""Paging of the list routes (`limit` and `continue`, docs/rest-api.md): the real backend over HTTP on SQLite and
PostgreSQL, with jobs and endpoints bulk inserted into its database; and the SQL the listings run."""
import base64
import json
import math
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import event

from kaos_backend.models import Job, Partition
from kaos_backend.services.paging import MAX_LIMIT, encode_token
from tests.support.backend import BackendProcess
from tests.support.listings import START, connect, seed_endpoints, seed_jobs, seed_workspaces

TRAIN_LISTS = ("training", "building", "ingesting")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def listing_backend(request, tmp_path_factory):
    """One real backend per database kind for the module; each test works in workspaces of its own."""
    base = tmp_path_factory.mktemp(f"paging-{request.param}")
    admin = name = None
    if request.param == "sqlite":
        database_url = f"sqlite:///{base / 'kaos.db'}"
    else:
        import psycopg

        server = request.getfixturevalue("postgres_server")
        name = f"kaos_paging_{uuid.uuid4().hex[:8]}"
        admin = server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        database_url = f"{server}/{name}"
    backend = BackendProcess(base / "data", env={"KAOS_DATABASE_URL": database_url}).start()
    backend.database_url = database_url
    yield backend
    backend.stop()
    if admin:
        import psycopg
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def get(backend, path, **params):
    return requests.get(backend.url + path, params=params, headers={"X-Token": backend.token}, timeout=60)


def ok(response) -> dict:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def assert_bad_request(response) -> str:
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error_code"] == "BAD_REQUEST" and set(body) == {"error_code", "message"}, body
    return body["message"]


def new_workspace(backend, prefix="ws") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    assert requests.post(backend.url + f"workspace/{name}", headers={"X-Token": backend.token},
                         timeout=60).status_code == 201
    return name


def walk(backend, path, lists, limit, envelope="response"):
    """Every page of a list route with `limit`: the pages' bodies."""
    pages, token = [], None
    while True:
        params = {"limit": limit, **({"continue": token} if token else {})}
        body = ok(get(backend, path, **params))
        pages.append(body)
        assert set(body) == {envelope, "continue"}, body
        token = body["continue"]
        if token is None:
            return pages
        assert len(pages) < 1000, "the pages never end"


def ids(items, key="job_id"):
    return [item[key] for item in items]


@pytest.fixture
def train_workspace(listing_backend):
    """A workspace with 7 training jobs (three of them created at the same instant), 3 builds, 2 ingestions."""
    url = listing_backend.database_url
    name = new_workspace(listing_backend)
    training = seed_jobs(url, name, "train", 4, start=START + timedelta(hours=1))
    training += seed_jobs(url, name, "train", 3, step=timedelta(0))  # a tie: ordered by id
    building = seed_jobs(url, name, "build-train", 3)
    ingesting = seed_jobs(url, name, "ingestion", 2, state="JOB_FAILURE")
    return name, {"training": training, "building": building, "ingesting": ingesting}


# -- the 1.x answer ------------------------------------------------------------------------------------------
def test_without_limit_or_continue_every_list_is_the_1x_answer(listing_backend, train_workspace):
    name, expected = train_workspace
    body = ok(get(listing_backend, f"train/{name}"))
    assert set(body) == {"response"} and set(body["response"]) == set(TRAIN_LISTS)
    assert {key: ids(body["response"][key]) for key in TRAIN_LISTS} == expected  # newest first, all of them
    assert ok(get(listing_backend, f"train/{name}", limit="", **{"continue": ""})) == body  # empty = absent

    endpoints = seed_endpoints(listing_backend.database_url, name, 3)
    body = ok(get(listing_backend, f"inference/{name}"))
    assert set(body) == {"response"} and set(body["response"]) == {"endpoints", "building"}
    assert ids(body["response"]["endpoints"], "name") == endpoints

    body = ok(get(listing_backend, "workspace"))
    assert set(body) == {"names"} and name in body["names"] and body["names"] == sorted(body["names"])


# -- pages ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 2, 3, 7, MAX_LIMIT])
def test_pages_give_every_job_once_newest_first(listing_backend, train_workspace, limit):
    name, expected = train_workspace
    whole = ok(get(listing_backend, f"train/{name}"))["response"]
    pages = walk(listing_backend, f"train/{name}", TRAIN_LISTS, limit)
    assert len(pages) == max(1, math.ceil(max(len(items) for items in expected.values()) / limit))
    for key in TRAIN_LISTS:
        assert all(len(page["response"][key]) <= limit for page in pages)
        joined = [item for page in pages for item in page["response"][key]]
        assert joined == whole[key]  # the same entries, in the same order, each once
        assert ids(joined) == expected[key]


def test_each_list_is_paged_on_its_own_and_ends_empty(listing_backend, train_workspace):
    name, expected = train_workspace
    first = ok(get(listing_backend, f"train/{name}", limit=2))
    assert {key: ids(first["response"][key]) for key in TRAIN_LISTS} == \
        {key: expected[key][:2] for key in TRAIN_LISTS}
    second = ok(get(listing_backend, f"train/{name}", limit=2, **{"continue": first["continue"]}))
    assert ids(second["response"]["training"]) == expected["training"][2:4]
    assert ids(second["response"]["building"]) == expected["building"][2:3]
    assert second["response"]["ingesting"] == []  # both fit on the first page: nothing more to send


def test_continue_alone_pages_by_the_largest_limit(listing_backend, train_workspace):
    name, expected = train_workspace
    first = ok(get(listing_backend, f"train/{name}", limit=1))
    rest = ok(get(listing_backend, f"train/{name}", **{"continue": first["continue"]}))
    assert ids(rest["response"]["training"]) == expected["training"][1:] and rest["continue"] is None


def test_the_last_page_says_so(listing_backend):
    name = new_workspace(listing_backend)
    jobs = seed_jobs(listing_backend.database_url, name, "train", 4)
    exact = ok(get(listing_backend, f"train/{name}", limit=4))
    assert ids(exact["response"]["training"]) == jobs and exact["continue"] is None  # no empty page after it
    empty = ok(get(listing_backend, f"train/{name}", limit=5))
    assert empty["continue"] is None and empty["response"]["building"] == []


def test_a_token_is_stable_under_inserts_and_deletes(listing_backend):
    url = listing_backend.database_url
    name = new_workspace(listing_backend)
    jobs = seed_jobs(url, name, "train", 10)
    first = ok(get(listing_backend, f"train/{name}", limit=4))
    assert ids(first["response"]["training"]) == jobs[:4]
    seed_jobs(url, name, "train", 5, start=START + timedelta(days=1))  # newer jobs: an offset would repeat 5
    second = ok(get(listing_backend, f"train/{name}", limit=4, **{"continue": first["continue"]}))
    assert ids(second["response"]["training"]) == jobs[4:8]

    database = connect(url)
    try:
        with database.session_scope() as session:  # the first page's jobs go: an offset would skip the next ones
            session.query(Partition).filter(Partition.job_id.in_(jobs[:4])).delete(synchronize_session=False)
            session.query(Job).filter(Job.id.in_(jobs[:4])).delete(synchronize_session=False)
    finally:
        database.dispose()
    third = ok(get(listing_backend, f"train/{name}", limit=4, **{"continue": second["continue"]}))
    assert ids(third["response"]["training"]) == jobs[8:] and third["continue"] is None


def test_endpoints_and_builds_are_paged(listing_backend):
    url = listing_backend.database_url
    name = new_workspace(listing_backend)
    endpoints = seed_endpoints(url, name, 5)
    endpoints += seed_endpoints(url, name, 2, start=START - timedelta(days=1), step=timedelta(0))
    builds = seed_jobs(url, name, "build-serve", 3)
    whole = ok(get(listing_backend, f"inference/{name}"))["response"]
    pages = walk(listing_backend, f"inference/{name}", ("endpoints", "building"), 2)
    assert len(pages) == 4
    assert ids([item for page in pages for item in page["response"]["endpoints"]], "name") == endpoints
    assert [item for page in pages for item in page["response"]["endpoints"]] == whole["endpoints"]
    assert ids([item for page in pages for item in page["response"]["building"]]) == builds


def test_workspace_names_are_paged_by_name(listing_backend):
    prefix = f"names-{uuid.uuid4().hex[:6]}"
    url = listing_backend.database_url
    seed_workspaces(url, [f"{prefix}-{letter}" for letter in "cebad"])
    every = ok(get(listing_backend, "workspace"))["names"]
    pages = walk(listing_backend, "workspace", ("names",), 2, envelope="names")
    assert [name for page in pages for name in page["names"]] == every

    # a page ends after -b: a name added before it is not sent again later, one after it is
    first = next(page for page in pages if page["names"][-1] == f"{prefix}-b")
    seed_workspaces(url, [f"{prefix}-aa", f"{prefix}-bb"])
    after = ok(get(listing_backend, "workspace", limit=2, **{"continue": first["continue"]}))["names"]
    assert after == [f"{prefix}-bb", f"{prefix}-c"]


# -- refusals ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", ["0", "-1", str(MAX_LIMIT + 1), "ten", "1.5", "1e3", "1_0", "\u0663",
                                   "99999999999999999999",
                                   # plain decimal only: requests sends " 5" as `?limit=+5`, "+5" as `%2B5`
                                   " 5", "5 ", "+5", "05", "00", "5\n", "\t5", " "])
def test_a_limit_out_of_bounds_is_400(listing_backend, train_workspace, limit):
    name, _ = train_workspace
    for path in (f"train/{name}", f"inference/{name}", "workspace"):
        message = assert_bad_request(get(listing_backend, path, limit=limit))
        assert "limit" in message and "1000" in message


def _b64(payload) -> str:
    text = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def test_bad_tokens_are_400(listing_backend, train_workspace):
    name, _ = train_workspace
    other = new_workspace(listing_backend)
    seed_jobs(listing_backend.database_url, other, "train", 3)
    good_elsewhere = ok(get(listing_backend, f"train/{other}", limit=1))["continue"]
    workspace_token = encode_token("workspace", {"names": ("a",)})
    scope = f"train/{name}"
    bad = {
        "garbage": "not a token",
        "not base64 JSON": _b64(b"\xff\xfe"),
        "a JSON list": _b64([1, 2]),
        "no cursors": _b64({"v": 1, "scope": scope, "after": {}}),
        "a boolean version": _b64({"v": True, "scope": scope, "after": {"training": ["2024-01-01T00:00:00+00:00",
                                                                                    "x"]}}),
        "another version": _b64({"v": 2, "scope": scope, "after": {"training": ["2024-01-01T00:00:00+00:00", "x"]}}),
        "an unknown list": _b64({"v": 1, "scope": scope, "after": {"jobs": ["2024-01-01T00:00:00+00:00", "x"]}}),
        "a cursor of numbers": _b64({"v": 1, "scope": scope, "after": {"training": [1, 2]}}),
        "a cursor of one part": _b64({"v": 1, "scope": scope, "after": {"training": ["x"]}}),
        "a time that is not one": _b64({"v": 1, "scope": scope, "after": {"training": ["yesterday", "x"]}}),
        "a time without its zone": _b64({"v": 1, "scope": scope, "after": {"training": ["2024-01-01T00:00:00",
                                                                                         "x"]}}),
        "a time out of range": _b64({"v": 1, "scope": scope, "after": {"training": ["0001-01-01T00:00:00+14:00",
                                                                                    "x"]}}),
        "a NUL in the key": _b64({"v": 1, "scope": scope, "after": {"training": ["2024-01-01T00:00:00+00:00",
                                                                                  "a\u0000b"]}}),
        "a lone surrogate": _b64({"v": 1, "scope": scope, "after": {"training": ["2024-01-01T00:00:00+00:00",
                                                                                  "\ud800"]}}),
        "too long": "A" * 3000,
        "another workspace's": good_elsewhere,
        "another route's": workspace_token,
    }
    for what, token in bad.items():
        message = assert_bad_request(get(listing_backend, f"train/{name}", limit=2, **{"continue": token}))
        assert "continue" in message, (what, message)
    assert_bad_request(get(listing_backend, "workspace", **{"continue": good_elsewhere}))
    assert_bad_request(get(listing_backend, f"inference/{name}", **{"continue": good_elsewhere}))
    for cursor in (["a", "b"], ["a\u0000"], ["\udfff"]):
        token = _b64({"v": 1, "scope": "workspace", "after": {"names": cursor}})
        assert_bad_request(get(listing_backend, "workspace", **{"continue": token}))


def test_repeated_or_overlong_paging_parameters_are_400(listing_backend, train_workspace):
    """Found by schemathesis: `?limit=&limit=` and a blank `continue` longer than any token answered the whole
    list (read as 'not given'); a parameter given twice is ambiguous, and no token is that long."""
    name, _ = train_workspace
    for path in (f"train/{name}", f"inference/{name}", "workspace"):
        assert "more than once" in assert_bad_request(get(listing_backend, path, limit=["", ""]))
        assert "more than once" in assert_bad_request(get(listing_backend, path, limit=["1", "2"]))
        assert "more than once" in assert_bad_request(get(listing_backend, path, **{"continue": ["a", "b"]}))
        assert "longer" in assert_bad_request(get(listing_backend, path, **{"continue": " " * 3000}))
        # a request line between 4 and 8 KiB reaches the API (gunicorn's own 4094-byte bound answered it before)
        assert "longer" in assert_bad_request(get(listing_backend, path, **{"continue": "A" * 6000}))


def test_an_unknown_workspace_is_still_404(listing_backend):
    response = get(listing_backend, "train/no-such-workspace", limit=5)
    assert response.status_code == 404 and response.json()["error_code"] == "WORKSPACE_NOT_FOUND"


# -- SQL -----------------------------------------------------------------------------------------------------
def test_a_page_is_read_with_limit_on_the_listing_index(services):
    """The jobs of a page come from `LIMIT limit + 1` on `ix_jobs_listing` (SQLite: no sort of the whole list),
    not from slicing every job."""
    services.workspaces.create("sql")
    seed_jobs(services.config.database_url, "sql", "train", 30)
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        items, cursor = services.jobs.page("sql", "train", limit=5)
        later, _ = services.jobs.page("sql", "train", limit=5, after=cursor)
    finally:
        event.remove(services.db.engine, "before_cursor_execute", record)
    assert len(items) == 5 and len(later) == 5
    listing = [(statement, parameters) for statement, parameters in statements if "FROM jobs" in statement
               and "ORDER BY" in statement]
    assert len(listing) == 2 and all("LIMIT" in statement for statement, _ in listing), listing
    assert all(6 in (parameters.values() if isinstance(parameters, dict) else parameters)
               for _, parameters in listing), listing
    if services.db.is_sqlite:
        import sqlite3

        statement, parameters = listing[1]
        connection = sqlite3.connect(services.config.database_url.removeprefix("sqlite:///"))
        plan = " | ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + statement, parameters))
        connection.close()
        assert "ix_jobs_listing" in plan and "created_at<" in plan, plan
        jobs_part = plan.split("SCAN anon_1")[0]
        assert "TEMP B-TREE" not in jobs_part, plan  # the page comes in index order, not from a sort
