"""`kaos train|serve|workspace list` show the first 50 of each list and say how to see more; `--limit N` and
`--all` (fetched page by page); the `-i` caches hold what was shown. The real `kaos` against a real backend,
with jobs and endpoints bulk inserted into its database; and `KaosClient`'s paged lists."""
import json
import re
import uuid
from pathlib import Path

import pytest

pytest.importorskip("kaos_backend.app")

from kaos_cli.client import KaosClient  # noqa: E402
from kaos_cli.errors import RequestError  # noqa: E402
from kaos_model.wire import TrainJobListing  # noqa: E402
from tests.support.cli import kaos  # noqa: E402
from tests.support.listings import seed_endpoints, seed_jobs, seed_workspaces  # noqa: E402

JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")
ENDPOINT = re.compile(r"\bserve-[a-z0-9-]+-[0-9a-f]{6}\b")


def hint(command: str, shown: str) -> str:
    return f"Info - Showing {shown}; there are more: kaos {command} list --all, or --limit N"


def database_url(backend) -> str:
    return f"sqlite:///{backend.data_dir / 'kaos.db'}"


def project_for(tmp_path: Path, backend, workspace: str = None) -> Path:
    project = tmp_path / f"project-{uuid.uuid4().hex[:6]}"
    project.mkdir()
    assert kaos(project, "init", "-e", backend.url, "-t", backend.token).code == 0
    if workspace:
        created = kaos(project, "workspace", "create", "-n", workspace)
        assert created.code == 0, created
    return project


def endpoints_in(text: str) -> list:
    """The endpoint names of `kaos serve list`, in order (each row names its endpoint twice: name and url)."""
    return list(dict.fromkeys(ENDPOINT.findall(text)))


def cache(project: Path, kind: str) -> list:
    return json.loads((project / ".kaos" / f".{kind}.cache").read_text())


def listed(project: Path, *args):
    result = kaos(project, *args)
    assert result.code == 0, result
    assert "\x1b[" not in result.out + result.err  # no colour: stdout is not a terminal
    return result


@pytest.fixture
def workspace_with(module_backend, tmp_path):
    """`make(train=…, builds=…, endpoints=…)`: a project whose current workspace holds that many jobs/endpoints;
    (project, {"training": ids, "building": ids, "endpoints": names}) newest first."""
    def make(train=0, builds=0, serve_builds=0, endpoints=0):
        name = f"ws-{uuid.uuid4().hex[:8]}"
        project = project_for(tmp_path, module_backend, name)
        url = database_url(module_backend)
        return project, {"training": seed_jobs(url, name, "train", train),
                         "building": seed_jobs(url, name, "build-train", builds),
                         "serve-building": seed_jobs(url, name, "build-serve", serve_builds),
                         "endpoints": seed_endpoints(url, name, endpoints)}
    return make


def test_train_list_shows_the_newest_50_and_says_how_to_see_more(workspace_with):
    project, seeded = workspace_with(train=60, builds=2)
    result = listed(project, "train", "list")
    assert JOB_ID.findall(result.out) == seeded["building"] + seeded["training"][:50]  # BUILDING, then TRAINING
    assert result.err.strip() == hint("train", "the newest 50 jobs of each table")
    assert cache(project, "train") == seeded["training"][:50]  # -i resolves to what was shown
    assert cache(project, "build-train") == seeded["building"]
    beyond = kaos(project, "train", "logs", "-i", "50")
    assert beyond.code == 1 and "Index 50 does not exist" in beyond.text


def test_train_list_all_fetches_every_page(workspace_with):
    project, seeded = workspace_with(train=1100, builds=3)  # more than one page of 1,000
    result = listed(project, "train", "list", "--all")
    assert JOB_ID.findall(result.out) == seeded["building"] + seeded["training"]
    assert result.err == ""
    assert cache(project, "train") == seeded["training"]

    result = listed(project, "train", "list", "--limit", "1050")  # two pages: 1,000 then 50
    assert JOB_ID.findall(result.out) == seeded["building"] + seeded["training"][:1050]
    assert result.err.strip() == hint("train", "the newest 1050 jobs of each table")
    assert cache(project, "train") == seeded["training"][:1050]


def test_train_list_limit(workspace_with):
    project, seeded = workspace_with(train=5, builds=4)
    result = listed(project, "train", "list", "--limit", "3")
    assert JOB_ID.findall(result.out) == seeded["building"][:3] + seeded["training"][:3]
    assert result.err.strip() == hint("train", "the newest 3 jobs of each table")
    assert cache(project, "train") == seeded["training"][:3]
    assert cache(project, "build-train") == seeded["building"][:3]

    result = listed(project, "train", "list", "--limit", "5")  # the builds are cut, the training jobs are not
    assert JOB_ID.findall(result.out) == seeded["building"] + seeded["training"]
    assert result.err == ""


