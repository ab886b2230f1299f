"""`kaos destroy`: stop and remove a backend built by `kaos build deploy` (only that one)."""
import click

from kaos_cli import render
from kaos_cli.commands.build import CLOUDS, DOCKER, ENVS, KUBE, SUPPORTED, _int, unsupported
from kaos_cli.errors import KaosError
from kaos_cli.state import Config, state_dir


@click.command(short_help="Destroys the kaos backend")
@click.option("-c", "--cloud", type=click.Choice(CLOUDS), required=True, help="Which build to destroy")
@click.option("-e", "--env", type=click.Choice(ENVS), help="Environment (cloud builds only)")
@click.option("-v", "--verbose", is_flag=True, help="Print the steps")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
def destroy(cloud, env, verbose, yes):
    """Destroys the kaos backend built in CLOUD (its process, data and context; other contexts stay). DOCKER: also
    the containers, images, networks and volumes kaos made for it on the Docker engine, and nothing else there.
    KUBERNETES, MINIKUBE: the objects `kaos build deploy` made in the namespace (the backend, its data volume) and
    every workload labelled app.kubernetes.io/managed-by=kaos there; nothing else, not the namespace."""
    if cloud not in SUPPORTED:
        raise unsupported(cloud)
    if cloud in KUBE:
        _destroy_kube(cloud, env, verbose, yes)
        return
    from kaos_cli import docker_platform, local_platform

    config = Config.load()
    fields = config.context(cloud)
    home = local_platform.local_dir(state_dir(), cloud)
    leftovers = docker_platform.read_leftovers(home) if cloud == DOCKER else None
    recorded = _int((fields or {}).get("pid"))
    strays = local_platform.unrecorded_backends(home / "data", recorded)  # an interrupted deploy, a lost config
    if fields is None and leftovers is None and not strays:
        raise KaosError(f"kaos backend in {cloud} has not been deployed!", level="Warning")
    if env:
        render.warning(f"ENV (-e/--env) is not applicable for {cloud} deployment")
    if not yes:
        render.confirm(f"Are you sure about destroying kaos backend in {cloud}?", abort=True)

    data_dir = (fields or {}).get("data_dir") or leftovers or home / "data"
    for pid in ([recorded] if fields is not None else []) + strays:
        stopped = local_platform.stop(pid)
        if verbose:
            render.info(f"Backend process {pid} stopped" if stopped else f"Backend process {pid} was not running")
    left = local_platform.stop_workloads(data_dir)  # trainings, endpoints, builds, and DOCKER's watchers go too
    if left:
        render.warning(f"{left} job processes could not be stopped")
    removal = docker_platform.remove_engine_objects(data_dir) if cloud == DOCKER else None
    if verbose and removal is not None and removal.info:
        render.info(f"Docker engine: {removal.info}")
    _remove_telling(home)
    if removal is not None and removal.problem:
        docker_platform.write_leftovers(home, data_dir)  # what the next `kaos destroy -c DOCKER` finishes
    elif verbose:
        render.info(f"Removed {home}")

    if fields is not None:
        config = Config.load()
        config.remove_context(cloud)  # clears [active] only when it was the active context
        config.save()
    if removal is not None and removal.problem:
        finish = "once the engine runs" if removal.engine_down else "to remove what is left"
        raise KaosError(f"Destroy operation unsuccessful for kaos {cloud} environment: the backend is stopped and "
                        f"its context removed, but {removal.problem} - run `kaos destroy -c {cloud}` again {finish}")
    render.info("Successfully destroyed kaos environment")


def _destroy_kube(cloud: str, env, verbose: bool, yes: bool) -> None:
    from kaos_cli import kube_destroy, kube_platform

    fields = Config.load().context(cloud)
    if fields is None or fields.get("kind") != kube_platform.KIND:
        raise KaosError(f"kaos backend in {cloud} has not been deployed!", level="Warning")
    if env:
        render.warning(f"ENV (-e/--env) is not applicable for {cloud} deployment")
    if not yes:
        render.confirm(f"Are you sure about destroying kaos backend in {cloud}?", abort=True)
    kube_destroy.destroy(cloud, fields, verbose)
    render.info("Successfully destroyed kaos environment")


TELL_AFTER_SECONDS = 2.0  # a removal still going after this is said (a platform's virtualenvs take a while)


def _remove_telling(home) -> None:
    """Remove the platform's directory `home` (its data: virtualenvs, bundles, models, logs), saying so on stderr
    when it takes longer than TELL_AFTER_SECONDS: the backend is stopped by then, and hundreds of MB of virtualenvs
    can take half a minute to delete."""
    import shutil
    import threading

    removal = threading.Thread(target=shutil.rmtree, args=(home,), kwargs={"ignore_errors": True}, daemon=True)
    removal.start()
    removal.join(TELL_AFTER_SECONDS)
    if removal.is_alive():
        render.info(f"The backend is stopped; removing its data ({home}: virtualenvs, bundles, models, logs)...",
                    err=True)
        removal.join()
