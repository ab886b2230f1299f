"""The quick start in one command (`make demo`): stand up the embedded platform, train the mnist template,
serve the model and print a prediction for the template's test payload.

Everything happens in ./demo (the platform's data lives in ./demo/.kaos/LOCAL); a previous demo there is
destroyed first. Each step is a real `kaos` command, printed before it runs.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
KAOS = str(Path(sys.executable).with_name("kaos"))
DEMO = Path(os.environ.get("KAOS_DEMO_DIR", REPO / "demo"))
PORT = os.environ.get("KAOS_DEMO_PORT", "8080")
WORKSPACE = "mnist"
TIMEOUT = 1800  # seconds for a step that waits; a cold build downloads scikit-learn and friends


def kaos(*args, capture=False, check=True):
    print(f"\n$ kaos {' '.join(args)}", flush=True)
    result = subprocess.run([KAOS, *args], cwd=DEMO, text=True, stdin=subprocess.DEVNULL,
                            capture_output=capture, env=dict(os.environ, USER=os.environ.get("USER", "demo")))
    if capture:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
    if check and result.returncode != 0:
        sys.exit(f"Error - the quick start stopped: `kaos {' '.join(args)}` failed (exit {result.returncode})")
    return result


def wait_for(what, probe):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(2)
    sys.exit(f"Error - the quick start stopped: gave up waiting for {what}")


def context():
    text = (DEMO / ".kaos" / "config").read_text()
    url = re.search(r"^url\s*=\s*(\S+)", text, re.M).group(1)
    token = re.search(r"^token\s*=\s*(\S+)", text, re.M).group(1)
    return url, token


def api(path):
    url, token = context()
    return requests.get(url + path, headers={"X-Token": token}, timeout=30).json()


def main() -> int:
    if (DEMO / ".kaos" / "config").exists():
        subprocess.run([KAOS, "destroy", "-c", "LOCAL", "-y"], cwd=DEMO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    DEMO.mkdir(parents=True, exist_ok=True)
    print(f"kaos quick start in {DEMO}")

    kaos("build", "deploy", "-c", "LOCAL", "-y", "--port", PORT)
    kaos("workspace", "create", "-n", WORKSPACE)
    kaos("template", "get", "--name", "mnist", "-f")
    kaos("train", "deploy", "-s", "templates/mnist/model-train", "-d", "templates/mnist/data")

    building = wait_for("the build job", lambda: api(f"train/{WORKSPACE}")["response"]["building"])
    kaos("train", "build-logs", "-j", building[0]["job_id"], "-f")
    training = wait_for("the train job", lambda: api(f"train/{WORKSPACE}")["response"]["training"])
    kaos("train", "logs", "-j", training[0]["job_id"], "-f")
    info = kaos("train", "info", "-j", training[0]["job_id"], capture=True)
    model_id = re.search(r"\b[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b", info.stdout).group(0)

    kaos("serve", "deploy", "-s", "templates/mnist/model-serve", "-m", model_id)
    endpoint = wait_for("the endpoint to run", lambda: next(
        (e for e in api(f"inference/{WORKSPACE}")["response"]["endpoints"] if e["state"] == "PIPELINE_RUNNING"),
        None))
    kaos("serve", "list")

    url = f"http://{endpoint['url']}"
    payload = DEMO / "templates/mnist/test_payload.jpg"
    print(f"\n$ curl -X POST {url} --data-binary @templates/mnist/test_payload.jpg", flush=True)
    answer = requests.post(url, data=payload.read_bytes(), timeout=60)
    print(answer.text.strip())
    expected = json.loads((DEMO / "templates/mnist/test_payload.expected.json").read_text())
    print(f"\nPrediction: {answer.json()} (the payload is a handwritten {expected['result'][0]})")
    print(f"The platform keeps running. Stop it with:  cd {DEMO} && {KAOS} destroy -c LOCAL -y")
    return 0 if answer.json() == expected else 1


if __name__ == "__main__":
    sys.exit(main())
