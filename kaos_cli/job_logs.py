"""Show a job's log: the records on stdout (Info lines on stderr, so `kaos … logs > file` stays clean), a copy
under `<out_dir>/<workspace>/logs/`, and with follow an exit status that says how the job ended."""
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from kaos_cli import render
from kaos_cli.errors import KaosError

Fetch = Callable[..., Union[str, Iterator[str]]]  # fetch(workspace, job_id, follow=False)


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
              interrupt_ends: bool = False) -> None:
    """Print and save the log that `fetch` returns. With `follow`, lines are printed and saved as they arrive;
    once the stream ends `job_state(workspace, job_id)` decides: JOB_SUCCESS returns, anything else fails
    (without `job_state` the end of the stream is a success). With `interrupt_ends`, Ctrl-C while following
    is the normal way out (an endpoint's log never ends by itself): it returns quietly."""
    _check_name(file_name)
    render.info(retrieving, err=True)
    if not follow:
        text = fetch(workspace, job_id) or ""
        path = _log_path(out_dir, workspace, file_name)
        if text:
            render.echo(text.rstrip("\n"))
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
    try:
        path = _log_path(out_dir, workspace, file_name)
        try:
            saved = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise KaosError(f"Cannot write the log file {path}: {exc.strerror or exc}") from None
        with saved:
            try:
                for record in lines:
                    saved.write(record + "\n")  # saved first: a line on the screen is also in the file
                    saved.flush()
                    render.echo(record)  # click flushes stdout on every echo
            except KeyboardInterrupt:
                if not interrupt_ends:
                    raise
                interrupted = True
    finally:
        close = getattr(lines, "close", None)
        if close:
            close()
    render.info(f"Log saved to {path}", err=True)
    if job_state is None or interrupted:
        return
    state = job_state(workspace, job_id).state
    if state == "JOB_SUCCESS":
        return
    if state in ("JOB_FAILURE", "JOB_KILLED"):
        raise KaosError(f"Job {job_id} ended in state {state}")
    raise KaosError(f"The log stream of job {job_id} ended while the job is {state}")
