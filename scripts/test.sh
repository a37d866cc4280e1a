#!/usr/bin/env bash
# Runs every check and test of agent-governance on a fresh machine that has
# only Rust and Python 3. It installs what it needs itself: the Python tools
# of scripts/requirements.txt into ./.venv (moto's AWS emulator, cfn-lint,
# Selenium, the MCP SDK and pytest), Debian's chromium and chromium-driver
# for the browser tests, and the npm packages of tests/mcp/node and
# tests/browser/provider (an OpenID Connect provider).
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are shared between runs on one machine; a fresh clone reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agent-governance/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== python tools (.venv)"
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian's python3 splits venv and ensurepip into python3-venv.
  apt-get update -qq && apt-get install -y -qq python3-venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" > "$stamp"
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== SAM template, state machine, OpenAPI"
.venv/bin/cfn-lint infra/template.yaml
python3 -c 'import json,sys; json.load(open("statemachines/approval.asl.json"))'
.venv/bin/openapi-spec-validator docs/openapi.yaml

echo "== example policy set"
cargo run -q --locked -p govctl -- policy validate infra/policies
cargo run -q --locked -p govctl -- policy test infra/policies

echo "== unit, property, differential, black-box HTTP and end-to-end AWS tests"
cargo test --workspace --locked

cargo build -q --locked -p govctl --features aws

echo "== the MCP gateway with the official MCP SDKs' clients (Python, TypeScript) and servers"
# The TypeScript client and the conformance suite run on Node.js 22, which
# tests/mcp/node installs from the npm registry as a package of its own.
GOVCTL="$CARGO_TARGET_DIR/debug/govctl" .venv/bin/python -m pytest -q -p no:cacheprovider tests/mcp

echo "== MCP conformance: an upstream directly, and through the gateway"
.venv/bin/python tests/mcp/conformance/run.py "$CARGO_TARGET_DIR/debug/govctl" \
  --known-gaps tests/mcp/conformance/known-gaps.txt

echo "== an approval in headless Chromium"
.venv/bin/python tests/browser/approve.py "$CARGO_TARGET_DIR/debug/govctl"

echo "== approvers sign in with an OpenID Connect provider (oidc-provider from npm), in headless Chromium"
.venv/bin/python tests/browser/signin.py "$CARGO_TARGET_DIR/debug/govctl"
