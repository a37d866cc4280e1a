#!/usr/bin/env bash
# Runs every check and test of agent-governance on a fresh machine that has
# only Rust and Python 3. It installs nothing system-wide for this issue's
# suites; later suites add their own set-up here.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are shared between runs on one machine; a fresh clone reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agent-governance/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== example policy set"
cargo run -q --locked -p govctl -- policy validate infra/policies
cargo run -q --locked -p govctl -- policy test infra/policies

echo "== unit, property, differential and black-box HTTP tests"
cargo test --workspace --locked
