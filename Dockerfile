# The Tricolor homeserver image (used by docker-compose.federation.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY homeserver homeserver
COPY client_api client_api
COPY federation federation
COPY storage storage
COPY config config
RUN pip install --no-cache-dir .
COPY deploy/federation/entrypoint.sh /usr/local/bin/tricolor-entrypoint
EXPOSE 8008 8448
ENTRYPOINT ["tricolor-entrypoint"]
