# Services the tests talk to over a real connection (PostgreSQL, Redis, an SMTP sink; NATS
# JetStream next), found where they usually run or started privately for this run.
#
# Sourced by scripts/test. Each service is one file beside this one that defines
#   NAME_check   succeeds when the service answers (and exports what the tests need to find it)
#   NAME_start   installs it if missing and starts a private instance for this run, exports
#                what the tests need, and registers its own clean-up with `on_exit`
# and is brought up with `ensure_service NAME NAME_check NAME_start`.
#
# Private instances live in temporary directories, listen on 127.0.0.1 only, on a free port,
# and are stopped when the sourcing script exits.

QUESTLINE_SERVICES_CLEANUP=()

# on_exit COMMAND...: run COMMAND when the script exits (last registered, first run).
on_exit() {
    QUESTLINE_SERVICES_CLEANUP+=("$(printf '%q ' "$@")")
}

services_cleanup() {
    local i
    for ((i = ${#QUESTLINE_SERVICES_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${QUESTLINE_SERVICES_CLEANUP[$i]}" || true
    done
    QUESTLINE_SERVICES_CLEANUP=()
}
trap services_cleanup EXIT

service_log() { printf '    [%s] %s\n' "$1" "$2" >&2; }

# ensure_service NAME CHECK START: use the running service, or start a private one.
ensure_service() {
    local name=$1 check=$2 start=$3
    if "$check"; then
        return 0
    fi
    service_log "$name" "not reachable; starting a private instance"
    if ! "$start"; then
        service_log "$name" "could not be started"
        return 1
    fi
    if ! wait_until 30 "$check"; then
        service_log "$name" "started, but does not answer"
        return 1
    fi
}

# wait_until SECONDS COMMAND...: poll COMMAND (10 times a second) until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# port_open HOST PORT: whether something accepts TCP connections there.
port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# free_port: a TCP port on 127.0.0.1 where nothing listens.
free_port() {
    local port
    for port in $(shuf -i 20000-60999 -n 50); do
        if ! port_open 127.0.0.1 "$port"; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# as_root COMMAND...: run COMMAND as root (directly, or through passwordless sudo).
as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

# apt_install PACKAGE...: install Debian packages, non-interactively.
apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
