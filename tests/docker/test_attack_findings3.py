"""A third attacker's pass over a Docker engine that hangs on a request of the scheduler's tick (its ping still
answered), on a DOCKER platform stood up by the real CLI whose engine is behind `EngineProxy`
(tests/support/docker_proxy.py): hangs that end with the connection closed instead of a timeout, hangs on other
requests than a create. The parts' own cases, where no platform is needed, are
tests/backend/test_engine_hang_parts.py's."""
import threading
import time

import pytest

from tests.docker.test_attack_findings import WRITES_A_MODEL
from tests.docker.test_engine_hangs import WAIT_LIMIT, hanging_platform  # noqa: F401 (a fixture)
from tests.docker.test_platform import tiny_code
from tests.support.platform import tiny_data_bundle, wait_for

pytestmark = pytest.mark.docker


def _backend_log(platform) -> str:
    return (platform.project / ".kaos" / "DOCKER" / "backend.log").read_text(errors="replace")


def _health_saying(platform, words: str):
    """The first GET /api/health whose answer has `words`."""
    seen, deadline = [], time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        health = platform.get("health")
        if words in health.text:
            return health
        seen.append(health.text)
        time.sleep(0.2)
    raise AssertionError(f"no health said {words!r}: {seen[-3:]}")


def test_a_hung_create_the_engine_ends_by_closing_the_connection_neither_fails_the_training_nor_logs_a_traceback(
        hanging_platform, tmp_path):  # noqa: F811
    """Finding: a create the engine hangs on and then ends by closing its connection (an engine restarted under
    it, a socket proxy or an ssh tunnel (DOCKER_HOST=ssh://) cut, its ping answering all along) raised the
    docker SDK's ConnectionError ('Connection aborted.', RemoteDisconnected), which advance_each counted as a try
    of the training and logged with a whole traceback: three such hangs in a row (the retries come 1 s and 4 s
    later) failed the training, "kaos: the scheduler could not advance this training: ConnectionError: ...".
    The engine gave no answer, as with a timeout: the training waits, held, the try not counted, one log line."""
    platform, proxy = hanging_platform, hanging_platform.proxy
    platform.workspace("hang-closed")
    code = tiny_code(tmp_path / "code", WRITES_A_MODEL)
    logged_before, hung = _backend_log(platform).count("Traceback"), proxy.hung
    proxy.hang_creates = True
    try:
        deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")))
        assert deployed.code == 0, deployed
        healths = []
        for count in (1, 2, 3):
            wait_for(lambda: proxy.hung >= hung + count, timeout=WAIT_LIMIT, what=f"create {count} sent")
            proxy.hang_creates = False   # the hung connection closed, unanswered
            time.sleep(0.5)
            proxy.hang_creates = True
            if count == 1:
                healths.append(_health_saying(platform, "closed the connection"))
    finally:
        proxy.hang_creates = False
    job = platform.terminal("hang-closed", platform.latest("hang-closed", "training")["job_id"])
    logged = _backend_log(platform)
    said = [line for line in logged.splitlines() if "could not advance" in line or "waits" in line]
    assert job["state"] == "JOB_SUCCESS", (job, said)
    assert logged.count("Traceback") == logged_before, logged[-3000:]
    said = healths[0].json()
    assert said["part"] == "engine" and said["parts"]["engine"]["state"] == "down", said
    assert said["message"].startswith("The Docker engine does not answer since "), said
    assert "it closed the connection of POST /" in said["message"] and "/containers/create without an answer (" \
        in said["message"], said


def test_a_container_whose_stop_the_engine_never_answers_does_not_starve_the_other_workloads(
        hanging_platform, docker_engine, tmp_path):  # noqa: F811
    """Finding: the engine hanging on the requests of one container only (its process stuck in the kernel: docker
    stop, kill and rm -f of it hang, every other request answered) held every other workload for as long as it
    hung: the kill of that training was the first key of the trainings' round, its stop timed out (here: its
    connection closed after 3 s, as a timeout cut short), the round ended, the workloads were held, and the next
    round began with the same stop; a training deployed meanwhile (and the endpoints' and notebooks' controllers,
    which come after the trainings') never started. A key (and a controller) whose request waited now goes last."""
    from kaos_backend.images import labels
    from tests.docker.test_platform import WAITS_FOR_GO
    platform, proxy = hanging_platform, hanging_platform.proxy
    platform.workspace("starve")
    stuck = platform.trained_in("starve", tmp_path, "stuck", WAITS_FOR_GO)
    wait_for(lambda: "before" in platform.get(f"train/starve/{stuck}/logs").text, WAIT_LIMIT, what="it to run")
    container = platform.containers(docker_engine, **{labels.JOB: stuck, labels.KIND: "train"})[0]
    hung = proxy.hung
    proxy.release_after, proxy.hang_matching = 3.0, container.id.encode()
    killing = threading.Thread(target=platform.kaos, args=("train", "kill", "-j", stuck), kwargs={"input": "y\n"},
                               daemon=True)
    try:
        killing.start()
        wait_for(lambda: proxy.hung > hung, WAIT_LIMIT, what="its stop sent")
        other = platform.trained_in("starve", tmp_path, "other", WRITES_A_MODEL)
        try:
            wait_for(lambda: platform.job("starve", other)["state"] != "JOB_STARTING", 90, what="the other to start")
            started = True
        except AssertionError:
            started = False
        during = platform.job("starve", other)
    finally:
        proxy.hang_matching = proxy.release_after = None
        killing.join(WAIT_LIMIT)
    assert started, during
    assert platform.terminal("starve", other)["state"] == "JOB_SUCCESS"
    assert platform.terminal("starve", stuck)["state"] == "JOB_KILLED"


