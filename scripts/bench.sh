#!/usr/bin/env bash
# Benchmark of a real Coordinator process (outside CI; see interfaces.md §8 and crates/cairn-bench).
#
# Usage: scripts/bench.sh [cairn-bench ARGS...]     e.g. scripts/bench.sh --rate 500 --json
#   --smoke   a seconds-long run with tiny counts
#
# Installs Debian's golang-cfssl when `cfssl` is missing (the peer for the issuance comparison;
# cairn-bench starts `cfssl serve` on loopback itself), builds the release binaries, prints the
# load average, and runs target/release/cairn-bench, which starts target/release/cairn-coordinator.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cfssl >/dev/null 2>&1; then
    echo "== installing golang-cfssl" >&2
    if ! { apt-get install -y golang-cfssl >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y golang-cfssl >/dev/null; }; }; then
        echo "warning: cannot install golang-cfssl; the cfssl comparison will be skipped" >&2
    fi
fi

echo "== building release binaries" >&2
cargo build --release --locked -p cairn-coordinator -p cairn-bench

echo "== $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >&2
exec target/release/cairn-bench "$@"
