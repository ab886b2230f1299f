"""`kaos train list|deploy|info|logs|build-logs|kill`: the current workspace's train pipeline."""
import json
from pathlib import Path

import click

from kaos_cli import render
from kaos_cli.errors import KaosError
from kaos_cli.guards import workspace_session
from kaos_cli.job_logs import show_logs
from kaos_cli.options import index_option, name_option, require_one
from kaos_cli.state import resolve_index, write_cache

PAGE_SIZE = 10  # partitions per `train info` page (the backend's page size)
NO_JOBS = "There are currently no training jobs - first run kaos train deploy"
NOTHING_TO_DEPLOY = ("--source_bundle and/or --data_bundle or --data_manifest and/or --hyperparams need to be "
                     "defined for training")
DATA_EXCLUSIVE = "Illegal usage: `data_bundle` is mutually exclusive with arguments `data_manifest`."
NO_HYPERPARAMS = "/params.null"

# title, listing key, columns (after `ind`); the index cache of the table, if any
LISTINGS = (
    ("INGESTING", "ingesting", ("duration", "job_id", "progress", "started", "state"), None),
    ("BUILDING", "building", ("duration", "job_id", "started", "state"), "build-train"),
    ("TRAINING", "training", ("duration", "hyperopt", "job_id", "started", "state"), "train"),
)


def _job_id(job_id, ind, cache: str = "train") -> str:
    require_one("job_id", job_id, "ind", ind)
    return job_id if ind is None else resolve_index(cache, ind)


@click.group(short_help="Run training jobs with ready-made features")
def train():
    """Run training jobs with ready-made features."""


# -- list ------------------------------------------------------------------------------------------------------
@train.command("list", short_help="List the training jobs")
def list_jobs():
    """List the ingesting, building and training jobs of the current workspace, newest first."""
    client, workspace = workspace_session()
    listing = client.train_list(workspace)
    for _, key, _, cache in LISTINGS:
        if cache:
            write_cache(cache, [job.get("job_id") for job in listing[key]])
    tables = []
    for title, key, columns, _ in LISTINGS:
        jobs = listing[key]
        if jobs:
            rows = [[index] + [job.get(column) for column in columns] for index, job in enumerate(jobs)]
            tables.append(render.titled_table(title, ("ind",) + columns, rows))
    if not tables:
        render.warning(NO_JOBS)
        return
    render.echo("\n\n".join(tables))


# -- deploy ----------------------------------------------------------------------------------------------------
def check_manifest(path) -> None:
    """Every non-blank line must be a JSON object with `url` and `path` (the backend checks the rest)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KaosError(f"The manifest file is invalid: {exc}") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or "url" not in entry or "path" not in entry:
            raise KaosError(f"The manifest file is invalid: line {number} is not a JSON object with "
                            "`url` and `path`")


def check_hyperparams(path) -> None:
    """A JSON object of non-empty lists (`{}` clears the hyperparameters)."""
    try:
        params = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KaosError(f"The hyperparameters file {path} is not valid JSON: {first}") from None
    if not isinstance(params, dict) or not all(isinstance(values, list) and values for values in params.values()):
        raise KaosError(f"The hyperparameters file {path} must hold a JSON object of non-empty lists, "
                        'like {"lr": [0.1, 0.01], "depth": [3, 5]}')


def _submit_source(client, workspace, source_bundle, resources) -> None:
    from kaos_cli.bundles import TemporaryBundle

    render.info(f"Submitting source bundle: {source_bundle}")
    with TemporaryBundle(source_bundle, "source.zip", "source bundle") as zip_path:
        answer = client.upload_train_source(workspace, zip_path, **resources) or {}
    render.success(f"Setting source bundle: /{answer.get('glob_name')}")
    if answer.get("job_id"):
        render.success(f"Building image: job {answer['job_id']}")
    render.echo()


def _submit_data(client, workspace, data_bundle, resources) -> None:
    from kaos_cli.bundles import TemporaryBundle

    render.info(f"Submitting data bundle: {data_bundle}")
    with TemporaryBundle(data_bundle, "data.zip", "data bundle") as zip_path:
        answer = client.upload_features(workspace, zip_path, **resources) or {}
    render.success(f"Setting data bundle: /{answer.get('glob_name')}")
    render.echo()


def _submit_manifest(client, workspace, data_manifest, resources) -> None:
    render.info(f"Submitting data manifest bundle: {data_manifest}")
    answer = client.upload_manifest(workspace, data_manifest, **resources) or {}
    render.success(f"Setting data manifest bundle: /{answer.get('glob_name')}")
    render.echo()


def _submit_hyperparams(client, workspace, hyperparams, parallelism, resources) -> None:
    render.info(f"Submitting hyperparams bundle: {hyperparams}")
    answer = client.upload_params(workspace, hyperparams, parallelism=parallelism, **resources) or {}
    glob_name = answer.get("glob_name")
    combinations = answer.get("params") or []
    if not combinations or glob_name == NO_HYPERPARAMS.lstrip("/"):
        render.success(f"Setting hyperparameters bundle: {NO_HYPERPARAMS} (no hyperparameters)")
        render.echo()
        return
    render.success(f"Setting hyperparameters bundle: /{glob_name}/*")
    render.echo()
    render.echo(f"CURRENT HYPERPARAMETERS ({len(combinations)})")
    render.echo()
    keys = list(combinations[0])
    rows = [[index] + [combination.get(key) for key in keys] for index, combination in enumerate(combinations)]
    render.print_table(["ind"] + keys, rows, justify="center")
    render.echo()


def inputs_row(inputs: dict) -> list:
    """The `Image | Data | Hyperparams` cells of `train_inspect`'s answer."""
    image_state = inputs.get("image_state")
    if image_state == "building":
        image = render.mark(None, building=True)
    elif image_state == "ready" and inputs.get("image"):
        image = render.mark(inputs["image"])
    else:
        image = render.CROSS
    hyper_glob = inputs.get("hyper_glob")
    hyper = render.CROSS if not hyper_glob or hyper_glob == NO_HYPERPARAMS else render.mark(hyper_glob)
    return [image, render.mark(inputs.get("data_glob")), hyper]


