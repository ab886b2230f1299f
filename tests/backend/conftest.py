"""Backend fixtures: a throwaway PostgreSQL 15 cluster, and services over SQLite and PostgreSQL alike."""
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from kaos_backend.config import Config
from kaos_backend.services import Services
from tests.support.backend import free_port

PG_BIN = Path(os.environ.get("KAOS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _unprivileged_prefix(directory: Path):
    """initdb and pg_ctl refuse to run as root: run them as `nobody`, owning the cluster's directory."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


@pytest.fixture(scope="session")
def postgres_server():
    """`postgresql+psycopg://kaos@127.0.0.1:<port>`: a cluster of our own, stopped and removed at the end."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        message = f"PostgreSQL 15 server binaries not found in {PG_BIN} (apt-get install postgresql-15)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="kaos-pg-"))
    prefix = _unprivileged_prefix(base)
    data, port = base / "data", free_port()

    def run(*argv):
        result = subprocess.run(prefix + [str(arg) for arg in argv], cwd=base, capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            raise RuntimeError(f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}\n{log}")

    try:
        run(PG_BIN / "initdb", "-D", data, "-U", "kaos", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        run(PG_BIN / "pg_ctl", "-D", data, "-l", base / "server.log", "-w", "-t", "60", "-o", options, "start")
        yield f"postgresql+psycopg://kaos@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(prefix + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           cwd=base, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's cluster."""
    import psycopg

    name = f"kaos_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"{postgres_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kaos.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_services(tmp_path, database_url):
    """Services (as one gunicorn worker has them) over one data directory and database; call it again for
    another "worker" on the same state."""
    made = []

    def make(**overrides):
        config = Config.from_env({}, data_dir=tmp_path / "data", database_url=database_url, **overrides)
        made.append(Services(config))
        return made[-1]

    yield make
    for services in made:
        services.dispose()


@pytest.fixture
def services(make_services):
    return make_services()
