"""`kaos train list|deploy|info|get|provenance|logs|build-logs|kill`: the current workspace's train pipeline."""
import json
import tempfile
import zipfile
from pathlib import Path

import click

from kaos_cli import render
from kaos_cli.completion import (complete_models, complete_train_and_build_jobs, complete_train_builds,
                                 complete_train_jobs, complete_unfinished_jobs)
from kaos_cli.errors import KaosError
from kaos_cli.guards import warn_when_unhealthy, workspace_session
from kaos_cli.job_logs import add_build_logs, job_log_options, show_logs
from kaos_cli.options import check_resources, index_option, name_option, name_or_index, resource_options
from kaos_cli.output import emit, list_pages, output_option, progress_wanted
from kaos_cli.paging import more_hint, size_options, wanted
from kaos_cli.state import write_cache

PAGE_SIZE = 10  # partitions per `train info` page (the backend's page size)
MAX_FAILED_ROWS = 20  # failed partitions shown by `train info` (the backend lists no more)
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


def _job_id(job_id, ind) -> str:
    return name_or_index("job_id", job_id, ind, "train")


@click.group(short_help="Run training jobs with ready-made features")
def train():
    """Run training jobs with ready-made features."""


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

    def fetch(size, token):
        page = client.train_list(workspace, limit=size, continue_token=token)
        return {key: getattr(page, key) for key in [key for _, key, _, _ in LISTINGS]}, page.continue_token

    listing, more, token = list_pages(fetch, [key for _, key, _, _ in LISTINGS], limit)
    for _, key, _, cache in LISTINGS:
        if cache:
            write_cache(cache, [job.job_id for job in listing[key]])
    if emit({"response": {key: listing[key] for key in ("training", "building", "ingesting")}, "continue": token}):
        if more:
            render.info(more_hint("train", f"the newest {limit} jobs of each list"), err=True)
        return
    sections = ((title, listing[key], columns) for title, key, columns, _ in LISTINGS)
    if render.print_listing(sections, NO_JOBS) and more:
        render.info(more_hint("train", f"the newest {limit} jobs of each table"), err=True)


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


def _submit_source(client, workspace, source_bundle, resources, inputs_follow=False):
    from kaos_cli.folder_upload import upload_folder

    render.info(f"Submitting source bundle: {source_bundle}")
    answer = upload_folder(source_bundle, "source.zip", "source bundle", lambda zip_path, digest:
                           client.upload_train_source(workspace, zip_path, digest=digest,
                                                      inputs_follow=inputs_follow, **resources),
                           progress=progress_wanted())
    render.success(f"Setting source bundle: /{answer.glob_name}")
    if answer.job_id:
        render.success(f"Building image: job {answer.job_id}")
    render.echo()
    return answer


def _submit_data(client, workspace, data_bundle, resources, inputs_follow=False):
    from kaos_cli.folder_upload import upload_folder

    render.info(f"Submitting data bundle: {data_bundle}")
    answer = upload_folder(data_bundle, "data.zip", "data bundle", lambda zip_path, digest:
                           client.upload_features(workspace, zip_path, digest=digest,
                                                  inputs_follow=inputs_follow, **resources),
                           progress=progress_wanted())
    render.success(f"Setting data bundle: /{answer.glob_name}")
    render.echo()
    return answer


def _submit_manifest(client, workspace, data_manifest, resources, inputs_follow=False):
    render.info(f"Submitting data manifest bundle: {data_manifest}")
    answer = client.upload_manifest(workspace, data_manifest, inputs_follow=inputs_follow, **resources)
    render.success(f"Setting data manifest bundle: /{answer.glob_name}")
    render.echo()
    return answer


