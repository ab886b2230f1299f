"""`kaos completion bash|zsh|fish`: print the shell's completion script: click's own for zsh and fish, ours for bash
(kaos_cli/bash_completion.py), all answered by `_KAOS_COMPLETE=<shell>_complete kaos`."""
import click
from click.shell_completion import add_completion_class, get_completion_class

from kaos_cli.bash_completion import KaosBashComplete

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_KAOS_COMPLETE"
add_completion_class(KaosBashComplete)  # bash's answers with model ids (`name:hash`) whole: see bash_completion.py

HELP = """Print the completion script of a shell (bash, zsh or fish) for kaos.

With it, TAB completes commands and options, and the values the backend knows: workspace names (-n), job ids
(-j), model ids (-m, --model_id) and endpoint names (-e) of the current workspace. Values come from the backend
`kaos init` set up in the directory you are in; when it does not answer within 2 seconds, there are none.
Context names (build set -c) and template names (template get -n) complete too.

\b
To install it:
  bash: add to ~/.bashrc (bash 4.4 or newer)
          eval "$(kaos completion bash)"
  zsh:  add to ~/.zshrc (after compinit)
          eval "$(kaos completion zsh)"
        or save it as _kaos in a directory of $fpath
          kaos completion zsh > ~/.zfunc/_kaos
  fish: save it where fish looks for completions
          kaos completion fish > ~/.config/fish/completions/kaos.fish
"""


@click.command(short_help="Print the shell completion script (bash, zsh, fish)", help=HELP)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx, shell):
    root = ctx.find_root()
    script = get_completion_class(shell)(root.command, {}, root.info_name or "kaos", COMPLETE_VAR).source()
    click.echo(script)
