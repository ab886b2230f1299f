"""Show a job's log: the records on stdout (Info lines on stderr, so `kaos … logs > file` stays clean), a copy
under `<out_dir>/<workspace>/logs/`, and with follow an exit status that says how the job ended. Also the options
that the `logs` and `build-logs` commands of train, serve and notebook share, and the `build-logs` command itself.
A follow cut off goes on where it was (log_follow.py); why a log is empty and how a followed one ended are
log_outcomes.py's."""
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple, Union

import click

from kaos_cli import render
from kaos_cli.errors import KaosError, RequestError
from kaos_cli.guards import workspace_session
from kaos_cli.log_follow import close, resumed
from kaos_cli.options import index_option, name_option, name_or_index

Fetch = Callable[..., Union[str, Iterator[str]]]  # fetch(workspace, job_id, follow=False)

# each kind of job (JobRecord.kind) or workload: what it is called, and the command that shows its log
LOG_OF = {
    "train": ("a training job", "kaos train logs -j"),
    "ingestion": ("a data ingestion job", "kaos train logs -j"),
    "build-train": ("a build of a training image", "kaos train build-logs -j"),
    "build-serve": ("a build of an endpoint's image", "kaos serve build-logs -j"),
    "build-notebook": ("a build of a notebook's image", "kaos notebook build-logs -j"),
    "endpoint": ("an endpoint", "kaos serve logs -e"),
    "notebook": ("a notebook", "kaos notebook logs -n"),
}
TRAIN_KINDS = ("train", "build-train", "ingestion")  # what `kaos train logs` shows
NOT_FOUND = ("JOB_NOT_FOUND", "PIPELINE_NOT_FOUND")


def _kind_of(client, workspace: str, name: str) -> Optional[str]:
    """`name`'s kind in LOG_OF: an endpoint or notebook by its name's shape, else the kind of the job it is (None
    when there is no such job)."""
    from kaos_model.ids import ENDPOINT_RE

    if ENDPOINT_RE.match(name):
        return "endpoint"
    if name.startswith("notebook-"):
        return "notebook"
    try:
        return client.job_state(workspace, name).kind
    except KaosError:
        return None


def kind_checked(fetch: Fetch, client, accepted: Tuple[str, ...]) -> Fetch:
    """`fetch` (of a log of the kinds `accepted`), except that "not found" for the name of another kind of job or
    workload says what it is and which command shows its log, e.g. a training job given to `kaos train
    build-logs`: "Job <id> is a training job, not a build of a training image: its log is shown by `kaos train
    logs -j <id>`"."""
    def fetch_checked(workspace: str, name: str, **options):
        try:
            return fetch(workspace, name, **options)
        except RequestError as error:
            if error.error_code not in NOT_FOUND:
                raise
            kind = _kind_of(client, workspace, name)
            if kind not in LOG_OF or kind in accepted:
                raise
            what, command = LOG_OF[kind]
            expected = [LOG_OF[other][0] for other in accepted]
            expected = ", ".join(expected[:-1]) + " or " + expected[-1] if len(expected) > 1 else expected[0]
            subject = name if kind in ("endpoint", "notebook") else f"Job {name}"
            raise KaosError(f"{subject} is {what}, not {expected}: its log is shown by `{command} {name}`") from None
    return fetch_checked


def _check_name(file_name: str) -> None:
    if not file_name or Path(file_name).name != file_name or file_name.startswith("."):
        raise KaosError(f"Invalid log name {file_name!r}")


def _log_path(out_dir, workspace: str, file_name: str) -> Path:
    directory = Path(out_dir) / workspace / "logs"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KaosError(f"Cannot create the log directory {directory}: {exc.strerror or exc}") from None
    return directory / file_name