def _submit_hyperparams(client, workspace, hyperparams, parallelism, resources, inputs_follow=False):
    render.info(f"Submitting hyperparams bundle: {hyperparams}")
    answer = client.upload_params(workspace, hyperparams, parallelism=parallelism, inputs_follow=inputs_follow,
                                  **resources)
    glob_name = answer.glob_name
    combinations = answer.params
    if not combinations or glob_name == NO_HYPERPARAMS.lstrip("/"):
        render.success(f"Setting hyperparameters bundle: {NO_HYPERPARAMS} (no hyperparameters)")
        render.echo()
        return answer
    render.success(f"Setting hyperparameters bundle: /{glob_name}/*")
    render.echo()
    render.echo(f"CURRENT HYPERPARAMETERS ({len(combinations)})")
    render.echo()
    keys = list(combinations[0])
    rows = [[index] + [combination.get(key) for key in keys] for index, combination in enumerate(combinations)]
    render.print_table(["ind"] + keys, rows, justify="center")
    render.echo()
    return answer


def inputs_row(inputs) -> list:
    """The `Image | Data | Hyperparams` cells of `train_inspect`'s TrainPipelineInfo."""
    image_state = inputs.image_state
    if image_state == "building":
        image = render.mark(None, building=True)
    elif image_state == "ready" and inputs.image:
        image = render.mark(inputs.image)
    else:
        image = render.CROSS
    hyper_glob = inputs.hyper_glob
    hyper = render.CROSS if not hyper_glob or hyper_glob == NO_HYPERPARAMS else render.mark(hyper_glob)
    return [image, render.mark(inputs.data_glob), hyper]


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
@resource_options("per job")
@output_option
def deploy(source_bundle, data_bundle, data_manifest, hyperparams, parallelism, cpu, memory, gpu):
    """Set the inputs of the workspace's training: source, data (bundle or manifest), hyperparameters.
    With -o json|yaml: `{"source"|"data"|"manifest"|"hyperparams": <each upload route's answer>, "inputs":
    <GET /train/<ws>/inspect's answer>}`, the uploads made only."""
    if data_bundle and data_manifest:
        raise click.UsageError(DATA_EXCLUSIVE, ctx=click.get_current_context())
    if not any((source_bundle, data_bundle, data_manifest, hyperparams)):
        raise KaosError(NOTHING_TO_DEPLOY, level="Warning")
    check_resources(cpu, memory, gpu)
    from kaos_cli.bundles import check_bundle_directory

    for folder in (source_bundle, data_bundle):
        if folder:
            check_bundle_directory(folder)  # every folder, before the first upload
    if data_manifest:
        check_manifest(data_manifest)
    if hyperparams:
        check_hyperparams(hyperparams)
    client, workspace = workspace_session()
    warn_when_unhealthy(client)
    if parallelism is not None and not hyperparams:
        render.warning("--parallelism applies to --hyperparams only; ignored")
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu}
    answers = {}
    # every upload but the last says that more inputs follow: no training starts on a part of this deploy
    given = [name for name, value in (("source", source_bundle), ("data", data_bundle), ("manifest", data_manifest),
                                      ("hyperparams", hyperparams)) if value]
    follows = {name: name != given[-1] for name in given}
    if source_bundle:
        answers["source"] = _submit_source(client, workspace, source_bundle, resources, follows["source"])
    if data_bundle:
        answers["data"] = _submit_data(client, workspace, data_bundle, resources, follows["data"])
    if data_manifest:
        answers["manifest"] = _submit_manifest(client, workspace, data_manifest, resources, follows["manifest"])
    if hyperparams:
        answers["hyperparams"] = _submit_hyperparams(client, workspace, hyperparams, parallelism, resources,
                                                     follows["hyperparams"])
    for warning in dict.fromkeys(answer.warning for answer in answers.values() if answer.warning):
        render.warning(warning)  # the resources asked for are not enforced here: said once
    inputs = client.train_inspect(workspace)
    if emit(dict(answers, inputs=inputs)):
        return
    render.echo("CURRENT TRAINING INPUTS")
    render.echo()
    render.print_table(["Image", "Data", "Hyperparams"], [inputs_row(inputs)], justify="center")


