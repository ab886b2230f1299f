"""The `kaos` root group; the one place where failures become a single line on stderr and exit status 1."""
import os
import sys

import click

from kaos_cli.commands.build import build
from kaos_cli.commands.completion import completion
from kaos_cli.commands.destroy import destroy
from kaos_cli.commands.init import init
from kaos_cli.commands.notebook import notebook
from kaos_cli.commands.serve import serve
from kaos_cli.commands.template import template
from kaos_cli.commands.train import train
from kaos_cli.commands.workspace import workspace
from kaos_cli.errors import KaosError
from kaos_cli import output
from kaos_cli.render import line

# click >= 8.2 raises this for a bare group; older versions print the help themselves
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())

ART = r"""
 __  ___      ___       ______        _______.
|  |/  /     /   \     /  __  \      /       |
|  '  /     /  ^  \   |  |  |  |    |   (----`
|    <     /  /_\  \  |  |  |  |     \   \
|  .  \   /  _____  \ |  `--'  | .----)   |
|__|\__\ /__/     \__\ \______/  |_______/
"""
TAGLINE = "Open source cloud agnostic minimal DevOps private versioned ML platform."
# "\b" keeps click from rewrapping the art
BANNER = "\b" + ART.rstrip() + "\n\n" + TAGLINE


def _unexpected(exc: BaseException) -> int:
    if os.environ.get("KAOS_DEBUG"):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    click.echo(line("Error", f"Unexpected error: {detail} (set KAOS_DEBUG=1 for the traceback)"), err=True)
    return 1


class KaosGroup(click.Group):
    """Lists commands in the order they were added; `main` turns every failure into one line."""

    def list_commands(self, ctx):
        return list(self.commands)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        output.reset()
        try:
            result = super().main(args=args, prog_name=prog_name or "kaos", complete_var=complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except _NO_ARGS_IS_HELP as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            code = 0
        except click.ClickException as exc:  # usage errors keep click's message and exit status (2)
            exc.show()
            code = exc.exit_code
        except click.Abort:
            click.echo("Aborted!", err=True)
            code = 1
        except KaosError as exc:
            click.echo(line(exc.level, exc.message), err=True)
            code = 1
        except KeyboardInterrupt:
            click.echo("Aborted!", err=True)
            code = 1
        except BrokenPipeError:  # `kaos train logs -f | head`: the reader left, which is not an error of ours
            _silence_stdout()
            code = 0
        except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
            code = _unexpected(exc)
        if standalone_mode:
            sys.exit(code)
        return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise BrokenPipeError again."""
    import os
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(cls=KaosGroup, help=BANNER, context_settings={"help_option_names": ["--help"]})
def cli():
    pass


cli.add_command(build)
cli.add_command(destroy)
cli.add_command(init)
cli.add_command(template)
cli.add_command(workspace)
cli.add_command(notebook)
cli.add_command(train)
cli.add_command(serve)
cli.add_command(completion)


def start():
    """Console entry point `kaos`."""
    cli.main(prog_name="kaos")


if __name__ == "__main__":
    start()
