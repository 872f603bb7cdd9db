#!/usr/bin/env bash
# Stop a Synapse started by start.sh.
#
# Usage: sytest-lite/synapse/stop.sh [PORT] [DATA_DIR]   (same arguments as start.sh)
#   --wipe as a third argument (or SYNAPSE_WIPE=1) also deletes DATA_DIR.
set -euo pipefail

PORT="${1:-${SYNAPSE_PORT:-18008}}"
DATA_DIR="${2:-${SYNAPSE_DIR:-/tmp/sytest-synapse-$PORT}}"
WIPE="${SYNAPSE_WIPE:-0}"
[ "${3:-}" = "--wipe" ] && WIPE=1
PIDFILE="$DATA_DIR/homeserver.pid"

if [ -f "$PIDFILE" ]; then
    PID="$(cat "$PIDFILE")"
    if kill -0 "$PID" 2>/dev/null && { [ ! -r "/proc/$PID/cmdline" ] ||
        tr '\0' ' ' <"/proc/$PID/cmdline" | grep -q synapse; }; then
        kill -TERM "$PID"
        for _ in $(seq 1 60); do
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$PID" 2>/dev/null; then
            echo "stop.sh: pid $PID still alive after 15s, sending SIGKILL" >&2
            kill -KILL "$PID" 2>/dev/null || true
        fi
        echo "Synapse (pid $PID) stopped"
    else
        echo "stop.sh: pid $PID from $PIDFILE is not a running Synapse" >&2
    fi
    rm -f "$PIDFILE"
else
    echo "stop.sh: no pid file at $PIDFILE; nothing to stop" >&2
fi

if [ "$WIPE" = "1" ] && [ -d "$DATA_DIR" ]; then
    rm -rf "$DATA_DIR"
    echo "removed $DATA_DIR"
fi
