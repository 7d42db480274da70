#!/usr/bin/env bash
# The whole test suite: builds every binary (end-to-end tests start the real ones), then runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins --locked
cargo test --workspace --locked
