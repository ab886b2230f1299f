"""Whether a train pipeline's inputs start a new train job or stand by the one that trained them (README, How it
runs): a combination of code, data and hyperparameters trained already starts nothing, unless its last train job
failed or was killed and a deploy after that gives other limits. Used by the scheduler
(control/train_schedule.py) and by the pipeline's view (services/train.py `inspect`: what a deploy will do)."""
from datetime import datetime
from typing import Dict, Optional

from kaos_model import JobState
from sqlalchemy import select

from kaos_backend.models import Job, TrainPipeline, as_utc


def standing_job(session, pipeline: TrainPipeline, branch: str) -> Optional[Job]:
    """The workspace's newest train job of `branch` (the inputs' output branch) when it stands, so that the
    pipeline's inputs start no new one; None when they are to train."""
    previous = session.scalar(select(Job).where(Job.workspace_id == pipeline.workspace_id, Job.kind == "train",
                                                Job.branch == branch).order_by(Job.created_at.desc()).limit(1))
    if previous is None or tried_again(previous, pipeline.resources, pipeline.deployed_at):
        return None
    return previous


def tried_again(previous: Job, resources: Optional[Dict], deployed_at: Optional[datetime]) -> bool:
    """Whether the inputs of the train job `previous` (its branch) get a new train job with `resources` (--cpu,
    --memory, --gpu), given by a deploy at `deployed_at`: only when `previous` ended without success (failed, or was
    killed), that deploy came after it ended, and the resources differ from the ones it had. An engine or a cluster
    refuses a container whose limits it cannot give (`--cpu 1000` ends at once), so other limits must be a way out
    without changing a file; a successful training is not repeated (identical resubmissions start nothing), nor is a
    failure with the same limits, nor a training killed after the deploy (its limits were given while it ran, when
    they started nothing: the kill must not start them)."""
    if previous.state not in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value):
        return False
    if deployed_at is None or previous.finished_at is None or as_utc(deployed_at) < as_utc(previous.finished_at):
        return False
    return _limits(previous.resources) != _limits(resources)


def _limits(resources: Optional[Dict]) -> Dict:
    return {name: value for name, value in (resources or {}).items() if value}
