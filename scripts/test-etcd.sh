#!/usr/bin/env bash
# Tests of the etcd Persistence backend (cairn-store feature `etcd`) and of HA mode (three
# cairn-coordinator processes built with `--features etcd` on one etcd) against a real etcd.
# Installs what is missing from Debian: protobuf-compiler + libprotobuf-dev (protoc and its
# well-known types, needed to build etcd-client) and etcd-server (the tests start their own
# etcd on loopback ports, data under a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

CAIRN_REQUIRE_ETCD=1 cargo test -p cairn-store --features etcd --locked

# HA: the etcd-enabled Coordinator is copied out of the shared target dir first, so a
# concurrent default build cannot replace it while the test runs.
ha_dir="$(mktemp -d)"
trap 'rm -rf "$ha_dir"' EXIT
cargo build -p cairn-coordinator --features etcd --locked
cp target/debug/cairn-coordinator "$ha_dir/cairn-coordinator"
cargo build -p cairn-marble --bins --locked # cairn-premain for the marbles of the HA test
cargo test -p cairn-coordinator --features etcd --locked --lib
CAIRN_REQUIRE_ETCD=1 CAIRN_HA_COORDINATOR="$ha_dir/cairn-coordinator" \
  cargo test -p cairn-e2e --test e2e --locked -- ha::
