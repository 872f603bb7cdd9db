#!/usr/bin/env bash
# Start a Synapse that federates over TLS on loopback: a federation peer for Tricolor
# (interop tests) or one half of a Synapse pair (sytest-lite/federation against Synapse).
#
# Usage: sytest-lite/synapse/start_peer.sh CA_DIR CLIENT_PORT FED_PORT [DATA_DIR]
#   CA_DIR       the test CA shared by every server of the network (CA_DIR/ca.crt and
#                CA_DIR/ca.key, as written by `python -m homeserver generate-config
#                --ca-dir` or `testnet up`); created if absent.
#   CLIENT_PORT  plain-HTTP client API listener on 127.0.0.1
#   FED_PORT     TLS federation (and key) listener on 127.0.0.1
#   DATA_DIR     config, sqlite database, keys, certificate, media, log and pid
#                (default /tmp/sytest-synapse-peer-FED_PORT)
# Environment:
#   SYNAPSE_VENV     virtualenv holding matrix-synapse (default .cache/synapse-venv
#                    in the repository, ignored by git);
#                    created with `pip install matrix-synapse` when missing.
#   SYNAPSE_PYTHON   python used to create that venv (default python3, needs >= 3.10)
#   TRICOLOR_PYTHON  python that can import the repository's config/tls.py, used to issue
#                    the certificate (default: the repository's .venv, else python3)
#   SYNAPSE_START_TIMEOUT  seconds to wait for the client API to answer (default 90)
#
# The server name is the IP literal 127.0.0.1:FED_PORT: Synapse has no static map, so
# peers reach each other only through names that need no discovery. The certificate
# (DATA_DIR/tls/server.crt, SAN IP:127.0.0.1) is reissued from the CA on every start and
# CA_DIR/ca.crt is the only CA trusted for outgoing federation. Loopback is allowed
# (ip_range_blacklist: []), keys are fetched from each origin (trusted_key_servers: []),
# unreachable peers are retried after 5 s, rooms are created as version 10, and every
# rate limit (client and federation) is raised. Stop it with stop_peer.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
REPO="$(cd "$HERE/../.." && pwd)"

