# kaos developer tasks. `make test` and `make demo` work from a fresh clone (Python 3.11 with venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two worker processes (pytest-xdist; tests/support/parallel.py says how tests are grouped); `make test
# PYTEST_ARGS=--durations=40` runs serially.
PYTEST_ARGS ?= -n 2 --dist loadgroup --no-loadscope-reorder --durations=40
# `make demo` runs kaos as a user installs it: the wheel, not this checkout, in a virtualenv of its own.
DIST := build/dist
DEMO_VENV ?= build/demo-venv

.PHONY: install test demo bench manifests clean

$(BIN)/kaos: setup.py requirements-dev.txt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "Error - Python's venv module is missing: apt-get install python3-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all]' -r requirements-dev.txt
	@touch $@

install: $(BIN)/kaos

test: install
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

demo: install
	rm -rf $(DIST) $(DEMO_VENV)
	$(BIN)/python -m build -q --outdir $(DIST) .
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q --disable-pip-version-check "$$(ls $(DIST)/*.whl)[backend]"
	$(DEMO_VENV)/bin/python scripts/quickstart.py

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# The backend's Kubernetes manifests the CLI ships (kaos_cli/manifests/), rendered from infrastructure/kubernetes.
manifests: install
	$(BIN)/python scripts/render_manifests.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
