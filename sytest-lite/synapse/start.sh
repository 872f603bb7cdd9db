#!/usr/bin/env bash
# Start a local Synapse to act as the reference homeserver for sytest-lite.
#
# Usage: sytest-lite/synapse/start.sh [PORT] [DATA_DIR]
#   PORT      client+federation HTTP listener on 127.0.0.1 (default 18008)
#   DATA_DIR  where config, sqlite database, keys, media and logs live
#             (default /tmp/sytest-synapse-PORT)
# Environment:
#   SYNAPSE_VENV   virtualenv holding matrix-synapse (default .cache/synapse-venv
#                  in the repository, ignored by git);
#                  created and populated with `pip install matrix-synapse` if missing.
#   SYNAPSE_PYTHON python used to create the venv (default python3, needs >= 3.10)
#
# The server name is localhost:PORT. Re-running with the same DATA_DIR reuses the
# existing config, keys and database. Stop it with stop.sh (same arguments).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"

PORT="${1:-${SYNAPSE_PORT:-18008}}"
DATA_DIR="${2:-${SYNAPSE_DIR:-/tmp/sytest-synapse-$PORT}}"
VENV="${SYNAPSE_VENV:-$(cd "$HERE/../.." && pwd)/.cache/synapse-venv}"
PY="${SYNAPSE_PYTHON:-python3}"
SERVER_NAME="localhost:$PORT"

if ! [[ "$PORT" =~ ^[0-9]+$ ]]; then
    echo "start.sh: PORT must be a number, got '$PORT'" >&2
    exit 2
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import synapse' 2>/dev/null; then
    echo "start.sh: installing matrix-synapse (about 240 MB, once) into $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/pip" install --quiet matrix-synapse
fi
SYNAPSE_PY="$VENV/bin/python"

mkdir -p "$DATA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
CONFIG="$DATA_DIR/homeserver.yaml"
OVERRIDES="$DATA_DIR/overrides.yaml"
PIDFILE="$DATA_DIR/homeserver.pid"

URL="http://127.0.0.1:$PORT"

if synapse_alive; then
    echo "start.sh: Synapse already running (pid $(cat "$PIDFILE")) on $URL" >&2
    exit 0
fi
rm -f "$PIDFILE"
if answers; then
    echo "start.sh: something else already serves $URL; pick another PORT" >&2
    exit 1
fi

if [ -f "$CONFIG" ] && ! grep -q "^server_name: \"$SERVER_NAME\"" "$CONFIG"; then
    echo "start.sh: $CONFIG was generated for another server name; use another DATA_DIR" >&2
    exit 2
fi

generate_config_once

# Later -c files win per top-level key, so everything we need is overridden here.
cat > "$OVERRIDES" <<YAML
# Written by sytest-lite/synapse/start.sh; regenerated on every start.
server_name: "$SERVER_NAME"
pid_file: "$PIDFILE"
listeners:
  - port: $PORT
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client, federation]
        compress: false
database:
  name: sqlite3
  args:
    database: "$DATA_DIR/homeserver.db"
media_store_path: "$DATA_DIR/media_store"
enable_registration: true
enable_registration_without_verification: true
registration_requires_3pid: []
trusted_key_servers: []
suppress_key_server_warning: true
report_stats: false
enable_metrics: false
default_room_version: "10"
# Synapse lets only admins publish to the room directory unless told otherwise.
room_list_publication_rules:
  - {user_id: "*", alias: "*", room_id: "*", action: allow}
alias_creation_rules:
  - {user_id: "*", alias: "*", room_id: "*", action: allow}
bcrypt_rounds: 4  # fast password hashing: tests register hundreds of users
# The admin tests (test_80_admin.py) make their admin through shared-secret registration
# (SYTEST_SHARED_SECRET) and send server notices.
registration_shared_secret: "${SYTEST_SHARED_SECRET:-sytest-lite-shared-secret}"
server_notices:
  system_mxid_localpart: notices
  system_mxid_display_name: "Server Notices"
  room_name: "Server Notices"
YAML

(cd "$DATA_DIR" && "$SYNAPSE_PY" -m synapse.app.homeserver \
    -c "$CONFIG" -c "$OVERRIDES" -c "$HERE/ratelimits.yaml" --daemonize)

for i in $(seq 1 120); do
    if [ "$i" -gt 10 ] && ! synapse_alive; then
        echo "start.sh: Synapse exited during startup; last log lines:" >&2
        tail -n 20 "$DATA_DIR/homeserver.log" >&2 || true
        exit 1
    fi
    if answers; then
        echo "Synapse $("$SYNAPSE_PY" -c 'import synapse; print(synapse.__version__)') running: $URL (server name $SERVER_NAME, data $DATA_DIR, pid $(cat "$PIDFILE"))"
        exit 0
    fi
    sleep 0.5
done
echo "start.sh: Synapse did not answer on $URL within 60s; see $DATA_DIR/homeserver.log" >&2
exit 1
