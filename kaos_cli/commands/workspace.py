"""`kaos workspace list|set|create|current|info|kill`."""
import click

from kaos_cli import render
from kaos_cli.completion import complete_workspaces
from kaos_cli.errors import KaosError, RequestError
from kaos_cli.guards import make_client, require_context, require_init, require_workspace
from kaos_cli.options import index_option, name_option, require_one, stripped
from kaos_cli.output import emit, list_pages, output_option
from kaos_cli.paging import counted, more_hint, size_options, wanted
from kaos_cli.state import WORKSPACE_CACHES, delete_caches, resolve_index, write_cache


def _session():
    """The config and a client for the active context (init and context checks included)."""
    config = require_init()
    require_context(config)
    return config, make_client(config)


@click.group(short_help="Organize and separate ML environments")
def workspace():
    """Organize and separate ML environments."""


@workspace.command("list", short_help="List the workspaces")
@size_options
@output_option
def list_workspaces(limit, show_all):
    """List the workspaces of the active backend, by name: the first 50 unless --limit or --all say otherwise.
    With -o json|yaml: `GET /workspace`'s answer, `{"names": [...], "continue": <token of the rest or null>}`."""
    limit = wanted(limit, show_all)
    _, client = _session()

    def fetch(size, token):
        names = client.list_workspaces(limit=size, continue_token=token)
        return {"names": names}, names.continue_token

    listing, more, token = list_pages(fetch, ("names",), limit)
    names = listing["names"]
    write_cache("workspace", names)
    if emit({"names": names, "continue": token}):
        return
    if not names:
        render.warning("There are currently no active workspaces - first run kaos workspace create")
        return
    render.print_table(["ind", "name"], [[index, name] for index, name in enumerate(names)])
    if more:
        render.info(more_hint("workspace", f"the first {counted(limit, 'workspace')}"), err=True)


@workspace.command("set", short_help="Set the current workspace")
@name_option("-n", "--name", help="Workspace name", shell_complete=complete_workspaces)
@index_option(help="Workspace index from `kaos workspace list`")
def set_workspace(name, ind):
    """Make a workspace the current one, by name or by index."""
    require_one("name", name, "ind", ind)
    config, client = _session()
    if ind is not None:
        name = resolve_index("workspace", ind)
    names = client.list_workspaces()
    if name not in names:
        from kaos_cli.fuzzy import suggestions

        close = suggestions(name, names)
        if close:
            raise KaosError(f"Workspace {name} does not exist. Did you mean one of these?\n"
                            + render.bullets(close), level="Warning")
        raise KaosError(f"Workspace {name} does not exist. Check the existing workspaces with "
                        "`kaos workspace list`", level="Warning")
    _switch_to(config, name)
    render.info(f"Successfully set {name} workspace")


def _switch_to(config, name: str) -> None:
    """Make `name` current; the index caches of another workspace would resolve to its jobs: drop them."""
    if config.workspace != name:
        delete_caches(kinds=[kind for kind in WORKSPACE_CACHES if kind != "workspace"])
    config.set_workspace(name)
    config.save()


@workspace.command(short_help="Create a workspace and make it current")
@click.option("-n", "--name", required=True, callback=stripped,
              help="Workspace name: lowercase letters, digits and '-'")
@output_option
def create(name):
    """Create a workspace and make it the current one. With -o json|yaml: `POST /workspace/<name>`'s answer."""
    from kaos_model.ids import workspace_name_problem

    problem = workspace_name_problem(name)
    if problem:
        raise KaosError(problem)
    config, client = _session()
    try:
        created = client.create_workspace(name)
    except RequestError as exc:
        if exc.status == 409:
            raise KaosError(f"Workspace {name} already exists. Please use `kaos workspace set` to select a "
                            "workspace", level="Warning") from None
        raise
    _switch_to(config, name)
    render.info(f"Successfully set {name} workspace")
    emit(created)


@workspace.command(short_help="Show the current workspace")
def current():
    """Show the current workspace."""
    config, client = _session()
    name = require_workspace(config, client)
    render.info(f"Workspace {name} is currently set")


@workspace.command(short_help="Describe the current workspace")
@output_option
def info():
    """List the pipelines and repos of the current workspace. With -o json|yaml: `GET /workspace/<name>`'s
    answer, `{"response": WorkspaceInfo}`."""
    config, client = _session()
    name = require_workspace(config, client)
    details = client.workspace_info(name)
    if emit({"response": details}):
        return
    render.echo(f"--- Workspace {details.name or name} ---")
    render.echo("Pipelines:")
    for pipeline in details.pipelines:
        render.echo(f"- {pipeline}")
    render.echo("Repos:")
    for repo in details.repos:
        render.echo(f"- {repo}")


@workspace.command(short_help="Kill a workspace and all its resources")
@click.option("-n", "--name", callback=stripped, help="Workspace to kill (default: the current workspace)",
              shell_complete=complete_workspaces)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
def kill(name, yes):
    """Kill a workspace (the current one unless -n is given) and all its resources."""
    config, client = _session()
    if name is None:
        name = require_workspace(config, client)
    if not yes and not render.confirm(f"Are you sure about killing all {name} resources?"):
        raise KaosError(f"Workspace {name} kill operation aborted. Re-initiate using `kaos workspace kill` if "
                        "required", level="Info")
    client.kill_workspace(name)
    if config.workspace == name:
        config.set_workspace(None)
        config.save()
    delete_caches()
    render.info(f"Successfully killed all {name} resources")
