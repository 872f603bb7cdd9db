#!/usr/bin/env bash
# Two Synapses federating with each other over TLS on loopback (one shared test CA):
# the reference pair for sytest-lite/federation.
#
# Usage: sytest-lite/synapse/pair.sh up   [DIR] [BASE_PORT]
#        sytest-lite/synapse/pair.sh down [DIR] [BASE_PORT] [--wipe]
#   DIR        CA in DIR/ca, servers in DIR/syn1 and DIR/syn2 (default /tmp/sytest-synapse-pair)
#   BASE_PORT  syn1: client BASE, federation BASE+1; syn2: client BASE+2, federation BASE+3
#              (default 28400). Server names are 127.0.0.1:<federation port>.
# `up` prints the two client URLs; then:
#   .venv/bin/pytest sytest-lite/federation --hs-url http://127.0.0.1:28400 --hs2-url http://127.0.0.1:28402
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CMD="${1:-}"
DIR="${2:-/tmp/sytest-synapse-pair}"
BASE="${3:-28400}"
if ! [[ "$BASE" =~ ^[0-9]+$ ]]; then
    echo "pair.sh: BASE_PORT must be a number, got '$BASE'" >&2
    exit 2
fi
case "$CMD" in
    up)
        "$HERE/start_peer.sh" "$DIR/ca" "$BASE" "$((BASE + 1))" "$DIR/syn1"
        "$HERE/start_peer.sh" "$DIR/ca" "$((BASE + 2))" "$((BASE + 3))" "$DIR/syn2"
        echo "--hs-url http://127.0.0.1:$BASE --hs2-url http://127.0.0.1:$((BASE + 2))"
        ;;
    down)
        WIPE=""
        [ "${4:-}" = "--wipe" ] && WIPE="--wipe"
        "$HERE/stop_peer.sh" "$((BASE + 1))" "$DIR/syn1" $WIPE || true
        "$HERE/stop_peer.sh" "$((BASE + 3))" "$DIR/syn2" $WIPE || true
        if [ -n "$WIPE" ]; then rm -rf "$DIR"; fi
        ;;
    *)
        echo "usage: $0 up|down [DIR] [BASE_PORT] [--wipe]" >&2
        exit 2
        ;;
esac
