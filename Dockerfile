# The Tricolor homeserver image (docker-compose.federation.yml builds it).
#
# Two stages: the first installs the package into a virtualenv, the second copies only that
# onto a slim base and runs it as an unprivileged user. Data (signing key, media, TLS) lives
# in /data, configs are mounted at /config, the test CA (compose only) at /ca.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY homeserver homeserver
COPY client_api client_api
COPY federation federation
COPY storage storage
COPY config config
COPY ai_assistant ai_assistant
RUN python -m venv /opt/tricolor \
 && /opt/tricolor/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin tricolor \
 && mkdir -p /data /ca /config \
 && chown tricolor:tricolor /data /ca
COPY --from=build /opt/tricolor /opt/tricolor
COPY contrib/docker/entrypoint.sh /usr/local/bin/tricolor-entrypoint
ENV PATH=/opt/tricolor/bin:$PATH PYTHONUNBUFFERED=1
USER tricolor
WORKDIR /data
# client, federation (TLS), metrics
EXPOSE 8008 8448 9000
# Liveness only (/health asks nothing of the database); orchestrators that route traffic
# should also probe /ready.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8008/health', timeout=4)"]
ENTRYPOINT ["tricolor-entrypoint"]
