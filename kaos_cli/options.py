"""Option conventions (reference §3.4): mutually exclusive name-or-index pairs; the resources of a deploy."""
from pathlib import Path
from typing import Optional, Sequence

import click

from kaos_cli.errors import KaosError
from kaos_cli.state import resolve_index


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


def name_or_index(name_flag: str, name: Optional[str], ind: Optional[int], cache: str, what: str = None) -> str:
    """The name given by `--<name_flag>`, or the one at index `ind` of the index cache `cache` (the table of the
    last `kaos … list`). Raises KaosError when neither is given, the name is empty (`Invalid <what> ''`, `what`
    by default the flag's words: an empty id made URLs such as `train/<ws>//logs`) or the index is not in the
    cache."""
    require_one(name_flag, name, "ind", ind)
    if ind is None and not name:
        raise KaosError(f"Invalid {what or name_flag.replace('_', ' ')} ''")
    return name if ind is None else resolve_index(cache, ind)


def local_name(what: str, name_flag: str, name: Optional[str], ind: Optional[int], cache: str) -> str:
    """`name_or_index`, for a name that also names local files (`<name>.log`, `<out_dir>/<ws>/<name>/`): raises
    KaosError `Invalid <what> name '<name>'` when it is empty, hidden (a leading dot) or holds a path separator."""
    name = name_or_index(name_flag, name, ind, cache, f"{what} name")
    if not isinstance(name, str) or not name or Path(name).name != name or "\\" in name or name.startswith("."):
        raise KaosError(f"Invalid {what} name {name!r}")
    return name


def stripped(ctx, param, value):
    """The callback of an option naming something by its id or name (a job id, a Model ID, an endpoint, a
    workspace): surrounding whitespace left out, as ids never have any (a Model ID pasted with a trailing space
    said `There is no model with id: …` with the space unseen). A repeated option's values each."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, tuple):
        return tuple(item.strip() if isinstance(item, str) else item for item in value)
    return value


def name_option(*decls, other: str = "ind", **kwargs):
    """A name-or-index option's name (`-j`, `-e`, `-n`, `-c`), without surrounding whitespace (`stripped`)."""
    return click.option(*decls, cls=MutuallyExclusiveOption, mutually_exclusive=[other], callback=stripped,
                        **kwargs)


def index_option(other: str = "name", help: str = "Index from the last list output"):
    return click.option("-i", "--ind", type=int, cls=MutuallyExclusiveOption, mutually_exclusive=[other],
                        help=help)


def resource_options(what: str, memory_default: Optional[str] = None):
    """The --cpu, --memory and --gpu options of a deploy, `what` in their help ("per job", "of the endpoint"), taken
    as text: `check_resources` checks them before anything is uploaded, the backend again with its maxima."""
    cpu = click.option("--cpu", metavar="CORES", help=f"CPU cores {what}, e.g. 0.5, 2 or 500m")
    memory = click.option("--memory", metavar="QUANTITY", default=memory_default,
                          show_default=memory_default is not None, help=f"Memory {what}, e.g. 512Mi or 2Gi")
    gpu = click.option("--gpu", metavar="INTEGER", default="0", show_default=True, help=f"GPUs {what}")

    def decorate(command):
        return cpu(memory(gpu(command)))
    return decorate


def check_resources(cpu: Optional[str], memory: Optional[str], gpu: Optional[str]) -> None:
    """A request the backend would refuse for its grammar or its minimums (kaos_model.resources) → one line, exit 1
    (`Error - Incorrect CPU request 500x. Give a number of cores such as 0.5, 2 or 500m.`), before any upload."""
    from kaos_model.resources import ResourceRequestError, parse_resources
    try:
        parse_resources(cpu, memory, gpu)
    except ResourceRequestError as error:
        raise KaosError(str(error)) from None
