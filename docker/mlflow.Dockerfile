# syntax=docker/dockerfile:1.7
# The MLflow tracking server for docker-compose.yml: the official image plus the PostgreSQL driver it lacks,
# run as a non-root user. Same MLflow version as uv.lock, so clients and server agree on the REST API.
ARG MLFLOW_IMAGE=ghcr.io/mlflow/mlflow:v3.17.2
FROM ${MLFLOW_IMAGE}

RUN pip install --no-cache-dir psycopg2-binary==2.9.13 \
    && groupadd --system --gid 10002 mlflow \
    && useradd --system --uid 10002 --gid mlflow --home-dir /mlflow --create-home --shell /usr/sbin/nologin mlflow \
    && mkdir -p /mlartifacts \
    && chown mlflow:mlflow /mlartifacts

ENV MLFLOW_DISABLE_TELEMETRY=true
USER 10002:10002
WORKDIR /mlflow
EXPOSE 5000

# /health is exempt from MLflow's Host-header check, so it answers whatever --allowed-hosts says.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

ENTRYPOINT ["mlflow", "server"]
CMD ["--host", "0.0.0.0", "--port", "5000", "--serve-artifacts", "--artifacts-destination", "/mlartifacts"]
