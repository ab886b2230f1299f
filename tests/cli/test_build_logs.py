"""`kaos train|serve|notebook build-logs`: one command (kaos_cli.job_logs.add_build_logs) made for each kind, with
the kind's route, index cache and log file; against the scripted HTTP server, like tests/cli/test_serve.py."""
import json

import pytest

from tests.cli.conftest import one_line
from tests.support import answers

BUILD_JOB = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
# kind → the route prefix of its jobs, the lists of its listing besides `building`
KINDS = {"train": ("train", ("training", "ingesting")), "serve": ("inference", ("endpoints",)),
         "notebook": ("notebook", ("notebooks",))}


def _streamed(chunks):
    def answer(request):
        assert request.query.get("follow") == ["true"]
        return 200, iter(chunks), "text/plain"
    return answer


@pytest.mark.parametrize("kind", KINDS)
def test_build_logs_by_job_id_are_printed_and_saved_under_the_kind(kaos, ws, project, kind):
    prefix, _ = KINDS[kind]
    ws.route("GET", f"{prefix}/mnist/build/{BUILD_JOB}/logs", body=json.dumps("[t] step 1/2\n[t] built"))
    result = kaos(kind, "build-logs", "-j", BUILD_JOB)
    assert result.exit_code == 0, result.output
    assert result.stdout == "[t] step 1/2\n[t] built\n"
    assert result.stderr.splitlines()[0] == f"Info - Retrieving build logs from {BUILD_JOB}"
    saved = project / "mnist" / "logs" / f"build-{kind}-{BUILD_JOB}.log"
    assert saved.read_text() == "[t] step 1/2\n[t] built\n"
    assert result.stderr.splitlines()[-1] == f"Info - Log saved to {saved.relative_to(project)}"


@pytest.mark.parametrize("kind", KINDS)
def test_build_logs_by_index_of_the_building_table(kaos, ws, kind):
    prefix, others = KINDS[kind]
    assert one_line(kaos(kind, "build-logs")) == "Error - Missing either --job_id or --ind as arguments"
    assert one_line(kaos(kind, "build-logs", "-i", "0")) == \
        f"Error - Index not available until running `kaos {kind} list`"
    listing = dict({key: [] for key in others}, building=[answers.submission(BUILD_JOB)])
    ws.route("GET", f"{prefix}/mnist", body={"response": listing})
    assert kaos(kind, "list").exit_code == 0
    ws.route("GET", f"{prefix}/mnist/build/{BUILD_JOB}/logs", body=json.dumps("[t] built"))
    assert kaos(kind, "build-logs", "-i", "0").stdout == "[t] built\n"
    assert one_line(kaos(kind, "build-logs", "-i", "1")) == \
        f"Error - Index 1 does not exist... Run `kaos {kind} list` again"
    both = kaos(kind, "build-logs", "-j", BUILD_JOB, "-i", "0")
    assert both.exit_code == 2 and "Illegal usage: --job_id is mutually exclusive with --ind" in both.output


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("final, code", [("JOB_SUCCESS", 0), ("JOB_FAILURE", 1)])
def test_followed_build_logs_exit_by_the_build_state(kaos, ws, project, kind, final, code):
    prefix, _ = KINDS[kind]
    ws.handle("GET", f"{prefix}/mnist/build/{BUILD_JOB}/logs", _streamed(["[t] building\n", "[t] done\n"]))
    ws.route("GET", f"job/mnist/{BUILD_JOB}", body=answers.job_record(BUILD_JOB, final, f"build-{kind}"))
    result = kaos(kind, "build-logs", "-j", BUILD_JOB, "-f")
    assert result.exit_code == code, result.output
    assert result.stdout == "[t] building\n[t] done\n"
    assert (project / "mnist" / "logs" / f"build-{kind}-{BUILD_JOB}.log").read_text() == "[t] building\n[t] done\n"
    if code:
        assert "Traceback" not in result.output
        assert result.stderr.splitlines()[-1] == f"Error - Job {BUILD_JOB} ended in state {final}"


# -- a job or workload of another kind: said, with the command that shows its log ---------------------------------
TRAIN_JOB = "8811746e3f6343d1bd6f3d520f7a54d0"
ENDPOINT = "serve-mnist-53d3da"
WHAT = {"train": "a build of a training image", "serve": "a build of an endpoint's image",
        "notebook": "a build of a notebook's image"}