def test_a_kill_waiting_on_an_engine_that_has_not_answered_its_stop_says_why(
        hanging_platform, docker_engine, tmp_path):  # noqa: F811
    """Finding: `kaos train kill` of a training whose container's stop the engine has not answered (for up to
    130 s) said, after the API's 30 s, only "Warning - The kill of job X is asked but not done yet. It is done
    once the scheduler can; check with the list": the job has no reason then (it is not held: the engine answers
    its ping), and the list says nothing either, while the health knew: "The Docker engine has not answered POST
    /v1.41/containers/<id>/stop since ...". A kill pending without a reason of its workload's now says what the
    health says, when the backend is not healthy."""
    from kaos_backend.images import labels
    from tests.docker.test_platform import WAITS_FOR_GO
    platform, proxy = hanging_platform, hanging_platform.proxy
    platform.workspace("kill-waits")
    job = platform.trained_in("kill-waits", tmp_path, "kill-waits", WAITS_FOR_GO)
    wait_for(lambda: "before" in platform.get(f"train/kill-waits/{job}/logs").text, WAIT_LIMIT, what="it to run")
    container = platform.containers(docker_engine, **{labels.JOB: job, labels.KIND: "train"})[0]
    proxy.hang_matching = container.id.encode()
    try:
        killed = platform.kaos("train", "kill", "-j", job, input="y\n")
    finally:
        proxy.hang_matching = None
    assert killed.code == 0 and "successfully killed" not in killed.out, killed
    assert len(killed.err.strip().splitlines()) == 1, killed
    assert killed.err.startswith(f"Warning - The kill of job {job} is asked but not done yet: the Docker engine has "
                                 "not answered POST /"), killed
    assert f"/containers/{container.id}/stop since " in killed.err, killed
    assert platform.terminal("kill-waits", job)["state"] == "JOB_KILLED"


def _answer_lost(platform, engine, tmp_path, workspace: str, request: bytes):
    """A training in `workspace` whose first `request` (bytes of its request line) the engine carries out and never
    answers (its connection closed once the engine answered), once it succeeded: its id, and the engine's events
    of its containers."""
    from kaos_backend.images import labels
    proxy = platform.proxy
    platform.workspace(workspace)
    since, lost = time.time() - 1, proxy.lost
    proxy.lose_answers = request
    try:
        job = platform.trained_in(workspace, tmp_path, workspace, WRITES_A_MODEL)
        wait_for(lambda: proxy.lost > lost, WAIT_LIMIT, what=f"the answer to its {request!r} lost")
    finally:
        proxy.lose_answers = None
    assert platform.terminal(workspace, job)["state"] == "JOB_SUCCESS"
    return job, list(engine.events(since=int(since), until=int(time.time()) + 1, decode=True, filters={
        "type": "container", "label": [f"{labels.JOB}={job}"]}))


def test_a_create_the_engine_did_but_never_answered_is_made_again_once(
        hanging_platform, docker_engine, tmp_path):  # noqa: F811
    """Held up: the create carried out and its answer lost (its connection closed): the next try finds the
    container of that name, never started, removes it and creates it again; the training runs once."""
    job, events = _answer_lost(hanging_platform, docker_engine, tmp_path, "made-once", b"/containers/create")
    said = [event["status"] for event in events]
    assert said.count("create") == 2 and said.count("start") == 1, said
    assert "kaos: the training ended" in hanging_platform.get(f"train/made-once/{job}/logs").text


