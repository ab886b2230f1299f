"""`kaos train list|deploy|info|get|provenance|logs|build-logs|kill`: the current workspace's train pipeline.
This module has the group and its job commands (list, logs, build-logs, kill); deploy is in train_deploy, info, get
and provenance in train_results."""
import click

from kaos_cli import render
from kaos_cli.commands.train_deploy import deploy
from kaos_cli.commands.train_results import get, info, provenance
from kaos_cli.completion import complete_train_and_build_jobs, complete_train_builds, complete_unfinished_jobs
from kaos_cli.guards import workspace_session
from kaos_cli.job_logs import TRAIN_KINDS, add_build_logs, job_log_options, kind_checked, show_logs
from kaos_cli.log_outcomes import job_never_ran
from kaos_cli.options import index_option, name_option, name_or_index
from kaos_cli.output import emit, output_option, workspace_pages
from kaos_cli.paging import counted, more_hint, size_options, wanted
from kaos_cli.state import write_cache

NO_JOBS = "There are currently no training jobs - first run kaos train deploy"

# title, listing key, columns (after `ind`); the index cache of the table, if any
LISTINGS = (
    ("INGESTING", "ingesting", ("duration", "job_id", "progress", "started", "state"), None),
    ("BUILDING", "building", ("duration", "job_id", "started", "state"), "build-train"),
    ("TRAINING", "training", ("duration", "hyperopt", "job_id", "started", "state"), "train"),
)


def _job_id(job_id, ind) -> str:
    return name_or_index("job_id", job_id, ind, "train")


@click.group(short_help="Run training jobs with ready-made features")
def train():
    """Run training jobs with ready-made features."""


for _command in (deploy, info, get, provenance):
    train.add_command(_command)


# -- list ------------------------------------------------------------------------------------------------------
@train.command("list", short_help="List the training jobs")
@size_options
@output_option
def list_jobs(limit, show_all):
    """List the ingesting, building and training jobs of the current workspace, newest first: the newest 50 of
    each table unless --limit or --all say otherwise. With -o json|yaml: `GET /train/<ws>?limit=`'s answer,
    `{"response": {"training": [...], "building": [...], "ingesting": [...]}, "continue": <token or null>}`."""
    limit = wanted(limit, show_all)
    client, workspace = workspace_session()

    listing, more, token = workspace_pages(client.train_list, workspace, [key for _, key, _, _ in LISTINGS], limit)
    for _, key, _, cache in LISTINGS:
        if cache:
            write_cache(cache, [job.job_id for job in listing[key]])
    if emit({"response": {key: listing[key] for key in ("training", "building", "ingesting")}, "continue": token}):
        if more:
            render.info(more_hint("train", f"the newest {counted(limit, 'job')} of each list"), err=True)
        return
    sections = ((title, listing[key], columns) for title, key, columns, _ in LISTINGS)
    if render.print_listing(sections, NO_JOBS) and more:
        render.info(more_hint("train", f"the newest {counted(limit, 'job')} of each table"), err=True)


# -- logs ------------------------------------------------------------------------------------------------------
@train.command(short_help="Show the log of a training (or build) job")
@job_log_options("Index of the TRAINING table of `kaos train list`", complete_job_ids=complete_train_and_build_jobs)
def logs(job_id, ind, out_dir, follow):
    """Print the log of a training job (build job ids work too) and save it to
    <out_dir>/<workspace>/logs/train-<job_id>.log."""
    job_id = _job_id(job_id, ind)
    client, workspace = workspace_session()
    show_logs(kind_checked(client.train_logs, client, TRAIN_KINDS), workspace, job_id, out_dir, follow,
              f"train-{job_id}.log", f"Retrieving logs from {job_id}", client.job_state,
              empty=job_never_ran(client))


add_build_logs(train, "train", "train_build_logs", "Show the log of an image build",
               "Print the log of a build job and save it to <out_dir>/<workspace>/logs/build-train-<job_id>.log.",
               job_id_help="Job id", complete_job_ids=complete_train_builds, until="the job ends")


# -- kill ------------------------------------------------------------------------------------------------------
@train.command(short_help="Kill a running training (or build) job")
@name_option("-j", "--job_id", help="Job id", shell_complete=complete_unfinished_jobs)
@index_option(other="job_id", help="Index of the TRAINING table of `kaos train list`")
def kill(job_id, ind):
    """Kill a running training or build job."""
    job_id = _job_id(job_id, ind)
    client, workspace = workspace_session()
    pending = client.train_kill(workspace, job_id)
    if pending:
        render.warning(pending)
    else:
        render.info(f"Job {job_id} successfully killed")
