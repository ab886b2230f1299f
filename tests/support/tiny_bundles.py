"""Tiny bundles that build in seconds (no requirements) for tests against a real backend: a train source
that trains on a `scale` hyperparameter, a serve source that multiplies by it, and a data bundle."""
from pathlib import Path

TRAIN = """\
#!/usr/bin/env python3
import json, os, sys
out = sys.argv[1]
os.makedirs(out + "/model")
os.makedirs(out + "/metrics")
hyper = os.environ["KAOS_TRAIN_HYPER"]
files = [os.path.join(top, name) for top, _, names in os.walk(hyper) for name in names if name.endswith(".json")]
scale = json.load(open(files[0]))["scale"] if files else 1
open(out + "/model/scale.txt", "w").write(str(scale))
json.dump({"accuracy": scale / 10}, open(out + "/metrics/metrics.json", "w"))
"""
SERVE = """\
#!/usr/bin/env python3
import http.server, os
SCALE = int(open("scale.txt").read()) if os.path.exists("scale.txt") else 1  # no model: 1
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.end_headers()
    def do_POST(self):
        number = int(self.rfile.read(int(self.headers["Content-Length"])))
        body = str(number * SCALE).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def source_folder(root: Path, files: dict) -> Path:
    """A source bundle directory `<root>` holding `tiny/{Dockerfile, model/...}` with `files` in `model/`."""
    model = root / "tiny" / "model"
    model.mkdir(parents=True)
    (root / "tiny" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    for name, text in {"__init__.py": "", "requirements.txt": "", **files}.items():
        (model / name).write_text(text)
        if name in ("train", "serve"):
            (model / name).chmod(0o755)
    return root


def train_source(root: Path) -> Path:
    """A train source bundle: each partition writes `model/scale.txt` (its `scale` hyperparameter, 1 without)
    and the metric `accuracy` = scale / 10."""
    return source_folder(root, {"train": TRAIN})


def serve_source(root: Path) -> Path:
    """A serve source bundle: `POST /invocations` with a number answers it times the model's scale (1 when it
    serves no model)."""
    return source_folder(root, {"serve": SERVE, "web-requirements.txt": ""})


def data_folder(root: Path, marker: str = "1") -> Path:
    training = root / "features" / "training"
    training.mkdir(parents=True)
    (training / "numbers.csv").write_text(f"{marker}\n2\n")
    return root
