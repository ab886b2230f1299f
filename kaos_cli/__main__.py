"""`python -m kaos_cli` is the same as `kaos`."""
from kaos_cli.main import start

start()
