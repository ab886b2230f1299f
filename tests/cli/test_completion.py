"""Shell completion (issue 8, item 5): `kaos completion bash|zsh|fish` sourced in the real shell, completing the
real names of a real backend (workspaces, job ids, model ids, endpoint names), and silence when it is away."""
import os
import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("kaos_backend.app")

from kaos_cli.client import KaosClient  # noqa: E402
from tests.support.backend import BackendProcess, free_port  # noqa: E402
from tests.support.cli import KAOS, kaos  # noqa: E402
from tests.support.platform import tiny_data_bundle, tiny_train_bundle, wait_for  # noqa: E402

BIN = str(Path(KAOS).parent)
BOUND = 60  # seconds: a bound against a hanging completion, not a speed check
SERVE = "#!/usr/bin/env python3\nimport time\ntime.sleep(3600)\n"


def _env(**extra) -> dict:
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), USER="tester", **extra)
    env.pop("KAOS_STATE_DIR", None)
    env.pop("_KAOS_COMPLETE", None)
    return env


def bash_complete(cwd: Path, line: str):
    """Source `kaos completion bash` in bash, set COMP_WORDS/COMP_CWORD as bash does for `line` + TAB (the last
    word is the one being completed, '' after a trailing space), call the function the script registered with
    `complete -F` for kaos, and return (COMPREPLY, bash's stderr)."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    script = f"""
