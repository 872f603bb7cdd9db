# Helpers shared by start.sh and start_peer.sh (sourced, not run). They expect
# SYNAPSE_PY, PIDFILE, URL, CONFIG, DATA_DIR and SERVER_NAME to be set.

# True when the pid in $PIDFILE is alive and is a Synapse (not a recycled pid).
synapse_alive() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE")"
    kill -0 "$pid" 2>/dev/null || return 1
    [ ! -r "/proc/$pid/cmdline" ] || tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q synapse
}

# Exit 0 when $URL answers /_matrix/client/versions with 200 (no proxy).
answers() {
    "$SYNAPSE_PY" - "$URL/_matrix/client/versions" <<'PYEOF' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PYEOF
}

# Generate Synapse's own config once (keys, log config); our overrides go on top.
generate_config_once() {
    [ -f "$CONFIG" ] && return 0
    (cd "$DATA_DIR" && "$SYNAPSE_PY" -m synapse.app.homeserver \
        --server-name "$SERVER_NAME" \
        --config-path "$CONFIG" \
        --data-directory "$DATA_DIR" \
        --generate-config --report-stats=no >/dev/null)
}
