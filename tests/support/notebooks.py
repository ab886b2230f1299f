"""Notebook helpers for tests: deploy with the real CLI, wait for a state through the API, the token the deploy
printed, Jupyter's own API through the gateway, and the browser test shared by the local and docker executors."""
import re
from pathlib import Path
from typing import Callable, Optional, Tuple

import requests

from tests.support.platform import wait_for

TOKEN_LINE = re.compile(r"shows it again here\): (\S+)")
# one line for the browser to type: the attached data's files, and the first line of its CSV
LIST_DATA_CELL = ('import os, glob; d = os.environ["KAOS_NOTEBOOK_DATA"]; fs = sorted(p for p in glob.glob(d + "/**", '
                  'recursive=True) if os.path.isfile(p)); print("FILES", [os.path.relpath(p, d) for p in fs]); '
                  'print("FIRST", open([p for p in fs if p.endswith(".csv")][0]).readline().strip())')


def token_of(output: str) -> str:
    match = TOKEN_LINE.search(output)
    assert match, output
    return match.group(1)


def notebook_row(api: Callable, workspace: str, name: str) -> Optional[dict]:
    answer = api("GET", f"notebook/{workspace}")
    assert answer.status_code == 200, answer.text
    return next((row for row in answer.json()["response"]["notebooks"] if row["name"] == name), None)


def wait_state(api: Callable, workspace: str, name: str, state: str, timeout: float = 900.0) -> dict:
    """The notebook's row once it is in `state`; fails at once on PIPELINE_FAILURE (unless that is awaited)."""
    def reached():
        row = notebook_row(api, workspace, name)
        assert row is not None, f"{name} is not listed"
        assert row["state"] != "PIPELINE_FAILURE" or state == "PIPELINE_FAILURE", row
        return row if row["state"] == state else None
    return wait_for(reached, timeout, interval=0.5, what=f"{name} to be {state}")


def jupyter(gateway: str, name: str, path: str, token: Optional[str], method: str = "GET", **kwargs):
    """A request to the notebook's Jupyter through the gateway (`gateway` http://127.0.0.1:<port>)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(method, f"{gateway}/{name}/{path}", headers=headers, timeout=60,
                            allow_redirects=False, **kwargs)


def data_bundle(root: Path, first_line: str = "name,value") -> Path:
    """A data bundle `<root>/features/{training/data.csv, README.txt}`."""
    (root / "features" / "training").mkdir(parents=True)
    (root / "features" / "training" / "data.csv").write_text(f"{first_line}\nalpha,1\nbeta,2\n")
    (root / "features" / "README.txt").write_text("two rows\n")
    return root


def browser_session(gateway: str, name: str, token: str, artifact: str) -> Tuple[bool, str]:
    """What a person sees: the lab without the token (refused: Jupyter's login page, not the lab), then with it a
    new notebook whose cell lists the attached data and prints the CSV's first line. (refused, the cell's
    output); a screenshot of each page under build/test-artifacts/<artifact>-*.png."""
    from selenium.webdriver.common.by import By

    from tests.support.browser import chrome, new_notebook_runs, screenshot, wait_until

    browser = chrome()
    try:
        browser.get(f"{gateway}/{name}/lab")
        wait_until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "input[type=password]"), "the login page")
        refused = "/login" in browser.current_url and not browser.find_elements(By.CSS_SELECTOR, ".jp-LabShell")
        screenshot(browser, f"{artifact}-without-token")
        browser.get(f"{gateway}/{name}/lab?token={token}")
        output = new_notebook_runs(browser, LIST_DATA_CELL, "FIRST")
        screenshot(browser, f"{artifact}-cell-output")
        return refused, output
    finally:
        browser.quit()
