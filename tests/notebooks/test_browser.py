"""JupyterLab through the gateway in a real browser (headless Chromium), on the local executor: refused without
its token; with it, a new notebook runs a cell that lists the attached data bundle and reads its CSV."""
from tests.support.notebooks import browser_session, data_bundle, token_of, wait_state


def test_a_person_opens_the_notebook_with_its_token_and_reads_the_attached_data(notebook_platform, gateway):
    platform = notebook_platform
    workspace = platform.workspace("browsing")
    data_bundle(platform.project / "browse-data", first_line="city,temperature")
    deployed = platform.kaos("notebook", "deploy", "-d", "browse-data", timeout=300)
    assert deployed.code == 0, deployed
    name = f"notebook-{workspace}-tester"
    wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
    refused, output = browser_session(gateway, name, token_of(deployed.text), "local-notebook")
    assert refused
    files_line = next(line for line in output.splitlines() if line.startswith("FILES"))
    assert "training/data.csv" in files_line and "README.txt" in files_line and "features:" in files_line
    assert "FIRST city,temperature" in output
