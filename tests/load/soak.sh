#!/usr/bin/env bash
# Sustained load on `govctl serve`: MINUTES minutes (default 10) of POST
# /v1/authorize at full load (or, with TARGET `gateway`, of MCP tools/call
# through /mcp to the example upstream, tests/mcp/upstream.py in .venv), one
# wrk run per minute, reporting per minute the throughput, p50 and p99, the
# largest WAL seen (sampled every second), and the server's resident memory
# and open files. Afterwards the decision log must hold every allow the
# server answered (and, through the gateway, every call's execution).
#
#   tests/load/soak.sh [MINUTES] [CONNECTIONS] [authorize|gateway]
#
# Passes when the WAL never exceeded 64 MiB and the last minute's p99 is
# within 1.5x of the first minute's. Not part of the test command: it takes
# minutes and its figures belong in docs/performance.md. Installs wrk with
# apt-get when missing. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-10}
connections=${2:-32}
target=${3:-authorize}
port=${LOAD_PORT:-18182}
script=tests/load/authorize.lua
upstream= policy=
if [ "$target" = gateway ]; then
  # Every server of the example registry at the example upstream.
  up_port=$((port + 1))
  .venv/bin/python tests/mcp/upstream.py --port "$up_port" </dev/null >/dev/null 2>&1 &
  upstream=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$up_port/stats" >/dev/null && break; sleep 0.1; done
  policy=$(mktemp -d)
  cp -r infra/policies/. "$policy/"
  sed -i "s#\"http://127.0.0.1:8931/mcp\"#\"http://127.0.0.1:$up_port/mcp\"#" "$policy/registry.yaml"
  export GOVCTL_LOAD_POLICY="$policy"
  script=tests/load/gateway.lua
fi
. tests/load/serve.sh
wal="$data/governance.db-wal"

# One line a second: the WAL's size in bytes.
(while kill -0 "$server" 2>/dev/null; do stat -c %s "$wal" 2>/dev/null || echo 0; sleep 1; done) >"$data/wal.samples" &
extra_pids="$! $upstream"
trap 'kill "$server" $extra_pids 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data" ${policy:+"$policy"}' EXIT

# Decisions only: through the gateway each call also has an execution record.
count_allows() {
  python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from decisions where decision='allow' and json_extract(record, '$.execution') is null\").fetchone()[0])" "$data/governance.db"
}
count_executions() {
  python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from decisions where json_extract(record, '$.execution.status') = 'succeeded'\").fetchone()[0])" "$data/governance.db"
}

before=$(count_allows)
executions_before=$(count_executions)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $connections connections"
printf '%-6s %10s %10s %10s %12s %10s %8s\n' minute rps p50_ms p99_ms max_wal_MiB rss_MiB fds
requests_total=0; non2xx_total=0; first_p99=; last_p99=; max_wal=0
for m in $(seq "$minutes"); do
  lines_before=$(wc -l <"$data/wal.samples")
  result=$(wrk -t1 -c"$connections" -d60s -s "$script" "http://127.0.0.1:$port" | grep '^RESULT')
  minute_wal=$(tail -n +"$((lines_before + 1))" "$data/wal.samples" | sort -n | tail -1)
  minute_wal=${minute_wal:-0}
  (( minute_wal > max_wal )) && max_wal=$minute_wal
  field() { sed -E "s/.*$1=([0-9.]+).*/\1/" <<<"$result"; }
  rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
  fds=$(ls "/proc/$server/fd" | wc -l)
  p99=$(field p99_ms)
  [ -z "$first_p99" ] && first_p99=$p99
  last_p99=$p99
  requests_total=$((requests_total + $(field requests)))
  non2xx_total=$((non2xx_total + $(field non2xx)))
  printf '%-6s %10s %10s %10s %12.1f %10.1f %8s\n' "$m" "$(field rps)" "$(field p50_ms)" "$p99" \
    "$(echo "$minute_wal / 1048576" | bc -l)" "$(echo "$rss_kib / 1024" | bc -l)" "$fds"
done
recorded=$(( $(count_allows) - before ))
executed=$(( $(count_executions) - executions_before ))
echo "responses: $requests_total, non-2xx: $non2xx_total, allow records written: $recorded"
[ "$target" = gateway ] && echo "execution records written: $executed"
echo "largest WAL: $(echo "$max_wal / 1048576" | bc -l | xargs printf '%.1f') MiB; p99 first minute $first_p99 ms, last minute $last_p99 ms"
status=0
if [ "$target" = gateway ] && (( executed < requests_total )); then
  echo "FAIL: some calls answered through the gateway have no execution record" >&2; status=1
fi
if (( non2xx_total != 0 || recorded < requests_total )); then
  echo "FAIL: some answered allows were not recorded, or some requests were refused" >&2; status=1
fi
if (( max_wal > 64 * 1048576 )); then
  echo "FAIL: the WAL grew past 64 MiB" >&2; status=1
fi
if (( $(echo "$last_p99 > 1.5 * $first_p99" | bc -l) )); then
  echo "FAIL: the last minute's p99 is more than 1.5x the first minute's" >&2; status=1
fi
exit $status
