#!/usr/bin/env bash
# Tests of the etcd Persistence backend (cairn-store feature `etcd`) against a real etcd.
# Installs what is missing from Debian: protobuf-compiler (protoc, needed to build etcd-client)
# and etcd-server (the tests start their own etcd on loopback ports, data under a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

CAIRN_REQUIRE_ETCD=1 cargo test -p cairn-store --features etcd --locked
