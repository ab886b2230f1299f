"""Option conventions (reference §3.4): mutually exclusive name-or-index pairs."""
from typing import Optional, Sequence

import click

from kaos_cli.errors import KaosError


def _flag(name: str) -> str:
    return "--" + name


class MutuallyExclusiveOption(click.Option):
    """An option that cannot be given together with the options named in `mutually_exclusive`."""

    def __init__(self, *args, mutually_exclusive: Sequence[str] = (), **kwargs):
        self.mutually_exclusive = tuple(mutually_exclusive)
        if self.mutually_exclusive:
            note = f"[NOTE: Mutually exclusive with {', '.join(_flag(n) for n in self.mutually_exclusive)}]"
            kwargs["help"] = f"{kwargs.get('help', '')} {note}".strip()
        super().__init__(*args, **kwargs)

    def handle_parse_result(self, ctx, opts, args):
        # not while completing (resilient parsing): TAB after both options must not print a usage error
        if self.name in opts and opts[self.name] is not None and not ctx.resilient_parsing:
            for other in self.mutually_exclusive:
                if opts.get(other) is not None:
                    raise click.UsageError(
                        f"Illegal usage: {_flag(self.name)} is mutually exclusive with {_flag(other)}", ctx=ctx)
        return super().handle_parse_result(ctx, opts, args)


def require_one(first_name: str, first: Optional[object], second_name: str, second: Optional[object]) -> None:
    """Neither of a name-or-index pair given → one line, exit 1."""
    if first is None and second is None:
        raise KaosError(f"Missing either {_flag(first_name)} or {_flag(second_name)} as arguments")


def name_option(*decls, other: str = "ind", **kwargs):
    return click.option(*decls, cls=MutuallyExclusiveOption, mutually_exclusive=[other], **kwargs)


def index_option(other: str = "name", help: str = "Index from the last list output"):
    return click.option("-i", "--ind", type=int, cls=MutuallyExclusiveOption, mutually_exclusive=[other],
                        help=help)
