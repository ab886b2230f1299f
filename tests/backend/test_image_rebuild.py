"""A training whose image left the engine (control/images.py), on the local executor (an environment that is gone):
its bundle is built again, the training waits for that build and its log says why; a failed rebuild fails it with
that build's reason. The Docker engine's case (`docker rmi`) is tests/docker/test_attack_findings.py's."""
from sqlalchemy import select

from kaos_backend.control.notebooks import NotebookController
from kaos_backend.control.trainings import TrainController
from kaos_backend.models import Job, Notebook, Partition
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import features_zip, source_zip


def _builds(services):
    with services.db.session_scope() as session:
        return [(job.id, job.state) for job in session.scalars(
            select(Job).where(Job.kind == "build-train").order_by(Job.created_at))]


def _training(services):
    with services.db.session_scope() as session:
        job = session.scalar(select(Job).where(Job.kind == "train"))
        partition = session.scalar(select(Partition).where(Partition.job_id == job.id))
        return job.id, job.state, partition.state, partition.reason


def test_a_training_whose_image_is_gone_waits_for_a_new_build_and_fails_with_its_reason(services):
    services.workspaces.create("ws")
    source = services.train.submit_source("ws", body_from_bytes(source_zip()))
    gone = str(services.config.data_dir / "envs" / "removed-since")  # no environment there
    with services.db.session_scope() as session:
        build = session.get(Job, source["job_id"])
        build.state, build.image = "JOB_SUCCESS", gone
    services.train.submit_features("ws", body_from_bytes(features_zip()))
    trainings = TrainController(services)
    for _ in range(3):
        trainings.tick()
    [(first, _), (again, state)] = _builds(services)
    assert first == source["job_id"] and state == "JOB_STARTING"  # one new build, however many ticks
    job_id, job_state, partition_state, _ = _training(services)
    assert (job_state, partition_state) == ("JOB_STARTING", "JOB_STARTING")  # waiting for it
    assert f"kaos: the image {gone} is no longer on the engine (removed since it was built): building it again " \
           f"(build job {again}); the training starts once it is built" in services.jobs.log_text("ws", job_id)

    with services.db.session_scope() as session:
        rebuild = session.get(Job, again)
        rebuild.state, rebuild.reason = "JOB_FAILURE", "pip failed"
    trainings.tick()
    _, job_state, partition_state, reason = _training(services)
    assert (job_state, partition_state) == ("JOB_FAILURE", "JOB_FAILURE")
    assert reason == f"kaos: the image {gone} left the engine, and building it again failed (build job {again}: " \
                     "pip failed)"
    assert len(_builds(services)) == 2  # not built a third time


def test_a_notebook_whose_image_is_gone_waits_for_a_new_build_and_fails_with_its_reason(services):
    """The same for a notebook (control/notebooks.py): one new build, the notebook waits for it, then fails with
    the rebuild's reason."""
    services.workspaces.create("ws")
    deployed = services.notebooks.deploy("ws", body_from_bytes(source_zip()), user="tester")
    gone = str(services.config.data_dir / "envs" / "removed-since")
    with services.db.session_scope() as session:
        build = session.get(Job, deployed["job_id"])
        build.state, build.image = "JOB_SUCCESS", gone
    notebooks = NotebookController(services)
    for _ in range(3):
        notebooks.tick()
    with services.db.session_scope() as session:
        builds = [job.id for job in session.scalars(select(Job).where(Job.kind == "build-notebook")
                                                    .order_by(Job.created_at))]
        row = session.get(Notebook, deployed["notebook"])
        assert builds[0] == deployed["job_id"] and len(builds) == 2  # one new build, however many ticks
        assert row.build_job_id == builds[1] and row.executor_state is None
    log = (services.config.data_dir / "notebooks" / deployed["notebook"] / "log").read_text()
    assert f"kaos: the image {gone} is no longer on the engine" in log and "the notebook starts once" in log

    with services.db.session_scope() as session:
        rebuild = session.get(Job, builds[1])
        rebuild.state, rebuild.reason = "JOB_FAILURE", "pip failed"
    notebooks.tick()
    with services.db.session_scope() as session:
        row = session.get(Notebook, deployed["notebook"])
        assert row.state == "PIPELINE_FAILURE", row.reason
        assert row.reason.endswith(f"image could not be built: see kaos notebook build-logs -j {builds[1]}")
