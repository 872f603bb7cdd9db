#!/usr/bin/env bash
# Stop a Synapse peer started by start_peer.sh.
#
# Usage: sytest-lite/synapse/stop_peer.sh FED_PORT [DATA_DIR] [--wipe]
#   FED_PORT  the federation port it was started with (names the default DATA_DIR)
#   DATA_DIR  default /tmp/sytest-synapse-peer-FED_PORT
#   --wipe    (or SYNAPSE_WIPE=1) also deletes DATA_DIR
# SIGTERM, then SIGKILL after 15 s; only the pid recorded in DATA_DIR/homeserver.pid
# is signalled, and only if that process is a Synapse.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ]; then
    echo "usage: $0 FED_PORT [DATA_DIR] [--wipe]" >&2
    exit 2
fi
FED_PORT="$1"
DATA_DIR="/tmp/sytest-synapse-peer-$FED_PORT"
WIPE_ARG=""
shift
for arg in "$@"; do
    case "$arg" in
        --wipe) WIPE_ARG="--wipe" ;;
        *) DATA_DIR="$arg" ;;
    esac
done
exec "$HERE/stop.sh" "$FED_PORT" "$DATA_DIR" $WIPE_ARG