@train.command(short_help="Deploy a training job", context_settings={"help_option_names": ["--help"]})
@click.option("-s", "--source_bundle", type=click.Path(exists=True, file_okay=False),
              help="Directory of the source bundle (Dockerfile and model/)")
@click.option("-d", "--data_bundle", type=click.Path(exists=True, file_okay=False),
              help="Directory of the data bundle [NOTE: Mutually exclusive with --data_manifest]")
@click.option("-m", "--data_manifest", type=click.Path(exists=True, dir_okay=False),
              help="Data manifest file: one JSON object with url and path per line "
                   "[NOTE: Mutually exclusive with --data_bundle]")
@click.option("-h", "--hyperparams", type=click.Path(exists=True, dir_okay=False),
              help="JSON file of hyperparameter lists; every combination is trained")
@click.option("-p", "--parallelism", type=click.IntRange(min=1),
              help="How many hyperparameter combinations train at once")
@click.option("--cpu", type=float, help="CPU cores per job")
@click.option("--memory", type=str, help="Memory per job, e.g. 512Mi")
@click.option("--gpu", type=int, default=0, show_default=True, help="GPUs per job")
def deploy(source_bundle, data_bundle, data_manifest, hyperparams, parallelism, cpu, memory, gpu):
    """Set the inputs of the workspace's training: source, data (bundle or manifest), hyperparameters."""
    if data_bundle and data_manifest:
        raise click.UsageError(DATA_EXCLUSIVE, ctx=click.get_current_context())
    if not any((source_bundle, data_bundle, data_manifest, hyperparams)):
        raise KaosError(NOTHING_TO_DEPLOY, level="Warning")
    if data_manifest:
        check_manifest(data_manifest)
    if hyperparams:
        check_hyperparams(hyperparams)
    client, workspace = workspace_session()
    if parallelism is not None and not hyperparams:
        render.warning("--parallelism applies to --hyperparams only; ignored")
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu}
    if source_bundle:
        _submit_source(client, workspace, source_bundle, resources)
    if data_bundle:
        _submit_data(client, workspace, data_bundle, resources)
    if data_manifest:
        _submit_manifest(client, workspace, data_manifest, resources)
    if hyperparams:
        _submit_hyperparams(client, workspace, hyperparams, parallelism, resources)
    inputs = client.train_inspect(workspace)
    render.echo("CURRENT TRAINING INPUTS")
    render.echo()
    render.print_table(["Image", "Data", "Hyperparams"], [inputs_row(inputs)], justify="center")


# -- info ------------------------------------------------------------------------------------------------------
def _provenance(reference) -> str:
    """`Author: <user>\\nPath: <path>` of a code/data/hyperparams reference, `None` when there is none."""
    if not reference:
        return "None"
    author = reference.get("author")
    path = f"Path: {reference.get('path')}"
    return f"Author: {author}\n{path}" if author else path


