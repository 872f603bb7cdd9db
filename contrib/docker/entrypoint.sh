#!/bin/sh
# Start one worker of docker-compose.federation.yml: a certificate from the shared test CA
# (made by whichever server starts first; the second worker of a server finds its first
# worker's), then `tricolor run` with the mounted config.
set -eu
python - "$SERVER_NAME" <<'PY'
import os, sys
from config.tls import ensure_ca, issue_server_cert
name = sys.argv[1]
ca_cert, ca_key = ensure_ca("/ca")
os.makedirs("/data/tls", exist_ok=True)
if not os.path.exists("/data/tls/server.crt"):
    issue_server_cert(ca_cert, ca_key, name, "/data/tls/server.crt", "/data/tls/server.key")
PY
exec tricolor run -c /config/homeserver.yaml
