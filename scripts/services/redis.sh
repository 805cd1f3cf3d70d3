# Redis for the tests (the queue's Redis lane). Sourced after lib.sh; `ensure_redis` exports
# QUESTLINE_TEST_REDIS_URL: the server on which each test keeps its keys under a namespace
# of its own (tests never FLUSHALL, so a developer's own Redis is safe to use).
#
# 1. QUESTLINE_TEST_REDIS_URL already set: used as it is.
# 2. A server answering PING on 127.0.0.1:${QUESTLINE_TEST_REDIS_PORT:-6379}: used.
# 3. Otherwise: Debian's redis-server is installed if missing, and a private instance is
#    started in a temporary directory on a free port, 127.0.0.1 only, with no persistence
#    (no RDB snapshots, no AOF: it holds nothing worth keeping); it is stopped and removed
#    when the script exits.

QUESTLINE_TEST_REDIS_PORT=${QUESTLINE_TEST_REDIS_PORT:-6379}

ensure_redis() {
    if [[ -n ${QUESTLINE_TEST_REDIS_URL:-} ]]; then
        service_log redis "using QUESTLINE_TEST_REDIS_URL"
        return 0
    fi
    ensure_service redis redis_check redis_start
}

# redis_ping PORT: whether a Redis answers PONG on 127.0.0.1:PORT (redis-cli if installed,
# else a bare PING over bash's /dev/tcp).
redis_ping() {
    local port=$1 answer
    if command -v redis-cli >/dev/null; then
        [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]
    else
        exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
        printf 'PING\r\n' >&3
        read -r -t 2 answer <&3
        exec 3>&-
        [[ $answer == +PONG* ]]
    fi
}

redis_check() {
    local port=${REDIS_PRIVATE_PORT:-$QUESTLINE_TEST_REDIS_PORT}
    redis_ping "$port" || return 1
    export QUESTLINE_TEST_REDIS_URL="redis://127.0.0.1:$port"
    service_log redis "ready at 127.0.0.1:$port"
}

redis_start() {
    if ! command -v redis-server >/dev/null; then
        service_log redis "not installed; installing the Debian package"
        if ! apt_install redis-server; then
            service_log redis "cannot install it (needs root or passwordless sudo): install Redis, or set QUESTLINE_TEST_REDIS_URL"
            return 1
        fi
        # The package starts a system-wide server on 6379; this run uses its own instance all
        # the same, so that what it leaves behind is only what it installed.
    fi

    local dir port
    dir=$(mktemp -d "${TMPDIR:-/tmp}/questline-redis.XXXXXX")
    port=$(free_port) || return 1
    on_exit rm -rf "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" || {
        cat "$dir/redis.log" >&2 2>/dev/null
        return 1
    }
    # Stopped by its pid (not by name): other Redis servers on the machine are left alone.
    on_exit redis_stop "$dir/redis.pid"
    REDIS_PRIVATE_PORT=$port
    service_log redis "private instance started on 127.0.0.1:$port"
}

# redis_stop PIDFILE: stop the private server whose pid is in PIDFILE, and wait for it.
redis_stop() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    wait_until 10 bash -c "! kill -0 $pid 2>/dev/null"
}
