#!/usr/bin/env bash
# A poor man's statement profile where pg_stat_statements is not loaded (it is not in
# shared_preload_libraries here, and restarting a shared server is not ours to do): samples
# pg_stat_activity every 10 ms for SECONDS and counts, per statement (first 90 characters)
# and wait event, how often a backend of the bench's databases was busy with it. The
# shares of the samples are shares of the database's busy time.
#
#   bench/peers/pg-activity.sh 30 [DATABASE_LIKE] > profile.txt
set -euo pipefail
secs=${1:?seconds}
like=${2:-questline_bench_queue%}
url=${QUESTLINE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
sql="SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 90) || ' | ' || coalesce(wait_event_type || ':' || wait_event, 'CPU')
       FROM pg_stat_activity
      WHERE datname LIKE '$like' AND state = 'active' AND pid <> pg_backend_pid()"
{ printf '%s\n' "$sql" '\watch 0.01'; } | timeout "$secs" psql -X -At "$url" 2>/dev/null | grep -v '^$' \
    | sort | uniq -c | sort -rn | head -40 || true