eval "$(kaos completion bash)"
spec=$(complete -p kaos) || exit 3
func=$(printf '%s\\n' "$spec" | sed -E 's/.* -F ([^ ]+) .*/\\1/')
COMP_WORDS=({" ".join(shlex.quote(word) for word in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE={shlex.quote(line)}
COMP_POINT=${{#COMP_LINE}}
COMPREPLY=()
"$func" kaos "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 0, done
    return [word for word in done.stdout.splitlines() if word], done.stderr


def _initialised(directory: Path, url: str, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    result = kaos(directory, "init", "-e", url, "-t", token)
    assert result.code == 0, result
    return directory


@pytest.fixture(scope="module")
def names(tmp_path_factory):
    """A real backend with workspaces `mnist` (current) and `other`; in `mnist` a successful training (its build
    and train job ids, its model id) and an endpoint deployed with that model (the row exists once `serve
    deploy` answered; it need not run)."""
    root = tmp_path_factory.mktemp("completion")
    server = BackendProcess(root / "data").start()
    try:
        project = _initialised(root / "project", server.url, server.token)
        for name in ("other", "mnist"):
            assert kaos(project, "workspace", "create", "-n", name).code == 0
        code = tiny_train_bundle(root / "code", "import os, sys\nos.makedirs(sys.argv[1] + '/model')\n")
        data = tiny_data_bundle(root / "data-bundle")
        deployed = kaos(project, "train", "deploy", "-s", str(code), "-d", str(data))
        assert deployed.code == 0, deployed
        client = KaosClient(server.url, server.token)
        train = wait_for(lambda: client.train_list("mnist").training, timeout=600, what="a train job")[0]
        job = client.wait_for_job("mnist", train.job_id, timeout=600)
        assert job.state == "JOB_SUCCESS", client.train_logs("mnist", train.job_id)
        build = client.train_list("mnist").building[0].job_id
        model = client.train_info("mnist", train.job_id).response.partitions[0].output.model_id

        serve = root / "serve" / "tiny" / "model"
        serve.mkdir(parents=True)
        (serve.parent / "Dockerfile").write_text("FROM python:3.11-slim\n")
        for file_name, text in (("__init__.py", ""), ("requirements.txt", ""), ("web-requirements.txt", ""),
                                ("serve", SERVE)):
            (serve / file_name).write_text(text)
        (serve / "serve").chmod(0o755)
        served = kaos(project, "serve", "deploy", "-s", str(root / "serve"), "-m", model)
        assert served.code == 0, served
        endpoint = re.search(r"Endpoint: (serve-mnist-[0-9a-f]+)", served.out).group(1)
        serve_build = client.serve_list("mnist").building[0].job_id
        yield {"project": project, "server": server, "train": train.job_id, "build": build, "model": model,
               "endpoint": endpoint, "serve_build": serve_build}
    finally:
        server.stop()


# -- the scripts -----------------------------------------------------------------------------------------------
def test_completion_bash_prints_clicks_script_and_registers_a_function(tmp_path):
    result = kaos(tmp_path, "completion", "bash")
    assert result.code == 0, result
    assert "_KAOS_COMPLETE=bash_complete" in result.out and "complete -o nosort -F _kaos_completion kaos" in result.out
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", 'eval "$(kaos completion bash)"; complete -p kaos'],
                          env=_env(), capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 0 and "-F _kaos_completion kaos" in done.stdout, done


@pytest.mark.parametrize("shell, marker", [("zsh", "_KAOS_COMPLETE=zsh_complete"),
                                           ("fish", "_KAOS_COMPLETE=fish_complete")])
def test_completion_zsh_and_fish_scripts(tmp_path, shell, marker):
    result = kaos(tmp_path, "completion", shell)
    assert result.code == 0, result
    assert marker in result.out


def test_unknown_shell_is_a_usage_error(tmp_path):
    result = kaos(tmp_path, "completion", "tcsh")
    assert result.code == 2, result
    assert "Error: Invalid value" in result.err and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.err
    assert "Traceback" not in result.text


def test_completion_help_says_how_to_install(tmp_path):
    result = kaos(tmp_path, "completion", "--help")
    assert result.code == 0, result
    assert 'eval "$(kaos completion bash)"' in result.out
    assert "~/.config/fish/completions/kaos.fish" in result.out and "zsh" in result.out


# -- bash, against the real backend ----------------------------------------------------------------------------
def test_bash_completes_train_logs_job_ids(names):
    words, err = bash_complete(names["project"], "kaos train logs -j ")
    assert sorted(words) == sorted([names["train"], names["build"]]) and err == ""


def test_bash_completes_a_job_id_prefix(names):
    prefix = names["train"][:6]
    words, err = bash_complete(names["project"], f"kaos train logs -j {prefix}")
    assert words == [job for job in (names["train"], names["build"]) if job.startswith(prefix)] and err == ""
    assert names["train"] in words


@pytest.mark.parametrize("line, key", [
    ("kaos train info -j ", "train"),
    ("kaos train get --job_id ", "train"),
    ("kaos train build-logs -j ", "build"),
    ("kaos serve build-logs -j ", "serve_build"),
])
def test_bash_completes_the_job_ids_of_each_command(names, line, key):
    words, err = bash_complete(names["project"], line)
    assert words == [names[key]] and err == ""


def test_train_kill_offers_only_jobs_that_have_not_finished(names):
    """Every job of the fixture has finished: `kill` would only answer JOB_NOT_RUNNING for them (newcomer)."""
    assert bash_complete(names["project"], "kaos train kill -j ") == ([], "")
    assert names["train"] in bash_complete(names["project"], "kaos train logs -j ")[0]


def test_bash_completes_workspace_names(names):
    assert bash_complete(names["project"], "kaos workspace set -n ") == (["mnist", "other"], "")
    assert bash_complete(names["project"], "kaos workspace set -n ot") == (["other"], "")
    assert bash_complete(names["project"], "kaos workspace kill -y -n m") == (["mnist"], "")


@pytest.mark.parametrize("line", [
    "kaos serve deploy -s somewhere -m ",
    "kaos train provenance -m ",
    "kaos train get -j {train} --model_id ",
])
def test_bash_completes_model_ids(names, line):
    model = names["model"]
    assert bash_complete(names["project"], line.format(**names)) == ([model], "")
    assert bash_complete(names["project"], line.format(**names) + model[:3]) == ([model], "")


@pytest.mark.parametrize("command", ["logs", "kill", "provenance", "get"])
def test_bash_completes_endpoint_names(names, command):
    assert bash_complete(names["project"], f"kaos serve {command} -e ") == ([names["endpoint"]], "")
    assert bash_complete(names["project"], f"kaos serve {command} -e serve-") == ([names["endpoint"]], "")
    assert bash_complete(names["project"], f"kaos serve {command} -e nothing-") == ([], "")


def test_mutually_exclusive_options_do_not_print_a_usage_error_while_completing(names):
    """`-i` and `-j` together are a usage error when the command runs, not while TAB completes the line."""
    words, err = bash_complete(names["project"], "kaos train logs -j x -i 0 -j ")
    assert sorted(words) == sorted([names["train"], names["build"]]) and err == ""
    assert bash_complete(names["project"], "kaos workspace set -n x -i 0 -n ot") == (["other"], "")


def test_bash_completes_local_context_and_template_names(names):
    assert bash_complete(names["project"], "kaos build set -c ") == (["remote"], "")
    assert bash_complete(names["project"], "kaos template get -n mn") == (["mnist"], "")
    words, err = bash_complete(names["project"], "kaos template get -n ")
    assert {"mnist", "property-val"} <= set(words) and err == ""


def test_commands_and_options_still_complete(names):
    words, err = bash_complete(names["project"], "kaos train l")
    assert words == ["list", "logs"] and err == ""


def typed_in_bash(cwd: Path, line: str) -> str:
    """`line`, TAB and Enter typed in an interactive bash at a pseudo-terminal where `kaos completion bash` was
    sourced: the arguments the line ran `kaos` with (a shell function stands in for kaos by then; the completion
    runs the real one). Bash itself splits the line at COMP_WORDBREAKS and inserts the answer."""
    import pexpect

    bash = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], cwd=str(cwd), encoding="utf-8", timeout=BOUND,
                         env=_env(PS1="test$ ", TERM="dumb"), dimensions=(24, 1000))
    try:
        bash.expect_exact("test$ ")
        bash.sendline('eval "$(kaos completion bash)"; kaos() { printf "%s<%s>\\n" RAN "$*"; }; '
                      'bind "set enable-bracketed-paste off"')
        bash.expect_exact("test$ ")
        bash.send(line + "\t\r")
        bash.expect(r"RAN<(.*)>")
        return bash.match.group(1)
    finally:
        bash.close(force=True)


@pytest.mark.parametrize("line, typed", [
    ("kaos serve deploy -s somewhere -m ", "to the colon"),
    ("kaos serve deploy -s somewhere -m ", "past the colon"),
    ("kaos train provenance -m ", "past the colon"),
    ("kaos train get -j {train} --model_id=", "past the colon"),
    ('kaos serve deploy -s somewhere -m "', "past the colon"),  # quoted: bash does not break the word
])
def test_bash_at_a_terminal_completes_a_model_id_past_its_colon(names, line, typed):
    """Bash breaks words at `:` (COMP_WORDBREAKS): `-m 1909d_5c3ca:8<TAB>` was completed from `8` alone."""
    model = names["model"]
    prefix = model[:model.index(":") + (1 if typed == "to the colon" else 2)]
    line = line.format(**names)
    assert typed_in_bash(names["project"], line + prefix) == line[len("kaos "):].replace('"', "") + model


def test_a_bash_script_of_an_older_kaos_still_completes(tmp_path):
    """A shell that sourced the script before this kaos passes COMP_WORDS and COMP_CWORD (click's protocol)."""
    env = dict(_env(), _KAOS_COMPLETE="bash_complete", COMP_WORDS="kaos\ntrain\nl", COMP_CWORD="2")
    done = subprocess.run([KAOS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BOUND)
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["plain,list", "plain,logs"], "")


# -- no backend, no candidates, no noise -----------------------------------------------------------------------
def _configured(project: Path, url: str) -> Path:
    """A project initialised against `url` (written directly: `kaos init` checks the backend) with workspace
    `mnist` current."""
    (project / ".kaos").mkdir(parents=True)
    (project / ".kaos" / "config").write_text(
        f"[default]\nuser = tester\n\n[contexts]\nenvironments = remote\n\n[active]\nenvironment = remote\n\n"
        f"[context:remote]\nurl = {url}\ntoken = t\nkind = remote\n\n[workspace]\nname = mnist\n")
    return project


def test_not_initialised_gives_no_candidates(tmp_path):
    assert bash_complete(tmp_path, "kaos train logs -j ") == ([], "")
    assert bash_complete(tmp_path, "kaos workspace set -n ") == ([], "")


def test_backend_down_gives_no_candidates(tmp_path):
    project = _configured(tmp_path / "project", f"http://127.0.0.1:{free_port()}/api/")
    for line in ("kaos train logs -j ", "kaos workspace set -n ", "kaos serve logs -e ", "kaos serve deploy -m "):
        assert bash_complete(project, line) == ([], "")


def test_backend_that_never_answers_gives_no_candidates(tmp_path):
    """A socket that accepts connections and never answers: the completion gives up after its bound, quietly."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/"
        project = _configured(tmp_path / "project", url)
        assert bash_complete(project, "kaos train logs -j ") == ([], "")
        assert bash_complete(project, "kaos workspace set -n ") == ([], "")


# -- zsh and fish ----------------------------------------------------------------------------------------------
def _needs(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    return path


def test_zsh_protocol_completes_job_ids(names):
    """zsh's script runs `COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT-1)) _KAOS_COMPLETE=zsh_complete kaos`:
    the same call from zsh, and the zsh script itself loads in zsh."""
    zsh = _needs("zsh")
    script = ('autoload -U compinit && compinit -u -D && eval "$(kaos completion zsh)" && '
              'COMP_WORDS="kaos train logs -j " COMP_CWORD=4 _KAOS_COMPLETE=zsh_complete kaos')
    done = subprocess.run([zsh, "-f", "-c", script], cwd=names["project"], env=_env(), capture_output=True,
                          text=True, timeout=BOUND)
    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    offered = {lines[index + 1] for index in range(0, len(lines) - 2, 3) if lines[index] == "plain"}
    assert offered == {names["train"], names["build"]}, done.stdout
    assert done.stderr == ""


def test_fish_completes_job_ids_and_model_ids(names):
    fish = _needs("fish")
    script = ("kaos completion fish | source; complete -C 'kaos train logs -j '; echo ---; "
              "complete -C 'kaos serve deploy -m '")
    done = subprocess.run([fish, "--no-config", "-c", script], cwd=names["project"],
                          env=_env(HOME=str(names["project"])), capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 0, done
    jobs, models = done.stdout.split("---\n")
    assert {line.split("\t")[0] for line in jobs.splitlines()} == {names["train"], names["build"]}, done.stdout
    assert [line.split("\t")[0] for line in models.splitlines()] == [names["model"]], done.stdout
    assert done.stderr == ""
