"""`kaos notebook list|deploy|logs|build-logs|kill`: the current workspace's notebooks (one per user)."""

import click

from kaos_cli import notebook_tokens, render
from kaos_cli.completion import complete_models
from kaos_cli.errors import KaosError
from kaos_cli.guards import warn_when_unhealthy, workspace_session
from kaos_cli.job_logs import add_build_logs, follow_option, kind_checked, out_dir_option, show_logs
from kaos_cli.log_outcomes import workload_never_ran
from kaos_cli.options import (check_resources, index_option, local_name, name_option, resource_options,
                              stripped)
from kaos_cli.output import emit, output_option, progress_wanted, workspace_pages
from kaos_cli.paging import more_hint, size_options, wanted
from kaos_cli.state import delete_caches, write_cache

NO_NOTEBOOKS = "There are currently no active notebooks - first run kaos notebook deploy"
BUILDING_COLUMNS = ("duration", "job_id", "started", "state")
RUNNING_COLUMNS = ("created_at", "name", "state", "url", "user")
DEFAULT_MEMORY = "512Mi"  # 1.x's default for a notebook


def _notebook(name, ind) -> str:
    """The notebook named by -n or by -i (the last `kaos notebook list`); it also names a local file."""
    return local_name("notebook", "name", name, ind, "notebook")


def _notebook_options(command):
    command = index_option(other="name", help="Index of the RUNNING table of `kaos notebook list`")(command)
    return name_option("-n", "--name", help="Notebook name, e.g. notebook-mnist-ann")(command)


@click.group(short_help="Deploy notebook for building ML models")
def notebook():
    """Deploy notebook for building ML models: one JupyterLab per workspace and user, behind the gateway."""


# -- list ------------------------------------------------------------------------------------------------------
@notebook.command("list", short_help="List the notebooks")
@size_options
@click.option("--show-token", is_flag=True,
              help="Show the token of your notebook, when its deploy from this directory saved it")
@output_option
def list_notebooks(limit, show_all, show_token):
    """List the image builds and the notebooks of the current workspace, newest first. With -o json|yaml:
    `GET /notebook/<ws>?limit=`'s answer."""
    limit = wanted(limit, show_all)
    client, workspace = workspace_session()

    listing, more, token = workspace_pages(client.notebook_list, workspace, ("building", "notebooks"), limit)
    building, notebooks = listing["building"], listing["notebooks"]
    write_cache("build-notebook", [job.job_id for job in building])
    write_cache("notebook", [item.name for item in notebooks])
    if emit({"response": {"notebooks": notebooks, "building": building}, "continue": token}):
        if more:
            render.info(more_hint("notebook", f"the newest {limit} of each list"), err=True)
        return
    tokens = {}
    if show_token:  # only a token saved here, of a notebook of this user, that is its current one
        tokens = {item.name: notebook_tokens.token_of(client.url, item.name, item.extra.get("token_fingerprint"))
                  for item in notebooks if item.user == client.user}
    token_column = {"RUNNING": ("token", lambda item: tokens.get(item.name) or "-")} if show_token else None
    sections = (("BUILDING", building, BUILDING_COLUMNS), ("RUNNING", notebooks, RUNNING_COLUMNS))
    if not render.print_listing(sections, NO_NOTEBOOKS, token_column):
        return
    if show_token and not any(tokens.values()):
        render.warning("No token of a notebook of yours is saved in this directory: kaos notebook deploy shows a "
                       "notebook's token once, and saves it where it ran")
    if more:
        render.info(more_hint("notebook", f"the newest {limit} of each table"), err=True)


# -- deploy ----------------------------------------------------------------------------------------------------
@notebook.command(short_help="Deploy your notebook")
@click.option("-s", "--source_bundle", type=click.Path(exists=True, file_okay=False),
              help="Directory of the notebook source bundle (Dockerfile and model/ with requirements.txt that "
                   "installs jupyterlab); default: the notebook template")
@click.option("-d", "--data_bundle", type=click.Path(exists=True, file_okay=False),
              help="Directory of a data bundle to upload for the workspace's notebooks")
@click.option("--data", "data_refs", multiple=True, metavar="BUNDLE", callback=stripped,
              help="A data bundle of the workspace to attach read-only, e.g. features:9fd9d (repeatable)")
