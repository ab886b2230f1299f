# Defaults of the hosted notebook server (jupyter lab). Options given on the command line, such as the
# token and base_url that kaos sets, take precedence over these.
import os

c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)

c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = int(os.environ.get("PORT", "8888"))
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
c.ServerApp.root_dir = os.environ.get("NOTEBOOK_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
