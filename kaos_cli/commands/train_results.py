"""`kaos train info|get|provenance`: what a training job made, its models with their metrics and provenance."""
from pathlib import Path

import click

from kaos_cli import render
from kaos_cli.completion import complete_models, complete_train_jobs
from kaos_cli.errors import KaosError
from kaos_cli.guards import workspace_session
from kaos_cli.options import index_option, name_option, name_or_index, stripped
from kaos_cli.output import emit, output_option

PAGE_SIZE = 10  # partitions per `train info` page (the backend's page size)
MAX_FAILED_ROWS = 20  # failed partitions shown by `train info` (the backend lists no more)


# -- info ------------------------------------------------------------------------------------------------------
def _provenance(reference) -> str:
    """`Author: <user>\\nPath: <path>` of a code/data/hyperparams reference, `None` when there is none."""
    if not reference:
        return "None"
    author = reference.author
    path = f"Path: {reference.path}"
    return f"Author: {author}\n{path}" if author else path


@click.command(short_help="Describe a training job and its models")
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
    job_id = name_or_index("job_id", job_id, ind, "train")
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
                 _provenance(partition.hyperparams), render.reason(partition.reason)]
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


@click.command(short_help="Download the code, data and models of a training job")
@name_option("-j", "--job_id", help="Job id", shell_complete=complete_train_jobs)
@index_option(other="job_id", help="Index of the TRAINING table of `kaos train list`")
@click.option("-o", "--out_dir", type=click.Path(exists=True, file_okay=False), default=".", show_default=True,
              help="Directory to extract the bundle under (<out_dir>/<workspace>/<job_id>/)")
@click.option("-c", "--include_code", is_flag=True, help="Include the source bundle (code/)")
@click.option("-d", "--include_data", is_flag=True, help="Include the data bundle (data/)")
@click.option("-m", "--include_model", is_flag=True, help="Include the trained models (models/)")
@click.option("--model_id", help="Only this model (a Model ID of `kaos train info`)", callback=stripped,
              shell_complete=complete_models)
def get(job_id, ind, out_dir, include_code, include_data, include_model, model_id):
    """Download a finished training job into <out_dir>/<workspace>/<job_id>/: code/<bundle:hash>/,
    data/<data:hash>/ and models/<hex6>/ (model/, metrics/ and, for hyperparameter models, the combination's
    <hash>/<combination>.json). Without -c, -d or -m: code and models."""
    from kaos_cli.bundle_download import download_and_extract

    job_id = _file_name("job id", name_or_index("job_id", job_id, ind, "train"))
    if model_id is not None and not model_id.strip():
        raise KaosError("--model_id must not be empty")
    if not (include_code or include_data or include_model):
        include_code = include_model = True
    client, workspace = workspace_session()
    target = Path(out_dir) / workspace / job_id
    download_and_extract(lambda zip_path: client.train_bundle(
        workspace, job_id, zip_path, include_code=include_code, include_data=include_data,
        include_model=include_model, model_id=model_id), target, "train", job_id)
    if include_model and not (target / "models").is_dir():
        render.warning(f"Job {job_id} has no trained model")


@click.command(short_help="Save the provenance graph of a trained model")
@click.option("-m", "--model_id", required=True, callback=stripped,
              help="Model ID (of `kaos train info`), e.g. 1909d_5c3ca:828c4e",
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
