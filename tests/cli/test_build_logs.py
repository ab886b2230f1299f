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
