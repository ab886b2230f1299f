"""`kaos serve list|deploy|get|provenance|logs|build-logs|kill`: the current workspace's endpoints."""
from pathlib import Path

import click

from kaos_cli import render
from kaos_cli.completion import complete_endpoints, complete_models, complete_serve_builds
from kaos_cli.errors import KaosError
from kaos_cli.guards import warn_when_unhealthy, workspace_session
from kaos_cli.job_logs import add_build_logs, follow_option, kind_checked, out_dir_option, show_logs
from kaos_cli.log_outcomes import endpoint_outcome, workload_never_ran
from kaos_cli.options import (check_resources, index_option, local_name, name_option, resource_options,
                              stripped)
from kaos_cli.output import emit, output_option, progress_wanted, workspace_pages
from kaos_cli.paging import more_hint, size_options, wanted
from kaos_cli.state import delete_caches, write_cache

NO_ENDPOINTS = "There are currently no running endpoints - first run kaos serve deploy"
BUILDING_COLUMNS = ("duration", "job_id", "started", "state")
RUNNING_COLUMNS = ("created_at", "name", "state", "url", "user")
ENDPOINT_INDEX_HELP = "Index of the RUNNING table of `kaos serve list`"


def _endpoint(endpoint, ind) -> str:
    """The endpoint named by -e or by -i (the last `kaos serve list`); it also names local files."""
    return local_name("endpoint", "endpoint", endpoint, ind, "serve")


def _endpoint_options(command):
    """-e/--endpoint ↔ -i/--ind."""
    command = index_option(other="endpoint", help=ENDPOINT_INDEX_HELP)(command)
    return name_option("-e", "--endpoint", help="Endpoint name, e.g. serve-mnist-53d3da",
                       shell_complete=complete_endpoints)(command)


@click.group(short_help="Deploy an endpoint with a trained model")
def serve():
    """Deploy an endpoint with a trained model."""


# -- list ------------------------------------------------------------------------------------------------------
@serve.command("list", short_help="List the endpoints")
@size_options
@output_option
def list_endpoints(limit, show_all):
    """List the image builds and the endpoints of the current workspace, newest first: the newest 50 of each
    table unless --limit or --all say otherwise. With -o json|yaml: `GET /inference/<ws>?limit=`'s answer,
    `{"response": {"endpoints": [...], "building": [...]}, "continue": <token or null>}`."""
    limit = wanted(limit, show_all)
    client, workspace = workspace_session()

    listing, more, token = workspace_pages(client.serve_list, workspace, ("building", "endpoints"), limit)
    building, endpoints = listing["building"], listing["endpoints"]
    write_cache("build-serve", [job.job_id for job in building])
    write_cache("serve", [endpoint.name for endpoint in endpoints])
    if emit({"response": {"endpoints": endpoints, "building": building}, "continue": token}):
        if more:
            render.info(more_hint("serve", f"the newest {limit} of each list"), err=True)
        return
    sections = (("BUILDING", building, BUILDING_COLUMNS), ("RUNNING", endpoints, RUNNING_COLUMNS))
    if render.print_listing(sections, NO_ENDPOINTS) and more:
        render.info(more_hint("serve", f"the newest {limit} of each table"), err=True)


# -- deploy ----------------------------------------------------------------------------------------------------
@serve.command(short_help="Deploy an endpoint")
@click.option("-s", "--source_bundle", type=click.Path(exists=True, file_okay=False), required=True,
              help="Directory of the serve source bundle (Dockerfile and model/ with serve)")
@click.option("-m", "--model_id", help="Trained model to serve (a Model ID of `kaos train info`)", callback=stripped,
              shell_complete=complete_models)
