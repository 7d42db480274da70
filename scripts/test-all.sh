#!/usr/bin/env bash
# The whole test suite: builds every binary (end-to-end tests start the real ones), then runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins --locked
cargo test --workspace --locked

# A seconds-long smoke of the benchmark (the real runs: scripts/bench.sh, outside CI).
target/debug/cairn-bench --smoke --no-cfssl

# An unmodified off-the-shelf server (Debian's nginx) as a marble; installs nginx-light when missing.
./scripts/nginx-example.sh

# The etcd persistence backend (installs protobuf-compiler and etcd-server from Debian when missing).
./scripts/test-etcd.sh
cargo clippy -p cairn-store --all-targets --features etcd --locked -- -D warnings
cargo clippy -p cairn-coordinator --all-targets --features etcd --locked -- -D warnings
