"""`kaos build deploy|list|set|active`: stand up a backend and choose the active context."""
from typing import Callable, Optional

import click

from kaos_cli import render
from kaos_cli.completion import complete_contexts
from kaos_cli.errors import KaosError
from kaos_cli.options import index_option, name_option, require_one
from kaos_cli.output import emit, output_option
from kaos_cli.state import Config, resolve_index, write_cache

CLOUDS = ["LOCAL", "DOCKER", "KUBERNETES", "MINIKUBE", "AWS", "GCP"]
SUPPORTED = {"LOCAL", "DOCKER", "KUBERNETES", "MINIKUBE"}
KUBE = {"KUBERNETES", "MINIKUBE"}
ENVS = ["prod", "stage", "dev"]
LOCAL = "LOCAL"
DOCKER = "DOCKER"
LOCAL_KINDS = {"LOCAL", "DOCKER", "MINIKUBE"}
NO_BUILDS = "No active builds found. Please run kaos build deploy to deploy an environment"


def unsupported(cloud: str) -> KaosError:
    return KaosError(f"Building kaos in {cloud} is not supported by this version yet")


@click.group(short_help="Infrastructure deployments and its sub-commands: deploy, list, set and active")
def build():
    """Infrastructure deployments and its sub-commands: deploy, list, set and active."""


@build.command(short_help="Deploy a kaos backend")
@click.option("-c", "--cloud", type=click.Choice(CLOUDS), required=True, help="Where to build the backend")
@click.option("-e", "--env", type=click.Choice(ENVS), help="Environment (cloud builds only)")
@click.option("-f", "--force", is_flag=True, help="Rebuild even if the backend is already built")
@click.option("-v", "--verbose", is_flag=True, help="Print the steps of the build")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
@click.option("-l", "--local_backend", is_flag=True, help="Keep deployment state locally (cloud builds only)")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port of the LOCAL or DOCKER backend on 127.0.0.1")
@click.option("--base-image", metavar="IMAGE",
              help="DOCKER: the base image of the builds, on the engine [default: KAOS_BASE_IMAGE, else "
                   "kaos-base-python:bookworm]")
@click.option("--context", "kube_context", metavar="NAME",
              help="KUBERNETES/MINIKUBE: the kube context [default: the kube config's current one; MINIKUBE: "
                   "minikube]")
@click.option("--namespace", metavar="NS", help="KUBERNETES/MINIKUBE: the namespace (made when missing) "
                                                "[default: kaos]")
@click.option("--image", metavar="REF",
              help="KUBERNETES/MINIKUBE: the backend's image [default: KAOS_BACKEND_IMAGE, else "
                   "kaos-backend:<version>, built from infrastructure/kubernetes/backend.Dockerfile]")
@click.option("--registry", metavar="REF", envvar="KAOS_REGISTRY",
              help="KUBERNETES: where the workloads' images are pushed (host[:port]/path), that the nodes pull from; "
                   "the engine needs credentials for it [default: KAOS_REGISTRY, else none: images stay on the "
                   "backend's engine, which suits MINIKUBE only]")
@click.option("--url", metavar="URL", help="KUBERNETES/MINIKUBE: the backend's URL for the CLI, e.g. "
                                           "http://host/api/ [default: the Ingress's address, else the Service's]")
@click.option("--postgres", is_flag=True, help="KUBERNETES/MINIKUBE: PostgreSQL in the namespace instead of SQLite")
@click.option("--timeout", type=click.FloatRange(1), default=300, show_default=True, metavar="SECONDS",
              help="KUBERNETES/MINIKUBE: how long the backend may take to become available")
def deploy(cloud, env, force, verbose, yes, local_backend, port, base_image, kube_context, namespace, image, registry,
           url, postgres, timeout):
    """Deploy a kaos backend: LOCAL (a backend process on this machine, workloads as processes), DOCKER (the
    same backend process, workloads as containers on the Docker engine), KUBERNETES (the backend in a cluster,
    workloads as pods: the manifests of infrastructure/kubernetes applied to a kube context) or MINIKUBE (the
    same on minikube, whose Docker engine builds the images)."""
    if cloud not in SUPPORTED:
        raise unsupported(cloud)
    if cloud in KUBE:
        from kaos_cli import kube_platform

        if url and not url.startswith(("http://", "https://")):
            raise KaosError(f"--url must be an http:// or https:// URL, not {url!r}")
        _say_unused(cloud, env, local_backend, NOT_KUBE)
        kube_platform.deploy(cloud, kube_context, namespace, image, url, postgres, timeout, force, yes, verbose,
                             registry=registry)
        return
    from kaos_cli import docker_platform, local_platform

    if local_platform.missing_backend_modules():
        raise KaosError(f"The {cloud} platform needs the backend: pip install 'kaos[backend]'")
    if cloud == DOCKER and docker_platform.sdk_missing():
        raise KaosError("The DOCKER platform needs the docker SDK: pip install 'kaos[docker]'")
    _say_unused(cloud, env, local_backend, dict(KUBE_ONLY, **(NOT_DOCKER if cloud == DOCKER else NOT_LOCAL)))
    if cloud == LOCAL:
        deploy_platform(LOCAL, port=port, force=force, yes=yes, verbose=verbose,
                        environment={"KAOS_EXECUTOR": "local"})
        return

    def engine_ready():
        problem = docker_platform.engine_problem(base_image)
        if problem:
            raise KaosError(f"Deployment Unsuccessful while creating kaos {DOCKER} environment: {problem}")
    deploy_platform(DOCKER, port=port, force=force, yes=yes, verbose=verbose,
                    environment=docker_platform.backend_environment(base_image), check=engine_ready)


