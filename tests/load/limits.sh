#!/usr/bin/env bash
# Throughput of `govctl serve` with limits on and off, under the same load
# (run.sh's: agent-support-1 → search_kb for alice, every decision an allow).
#
#   tests/load/limits.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Off: the example registry without budgets (search_kb has no rate limit,
# agent-support-1 no run limits), so an allow moves no limit counter. On:
# the example registry with its two daily budgets (user and organization)
# and a rate limit on search_kb high enough never to deny, so every allow
# checks and moves three limit counters in its write. Both count each call
# for anomaly alerts, which is always on.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-30}
connections=${2:-64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp -r infra/policies "$work/on"
cp -r infra/policies "$work/off"
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
on = open(f"{work}/on/registry.yaml").read()
on = on.replace(
    "    allowed_roles: [support_agent, privacy_officer]\n",
    "    allowed_roles: [support_agent, privacy_officer]\n"
    "    rate_limit: { limit: 1000000000, per: user, window_seconds: 86400 }\n", 1)
open(f"{work}/on/registry.yaml", "w").write(on)
off = open(f"{work}/off/registry.yaml").read()
off = off[: off.index("\nbudgets:")] + "\n"
open(f"{work}/off/registry.yaml", "w").write(off)
PY

for variant in off on; do
  echo "== limits $variant"
  GOVCTL_LOAD_POLICY="$work/$variant" LOAD_PORT=$((18190 + ${#variant})) \
    tests/load/run.sh "$duration" "$connections" | grep -E '^RESULT|^recorded|^machine'
done
