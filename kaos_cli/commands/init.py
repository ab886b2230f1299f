"""`kaos init`: connect this directory to a running backend (verified before anything is written)."""
import click

from kaos_cli import render
from kaos_cli.state import Config, MalformedConfig, default_user, ensure_state_dir, state_dir

REMOTE = "remote"
NOT_AN_API = (404, 405)  # what a server answers GET <endpoint>/health with when the endpoint is not kaos's API


def not_an_api(endpoint: str) -> str:
    """The endpoint answered, but not as a kaos backend's API: say what the endpoint is, with this host's URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    here = f"{parts.scheme}://{parts.netloc}/api/"
    example = here if parts.netloc and parts.path.rstrip("/") != "/api" else "http://<host>:<port>/api/"
    return f"No kaos backend API at {endpoint} - the endpoint is the backend's API URL, e.g. {example}"


@click.command(short_help="Initialize the kaos environment")
@click.option("-e", "--endpoint", required=True, help="Backend endpoint, e.g. http://host:8080/api/")
@click.option("-t", "--token", prompt=True, hide_input=True, help="Backend token (prompted when omitted)")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing initialization without asking")
def init(endpoint, token, force):
    """Initialize the kaos environment: check ENDPOINT and TOKEN, then make them the active context."""
    from kaos_cli.client import KaosClient
    from kaos_cli.errors import KaosError, PlatformUnhealthy, RequestError, UnexpectedAnswer

    try:
        config = Config.load()
    except MalformedConfig:
        if not force:
            raise
        config = Config(read=False)  # what the malformed config's message advises: written anew
    if state_dir().exists() and config.exists:
        if force:
            render.warning("Force initialization of kaos")
        else:
            render.confirm("kaos is already initialized in this directory. Do you want to overwrite?", abort=True)
    user = config.user if config.has_user else default_user()
    try:
        KaosClient(endpoint, token, user).health()  # unreachable / invalid / 401 → one line, exit 1
    except PlatformUnhealthy as error:  # it answered, the token holds: a part that is down is said, not refused
        render.warning(str(error))
    except (RequestError, UnexpectedAnswer) as error:
        if isinstance(error, RequestError) and error.status not in NOT_AN_API:
            raise
        raise KaosError(not_an_api(endpoint)) from None  # a server, but no kaos API at this path

    ensure_state_dir()
    if not config.has_user:
        config.set_user(user)
    config.set_context(REMOTE, url=endpoint, token=token, kind="remote")
    config.set_active(REMOTE)
    config.save()
    render.info(f"kaos successfully connected to {endpoint}")
