"""`python -m kaos_backend.migrations <alembic command>`: alembic's command line on kaos's migrations, for the
database of KAOS_DATABASE_URL (default: the SQLite file in KAOS_DATA_DIR). After a model change:

    export KAOS_DATABASE_URL=sqlite:////tmp/kaos-dev.db
    python -m kaos_backend.migrations upgrade head
    python -m kaos_backend.migrations revision --autogenerate --rev-id 0003_<what> -m "<what, in words>"

then read the new file in versions/ (autogenerate is a draft: renames look like a drop and an add).
"""
import sys

from alembic.config import CommandLine

from kaos_backend.config import Config, ConfigError
from kaos_backend.migrations.upgrade import alembic_config


def main(argv=None) -> int:
    cli = CommandLine(prog="python -m kaos_backend.migrations")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    try:
        url = Config.from_env().database_url
    except ConfigError as error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cli.run_cmd(config, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
