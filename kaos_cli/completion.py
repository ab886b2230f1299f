"""Values for shell completion (`kaos completion SHELL`): the names the backend knows, fetched within a bound.

Each `complete_*` function is a click `shell_complete=` callback `(ctx, param, incomplete) -> [CompletionItem]`:
the candidates that start with `incomplete`, each with a short help (zsh and fish show it). They read the backend
of the active context of `./.kaos` (the directory the shell is in) and, for jobs, models and endpoints, its
current workspace. Completion must never hang nor print anything of its own: the requests of one completion get
`TIMEOUT` seconds in all (what arrived by then is used), and any failure (not initialised, no workspace, backend
down or slow, an unexpected answer) gives no candidates, silently.

Every read of a `KaosClient` answer (its `kaos_model.wire` objects) is in the `_fetch_*` functions below.
"""
import threading
from typing import Any, Callable, Iterable, List, Optional, Tuple

from click.shell_completion import CompletionItem

TIMEOUT = 2.0  # seconds for every request of one completion, connect and read included
LIST_LIMIT = 1000  # the newest jobs/endpoints of each list asked for (the API's largest page)
MODEL_JOBS = 20  # the newest training jobs whose models are offered
UNFINISHED = frozenset({"JOB_STARTING", "JOB_RUNNING", "JOB_MERGING"})
Candidate = Tuple[str, str]  # (value, help)


# -- the session and the bound ---------------------------------------------------------------------------------
def _session() -> Tuple[Any, Optional[str]]:
    """A `KaosClient` for the active context (short timeouts, no progress bars) and the current workspace
    (None when unset); raises when the CLI is not initialised against a backend."""
    from kaos_cli.client import KaosClient
    from kaos_cli.state import Config

    config = Config()
    if not config.exists:
        raise LookupError("not initialised")
    fields = config.context(config.active)
    if not fields or not fields.get("url"):
        raise LookupError("no active context")
    client = KaosClient(fields["url"], fields.get("token"), config.user, timeout=TIMEOUT, progress=False)
    return client, config.workspace


def _within(fetch: Callable[[Any, Optional[str], List[Candidate]], None], timeout: float = TIMEOUT) -> List[Candidate]:
    """Run `fetch(client, workspace, found)` in a daemon thread for at most `timeout` seconds; the candidates it
    appended to `found` by then (a failure keeps what came before it). The thread is left behind when it overruns
    (a connect to an unreachable host): the completion process exits right after printing."""
    found: List[Candidate] = []

    def run() -> None:
        try:
            client, workspace = _session()
            fetch(client, workspace, found)
        except BaseException:  # noqa: BLE001 - completion stays silent whatever happens
            pass

    worker = threading.Thread(target=run, name="kaos-completion", daemon=True)
    worker.start()
    worker.join(timeout)
    return list(found)


def _items(candidates: Iterable[Candidate], incomplete: str) -> List[CompletionItem]:
    """The candidates starting with `incomplete`, first occurrence of each value, in the backend's order."""
    seen = set()
    items = []
    for value, help_text in candidates:
        if isinstance(value, str) and value and value.startswith(incomplete or "") and value not in seen:
            seen.add(value)
            items.append(CompletionItem(value, help=help_text or None))
    return items


# -- reads of the client's answers (`kaos_model.wire` objects; NamesPage, a list, for the workspaces) -----------
def _fetch_workspaces(client, workspace, found: List[Candidate]) -> None:
    found.extend((name, "current workspace" if name == workspace else "") for name in client.list_workspaces())


def _fetch_jobs(kinds: Tuple[str, ...], states: Optional[frozenset] = None) \
        -> Callable[[Any, Optional[str], List[Candidate]], None]:
    """The jobs of the current workspace's train lists `kinds` (`training`, `building`, `ingesting`), only
    those in `states` when given."""
    def fetch(client, workspace, found: List[Candidate]) -> None:
        if not workspace:
            return
        listing = client.train_list(workspace, limit=LIST_LIMIT)
        for kind in kinds:
            for job in getattr(listing, kind):
                if states is None or job.state in states:
                    found.append((job.job_id, f"{kind} {job.state}"))
    return fetch


