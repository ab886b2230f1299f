"""Issue 11 item 4: the backend scaled out. Two backend processes (real `kaos-backend serve`, tests/support/backend.py)
on one PostgreSQL database and one data directory: both APIs answer, exactly one scheduler leads and the other
stands by naming it; a training deployed through the standby's replica runs once; SIGKILL of the leader's
whole process group hands the lock over (and the wake-up name), the running training is reattached (not
started again) and finishes, and a training deployed after the kill runs. Deploys and logs go through the real
CLI; waits are bounds against hanging (the takeover's is the acceptance's 15 s)."""
import socket
import uuid

import pytest
from sqlalchemy import create_engine, text

from kaos_backend.wakeup import socket_name
from tests.support.backend import BackendProcess
from tests.support.cli import kaos
from tests.support.platform import tiny_data_bundle, tiny_train_bundle
from tests.support.supervision import wait_for

pytestmark = pytest.mark.postgres

TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")
# Waits until the test lets it go (a file in the shared directory), so that the kill happens while it runs.
HELD_TRAINING = """\
import os, sys, time
print('tiny training started', flush=True)
deadline = time.monotonic() + 600
while not os.path.exists({go!r}) and time.monotonic() < deadline:
    time.sleep(0.1)
os.makedirs(sys.argv[1] + '/model', exist_ok=True)
with open(sys.argv[1] + '/model/written', 'a') as out:
    out.write('once\\n')
print('tiny training done', flush=True)
"""
QUICK_TRAINING = "import os, sys\nprint('quick training', flush=True)\nos.makedirs(sys.argv[1] + '/model')\n"


@pytest.fixture(scope="module")
def postgres_url(postgres_server):
    """A database of this module's own (the replicas outlive one test)."""
    import psycopg
    name = f"kaos_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"{postgres_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgres_url):
    """Two replicas on one database and one data directory, the first started first (so it leads). Shared by
    the module's tests, in order: the last one kills the leader."""
    data = tmp_path_factory.mktemp("replicas") / "data"
    started = []
    try:
        for _ in range(2):
            started.append(BackendProcess(data, env={"KAOS_DATABASE_URL": postgres_url}).start())
        yield started
    finally:
        for replica in started:
            replica.stop()


