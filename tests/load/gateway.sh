#!/usr/bin/env bash
# Latency the MCP gateway adds: the same tools/call load (wrk, CONNECTIONS
# connections, SECONDS per phase) straight to the example upstream and
# through `govctl serve`'s /mcp in front of it, alternated ROUNDS times in
# one run. Through the gateway every call is decided, recorded durably,
# forwarded and its execution recorded; the script checks afterwards that
# the log holds a decision and an execution for every answered call.
#
# usage: tests/load/gateway.sh [CONNECTIONS=4] [SECONDS=20] [ROUNDS=2]
# The upstream is tests/mcp/upstream.py (the official MCP Python SDK) in .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${1:-4}
seconds=${2:-20}
rounds=${3:-2}
port=${GOVCTL_LOAD_PORT:-18090}
up_port=$((port + 1))

python=.venv/bin/python
[ -x "$python" ] || { echo "run ./scripts/test.sh once first: it creates .venv with the MCP SDK" >&2; exit 1; }
"$python" tests/mcp/upstream.py --port "$up_port" </dev/null >/dev/null 2>&1 &
upstream=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$up_port/stats" >/dev/null && break; sleep 0.1; done

policy=$(mktemp -d)
cp -r infra/policies/. "$policy/"
sed -i "s#\"http://127.0.0.1:8931/mcp\"#\"http://127.0.0.1:$up_port/mcp\"#" "$policy/registry.yaml"
export GOVCTL_LOAD_POLICY="$policy" GOVCTL_LOAD_LOG=${GOVCTL_LOAD_LOG:-warn}
# shellcheck source=serve.sh
source tests/load/serve.sh
extra_pids="$upstream"
trap 'kill "$server" $extra_pids 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data" "$policy"' EXIT

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $connections connections, ${seconds}s per phase"
threads=$(( connections < 2 ? connections : 2 ))
answered=0
for round in $(seq "$rounds"); do
  direct=$(env -u AGENT_TOKEN -u USER_TOKEN wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s tests/load/gateway.lua "http://127.0.0.1:$up_port" | grep '^RESULT')
  echo "round $round direct  $direct"
  through=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s tests/load/gateway.lua "http://127.0.0.1:$port" | grep '^RESULT')
  echo "round $round gateway $through"
  n=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$through")
  answered=$((answered + n))
done

counts=$(python3 -c "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
q = lambda sql: db.execute(sql).fetchone()[0]
print(q(\"select count(*) from decisions where json_extract(record, '\$.tool_id') = 'search_kb' and json_extract(record, '\$.execution') is null and decision = 'allow'\"),
      q(\"select count(*) from decisions where json_extract(record, '\$.execution.status') = 'succeeded'\"))
" "$data/governance.db")
read -r decisions executions <<<"$counts"
echo "recorded: $decisions allows and $executions executions for $answered calls answered through the gateway"
# wrk counts a request cut off at the end of a phase as unanswered; the
# server may still have recorded it.
[ "$decisions" -ge "$answered" ] && [ "$executions" -ge "$answered" ] || { echo "FAIL: answered calls without records" >&2; exit 1; }
