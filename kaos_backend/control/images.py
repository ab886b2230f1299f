"""The image a training or an endpoint is about to start from, checked with its executor first.

A build's success is a fact of the past: its image can leave the engine since (`docker rmi`, `docker image prune
-a`, a local environment removed). A start from such an image would fail at once, and so would every redeploy of
the same bundle (its last build succeeded: no build is asked for). So before a start the controller asks the
executor (`is_image_ready`); an image that is gone gets a new build of its bundle (one at a time: a build that runs
already is waited for), the workload waits for it, and its log says why.
"""
from typing import Dict, NamedTuple, Optional

from kaos_model import JobState
from kaos_model.ids import new_job_id
from sqlalchemy import exists, select

from kaos_backend.control.common import reading
from kaos_backend.executors.base import Executor
from kaos_backend.models import Bundle, Endpoint, Job, Notebook
from kaos_backend.services.train import latest_build

ENDED = (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value)


class ImageCheck(NamedTuple):
    """`ready`: start from `image` (None when the workload names none: its start says so). Else the workload waits
    for `build_id` (a build of its bundle); `failed` holds the reason when that build ended without an image (the
    workload cannot start)."""
    ready: bool
    image: Optional[str] = None
    build_id: Optional[str] = None
    failed: Optional[str] = None


def check_image(services, executor: Executor, image: Optional[str], bundle_id: Optional[int], kind: str,
                log: Executor, what: str) -> ImageCheck:
    """Whether `image` (built of the source bundle `bundle_id` by a `kind` build: build-train, build-serve) is on
    `executor`'s engine; when it is not, the image of the bundle's newest build if that one is. Else: that build
    is waited for while it runs; when it succeeded (its image left the engine since) a new build job is made and
    `log` (the workload's log) says so; when it failed, the check fails with its reason. `what` names the
    workload in the log ("training"). No transaction is open while the executor is asked."""
    if not image or bundle_id is None or executor.is_image_ready(image):
        return ImageCheck(True, image)
    with reading(services) as session:
        build = latest_build(session, bundle_id, kind)
        bundle = session.get(Bundle, bundle_id)
    if build is not None and build.state not in (JobState.JOB_SUCCESS.value, *ENDED):  # building
        if build.desired == "kill":
            return ImageCheck(False)  # being cancelled (its workload went): once it has ended, it is built again
        return ImageCheck(False, None, build.id)
    if build is not None and build.state in ENDED:
        return ImageCheck(False, None, build.id, f"kaos: the image {image} left the engine, and building it again "
                                                 f"failed (build job {build.id}: {build.reason or build.state})")
    if build is not None and build.image not in (None, image) and executor.is_image_ready(build.image):
        return ImageCheck(True, build.image)  # built again since, under another name (the workload was made before)
    if bundle is None:
        return ImageCheck(False, None, None, f"kaos: the image {image} left the engine, and its source bundle was "
                                             "deleted: it cannot be built again")
    build_id = new_job_id()
    with services.db.session_scope() as session:
        newest = latest_build(session, bundle_id, kind)
        if (newest.id if newest else None) != (build.id if build else None):
            return ImageCheck(False)  # another controller asked for one meanwhile: the next look finds it
        session.add(Job(id=build_id, workspace_id=bundle.workspace_id, kind=kind, state=JobState.JOB_STARTING.value,
                        user=bundle.user, source_bundle_id=bundle.id,
                        resources=(bundle.meta or {}).get("resources")))
    log.append_log(f"kaos: the image {image} is no longer on the engine (removed since it was built): building it "
                   f"again (build job {build_id}); the {what} starts once it is built")
    return ImageCheck(False, None, build_id)


CANCELLABLE = ("build-serve", "build-notebook")  # builds an endpoint or a notebook waits for (a train pipeline's: not)


def cancel_unwaited_build(session, build_id: Optional[str]) -> bool:
    """In the write transaction `session` that removes a workload waiting for the build `build_id` (an endpoint's,
    a notebook's row, deleted in it): ask the scheduler to kill that build (`desired="kill"`: its controller stops
    it through its executor, JOB_KILLED) when it is an unfinished build-serve or build-notebook that nothing else
    waits for: no live endpoint or notebook names it, and no other unfinished build waits for its image
    (builds.BuildController records the image of a build that waits for another one). The builds of the same
    image that were left for it are looked at again. True when the kill was asked."""
    build = session.get(Job, build_id) if build_id else None
    if build is None or build.kind not in CANCELLABLE or build.finished_at is not None or build.desired == "kill":
        return False
    for model in (Endpoint, Notebook):
        if session.scalar(select(exists().where(model.build_job_id == build.id, model.desired == "run"))):
            return False
    if not build.image:
        build.desired = "kill"
        return True
    same_image = select(Job.id).where(Job.image == build.image, Job.id != build.id, Job.finished_at.is_(None),
                                      Job.desired == "run", Job.kind.like("build-%"))
    if any(session.get(Job, other).state == JobState.JOB_STARTING.value for other in session.scalars(same_image)):
        return False  # waits for this one to make the image
    build.desired = "kill"
    session.flush()
    for other in list(session.scalars(same_image)):  # the build this one waited for, now maybe waited for by none
        cancel_unwaited_build(session, other)
    return True


def building_reason(build_id: str, state: str, kind: str) -> str:
    """The reason of an endpoint or notebook (`kind` "serve" or "notebook") while the build of its image is not
    done: "waiting for its image: build job <id> is JOB_RUNNING (kaos serve build-logs -j <id>)"."""
    return f"waiting for its image: build job {build_id} is {state} (kaos {kind} build-logs -j {build_id})"


def built_reason(reason: Optional[str]) -> Optional[str]:
    """A workload's reason once its image is built: `reason` (how its last start ended, say), unless it is the
    `building_reason` it had while it waited (None then)."""
    return None if reason and reason.startswith(_BUILDING) else reason


_BUILDING = building_reason("", "", "").partition(":")[0] + ":"


def waiting_changes(check: ImageCheck, failure_state: str) -> Dict:
    """What a long-running workload's row (an endpoint's, a notebook's) records when `check` says its image is not
    ready: the build it waits for, or `failure_state` and the reason when that build failed (else nothing)."""
    if check.build_id:
        return {"build_job_id": check.build_id}
    return {"state": failure_state, "reason": check.failed} if check.failed else {}