if [ $# -lt 3 ]; then
    echo "usage: $0 CA_DIR CLIENT_PORT FED_PORT [DATA_DIR]" >&2
    exit 2
fi
CA_DIR="$1"
CLIENT_PORT="$2"
FED_PORT="$3"
DATA_DIR="${4:-/tmp/sytest-synapse-peer-$FED_PORT}"
VENV="${SYNAPSE_VENV:-$REPO/.cache/synapse-venv}"
PY="${SYNAPSE_PYTHON:-python3}"
TIMEOUT="${SYNAPSE_START_TIMEOUT:-90}"
SERVER_NAME="127.0.0.1:$FED_PORT"

for p in "$CLIENT_PORT" "$FED_PORT"; do
    if ! [[ "$p" =~ ^[0-9]+$ ]]; then
        echo "start_peer.sh: ports must be numbers, got '$p'" >&2
        exit 2
    fi
done
if [ "$CLIENT_PORT" = "$FED_PORT" ]; then
    echo "start_peer.sh: CLIENT_PORT and FED_PORT must differ" >&2
    exit 2
fi

if [ -n "${TRICOLOR_PYTHON:-}" ]; then
    TPY="$TRICOLOR_PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then
    TPY="$REPO/.venv/bin/python"
else
    TPY=python3
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import synapse' 2>/dev/null; then
    echo "start_peer.sh: installing matrix-synapse (about 240 MB, once) into $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/pip" install --quiet matrix-synapse
fi
SYNAPSE_PY="$VENV/bin/python"

mkdir -p "$DATA_DIR" "$CA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
CA_DIR="$(cd "$CA_DIR" && pwd)"
CONFIG="$DATA_DIR/homeserver.yaml"
OVERRIDES="$DATA_DIR/overrides.yaml"
PIDFILE="$DATA_DIR/homeserver.pid"
LOG="$DATA_DIR/homeserver.log"
CERT="$DATA_DIR/tls/server.crt"
KEY="$DATA_DIR/tls/server.key"
URL="http://127.0.0.1:$CLIENT_PORT"

# Exit 0 when something accepts TCP connections on 127.0.0.1:$1.
port_busy() {
    "$SYNAPSE_PY" - "$1" <<'PYEOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PYEOF
}

if synapse_alive; then
    echo "start_peer.sh: Synapse already running (pid $(cat "$PIDFILE")) on $URL, server name $SERVER_NAME" >&2
    exit 0
fi
rm -f "$PIDFILE"
for p in "$CLIENT_PORT" "$FED_PORT"; do
    if port_busy "$p"; then
        echo "start_peer.sh: port $p on 127.0.0.1 is already in use; pick other ports" >&2
        exit 1
    fi
done

if [ -f "$CONFIG" ] && ! grep -q "^server_name: \"$SERVER_NAME\"" "$CONFIG"; then
    echo "start_peer.sh: $CONFIG was generated for another server name; use another DATA_DIR" >&2
    exit 2
fi

# The certificate, from the shared CA (created if absent) via the repository's config/tls.py.
mkdir -p "$DATA_DIR/tls"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$TPY" - "$CA_DIR" "$SERVER_NAME" "$CERT" "$KEY" <<'PYEOF'
import sys
from config.tls import ensure_ca, issue_server_cert
ca_dir, host, cert, key = sys.argv[1:5]
ca_cert, ca_key = ensure_ca(ca_dir)
issue_server_cert(ca_cert, ca_key, host, cert, key)
PYEOF

generate_config_once

# Later -c files win per top-level key, so everything we need is overridden here.
cat > "$OVERRIDES" <<YAML
# Written by sytest-lite/synapse/start_peer.sh; regenerated on every start.
server_name: "$SERVER_NAME"
pid_file: "$PIDFILE"
listeners:
  - port: $CLIENT_PORT
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
  - port: $FED_PORT
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [federation]
        compress: false
tls_certificate_path: "$CERT"
tls_private_key_path: "$KEY"
federation_verify_certificates: true
federation_custom_ca_list:
  - "$CA_DIR/ca.crt"
# Peers live on 127.0.0.1: the default blocklist would refuse them.
ip_range_blacklist: []
federation_ip_range_blacklist: []
trusted_key_servers: []
suppress_key_server_warning: true
federation:
  destination_min_retry_interval: 5s
  destination_max_retry_interval: 30s
  max_short_retry_delay: 1s
  max_long_retry_delay: 5s
database:
  name: sqlite3
  args:
    database: "$DATA_DIR/homeserver.db"
media_store_path: "$DATA_DIR/media_store"
enable_registration: true
enable_registration_without_verification: true
registration_requires_3pid: []
report_stats: false
enable_metrics: false
room_list_publication_rules:
  - {user_id: "*", alias: "*", room_id: "*", action: allow}
alias_creation_rules:
  - {user_id: "*", alias: "*", room_id: "*", action: allow}
bcrypt_rounds: 4
rc_federation:
  window_size: 1000
  sleep_limit: 100000
  sleep_delay: 1
  reject_limit: 100000
  concurrent: 1000
YAML

(cd "$DATA_DIR" && "$SYNAPSE_PY" -m synapse.app.homeserver \
    -c "$CONFIG" -c "$OVERRIDES" -c "$HERE/ratelimits.yaml" --daemonize)

STEPS=$((TIMEOUT * 2))
for i in $(seq 1 "$STEPS"); do
    if [ "$i" -gt 10 ] && ! synapse_alive; then
        echo "start_peer.sh: Synapse exited during startup; last log lines:" >&2
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
    if answers; then
        echo "Synapse $("$SYNAPSE_PY" -c 'import synapse; print(synapse.__version__)') running: $URL (server name $SERVER_NAME, federation https://127.0.0.1:$FED_PORT, data $DATA_DIR, pid $(cat "$PIDFILE"))"
        exit 0
    fi
    sleep 0.5
done
echo "start_peer.sh: Synapse did not answer on $URL within ${TIMEOUT}s; see $LOG" >&2
if synapse_alive; then kill -TERM "$(cat "$PIDFILE")" 2>/dev/null || true; fi
exit 1