def scheduler(replica) -> dict:
    response = replica.get("health", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["parts"]["scheduler"]


def roles(replicas) -> dict:
    """{"leader": replica, "standby": replica}, once each replica's scheduler has a role."""
    def settled():
        found = {scheduler(replica).get("role"): replica for replica in replicas}
        return found if set(found) == {"leader", "standby"} else None
    return wait_for(settled, 30, "one leader and one standby")


def listening_for_wakeups(data_dir) -> bool:
    """Does a scheduler hold the wake-up name of the data directory (only the leader binds it)?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind("\0" + socket_name(data_dir))
        except OSError:
            return True
    return False


def project(tmp_path, replica, workspace):
    directory = tmp_path / f"project-{replica.port}"
    directory.mkdir(exist_ok=True)
    cli = lambda *args: kaos(directory, *args)  # noqa: E731
    assert cli("init", "-e", replica.url, "-t", replica.token).code == 0
    assert cli("workspace", "create", "-n", workspace).code == 0
    return cli


def deploy(tmp_path, cli, name, script, marker):
    code = tiny_train_bundle(tmp_path / f"{name}-code", script)
    data = tiny_data_bundle(tmp_path / f"{name}-data", marker)
    deployed = cli("train", "deploy", "-s", str(code), "-d", str(data))
    assert deployed.code == 0, deployed


def training(replica, workspace, count=1) -> str:
    """The id of the newest training job, once there are `count` of them."""
    def found():
        jobs = replica.get(f"train/{workspace}", timeout=30).json()["response"]["training"]
        return jobs[0]["job_id"] if len(jobs) >= count else None
    return wait_for(found, 300, f"{count} training job(s)", interval=0.2)


def job(replica, workspace, job_id) -> dict:
    return replica.get(f"job/{workspace}/{job_id}", timeout=30).json()["response"]


def finished(replica, workspace, job_id) -> dict:
    return wait_for(lambda: (lambda found: found if found["state"] in TERMINAL else None)(
        job(replica, workspace, job_id)), 300, f"job {job_id} to end", interval=0.2)


def started_records(postgres_url, job_id):
    """What the database recorded of the job's start: its started_at, and each partition's started_at and
    executor state."""
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            job_started = connection.execute(text("SELECT started_at FROM jobs WHERE id = :id"),
                                             {"id": job_id}).scalar()
            partitions = connection.execute(text("SELECT started_at, executor_state FROM partitions "
                                                 "WHERE job_id = :id ORDER BY index"), {"id": job_id}).all()
    finally:
        engine.dispose()
    return job_started, [tuple(row) for row in partitions]


def test_two_replicas_run_one_scheduler_and_a_deploy_through_the_standby_runs_once(replicas, tmp_path):
    first, second = replicas
    leading = roles(replicas)
    leader, standby = leading["leader"], leading["standby"]
    assert leader is first  # it was up (its scheduler had tried the lock) before the second started
    identity = scheduler(leader)["leader"]
    assert identity.endswith(f"127.0.0.1:{leader.port}") and identity.startswith("kaos-scheduler "), identity
    assert scheduler(standby)["leader"] == identity
    assert f"stands by: the leader is {identity}" in standby.log()
    assert " is the leader: it holds the scheduler lock" in leader.log()
    assert " is the leader" not in standby.log()
    assert listening_for_wakeups(leader.data_dir)

    cli = project(tmp_path, standby, "scaled")
    deploy(tmp_path, cli, "quick", QUICK_TRAINING, "1")
    job_id = training(standby, "scaled")
    assert finished(standby, "scaled", job_id)["state"] == "JOB_SUCCESS"
    assert f"Train job {job_id} scheduled" in leader.log()
    assert f"Train job {job_id} scheduled" not in standby.log()
    logs = cli("train", "logs", "-j", job_id)
    assert logs.code == 0, logs
    assert logs.out.count("quick training") == 1 and logs.out.count("beginning to run user code") == 1, logs.out
    assert first.get("health").status_code == 200 and second.get("health").status_code == 200


def test_sigkill_of_the_leader_hands_over_and_the_running_training_is_reattached(replicas, tmp_path, postgres_url,
                                                                                 shared_dir):
    leading = roles(replicas)
    leader, standby = leading["leader"], leading["standby"]
    cli = project(tmp_path, standby, "handover")
    go = shared_dir / "go"
    deploy(tmp_path, cli, "held", HELD_TRAINING.format(go=str(go)), "1")
    job_id = training(standby, "handover")
    wait_for(lambda: job(standby, "handover", job_id)["state"] == "JOB_RUNNING", 300, "the training to run")
    wait_for(lambda: "tiny training started" in cli("train", "logs", "-j", job_id).out, 60, "its first line")
    before = started_records(postgres_url, job_id)
    assert before[0] is not None and before[1][0][1]["pid"], before

    leader.kill()
    # The lock goes with the killed scheduler's session: the standby takes it at its next try (every second).
    wait_for(lambda: scheduler(standby).get("role") == "leader", 15, "the standby to take over")
    assert " is the leader: it holds the scheduler lock" in standby.log()
    wait_for(lambda: listening_for_wakeups(standby.data_dir), 15, "the new leader to listen for wake-ups")
    go.write_text("")
    ended = finished(standby, "handover", job_id)
    assert ended["state"] == "JOB_SUCCESS", cli("train", "logs", "-j", job_id)
    assert started_records(postgres_url, job_id)[0] == before[0]
    after = started_records(postgres_url, job_id)[1]
    assert [(started, state) for started, state in after] == before[1]  # reattached, not started again
    logs = cli("train", "logs", "-j", job_id).out
    assert logs.count("tiny training started") == 1 and logs.count("beginning to run user code") == 1, logs
    assert logs.count("tiny training done") == 1, logs
    outputs = list((leader.data_dir / "jobs" / job_id / "out").glob("*/model/written"))
    assert [path.read_text() for path in outputs] == ["once\n"]

    deploy(tmp_path, cli, "after", QUICK_TRAINING, "2")
    later = training(standby, "handover", count=2)
    assert later != job_id
    assert finished(standby, "handover", later)["state"] == "JOB_SUCCESS"
    assert f"Train job {later} scheduled" in standby.log()
