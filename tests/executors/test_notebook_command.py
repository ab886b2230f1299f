"""What every executor runs for a notebook (notebook_command.py): Jupyter's own idle culling from the platform's
timeout, the base URL, no token on the command line."""
import pytest

from kaos_backend.executors.notebook_command import jupyter_arguments, listen_arguments, readiness_path


def test_the_idle_timeout_becomes_jupyter_s_culling_of_kernels_terminals_and_the_server():
    arguments = jupyter_arguments("/notebook-ws-ann/", "/work", 28800)
    assert "--ServerApp.base_url=/notebook-ws-ann/" in arguments and "--ServerApp.root_dir=/work" in arguments
    assert {"--ServerApp.shutdown_no_activity_timeout=28800", "--MappingKernelManager.cull_idle_timeout=28800",
            "--MappingKernelManager.cull_interval=60", "--TerminalManager.cull_inactive_timeout=28800",
            "--ServerApp.port_retries=0", "--ServerApp.allow_password_change=False"} <= set(arguments)
    assert not any("token" in argument.lower() for argument in arguments)  # JUPYTER_TOKEN, in its environment
    assert not any("cull" in argument or "shutdown" in argument for argument in jupyter_arguments("/n/", "/w", 0))
    assert listen_arguments("0.0.0.0", 8888) == ["--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888"]
    assert readiness_path("/notebook-ws-ann/") == "/notebook-ws-ann/api"


@pytest.mark.parametrize("base_url", ["", "notebook-ws-ann/", "/notebook-ws-ann", "/a b/"])
def test_a_base_url_that_is_not_an_absolute_path_with_a_trailing_slash_is_refused(base_url):
    with pytest.raises(ValueError):
        jupyter_arguments(base_url, "/work", 0)