def _fetch_serve_builds(client, workspace, found: List[Candidate]) -> None:
    if not workspace:
        return
    for job in client.serve_list(workspace, limit=LIST_LIMIT).building:
        found.append((job.job_id, f"building {job.state}"))


def _fetch_endpoints(client, workspace, found: List[Candidate]) -> None:
    if not workspace:
        return
    for endpoint in client.serve_list(workspace, limit=LIST_LIMIT).endpoints:
        found.append((endpoint.name, endpoint.state))


def _fetch_models(job_id: Optional[str]) -> Callable[[Any, Optional[str], List[Candidate]], None]:
    """The model ids of the successful partitions of `job_id`, or of the newest `MODEL_JOBS` training jobs of
    the current workspace (newest first; every page of each job's `train info`)."""
    def fetch(client, workspace, found: List[Candidate]) -> None:
        if not workspace:
            return
        if job_id:
            jobs = [job_id]
        else:
            listing = client.train_list(workspace, limit=MODEL_JOBS)
            jobs = [job.job_id for job in listing.training if job.state == "JOB_SUCCESS"]
        for job in jobs:
            page, page_count = 0, 1
            while page < page_count:
                answer = client.train_info(workspace, job, page_id=page)
                page_count = answer.page_count
                found.extend((partition.output.model_id, f"job {job}") for partition in answer.response.partitions)
                page += 1
    return fetch


# -- click callbacks -------------------------------------------------------------------------------------------
def complete_workspaces(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Workspace names of the backend."""
    return _items(_within(_fetch_workspaces), incomplete)


def complete_train_jobs(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Training job ids of the current workspace (`train info|get`)."""
    return _items(_within(_fetch_jobs(("training",))), incomplete)


def complete_train_and_build_jobs(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Training and build-train job ids of the current workspace (`train logs|kill`, which take both)."""
    return _items(_within(_fetch_jobs(("training", "building"))), incomplete)


def complete_unfinished_jobs(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Training and build-train job ids of the current workspace that have not finished (`train kill`: a
    finished job can only answer JOB_NOT_RUNNING)."""
    return _items(_within(_fetch_jobs(("training", "building"), UNFINISHED)), incomplete)


def complete_train_builds(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Build-train job ids of the current workspace (`train build-logs`)."""
    return _items(_within(_fetch_jobs(("building",))), incomplete)


def complete_serve_builds(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Build-serve job ids of the current workspace (`serve build-logs`)."""
    return _items(_within(_fetch_serve_builds), incomplete)


def complete_endpoints(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Endpoint names of the current workspace."""
    return _items(_within(_fetch_endpoints), incomplete)


def complete_models(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Model ids of the current workspace: of the job given by `-j/--job_id` on the same command line when there
    is one (`train get -j JOB --model_id`), else of the newest successful training jobs."""
    job_id = (ctx.params or {}).get("job_id") if ctx is not None else None
    return _items(_within(_fetch_models(job_id if isinstance(job_id, str) else None)), incomplete)


# -- local names (no backend involved) -------------------------------------------------------------------------
def complete_contexts(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Context names of `./.kaos/config` (`build set -c`)."""
    try:
        from kaos_cli.state import Config

        config = Config()
        candidates = [(name, "active" if name == config.active else "") for name in config.contexts]
    except Exception:  # noqa: BLE001 - a malformed config completes nothing, silently
        return []
    return _items(candidates, incomplete)


def complete_templates(ctx, param, incomplete: str) -> List[CompletionItem]:
    """Names of the shipped templates (`template get -n`)."""
    try:
        from kaos_cli.commands.template import load_templates

        candidates = [(item.get("name"), item.get("description") or "") for item in load_templates()[1]]
    except Exception:  # noqa: BLE001 - templates not installed: nothing to offer
        return []
    return _items(candidates, incomplete)
