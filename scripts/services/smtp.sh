# An SMTP server for the tests of the `smtp` message provider. Sourced after lib.sh;
# `ensure_smtp` exports QUESTLINE_TEST_SMTP_PYTHON: a Python interpreter that can import
# `aiosmtpd`. Unlike PostgreSQL and Redis, no server is started here: each test starts a
# sink of its own on a free port of 127.0.0.1 (crates/testkit/src/smtp.rs), scripted to
# refuse some recipients, and reads what it received.
#
# 1. QUESTLINE_TEST_SMTP_PYTHON already set: used as it is (it must import aiosmtpd).
# 2. `python3` on the PATH, the system's /usr/bin/python3, or the virtualenv of an earlier
#    run ($QUESTLINE_SMTP_VENV) imports aiosmtpd: that one.
# 3. Otherwise: Debian's `python3-aiosmtpd` is installed with apt-get (as root or through
#    passwordless sudo) when apt knows the package; failing that, aiosmtpd is installed with
#    pip into a virtualenv under ~/.cache (kept: later runs reuse it).

QUESTLINE_SMTP_VENV=${QUESTLINE_SMTP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/questline/smtp-venv}

# smtp_python_ok PYTHON: whether PYTHON runs and imports aiosmtpd.
smtp_python_ok() {
    [[ -n $1 ]] && "$1" -c 'import aiosmtpd.smtp' >/dev/null 2>&1
}

# smtp_find_python: the first interpreter that imports aiosmtpd, on standard output.
smtp_find_python() {
    local python
    for python in "$(command -v python3 2>/dev/null)" /usr/bin/python3 "$QUESTLINE_SMTP_VENV/bin/python"; do
        if smtp_python_ok "$python"; then
            echo "$python"
            return 0
        fi
    done
    return 1
}

smtp_use() {
    export QUESTLINE_TEST_SMTP_PYTHON=$1
    service_log smtp "aiosmtpd importable by $1 (each test starts its own sink)"
}

ensure_smtp() {
    if [[ -n ${QUESTLINE_TEST_SMTP_PYTHON:-} ]]; then
        if smtp_python_ok "$QUESTLINE_TEST_SMTP_PYTHON"; then
            service_log smtp "using QUESTLINE_TEST_SMTP_PYTHON"
            return 0
        fi
        service_log smtp "QUESTLINE_TEST_SMTP_PYTHON=$QUESTLINE_TEST_SMTP_PYTHON cannot import aiosmtpd"
        return 1
    fi
    local python
    if python=$(smtp_find_python); then
        smtp_use "$python"
        return 0
    fi
    # Debian's package, when apt knows one (it installs for the system's /usr/bin/python3).
    local policy
    policy=$(apt-cache policy python3-aiosmtpd 2>/dev/null) || policy=
    if [[ $policy == *"Candidate: "[0-9]* ]]; then
        service_log smtp "aiosmtpd missing; installing the Debian package python3-aiosmtpd"
        if apt_install python3-aiosmtpd && smtp_python_ok /usr/bin/python3; then
            smtp_use /usr/bin/python3
            return 0
        fi
        service_log smtp "could not install python3-aiosmtpd (needs root or passwordless sudo); trying pip"
    fi
    smtp_pip_venv || {
        service_log smtp "cannot install aiosmtpd: install python3-aiosmtpd or \`pip install aiosmtpd\`, or set QUESTLINE_TEST_SMTP_PYTHON"
        return 1
    }
    smtp_use "$QUESTLINE_SMTP_VENV/bin/python"
}

# smtp_pip_venv: aiosmtpd from PyPI into a virtualenv of its own under ~/.cache.
smtp_pip_venv() {
    local base
    base=$(command -v python3 2>/dev/null || echo /usr/bin/python3)
    [[ -x $base ]] || return 1
    service_log smtp "installing aiosmtpd with pip into $QUESTLINE_SMTP_VENV"
    mkdir -p "$(dirname "$QUESTLINE_SMTP_VENV")" || return 1
    if [[ ! -x $QUESTLINE_SMTP_VENV/bin/python ]]; then
        "$base" -m venv "$QUESTLINE_SMTP_VENV" || return 1
    fi
    "$QUESTLINE_SMTP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check aiosmtpd || return 1
    smtp_python_ok "$QUESTLINE_SMTP_VENV/bin/python"
}