# option's parameter name -> how the "has no effect" line names it, for the clouds that do not use it
NOT_LOCAL = {"base_image": "base image (--base-image)"}
NOT_DOCKER = {}
NOT_KUBE = {"port": "port (--port)", "base_image": "base image (--base-image)"}
KUBE_ONLY = {"kube_context": "kube context (--context)", "namespace": "namespace (--namespace)",
             "image": "image (--image)", "registry": "registry (--registry)", "url": "URL (--url)",
             "postgres": "PostgreSQL (--postgres)",
             "timeout": "timeout (--timeout)"}


def _say_unused(cloud: str, env: Optional[str], local_backend: bool, options: dict) -> None:
    """The cloud-only options (-e, -l) and each option of `options` given on the command line: one line each
    saying that `cloud` does not use it."""
    from click.core import ParameterSource

    if env:
        render.warning(f"ENV (-e/--env) is not applicable for {cloud} deployment")
    if local_backend:
        render.info(f"local backend (-l/--local_backend) has no effect for {cloud}")
    context = click.get_current_context()
    for name, label in options.items():
        if context.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            render.info(f"{label} has no effect for {cloud}")


def deploy_platform(context: str, port: int, force: bool, yes: bool, verbose: bool, environment: dict,
                    check: Optional[Callable[[], None]] = None) -> None:
    """Start the backend daemon of `context` (LOCAL, DOCKER: its data and log in `.kaos/<context>/`) with
    `environment` added to this process's (KAOS_EXECUTOR says where its workloads run), wait for it, and make it
    the active context. `check` (raising KaosError) runs once the user has confirmed, before anything changes."""
    import secrets

    from kaos_cli import local_platform
    from kaos_cli.state import default_user, ensure_state_dir, state_dir

    config = Config.load()
    existing = config.context(context)
    home = local_platform.local_dir(state_dir(), context)
    strays = local_platform.unrecorded_backends(home / "data", _int((existing or {}).get("pid")))
    if existing and not force:
        _refuse_if_running(context, existing)
    if strays and not force:
        raise KaosError(f"A kaos backend of this project runs that .kaos/config does not record (pid "
                        f"{', '.join(map(str, strays))}, data in {local_platform.display_path(home / 'data')}: an "
                        f"interrupted deploy, or a lost config) - kaos build deploy -c {context} -f replaces it, "
                        f"kaos destroy -c {context} stops it", level="Warning")
    if force and (existing or strays):
        render.warning("Performing force build of the backend")
    if not yes:
        render.confirm(f"Are you sure about building kaos backend in {context}?", abort=True)
    if check is not None:
        check()
    for pid in ([_int(existing.get("pid"))] if existing else []) + strays:
        local_platform.stop(pid)
    if not local_platform.port_is_free(port):
        raise KaosError(f"Network port {port} is used but is needed for building kaos backend in {context} - "
                        f"give it a free port with kaos build deploy -c {context} --port <port>", level="Warning")

    home = local_platform.local_dir(ensure_state_dir(), context)
    data_dir, log_path = home / "data", home / "backend.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}/api/"
    argv = local_platform.backend_argv("127.0.0.1", port, data_dir)
    if verbose:
        render.info(f"Starting: {' '.join(argv)}")
        render.info(f"Backend log: {log_path}")
    offset = local_platform.log_size(log_path)  # earlier runs' lines are not this start's cause
    active = config.active
    # Recorded before anything can interrupt: a Ctrl-C (or SIGTERM, SIGHUP, even SIGKILL) from here on leaves a
    # backend that .kaos/config names (pid, token, port), which `kaos destroy` and `kaos build deploy` find.
    process = None
    try:
        with local_platform.signals_held():
            process = local_platform.start_daemon(argv, log_path, env={"KAOS_TOKEN": token, **environment})
            config = Config.load()  # re-read: keep anything written meanwhile
            config.set_context(context, url=url, token=token, kind="local",
                               executor=environment.get("KAOS_EXECUTOR"), pid=process.pid, port=port,
                               data_dir=data_dir.resolve(), log=log_path.resolve())
            config.set_active(context)
            config.save()
        problem = local_platform.wait_until_up(process, url, token, local_platform.START_TIMEOUT)
    except KeyboardInterrupt:
        if process is None:
            raise
        raise KaosError(f"Interrupted while the backend was starting: it goes on starting (pid {process.pid}, "
                        f"{url}) and .kaos/config records it - kaos destroy -c {context} stops it",
                        level="Aborting") from None
    if problem is not None:
        exited = process.poll() is not None
        local_platform.stop(process.pid, marker="")
        _forget(context, existing, active)
        cause = (local_platform.failure_cause(log_path, offset) if exited else None) or problem
        raise KaosError(f"Deployment Unsuccessful while creating kaos {context} environment: {cause} "
                        f"(see {local_platform.display_path(log_path)})")

    config = Config.load()
    if not config.has_user:
        config.set_user(default_user())
        config.save()
    render.info(f"Endpoint successfully set to {url}")
    render.info("Successfully built kaos environment")
    engine = local_platform.engine_warning(url, token)
    if engine is not None:
        render.warning(engine)


