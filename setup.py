"""kaos: from a data scientist's laptop to trained, served and reproducible models."""
from setuptools import find_namespace_packages, setup

VERSION = "2.0.0.dev0"

CLI_REQUIRES = [
    "click>=8.0",
    "requests>=2.25",
    "tqdm>=4.60",
    "terminaltables>=3.1",
    # `-o yaml` (kaos_cli/output.py): PyYAML's safe_dump is the standard YAML emitter (the backend reads its
    # OpenAPI description with it too).
    "pyyaml>=6.0",
]

BACKEND_REQUIRES = [
    "flask>=2.3",
    "sqlalchemy>=2.0",
    "gunicorn>=21.0",
    "alembic>=1.13",
    # The local executor's process trees (a workload's descendants where no cgroup holds them).
    "psutil>=5.9",
    # Reads the API's OpenAPI description (kaos_backend/openapi.yaml), served as JSON at /api/openapi.json:
    # YAML keeps the description reviewable; PyYAML is the standard parser, with a C loader where built.
    "pyyaml>=6.0",
    # The front door's HTTP/1.1 parser for requests and responses (kaos_backend/front/parsing.py): llhttp, the
    # parser behind Node.js, as uvicorn uses it; strict where hand-written parsing let smuggling cases through.
    "httptools>=0.6",
    # dockerfile-parse (Red Hat's, pure Python) reads a bundle's Dockerfile: its FROM lines with their ARGs
    # substituted (the Docker executor: a base image the engine lacks fails the build at once instead of a pull
    # that reaches no registry), and on LOCAL the instructions a virtualenv does not apply, said in the build log.
    "dockerfile-parse>=2.0",
]

EXTRAS = {
    "backend": BACKEND_REQUIRES,
    # The PostgreSQL driver: only needed when KAOS_DATABASE_URL points at PostgreSQL.
    "postgres": BACKEND_REQUIRES + ["psycopg[binary]>=3.1"],
    # The Docker executor and `kaos-backend base-image` (kaos_backend/images/): the docker SDK, an extra rather
    # than a requirement because the CLI and the LOCAL backend run without an engine. 7.1 at least: older
    # releases break with requests 2.32 ("Not supported URL scheme http+docker", docker/docker-py#3256).
    "docker": BACKEND_REQUIRES + ["docker>=7.1"],
    "kubernetes": BACKEND_REQUIRES + ["kubernetes>=28.0"],
    # A faster event loop (libuv) for the front door, used when importable (kaos_backend/front/main.py): an extra
    # of its own rather than in `backend` because its wheels are CPython-on-Unix only, and the front runs
    # correctly without it (the standard asyncio loop), only with more CPU per request.
    "speed": BACKEND_REQUIRES + ["uvloop>=0.19"],
    "test": ["pytest>=7.0"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

CODE_PACKAGES = ["kaos_model", "kaos_cli", "kaos_backend"]
# Found, not listed: every folder under them ships, with or without an __init__.py (Alembic's versions/ has
# none), including folders added later. Namespace discovery sees any folder as a package, so __pycache__ is
# excluded by name.
PACKAGES = find_namespace_packages(
    include=[pattern for name in CODE_PACKAGES for pattern in (name, f"{name}.*")],
    exclude=["*.__pycache__", "*.__pycache__.*"],
)

setup(
    name="kaos",
    version=VERSION,
    description="Open source cloud agnostic minimal DevOps private versioned ML platform.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=PACKAGES + ["kaos_templates"],
    # The top-level templates/ folder ships as the data package kaos_templates.
    package_dir={"kaos_templates": "templates"},
    package_data={
        "kaos_templates": ["**/*", "**/.*", "**/.*/*"],
        # Whatever non-Python files our packages hold ship beside the code (e.g. Alembic's script.py.mako, or
        # a .gitkeep holding an empty versions/ folder).
        **{name: ["**/*", "**/.*"] for name in CODE_PACKAGES},
    },
    # The modules already ship as code (see PACKAGES); bytecode never ships.
    exclude_package_data={name: ["*.py", "*.pyc", "*.pyo"] for name in CODE_PACKAGES},
    install_requires=CLI_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "kaos = kaos_cli.main:start",
            "kaos-backend = kaos_backend.cli:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
    ],
)
