"""`kaos destroy`: stop and remove a backend built by `kaos build deploy` (only that one)."""
import click

from kaos_cli import render
from kaos_cli.commands.build import CLOUDS, ENVS, LOCAL, SUPPORTED, unsupported
from kaos_cli.errors import KaosError
from kaos_cli.state import Config, state_dir


@click.command(short_help="Destroys the kaos backend")
@click.option("-c", "--cloud", type=click.Choice(CLOUDS), required=True, help="Which build to destroy")
@click.option("-e", "--env", type=click.Choice(ENVS), help="Environment (cloud builds only)")
@click.option("-v", "--verbose", is_flag=True, help="Print the steps")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
def destroy(cloud, env, verbose, yes):
    """Destroys the kaos backend built in CLOUD (its process, data and context; other contexts stay)."""
    if cloud not in SUPPORTED:
        raise unsupported(cloud)
    import shutil

    from kaos_cli import local_platform

    config = Config.load()
    fields = config.context(LOCAL)
    if fields is None:
        raise KaosError(f"kaos backend in {LOCAL} has not been deployed!", level="Warning")
    if env:
        render.warning(f"ENV (-e/--env) is not applicable for {cloud} deployment")
    if not yes:
        render.confirm(f"Are you sure about destroying kaos backend in {LOCAL}?", abort=True)

    try:
        pid = int(fields.get("pid") or 0) or None
    except ValueError:
        pid = None
    stopped = local_platform.stop(pid)
    if verbose:
        render.info(f"Backend process {pid} stopped" if stopped else f"Backend process {pid} was not running")
    home = local_platform.local_dir(state_dir())
    left = local_platform.stop_workloads(fields.get("data_dir") or home)  # trainings and endpoints go too
    if left:
        render.warning(f"{left} job processes could not be stopped")
    shutil.rmtree(home, ignore_errors=True)
    if verbose:
        render.info(f"Removed {home}")

    config = Config.load()
    config.remove_context(LOCAL)  # clears [active] only when LOCAL was the active context
    config.save()
    render.info("Successfully destroyed kaos environment")
