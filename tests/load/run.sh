#!/usr/bin/env bash
# Load test of `govctl serve`: allowed decisions per second and latency, with
# every decision durably recorded. Afterwards it checks that the decision log
# holds exactly as many allow records as the server answered with 200.
#
#   tests/load/run.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Installs wrk with apt-get when missing. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-15}
connections=${2:-64}
port=${LOAD_PORT:-18181}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release -p govctl --bin govctl
bin="$CARGO_TARGET_DIR/release/govctl"
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" ${GOVCTL_LOAD_LOG:+--log "$GOVCTL_LOAD_LOG"} 2>"$data/serve.log" &
server=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
export AGENT_TOKEN=$("$bin" agent token agent-support-1 --data-dir "$data")
export USER_TOKEN=$("$bin" user token alice --role support_agent --data-dir "$data")

# Warm up, then measure. One wrk thread: the two cores are shared with the server.
wrk -t1 -c"$connections" -d3s -s tests/load/authorize.lua "http://127.0.0.1:$port" >/dev/null
before=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from decisions where decision='allow'\").fetchone()[0])" "$data/governance.db")
out=$(wrk -t1 -c"$connections" -d"${duration}s" --latency -s tests/load/authorize.lua "http://127.0.0.1:$port")
echo "$out"
after=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from decisions where decision='allow'\").fetchone()[0])" "$data/governance.db")
result=$(grep '^RESULT' <<<"$out")
requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$result")
recorded=$((after - before))
echo "recorded allow decisions during the run: $recorded (responses: $requests, non-2xx: $non2xx)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# wrk stops mid-flight: requests it abandoned at the deadline may have been recorded but not counted.
if (( non2xx != 0 || recorded < requests )); then
  echo "FAIL: some answered allows were not recorded, or some requests were refused" >&2
  exit 1
fi