@resource_options("of the endpoint")
@output_option
def deploy(source_bundle, model_id, cpu, memory, gpu):
    """Deploy a new endpoint serving a source bundle, with a trained model's files in its model/ directory.
    With -o json|yaml: `POST /inference/<ws>/<model_id>`'s answer (`glob_name`, `endpoint`, `job_id`)."""
    from kaos_cli.bundles import check_bundle_directory
    from kaos_cli.folder_upload import upload_folder

    if model_id is not None and not model_id.strip():
        raise KaosError("--model_id must not be empty")
    check_resources(cpu, memory, gpu)
    check_bundle_directory(source_bundle)
    client, workspace = workspace_session()
    warn_when_unhealthy(client)
    render.info(f"Submitting source bundle: {source_bundle}")
    answer = upload_folder(source_bundle, "source.zip", "source bundle", lambda zip_path, digest:
                           client.upload_serve_source(workspace, zip_path, model_id, cpu=cpu, memory=memory,
                                                      gpu=gpu, digest=digest),
                           progress=progress_wanted())
    if model_id:
        render.success(f"Adding trained model_id: {model_id}")
    render.success(f"Setting source bundle: /{answer.glob_name}")
    if answer.job_id:
        render.success(f"Building image: job {answer.job_id}")
    if answer.endpoint:
        render.success(f"Endpoint: {answer.endpoint}")
    render.echo()
    if answer.warning:
        render.warning(answer.warning)
    if answer.url:
        render.info(f"Check its state with kaos serve list; it answers at {answer.url}")
    else:
        render.info("Check its state and url with kaos serve list")
    emit(answer)


# -- provenance, get -------------------------------------------------------------------------------------------
@serve.command(short_help="Save the provenance graph of an endpoint")
@_endpoint_options
@click.option("-o", "--out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Directory to save the graph under (<out_dir>/<workspace>/provenance/)")
def provenance(endpoint, ind, out_dir):
    """Save how an endpoint came to be (code, data, hyperparameters, model, images) as a Graphviz graph:
    <endpoint>.dot, and <endpoint>.pdf when graphviz's `dot` is installed."""
    from kaos_cli.provenance import save_provenance

    endpoint = _endpoint(endpoint, ind)
    client, workspace = workspace_session()
    render.info(f"Retrieving provenance from {endpoint}")
    dot_source = client.serve_provenance(workspace, endpoint)
    if not dot_source.strip():
        raise KaosError(f"The backend returned no provenance for endpoint {endpoint}")
    save_provenance(dot_source, out_dir, workspace, endpoint)


@serve.command(short_help="Download the bundle of an endpoint")
@_endpoint_options
@click.option("-o", "--out_dir", type=click.Path(exists=True, file_okay=False), default=".", show_default=True,
              help="Directory to extract the bundle under (<out_dir>/<workspace>/<endpoint>/)")
def get(endpoint, ind, out_dir):
    """Download an endpoint's bundle (its code with the model's files) into <out_dir>/<workspace>/<endpoint>/."""
    from kaos_cli.bundle_download import download_and_extract

    endpoint = _endpoint(endpoint, ind)
    client, workspace = workspace_session()
    target = Path(out_dir) / workspace / endpoint
    download_and_extract(lambda zip_path: client.serve_bundle(workspace, endpoint, zip_path), target, "serve",
                         endpoint)


# -- logs ------------------------------------------------------------------------------------------------------
@serve.command(short_help="Show the log of an endpoint")
@_endpoint_options
@out_dir_option
@follow_option("the endpoint is killed (Ctrl-C stops following)")
def logs(endpoint, ind, out_dir, follow):
    """Print the log of an endpoint's server and save it to <out_dir>/<workspace>/logs/<endpoint>.log."""
    endpoint = _endpoint(endpoint, ind)
    client, workspace = workspace_session()
    show_logs(kind_checked(client.serve_logs, client, ("endpoint",)), workspace, endpoint, out_dir, follow,
              f"{endpoint}.log", f"Retrieving logs from {endpoint}", endpoint_outcome(client), interrupt_ends=True,
              empty=workload_never_ran(client, "serve"))


add_build_logs(serve, "serve", "serve_build_logs", "Show the log of an endpoint's image build",
               "Print the log of a build-serve job and save it to "
               "<out_dir>/<workspace>/logs/build-serve-<job_id>.log.", complete_job_ids=complete_serve_builds)


# -- kill ------------------------------------------------------------------------------------------------------
@serve.command(short_help="Kill an endpoint")
@_endpoint_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
def kill(endpoint, ind, yes):
    """Kill an endpoint: its server stops and its url stops answering."""
    endpoint = _endpoint(endpoint, ind)
    client, workspace = workspace_session()
    if not yes and not render.confirm(f"Are you sure about killing endpoint {endpoint}?"):
        raise KaosError(f"Kill of endpoint {endpoint} aborted", level="Info")
    pending = client.serve_kill(workspace, endpoint)
    if pending:
        render.warning(pending)
        return
    delete_caches(["serve"])
    render.info(f"Successfully killed endpoint {endpoint}")