# -- info ------------------------------------------------------------------------------------------------------
def _provenance(reference) -> str:
    """`Author: <user>\\nPath: <path>` of a code/data/hyperparams reference, `None` when there is none."""
    if not reference:
        return "None"
    author = reference.author
    path = f"Path: {reference.path}"
    return f"Author: {author}\n{path}" if author else path


@train.command(short_help="Describe a training job and its models")
@name_option("-j", "--job_id", help="Job id", shell_complete=complete_train_jobs)
@index_option(other="job_id", help="Index of the TRAINING table of `kaos train list`")
@click.option("-s", "--sort_by", help="Metric to sort the models by (shows a Score column)")
@click.option("-p", "--page_id", type=click.IntRange(min=0), default=0, show_default=True,
              help="Page of ten models")
@click.option("--ascending", is_flag=True, help="Sort ascending (for losses) instead of descending")
@output_option
def info(job_id, ind, sort_by, page_id, ascending):
    """Describe a training job: its state, metrics and the models of one page. With -o json|yaml:
    `GET /train/<ws>/<job_id>`'s answer, `{"page_id", "page_count", "response": JobInfo}`."""
    job_id = _job_id(job_id, ind)
    client, workspace = workspace_session()
    render.info(f"Retrieving info from {job_id}")
    answer = client.train_info(workspace, job_id, sort_by=sort_by, page_id=page_id, ascending=ascending)
    if emit(answer):
        return
    job = answer.response
    page = answer.page_id
    render.echo()
    render.echo(f"    Job ID: {job.job_id}")
    render.echo(f"    Process time: {job.process_time}s")
    render.echo(f"    State: {job.state}")
    if job.reason:
        render.echo(f"    Reason: {job.reason}")
    render.echo(f"    Available metrics: {[str(name) for name in job.available_metrics]}")
    render.echo()
    render.echo(f"    Page count: {answer.page_count}")
    render.echo(f"    Page ID: {page}")
    headers = ["ind", "Code", "Data", "Model ID", "Hyperparams"] + (["Score"] if sort_by else [])
    rows = []
    offset = page * PAGE_SIZE
    for number, partition in enumerate(job.partitions):
        row = [offset + number, _provenance(partition.code), _provenance(partition.data),
               partition.output.model_id, _provenance(partition.hyperparams)]
        if sort_by:
            row.append(partition.score)
        rows.append(row)
    render.print_table(headers, rows, justify="center")
    _failed_partitions(job)


def _failed_partitions(job) -> None:
    """The failed partitions' table (at most MAX_FAILED_ROWS rows) of a JobInfo, and how many more failed."""
    listed = job.failed_partitions
    count = job.failed_count
    if not isinstance(count, int) or count < len(listed):  # a backend that does not count them
        count = len(listed)
    failed = listed[:MAX_FAILED_ROWS]
    if not count:
        return
    render.echo()
    render.echo(f"    Failed partitions: {count}")
    if failed:
        rows = [[partition.datum_id.rsplit("-", 1)[-1], partition.state,
                 _provenance(partition.hyperparams), render.wrapped(partition.reason)]
                for partition in failed]
        render.print_table(["partition", "State", "Hyperparams", "Reason"], rows, justify="center")
    if count > len(failed):
        render.echo(f"    ... and {count - len(failed)} more failed partitions")


# -- get, provenance -------------------------------------------------------------------------------------------
def _file_name(kind: str, value: str) -> str:
    """A job or model id that also names a local directory or file: no path separators, not hidden."""
    if not isinstance(value, str) or not value.strip() or Path(value).name != value or "\\" in value \
            or value.startswith("."):
        raise KaosError(f"Invalid {kind} {value!r}")
    return value


@train.command(short_help="Download the code, data and models of a training job")
@name_option("-j", "--job_id", help="Job id", shell_complete=complete_train_jobs)
@index_option(other="job_id", help="Index of the TRAINING table of `kaos train list`")
@click.option("-o", "--out_dir", type=click.Path(exists=True, file_okay=False), default=".", show_default=True,
              help="Directory to extract the bundle under (<out_dir>/<workspace>/<job_id>/)")
