# Sourced by the load scripts (run.sh, soak.sh): installs wrk when missing,
# builds govctl in release mode, starts `govctl serve` on 127.0.0.1:$port with
# a fresh data directory ($data, removed on exit), waits until it answers,
# and exports the tokens authorize.lua sends. Sets $bin, $data and $server.
# GOVCTL_LOAD_LOG, when set, is the server's log filter; GOVCTL_LOAD_POLICY,
# when set, a policy directory served instead of the built-in example.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release -p govctl --bin govctl
bin="$CARGO_TARGET_DIR/release/govctl"
data=$(mktemp -d)
extra_pids=
trap 'kill "$server" $extra_pids 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

# The default log (one decision line per decision) is what a user runs; it
# goes to a file here, as it would to a collector.
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" ${GOVCTL_LOAD_LOG:+--log "$GOVCTL_LOAD_LOG"} \
  ${GOVCTL_LOAD_POLICY:+--policy "$GOVCTL_LOAD_POLICY"} \
  >"$data/serve.out" 2>"$data/serve.log" &
server=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
AGENT_TOKEN=$("$bin" agent token agent-support-1 --data-dir "$data")
USER_TOKEN=$("$bin" user token alice --role support_agent --data-dir "$data")
export AGENT_TOKEN USER_TOKEN

# The allow records in the decision log now.
count_allows() {
  python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from decisions where decision='allow'\").fetchone()[0])" "$data/governance.db"
}