def test_a_backend_restarted_while_the_engine_hangs_on_a_create_is_deployed_and_runs_the_training_once(
        hanging_platform, docker_engine, tmp_path):  # noqa: F811
    """Finding: `kaos build deploy -c DOCKER -f` (a backend restarted, as after a crash) while the engine hangs on
    a create of the scheduler's first tick (its ping answered) failed: 'Deployment Unsuccessful ...: not up after
    60 s: The kaos backend's scheduler is starting', and stopped the backend: the scheduler is `starting` until
    its first heartbeat, which the hung create held for 120 s, and the health kept the scheduler up while the
    engine was `waiting` only once it had been up. Now a starting scheduler whose engine is waiting is up
    (waiting_on engine), and the deploy takes a backend whose only part not up is the engine as deployed, saying
    what of the engine in a Warning line; the training then runs once."""
    from kaos_backend.images import labels
    platform, proxy = hanging_platform, hanging_platform.proxy
    platform.workspace("restarted")
    since, hung = time.time() - 1, proxy.hung
    proxy.hang_creates = True
    redeployed = None
    try:
        job = platform.trained_in("restarted", tmp_path, "restarted", WRITES_A_MODEL)
        wait_for(lambda: proxy.hung > hung, WAIT_LIMIT, what="its create sent")
        platform.kill_backend()
        redeployed = platform.kaos("build", "deploy", "-c", "DOCKER", "-y", "--port", str(platform.port),
                                   *platform.deploy_options, "-f")
    finally:
        proxy.hang_creates = False
        if redeployed is None or redeployed.code != 0:
            platform.deploy(force=True)  # for the tests after this one
    assert redeployed.code == 0, redeployed
    assert any(line.startswith("Warning - ") and "Docker engine has not answered POST" in line
               for line in redeployed.err.splitlines()), redeployed
    assert platform.terminal("restarted", job)["state"] == "JOB_SUCCESS"
    events = list(docker_engine.events(since=int(since), until=int(time.time()) + 1, decode=True, filters={
        "type": "container", "event": "start", "label": [f"{labels.JOB}={job}"]}))
    assert len(events) == 1, events


def test_a_training_the_engine_holds_by_not_answering_says_so_in_the_list(hanging_platform, tmp_path):  # noqa: F811
    """Finding: while the engine had not answered a request of the scheduler's tick (up to 120 s; the health 503
    naming it, `waiting`), `kaos train list` (and serve list, notebook list) showed the workloads it holds with no
    reason: a data scientist saw a training pending and nothing of why. Now the engine watch gives each held
    workload without a reason of its own the engine's waiting reason ('the Docker engine has not answered POST
    ... since ...'), and takes it off once the request ended."""
    platform, proxy = hanging_platform, hanging_platform.proxy
    platform.workspace("listed")
    hung = proxy.hung
    proxy.hang_creates = True
    try:
        job = platform.trained_in("listed", tmp_path, "listed", WRITES_A_MODEL)
        wait_for(lambda: proxy.hung > hung, WAIT_LIMIT, what="its create sent")
        _health_saying(platform, '"waiting"')
        listed = platform.kaos("train", "list")
    finally:
        proxy.hang_creates = False
    assert platform.terminal("listed", job)["state"] == "JOB_SUCCESS"  # before the next test's engine requests
    assert listed.code == 0, listed
    assert "has not answered POST" in listed.out, listed


def test_a_start_the_engine_did_but_never_answered_does_not_run_the_training_twice(
        hanging_platform, docker_engine, tmp_path):  # noqa: F811
    """Finding: a container's start that the engine carried out but whose answer never came (timed out, or its
    connection closed) made docker_containers.start_container remove the container, running or ended, and the
    next try start the training's code again: a short training ran twice, a long one was killed 120 s in and
    began again. Now the container is left; the next try follows it (running, or ended: its watcher copies its
    output and exit code), and removes it only when it never started."""
    job, events = _answer_lost(hanging_platform, docker_engine, tmp_path, "twice", b"/start ")
    starts = [event for event in events if event["status"] == "start"]
    assert len(starts) == 1, starts


def test_a_kill_of_a_training_whose_start_was_never_answered_removes_its_container(
        hanging_platform, docker_engine, tmp_path):  # noqa: F811
    """Held up: the start of a training's container carried out and its answer lost, `kaos train kill` asked
    before the next try (which the engine keeps waiting here: its look for the container by name hangs, 5 s at a
    time): the partition is STARTING with no executor state; the kill finds the container by its name and
    removes it, rather than leave it running, recorded nowhere."""
    from kaos_backend.images import labels
    from tests.docker.test_platform import WAITS_FOR_GO
    platform, proxy = hanging_platform, hanging_platform.proxy
    platform.workspace("lost-kill")
    lost, killing = proxy.lost, None
    proxy.lose_answers = b"/start "
    try:
        job = platform.trained_in("lost-kill", tmp_path, "lost-kill", WAITS_FOR_GO)
        wait_for(lambda: proxy.lost > lost, WAIT_LIMIT, what="the answer to its start lost")
        proxy.lose_answers, hung = None, proxy.hung
        proxy.release_after, proxy.hang_matching = 5.0, b"/containers/kaos-"  # the next try's look by name
        wait_for(lambda: proxy.hung > hung, WAIT_LIMIT, what="the next try's look hung")
        assert platform.job("lost-kill", job)["state"] in ("JOB_STARTING", "JOB_RUNNING")
        killing = threading.Thread(target=platform.kaos, args=("train", "kill", "-j", job), kwargs={"input": "y\n"},
                                   daemon=True)
        killing.start()
        ended = platform.terminal("lost-kill", job)
    finally:
        proxy.lose_answers = proxy.hang_matching = proxy.release_after = None
        if killing is not None:
            killing.join(WAIT_LIMIT)
    left = platform.containers(docker_engine, **{labels.JOB: job})
    for container in left:
        container.remove(force=True)
    assert ended["state"] == "JOB_KILLED", ended
    assert left == [], [(container.name, container.status) for container in left]
