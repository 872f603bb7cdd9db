#!/usr/bin/env bash
# Make sure the local backing services answer: MariaDB (127.0.0.1:3306, root
# without password, database `test`), Redis (127.0.0.1:6379) and RabbitMQ
# (127.0.0.1:5672). A service that already answers is left alone, so this is
# safe to run any number of times. Commands and fresh-install gotchas are the
# ones docs/services.md describes.
#
# Usage: scripts/services.sh [mariadb|redis|rabbitmq ...]   (default: all three)
# Exit status: 0 when every requested service answers; 1 naming the ones that
# could not be started; 2 for a bad argument.
#
# Tunables (seconds to wait for a start): SERVICES_MARIADB_WAIT (60),
# SERVICES_REDIS_WAIT (20), SERVICES_RABBITMQ_WAIT (120). SERVICES_REDIS_PORT
# (6379) exists so the start path can be exercised without touching the shared Redis.
set -euo pipefail

MARIADB_WAIT=${SERVICES_MARIADB_WAIT:-60}
REDIS_WAIT=${SERVICES_REDIS_WAIT:-20}
RABBITMQ_WAIT=${SERVICES_RABBITMQ_WAIT:-120}
REDIS_PORT=${SERVICES_REDIS_PORT:-6379}

log() { echo "services: $*" >&2; }

# Starting system services needs root; use sudo (non-interactively) when we are not.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        "$@"
    fi
}

# wait_for SECONDS COMMAND...: retry COMMAND until it succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}

# Only used when a binary is missing (a fresh machine); retries once after `apt-get update`.
apt_install() {
    log "installing $* with apt-get"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
    as_root "${apt[@]}" >/dev/null 2>&1 && return 0
    as_root apt-get update -q >/dev/null 2>&1 || true
    as_root "${apt[@]}" >/dev/null
}

# ---- MariaDB ------------------------------------------------------------------------------

mariadb_answers() { # the server is up and root may log in over TCP
    timeout 10 mariadb --connect-timeout=5 -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1
}

mariadb_alive() { # the server is up (ping succeeds even when the login is refused)
    timeout 10 mariadb-admin --connect-timeout=5 -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1
}

start_mariadb() {
    if [ ! -x /usr/sbin/mariadbd ]; then
        apt_install mariadb-server mariadb-client || return 1
    fi
    # mariadbd refuses to run as root unless a config file names the user.
    if ! grep -rqsE '^[[:space:]]*user[[:space:]]*=' /etc/mysql/; then
        as_root mkdir -p /etc/mysql/mariadb.conf.d
        printf '[mysqld]\nuser = mysql\n' | as_root tee /etc/mysql/mariadb.conf.d/99-user.cnf >/dev/null
    fi
    as_root install -d -o mysql -g mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
        as_root mariadb-install-db --user=mysql >/dev/null 2>&1 || return 1
    fi
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || return 1
    wait_for "$MARIADB_WAIT" mariadb_alive
}

ensure_mariadb() {
    if ! mariadb_answers; then
        if ! mariadb_alive; then
            log "mariadb: not answering on 127.0.0.1:3306, starting it"
            start_mariadb || return 1
        fi
        # Fresh installs only allow root through the unix socket (ERROR 1698 over TCP).
        if ! mariadb_answers; then
            log "mariadb: allowing root over TCP without a password"
            as_root mariadb -u root -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');" || return 1
        fi
        mariadb_answers || return 1
    fi
    mariadb -h 127.0.0.1 -P 3306 -u root -e 'CREATE DATABASE IF NOT EXISTS test' || return 1
    log "mariadb: ok"
}

# ---- Redis --------------------------------------------------------------------------------

redis_answers() {
    [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis() {
    if ! redis_answers; then
        log "redis: not answering on 127.0.0.1:$REDIS_PORT, starting it"
        if ! command -v redis-server >/dev/null 2>&1; then
            apt_install redis-server || return 1
        fi
        as_root install -d /var/lib/redis /var/log/redis
        # --dir: without it Redis writes into the caller's working directory.
        as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
            --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || return 1
        wait_for "$REDIS_WAIT" redis_answers || return 1
    fi
    log "redis: ok"
}

# ---- RabbitMQ -----------------------------------------------------------------------------

rabbitmq_answers() {
    # `rabbitmqctl await_startup` right after a start exits 69; check_running is reliable.
    timeout 30 rabbitmq-diagnostics -q check_running >/dev/null 2>&1
}

ensure_rabbitmq() {
    if ! rabbitmq_answers; then
        log "rabbitmq: not running, starting it (takes ~10-15 s)"
        if ! command -v rabbitmq-server >/dev/null 2>&1; then
            apt_install rabbitmq-server || return 1
        fi
        (cd /tmp && as_root rabbitmq-server -detached) || return 1
        wait_for "$RABBITMQ_WAIT" rabbitmq_answers || return 1
    fi
    log "rabbitmq: ok"
}

# ---- main ---------------------------------------------------------------------------------

main() {
    local services=() name
    for name in "$@"; do
        case "$name" in
            mariadb | mysql) services+=(mariadb) ;;
            redis) services+=(redis) ;;
            rabbitmq | rabbit | amqp) services+=(rabbitmq) ;;
            -h | --help)
                sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
                return 0
                ;;
            *)
                log "unknown service '$name' (choose from: mariadb redis rabbitmq)"
                return 2
                ;;
        esac
    done
    if [ ${#services[@]} -eq 0 ]; then
        services=(mariadb redis rabbitmq)
    fi

    local failed=()
    for name in "${services[@]}"; do
        if ! "ensure_$name"; then
            failed+=("$name")
        fi
    done
    if [ ${#failed[@]} -gt 0 ]; then
        log "could not start: ${failed[*]}"
        return 1
    fi
}

main "$@"
