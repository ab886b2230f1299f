# The kaos backend's image for Kubernetes: kaos's wheel, with the extras a cluster needs (PostgreSQL, the
# Kubernetes client, the Docker SDK for the image builds), installed into the base image of kaos's builds.
#
#   .venv/bin/python -m build --wheel --outdir build/dist .      (or `make demo`, which builds it there)
#   docker build -f infrastructure/kubernetes/backend.Dockerfile -t kaos-backend:2.0.0.dev0 build/dist
#
# The build's context is the folder of the wheel, nothing else (the checkout, with its .venv, is far bigger).
#
# BASE_IMAGE: kaos-base-python:bookworm (`kaos-backend base-image` makes it where no registry is reachable), or
# any Debian image with python3 and pip, e.g. python:3.11-slim-bookworm.
ARG BASE_IMAGE=kaos-base-python:bookworm
FROM ${BASE_IMAGE}

# Package indexes of the build's machine, when it has them, as build arguments (not kept in the image); proxies
# are Docker's own predefined build arguments (HTTP_PROXY, ...).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST

COPY kaos-*.whl /tmp/wheels/
RUN set -eu; \
    wheel="$(ls /tmp/wheels/kaos-*.whl)"; \
    [ "$(echo "$wheel" | wc -w)" -eq 1 ] || { echo "expected one kaos wheel, found: $wheel" >&2; exit 1; }; \
    python3 -m pip install --no-cache-dir --disable-pip-version-check "${wheel}[postgres,kubernetes,docker]"; \
    rm -rf /tmp/wheels; \
    useradd --system --uid 10001 --user-group --home-dir /var/lib/kaos --no-create-home kaos; \
    install -d -o kaos -g kaos -m 0700 /var/lib/kaos

ENV KAOS_DATA_DIR=/var/lib/kaos \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/kaos
EXPOSE 8080 8081
ENTRYPOINT ["kaos-backend"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