def _forget(context: str, previous: Optional[dict], active: Optional[str]) -> None:
    """After a start that failed (its backend stopped): the context and the active one as they were before."""
    config = Config.load()
    if previous:
        config.set_context(context, **previous)
    else:
        config.remove_context(context)
    config.set_active(active)
    config.save()


def _refuse_if_running(context: str, existing: dict) -> None:
    """A backend that still runs is not built again without -f: "already built" when it is healthy, which part
    is down when it answers that one is, and that it does not answer (yet) when it does not: one still starting
    (a deploy interrupted a moment ago) was stopped and replaced as if -f had been given."""
    from kaos_cli import local_platform
    from kaos_cli.errors import PlatformUnhealthy
    from kaos_cli.guards import unhealthy_advice

    if not local_platform.pid_alive(_int(existing.get("pid"))):
        return
    problem = local_platform.health_problem(existing.get("url"), existing.get("token"),
                                            advice=unhealthy_advice(context, existing) + " to rebuild it")
    if problem is None:
        raise KaosError("kaos backend is already built.", level="Aborting")
    if isinstance(problem, PlatformUnhealthy):
        raise PlatformUnhealthy(f"kaos backend is already built, but unhealthy: {problem.message}", part=problem.part)
    pid = _int(existing.get("pid"))
    if local_platform.is_ours(pid):
        raise KaosError(f"kaos backend in {context} runs (pid {pid}) but does not answer: {problem.message} - wait "
                        f"while it starts, or kaos build deploy -c {context} -f replaces it", level="Warning")


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _provider_and_env(name: str, fields: dict):
    if "_" in name:
        provider, env = name.split("_", 1)
        return provider, env
    kind = (fields or {}).get("kind")
    env = "local" if kind == "local" or name in LOCAL_KINDS else "remote"
    return name, env


@build.command("list", short_help="List the deployed backends (contexts)")
@output_option
def list_builds():
    """List the contexts (deployed or connected backends). With -o json|yaml: a list of `{"context",
    "provider", "env", "url", "active"}` from .kaos/config (never the token)."""
    config = Config.load()
    contexts = config.contexts
    if not contexts:
        if not emit([]):
            render.warning(NO_BUILDS)
        return
    rows, described = [], []
    for index, name in enumerate(contexts):
        fields = config.context(name)
        provider, env = _provider_and_env(name, fields)
        rows.append([index, name, provider, env])
        described.append({"context": name, "provider": provider, "env": env, "url": (fields or {}).get("url"),
                          "active": name == config.active})
    write_cache("backend", contexts)
    if emit(described):
        return
    render.print_table(["index", "context", "provider", "env"], rows)


@build.command("set", short_help="Set the active context")
@name_option("-c", "--context", other="ind", help="Context name", shell_complete=complete_contexts)
@index_option(other="context", help="Context index from `kaos build list`")
def set_context(context, ind):
    """Set the active context by name or by index."""
    require_one("context", context, "ind", ind)
    config = Config.load()
    contexts = config.contexts
    if not contexts:
        raise KaosError(NO_BUILDS, level="Warning")
    if ind is not None:
        try:
            context = resolve_index("backend", ind)
        except KaosError as problem:
            if "not available" in problem.message:
                raise
            raise KaosError(f"Index {ind} invalid. It is not one of the existing deployments in kaos") from None
    if context not in contexts or config.context(context) is None:
        raise KaosError(f"Context {context} invalid. It is not one of the existing deployments in kaos")
    config.set_active(context)
    config.save()
    render.info(f"Successfully set to context - {context}")


@build.command(short_help="Show the active context")
def active():
    """Show the active context."""
    config = Config.load()
    name = config.active
    if name and name in config.contexts:
        render.info(f"Active context is - {name}")
    elif config.contexts:
        render.warning("No active context set. Set an active context using `kaos build set`")
    else:
        render.warning(NO_BUILDS)
