# PostgreSQL for the tests. Sourced after lib.sh; `ensure_postgres` exports
# QUESTLINE_TEST_POSTGRES_URL: the server on which each test creates a database of its own.
#
# 1. QUESTLINE_TEST_POSTGRES_URL already set: used as it is.
# 2. A server answering on 127.0.0.1:${QUESTLINE_TEST_POSTGRES_PORT:-5432}: used, as user
#    postgres (trust authentication, as a development machine or CI has it).
# 3. Otherwise: PostgreSQL is installed from Debian packages if missing, and a private
#    instance is started in a temporary directory (initdb + pg_ctl) on a free port,
#    127.0.0.1 only, trust authentication, no fsync (it holds nothing worth keeping); it is
#    stopped and removed when the script exits. As root it runs as the `postgres` user,
#    since PostgreSQL refuses to run as root.

QUESTLINE_TEST_POSTGRES_PORT=${QUESTLINE_TEST_POSTGRES_PORT:-5432}

ensure_postgres() {
    if [[ -n ${QUESTLINE_TEST_POSTGRES_URL:-} ]]; then
        service_log postgres "using QUESTLINE_TEST_POSTGRES_URL"
        return 0
    fi
    ensure_service postgres postgres_check postgres_start
}

postgres_check() {
    local port=${POSTGRES_PRIVATE_PORT:-$QUESTLINE_TEST_POSTGRES_PORT}
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h 127.0.0.1 -p "$port" -t 2 || return 1
    else
        port_open 127.0.0.1 "$port" || return 1
    fi
    export QUESTLINE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    service_log postgres "ready at 127.0.0.1:$port"
}

# The directory of initdb and pg_ctl: on the PATH, or the newest Debian installation.
postgres_bindir() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return 0
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

postgres_start() {
    local bindir
    if ! bindir=$(postgres_bindir); then
        service_log postgres "not installed; installing the Debian package"
        if ! apt_install postgresql; then
            service_log postgres "cannot install it (needs root or passwordless sudo): install PostgreSQL, or set QUESTLINE_TEST_POSTGRES_URL"
            return 1
        fi
        bindir=$(postgres_bindir) || return 1
    fi

    local dir port
    dir=$(mktemp -d "${TMPDIR:-/tmp}/questline-postgres.XXXXXX")
    port=$(free_port) || return 1
    # Cleaned up even if the start fails half-way.
    on_exit rm -rf "$dir"

    # PostgreSQL refuses to run as root: run it as the `postgres` user then.
    local run=()
    if [[ $(id -u) == 0 ]]; then
        id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        chown postgres "$dir"
        chmod 700 "$dir"
        run=(runuser -u postgres --)
    fi

    service_log postgres "initdb in $dir (PostgreSQL from $bindir)"
    "${run[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    local options="-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off"
    options+=" -c full_page_writes=off -c max_connections=300"
    "${run[@]}" "$bindir/pg_ctl" -s -D "$dir/data" -l "$dir/server.log" -o "$options" -w -t 60 start || {
        cat "$dir/server.log" >&2
        return 1
    }
    on_exit "${run[@]}" "$bindir/pg_ctl" -s -D "$dir/data" -m immediate -w stop
    POSTGRES_PRIVATE_PORT=$port
    service_log postgres "private instance started on 127.0.0.1:$port"
}