def failure(result) -> str:
    """The error line of a failed log command (after its "Retrieving ..." line): exit 1, no traceback, no log."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    info, error = result.stderr.splitlines()
    assert info.startswith("Info - Retrieving ")
    return error


def _no_job(job_id):
    return 404, {"error_code": "JOB_NOT_FOUND", "message": f"There is no job with id: {job_id}"}, "application/json"


@pytest.mark.parametrize("follow", [[], ["-f"]], ids=["whole", "follow"])
@pytest.mark.parametrize("kind", KINDS)
def test_build_logs_of_a_training_job_say_it_is_one_and_which_command_shows_it(kaos, ws, kind, follow):
    prefix, _ = KINDS[kind]
    ws.route("GET", f"{prefix}/mnist/build/{TRAIN_JOB}/logs", *_no_job(TRAIN_JOB))
    ws.route("GET", f"job/mnist/{TRAIN_JOB}", body=answers.job_record(TRAIN_JOB, "JOB_SUCCESS", "train"))
    assert failure(kaos(kind, "build-logs", "-j", TRAIN_JOB, *follow)) == (
        f"Error - Job {TRAIN_JOB} is a training job, not {WHAT[kind]}: its log is shown by "
        f"`kaos train logs -j {TRAIN_JOB}`")


PIPELINE_NOT_FOUND = (404, {"error_code": "PIPELINE_NOT_FOUND", "message": f"Pipeline {BUILD_JOB} not found"},
                      "application/json")


@pytest.mark.parametrize("args, route, reply, job_kind, expected", [
    (["train", "build-logs", "-j", BUILD_JOB], f"train/mnist/build/{BUILD_JOB}/logs", _no_job(BUILD_JOB),
     "build-serve", f"Error - Job {BUILD_JOB} is a build of an endpoint's image, not a build of a training image: "
                    f"its log is shown by `kaos serve build-logs -j {BUILD_JOB}`"),
    (["serve", "build-logs", "-j", ENDPOINT], f"inference/mnist/build/{ENDPOINT}/logs", _no_job(ENDPOINT), None,
     f"Error - {ENDPOINT} is an endpoint, not a build of an endpoint's image: its log is shown by "
     f"`kaos serve logs -e {ENDPOINT}`"),
    (["train", "logs", "-j", BUILD_JOB], f"train/mnist/{BUILD_JOB}/logs", _no_job(BUILD_JOB), "build-notebook",
     f"Error - Job {BUILD_JOB} is a build of a notebook's image, not a training job, a build of a training image or "
     f"a data ingestion job: its log is shown by `kaos notebook build-logs -j {BUILD_JOB}`"),
    (["serve", "logs", "-e", BUILD_JOB], f"inference/mnist/{BUILD_JOB}/logs", PIPELINE_NOT_FOUND, "build-serve",
     f"Error - Job {BUILD_JOB} is a build of an endpoint's image, not an endpoint: its log is shown by "
     f"`kaos serve build-logs -j {BUILD_JOB}`"),
], ids=["train build-logs of a serve build", "serve build-logs of an endpoint", "train logs of a notebook build",
        "serve logs of a serve build"])
def test_logs_of_another_kind_name_the_command_that_shows_them(kaos, ws, args, route, reply, job_kind, expected):
    ws.route("GET", route, *reply)
    if job_kind:
        ws.route("GET", f"job/mnist/{args[-1]}", body=answers.job_record(args[-1], "JOB_SUCCESS", job_kind))
    assert failure(kaos(*args)) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_build_logs_of_no_job_at_all_keep_the_backends_message(kaos, ws, kind):
    prefix, _ = KINDS[kind]
    ws.route("GET", f"{prefix}/mnist/build/{TRAIN_JOB}/logs", *_no_job(TRAIN_JOB))
    ws.route("GET", f"job/mnist/{TRAIN_JOB}", *_no_job(TRAIN_JOB))
    assert failure(kaos(kind, "build-logs", "-j", TRAIN_JOB)) == f"Error - There is no job with id: {TRAIN_JOB}"