def test_train_list_of_exactly_50_says_nothing_more(workspace_with):
    project, seeded = workspace_with(train=50)
    result = listed(project, "train", "list")
    assert JOB_ID.findall(result.out) == seeded["training"] and result.err == ""


@pytest.mark.parametrize("args, problem", [(("--limit", "0"), "--limit"), (("--limit", "x"), "--limit"),
                                           (("--limit", "2", "--all"), "mutually exclusive with --all")])
def test_list_size_usage_errors(workspace_with, args, problem):
    project, _ = workspace_with()
    for command in ("train", "serve", "workspace"):
        result = kaos(project, command, "list", *args)
        assert result.code == 2 and problem in result.err and "Traceback" not in result.text, result


def test_serve_list_pages(workspace_with):
    project, seeded = workspace_with(endpoints=52, serve_builds=1)
    result = listed(project, "serve", "list")
    assert endpoints_in(result.out) == seeded["endpoints"][:50]
    assert JOB_ID.findall(result.out) == seeded["serve-building"]
    assert result.err.strip() == hint("serve", "the newest 50 of each table")
    assert cache(project, "serve") == seeded["endpoints"][:50]

    result = listed(project, "serve", "list", "--all")
    assert endpoints_in(result.out) == seeded["endpoints"] and result.err == ""
    assert cache(project, "serve") == seeded["endpoints"]
    assert cache(project, "build-serve") == seeded["serve-building"]


@pytest.mark.parametrize("command", ["train", "serve", "notebook"])
def test_a_list_as_json_says_on_stderr_that_there_are_more(backend, tmp_path, command):
    """stdout stays the API's JSON answer (its `continue` token set); the hint goes to stderr, as for the tables."""
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    project = project_for(tmp_path, backend, workspace)
    if command == "train":
        seed_jobs(database_url(backend), workspace, "train", 52)
    else:
        seed_endpoints(database_url(backend), workspace, 52, kind="serve" if command == "serve" else "notebook")
    result = listed(project, command, "list", "-o", "json")
    assert json.loads(result.out)["continue"], result.out
    shown = "the newest 50 jobs of each list" if command == "train" else "the newest 50 of each list"
    assert result.err.strip() == hint(command, shown)


def test_workspace_list_pages(backend, tmp_path):
    names = [f"w{index:03d}" for index in range(55)]
    seed_workspaces(database_url(backend), names[::-1])
    project = project_for(tmp_path, backend)
    result = listed(project, "workspace", "list")
    assert re.findall(r"\bw\d{3}\b", result.out) == names[:50]
    assert result.err.strip() == hint("workspace", "the first 50 workspaces")
    assert cache(project, "workspace") == names[:50]

    result = listed(project, "workspace", "list", "--all")
    assert re.findall(r"\bw\d{3}\b", result.out) == names and result.err == ""
    assert cache(project, "workspace") == names
    assert kaos(project, "workspace", "set", "-i", "54").out.strip() == "Info - Successfully set w054 workspace"

    result = listed(project, "workspace", "list", "--limit", "1")  # one, not "1 workspaces"
    assert result.err.strip() == hint("workspace", "the first 1 workspace")


def test_a_limit_of_one_says_one_job(workspace_with):
    project, seeded = workspace_with(train=2)
    result = listed(project, "train", "list", "--limit", "1")
    assert JOB_ID.findall(result.out) == seeded["training"][:1]
    assert result.err.strip() == hint("train", "the newest 1 job of each table")


def test_client_lists_keep_their_shape_and_carry_the_next_token(module_backend):
    client = KaosClient(module_backend.url, module_backend.token)
    name = f"ws-{uuid.uuid4().hex[:8]}"
    client.create_workspace(name)
    jobs = seed_jobs(database_url(module_backend), name, "train", 5)

    whole = client.train_list(name)
    assert isinstance(whole, TrainJobListing) and whole.continue_token is None
    assert set(whole.to_dict()) == {"training", "building", "ingesting"}
    walked, token = [], None
    while True:
        page = client.train_list(name, limit=2, continue_token=token)
        assert isinstance(page, TrainJobListing) and set(page.to_dict()) == {"training", "building", "ingesting"}
        walked += [job.job_id for job in page.training]
        token = page.continue_token
        if token is None:
            break
    assert walked == jobs == [job.job_id for job in whole.training]

    names = client.list_workspaces(limit=1)
    assert isinstance(names, list) and len(names) == 1 and isinstance(names.continue_token, str)
    assert client.serve_list(name, limit=3).continue_token is None
    with pytest.raises(RequestError) as refused:
        client.train_list(name, limit=2, continue_token=names.continue_token)  # a token of another list
    assert refused.value.status == 400 and refused.value.error_code == "BAD_REQUEST"
