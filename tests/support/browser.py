"""A real browser for tests: headless Chromium (Debian's `chromium` and `chromium-driver`) driven by selenium, and
what a person does in JupyterLab with it. `chrome()` skips (a failure in CI) when Chromium, its driver or selenium
is missing; screenshots go to build/test-artifacts/."""
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
WAIT = 120.0  # seconds: a bound against hanging (the CPUs are shared), not a speed claim


def chrome():
    """A headless Chromium WebDriver (close it with `.quit()`)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements-dev.txt)")
    binary = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("headless Chromium needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.set_page_load_timeout(WAIT)
    return browser


def screenshot(browser, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def wait_until(browser, condition, what: str, timeout: float = WAIT):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        screenshot(browser, f"timeout-{int(time.time())}")
        raise AssertionError(f"the page did not show {what} within {timeout:g}s (screenshot in {ARTIFACTS})")


def new_notebook_runs(browser, code: str, expect: str) -> str:
    """In an open JupyterLab: a new Python 3 notebook from the launcher, `code` (one line) typed into its first
    cell and run (Shift+Enter); the text of the cell's output once it contains `expect`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    card = wait_until(browser, lambda b: _first(b, '.jp-LauncherCard[data-category="Notebook"]'),
                      "the launcher's Notebook card")
    card.click()
    editor = wait_until(browser, lambda b: _first(b, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content"),
                        "a new notebook's first cell")
    wait_until(browser, lambda b: "Idle" in (_first(b, ".jp-StatusBar-Widget") and
                                             b.find_element(By.CSS_SELECTOR, "#jp-main-statusbar").text or ""),
               "the notebook's kernel ready (Idle in the status bar)")
    editor.click()
    editor.send_keys(code)

    def output(b):
        return next((node for node in b.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
                     if expect in node.text), None)
    for attempt in range(3):  # a run asked for while the kernel's connection still settles can be dropped
        editor.click()
        editor.send_keys(Keys.CONTROL, Keys.ENTER)
        try:
            return wait_until(browser, output, f"the cell's output ({expect})", timeout=WAIT / 3).text
        except AssertionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _first(browser, selector: str):
    from selenium.webdriver.common.by import By
    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found and found[0].is_displayed() else None