def show_logs(fetch: Fetch, workspace: str, job_id: str, out_dir, follow: bool, file_name: str,
              retrieving: str, job_state: Optional[Callable[[str, str], Any]] = None,
              interrupt_ends: bool = False, empty: Optional[Callable[[str, str], Optional[str]]] = None) -> None:
    """Print and save the log that `fetch` returns. With `follow`, lines are printed and saved as they arrive;
    once the stream ends `job_state(workspace, job_id)` decides: JOB_SUCCESS returns, anything else fails
    (without `job_state` the end of the stream is a success). With `interrupt_ends`, Ctrl-C while following
    is the normal way out (an endpoint's log never ends by itself): it returns quietly. An empty log (not
    followed) is a Warning line saying why when `empty(workspace, job_id)` knows (`job_never_ran`,
    `workload_never_ran`), exit 0 like the other "nothing to show" of the CLI (an empty `kaos … list`)."""
    _check_name(file_name)
    render.info(retrieving, err=True)
    if not follow:
        text = fetch(workspace, job_id) or ""
        path = _log_path(out_dir, workspace, file_name)
        if text:
            render.echo(text.rstrip("\n"))
        elif empty is not None:
            why = empty(workspace, job_id)
            if why:
                render.warning(why)
        try:
            path.write_text(text if not text or text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as exc:
            raise KaosError(f"Cannot write the log file {path}: {exc.strerror or exc}") from None
        render.info(f"Log saved to {path}", err=True)
        return
    try:
        lines = fetch(workspace, job_id, follow=True)  # HTTP errors surface here, before any file is created
    except KeyboardInterrupt:
        if interrupt_ends:
            return
        raise
    interrupted = False
    records = resumed(lines, lambda: fetch(workspace, job_id, follow=True))
    try:
        path = _log_path(out_dir, workspace, file_name)
        try:
            saved = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise KaosError(f"Cannot write the log file {path}: {exc.strerror or exc}") from None
        with saved:
            try:
                for record in records:
                    saved.write(record + "\n")  # saved first: a line on the screen is also in the file
                    saved.flush()
                    render.echo(record)  # click flushes stdout on every echo
            except KeyboardInterrupt:
                if not interrupt_ends:
                    render.info(f"Log saved to {path}", err=True)  # what arrived is kept, and said so
                    raise
                interrupted = True
    finally:
        records.close()
        close(lines)
    render.info(f"Log saved to {path}", err=True)
    if job_state is None or interrupted:
        return
    state = job_state(workspace, job_id).state
    if state == "JOB_SUCCESS":
        return
    if state in ("JOB_FAILURE", "JOB_KILLED"):
        raise KaosError(f"Job {job_id} ended in state {state}")
    raise KaosError(f"The log stream of job {job_id} ended while the job is {state}")


# -- the click side: the options of `… logs` and `… build-logs`, and the `build-logs` command ----------------------
def out_dir_option(command):
    """-o/--out_dir: the existing directory the log is saved under (`<out_dir>/<workspace>/logs/`), default `.`."""
    return click.option("-o", "--out_dir", type=click.Path(exists=True, file_okay=False), default=".",
                        show_default=True,
                        help="Directory to save the log under (<out_dir>/<workspace>/logs/)")(command)


def follow_option(until: str):
    """-f/--follow, its help `Print the log as it is written until <until>`."""
    return click.option("-f", "--follow", is_flag=True, help=f"Print the log as it is written until {until}")


def job_log_options(index_help: str, job_id_help: str = "Job id", complete_job_ids=None,
                    until: str = "the job ends"):
    """The options of a job's log command, in this order: -j/--job_id (completed by `complete_job_ids`) ↔ -i/--ind
    (`index_help`), -o/--out_dir, -f/--follow (until `until`; exit 1 unless the job succeeded)."""
    def decorate(command):
        command = follow_option(f"{until}; exit 1 unless it succeeded")(command)
        command = out_dir_option(command)
        command = index_option(other="job_id", help=index_help)(command)
        return name_option("-j", "--job_id", help=job_id_help, shell_complete=complete_job_ids)(command)
    return decorate


def add_build_logs(group: click.Group, kind: str, logs_method: str, short_help: str, help: str,
                   job_id_help: str = "Build job id", complete_job_ids=None, until: str = "the build ends"):
    """Add `kaos <kind> build-logs` to `group`: the log of the build job named by -j or by -i (the BUILDING table of
    `kaos <kind> list`, index cache `build-<kind>`), fetched by the client's method `logs_method`
    (`fetch(workspace, job_id, follow=False)`), saved as `<out_dir>/<workspace>/logs/build-<kind>-<job_id>.log`;
    with -f the exit status says how the build ended. Returns the command."""
    cache = f"build-{kind}"

    @group.command("build-logs", short_help=short_help, help=help)
    @job_log_options(f"Index of the BUILDING table of `kaos {kind} list`", job_id_help, complete_job_ids, until)
    def build_logs(job_id, ind, out_dir, follow):
        job_id = name_or_index("job_id", job_id, ind, cache)
        client, workspace = workspace_session()
        fetch = kind_checked(getattr(client, logs_method), client, (cache,))
        show_logs(fetch, workspace, job_id, out_dir, follow, f"{cache}-{job_id}.log",
                  f"Retrieving build logs from {job_id}", client.job_state)
    return build_logs