@click.option("--model", "model_id", callback=stripped,
              help="A model id: its files and the data its training read, read-only",
              shell_complete=complete_models)
@resource_options("of the notebook", memory_default=DEFAULT_MEMORY)
@output_option
def deploy(source_bundle, data_bundle, data_refs, model_id, cpu, memory, gpu):
    """Deploy your notebook of the current workspace (one per workspace and user): JupyterLab at
    <gateway>/notebook-<workspace>-<user>/lab, opened with the token this command shows once. Its work directory
    survives `kaos notebook kill` and idle culling, for your next deploy."""
    from kaos_cli.bundles import check_bundle_directory
    from kaos_cli.folder_upload import upload_folder

    if model_id is not None and not model_id.strip():
        raise KaosError("--model must not be empty")
    check_resources(cpu, memory, gpu)
    for directory in (source_bundle, data_bundle):
        if directory:
            check_bundle_directory(directory)
    client, workspace = workspace_session()
    warn_when_unhealthy(client)
    if data_bundle:
        render.info(f"Attaching data bundle: {data_bundle}")
        upload_folder(data_bundle, "data.zip", "data bundle",
                      lambda zip_path, digest: client.upload_notebook_data(workspace, zip_path, digest=digest),
                      progress=progress_wanted())
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu}
    if source_bundle:
        render.info(f"Submitting source bundle: {source_bundle}")
        answer = upload_folder(source_bundle, "source.zip", "source bundle", lambda zip_path, digest:
                               client.notebook_deploy(workspace, zip_path, data_refs, model_id, digest=digest,
                                                      **resources), progress=progress_wanted())
    else:
        answer = client.notebook_deploy(workspace, None, data_refs, model_id, **resources)
    name, token, url = (answer.extra.get(key) for key in ("notebook", "token", "url"))
    if name and token:
        notebook_tokens.remember(client.url, name, token)
    if emit(answer):
        return
    render.success(f"Setting source bundle: /{answer.glob_name}")
    if answer.job_id:
        render.success(f"Building image: job {answer.job_id}")
    render.echo()
    render.success("Notebook deployed - check status with kaos notebook list")
    if answer.warning:
        render.warning(answer.warning)
    if token:
        render.info(f"Its token, shown this once (kaos notebook list --show-token shows it again here): {token}")
    if url:
        render.info(f"Open it once it is PIPELINE_RUNNING: http://{url}?token={token}")


# -- logs ------------------------------------------------------------------------------------------------------
@notebook.command(short_help="Show the log of a notebook")
@_notebook_options
@out_dir_option
@follow_option("the notebook ends (killed, culled when idle) or Ctrl-C")
def logs(name, ind, out_dir, follow):
    """Print the log of a notebook's Jupyter server and save it to <out_dir>/<workspace>/logs/<name>.log."""
    name = _notebook(name, ind)
    client, workspace = workspace_session()
    show_logs(kind_checked(client.notebook_logs, client, ("notebook",)), workspace, name, out_dir, follow,
              f"{name}.log", f"Retrieving logs from {name}", interrupt_ends=True,
              empty=workload_never_ran(client, "notebook"))


add_build_logs(notebook, "notebook", "notebook_build_logs", "Show the log of a notebook's image build",
               "Print the log of a build-notebook job and save it to "
               "<out_dir>/<workspace>/logs/build-notebook-<job>.log.")


# -- kill ------------------------------------------------------------------------------------------------------
@notebook.command(short_help="Kill a notebook")
@_notebook_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
def kill(name, ind, yes):
    """Kill a notebook: its server stops and its url stops answering; its work directory is kept for the next
    deploy of the same user in this workspace."""
    name = _notebook(name, ind)
    client, workspace = workspace_session()
    if not yes and not render.confirm(f"Are you sure about killing notebook {name}?"):
        raise KaosError(f"Kill of notebook {name} aborted", level="Info")
    pending = client.notebook_kill(workspace, name)
    if pending:
        render.warning(pending)
        return
    notebook_tokens.forget(client.url, name)
    delete_caches(["notebook", "build-notebook"])
    render.info(f"Successfully killed notebook {name}")