@click.option("-c", "--include_code", is_flag=True, help="Include the source bundle (code/)")
@click.option("-d", "--include_data", is_flag=True, help="Include the data bundle (data/)")
@click.option("-m", "--include_model", is_flag=True, help="Include the trained models (models/)")
@click.option("--model_id", help="Only this model (a Model ID of `kaos train info`)", shell_complete=complete_models)
def get(job_id, ind, out_dir, include_code, include_data, include_model, model_id):
    """Download a finished training job into <out_dir>/<workspace>/<job_id>/: code/<bundle:hash>/,
    data/<data:hash>/ and models/<hex6>/ (model/, metrics/ and, for hyperparameter models, the combination's
    <hash>/<combination>.json). Without -c, -d or -m: code and models."""
    from kaos_cli.bundles import UnsafeArchiveError, extract_zip

    job_id = _file_name("job id", _job_id(job_id, ind))
    if model_id is not None and not model_id.strip():
        raise KaosError("--model_id must not be empty")
    if not (include_code or include_data or include_model):
        include_code = include_model = True
    client, workspace = workspace_session()
    target = Path(out_dir) / workspace / job_id
    with tempfile.TemporaryDirectory(prefix="kaos-train-") as download_dir:
        zip_path = client.train_bundle(workspace, job_id, Path(download_dir) / "bundle.zip",
                                       include_code=include_code, include_data=include_data,
                                       include_model=include_model, model_id=model_id)
        render.info(f"Extracting train bundle: {target}")
        try:
            extract_zip(zip_path, target, "train bundle", progress=progress_wanted())
        except UnsafeArchiveError as exc:
            raise KaosError(f"Refused the train bundle of {job_id}: its member {exc.member!r} would be written "
                            f"outside {target} (nothing was extracted)") from None
        except (zipfile.BadZipFile, ValueError, EOFError) as exc:
            raise KaosError(f"The train bundle of {job_id} is not a valid zip archive: {exc}") from None
        except OSError as exc:
            raise KaosError(f"Cannot extract the train bundle into {target}: {exc.strerror or exc}") from None
    if include_model and not (target / "models").is_dir():
        render.warning(f"Job {job_id} has no trained model")


@train.command(short_help="Save the provenance graph of a trained model")
@click.option("-m", "--model_id", required=True, help="Model ID (of `kaos train info`), e.g. 1909d_5c3ca:828c4e",
              shell_complete=complete_models)
@click.option("-o", "--out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Directory to save the graph under (<out_dir>/<workspace>/provenance/)")
def provenance(model_id, out_dir):
    """Save how a model came to be (code, image, data, hyperparameters, training job) as a Graphviz graph:
    model-<model_id>.dot, and model-<model_id>.pdf when graphviz's `dot` is installed."""
    from kaos_cli.provenance import save_provenance

    model_id = _file_name("model id", model_id)
    client, workspace = workspace_session()
    render.info(f"Retrieving provenance from {model_id}")
    dot_source = client.train_provenance(workspace, model_id)
    if not dot_source.strip():
        raise KaosError(f"The backend returned no provenance for model {model_id}")
    save_provenance(dot_source, out_dir, workspace, f"model-{model_id}")


# -- logs ------------------------------------------------------------------------------------------------------
@train.command(short_help="Show the log of a training (or build) job")
@job_log_options("Index of the TRAINING table of `kaos train list`", complete_job_ids=complete_train_and_build_jobs)
def logs(job_id, ind, out_dir, follow):
    """Print the log of a training job (build job ids work too) and save it to
    <out_dir>/<workspace>/logs/train-<job_id>.log."""
    job_id = _job_id(job_id, ind)
    client, workspace = workspace_session()
    show_logs(client.train_logs, workspace, job_id, out_dir, follow, f"train-{job_id}.log",
              f"Retrieving logs from {job_id}", client.job_state)


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
    client.train_kill(workspace, job_id)
    render.info(f"Job {job_id} successfully killed")