@train.command(short_help="Describe a training job and its models")
@name_option("-j", "--job_id", help="Job id")
@index_option(other="job_id", help="Index of the TRAINING table of `kaos train list`")
@click.option("-s", "--sort_by", help="Metric to sort the models by (shows a Score column)")
@click.option("-p", "--page_id", type=click.IntRange(min=0), default=0, show_default=True,
              help="Page of ten models")
@click.option("--ascending", is_flag=True, help="Sort ascending (for losses) instead of descending")
def info(job_id, ind, sort_by, page_id, ascending):
    """Describe a training job: its state, metrics and the models of one page."""
    job_id = _job_id(job_id, ind)
    client, workspace = workspace_session()
    render.info(f"Retrieving info from {job_id}")
    answer = client.train_info(workspace, job_id, sort_by=sort_by, page_id=page_id, ascending=ascending)
    job = answer.get("response") or {}
    page = answer.get("page_id", page_id)
    process_time = job.get("process_time")
    render.echo()
    render.echo(f"    Job ID: {job.get('job_id', job_id)}")
    render.echo(f"    Process time: {process_time}s" if process_time is not None else "    Process time: None")
    render.echo(f"    State: {job.get('state')}")
    render.echo(f"    Available metrics: {[str(name) for name in job.get('available_metrics') or []]}")
    render.echo()
    render.echo(f"    Page count: {answer.get('page_count')}")
    render.echo(f"    Page ID: {page}")
    headers = ["ind", "Code", "Data", "Model ID", "Hyperparams"] + (["Score"] if sort_by else [])
    rows = []
    offset = (page if isinstance(page, int) else page_id) * PAGE_SIZE
    for number, partition in enumerate(job.get("partitions") or []):
        row = [offset + number, _provenance(partition.get("code")), _provenance(partition.get("data")),
               (partition.get("output") or {}).get("model_id"), _provenance(partition.get("hyperparams"))]
        if sort_by:
            row.append(partition.get("score"))
        rows.append(row)
    render.print_table(headers, rows, justify="center")


# -- logs ------------------------------------------------------------------------------------------------------
def _log_options(index_help: str):
    """-j/--job_id ↔ -i/--ind, -o/--out_dir, -f/--follow."""
    def decorate(command):
        command = click.option("-f", "--follow", is_flag=True,
                               help="Print the log as it is written until the job ends; exit 1 unless it "
                                    "succeeded")(command)
        command = click.option("-o", "--out_dir", type=click.Path(exists=True, file_okay=False), default=".",
                               show_default=True,
                               help="Directory to save the log under (<out_dir>/<workspace>/logs/)")(command)
        command = index_option(other="job_id", help=index_help)(command)
        return name_option("-j", "--job_id", help="Job id")(command)
    return decorate


@train.command(short_help="Show the log of a training (or build) job")
@_log_options("Index of the TRAINING table of `kaos train list`")
def logs(job_id, ind, out_dir, follow):
    """Print the log of a training job (build job ids work too) and save it to
    <out_dir>/<workspace>/logs/train-<job_id>.log."""
    job_id = _job_id(job_id, ind)
    client, workspace = workspace_session()
    show_logs(client.train_logs, workspace, job_id, out_dir, follow, f"train-{job_id}.log",
              f"Retrieving logs from {job_id}", client.job_state)


@train.command("build-logs", short_help="Show the log of an image build")
@_log_options("Index of the BUILDING table of `kaos train list`")
def build_logs(job_id, ind, out_dir, follow):
    """Print the log of a build job and save it to <out_dir>/<workspace>/logs/build-train-<job_id>.log."""
    job_id = _job_id(job_id, ind, cache="build-train")
    client, workspace = workspace_session()
    show_logs(client.train_build_logs, workspace, job_id, out_dir, follow, f"build-train-{job_id}.log",
              f"Retrieving build logs from {job_id}", client.job_state)


# -- kill ------------------------------------------------------------------------------------------------------
@train.command(short_help="Kill a running training (or build) job")
@name_option("-j", "--job_id", help="Job id")
@index_option(other="job_id", help="Index of the TRAINING table of `kaos train list`")
def kill(job_id, ind):
    """Kill a running training or build job."""
    job_id = _job_id(job_id, ind)
    client, workspace = workspace_session()
    client.train_kill(workspace, job_id)
    render.info(f"Job {job_id} successfully killed")
