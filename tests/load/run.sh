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
. tests/load/serve.sh

# Warm up, then measure. One wrk thread: the two cores are shared with the server.
wrk -t1 -c"$connections" -d3s -s tests/load/authorize.lua "http://127.0.0.1:$port" >/dev/null
before=$(count_allows)
out=$(wrk -t1 -c"$connections" -d"${duration}s" --latency -s tests/load/authorize.lua "http://127.0.0.1:$port")
echo "$out"
after=$(count_allows)
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
