"""Bundles written for kaos 1.x, in its layout (reference §7.1, §7.2): a `train` that reads the first entry of
/pfs/data and the JSON of /pfs/hyper and writes /pfs/out/<hex6>/model; a `serve` that starts nginx on 8080 in front
of gunicorn on a unix socket, as 1.x's templates did (nginx forwards only /ping and /invocations; anything else is
404 `{}`). They know nothing of kaos 2's environment variables. The images take `ARG BASE_IMAGE` (no registry
here) and install nginx from Debian."""
from pathlib import Path

TRAIN = """\
#!/usr/bin/env python3
import json, os, sys
out = sys.argv[1]
data = os.path.join("/pfs/data", sorted(os.listdir("/pfs/data"))[0])
rows = open(os.path.join(data, "training", os.listdir(os.path.join(data, "training"))[0])).read().split()
params = {"scale": 1}
for top, _, names in os.walk("/pfs/hyper"):
    for name in names:
        params.update(json.load(open(os.path.join(top, name))))
print("training on", data, "with", params, flush=True)
os.makedirs(os.path.join(out, "model"))
open(os.path.join(out, "model", "model.txt"), "w").write(str(int(rows[0].split(",")[0]) * params["scale"]))
"""

SERVE = """\
#!/usr/bin/env python3
# Starts nginx and gunicorn (on a unix socket) and ends when either does, as 1.x's serve script.
import os, signal, subprocess, sys
subprocess.check_call(["ln", "-sf", "/dev/stdout", "/var/log/nginx/access.log"])
subprocess.check_call(["ln", "-sf", "/dev/stderr", "/var/log/nginx/error.log"])
nginx = subprocess.Popen(["nginx", "-c", "/opt/program/nginx.conf"])
gunicorn = subprocess.Popen(["gunicorn", "-b", "unix:/tmp/gunicorn.sock", "-w", "1", "wsgi:app"])
signal.signal(signal.SIGTERM, lambda *_: [process.terminate() for process in (nginx, gunicorn)])
pid, _ = os.wait()
for process in (nginx, gunicorn):
    if process.pid != pid:
        process.terminate()
print("Inference server exiting", flush=True)
sys.exit(0)
"""

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid /tmp/nginx.pid;
error_log /var/log/nginx/error.log;
events { }
http {
  access_log /var/log/nginx/access.log combined;
  upstream gunicorn { server unix:/tmp/gunicorn.sock; }
  server {
    listen 8080 deferred;
    client_max_body_size 5m;
    location ~ ^/(ping|invocations) {
      proxy_set_header Host $http_host;
      proxy_redirect off;
      proxy_pass http://gunicorn;
    }
    location / { return 404 "{}"; }
  }
}
"""

WSGI = """\
import flask
app = flask.Flask(__name__)
MODEL = int(open("model.txt").read())

@app.route("/ping")
def ping():
    return "", 200

@app.route("/invocations", methods=["POST"])
def invocations():
    return flask.jsonify({"result": [int(flask.request.get_data()) * MODEL]})
"""

TRAIN_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.7
FROM ${BASE_IMAGE}
WORKDIR /opt/program
COPY . .
RUN chmod +x train
ENV PYTHONUNBUFFERED=TRUE
"""

SERVE_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.7
FROM ${BASE_IMAGE}
RUN apt-get update -q && apt-get install -y -q --no-install-recommends nginx && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -q flask gunicorn
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=TRUE
WORKDIR /opt/program
COPY . .
RUN chmod +x serve
"""


def _bundle(root: Path, dockerfile: str, files: dict) -> Path:
    model = root / "old" / "model"
    model.mkdir(parents=True)
    (root / "old" / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (model / name).write_text(text)
    return root


def train_bundle(root: Path) -> Path:
    """The train bundle: its model is the first number of the data's first training file times `scale`."""
    return _bundle(root, TRAIN_DOCKERFILE, {"__init__.py": "", "requirements.txt": "", "train": TRAIN})


def serve_bundle(root: Path) -> Path:
    """The serve bundle: `POST /invocations` with a number answers `{"result": [number * model]}`."""
    return _bundle(root, SERVE_DOCKERFILE, {"__init__.py": "", "serve": SERVE, "nginx.conf": NGINX_CONF,
                                            "wsgi.py": WSGI, "web-requirements.txt": "flask\ngunicorn\n"})
