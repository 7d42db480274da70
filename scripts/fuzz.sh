#!/usr/bin/env bash
# Bounded fuzz run of every cargo-fuzz target in fuzz/ (outside CI; see interfaces.md §8).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60; 0 only replays seeds and regressions once (a CI-sized smoke)
#   TARGET...           default: every target listed by `cargo fuzz list`
# Environment:
#   FUZZ_SANITIZER  address|none (default none: the fuzzed crates forbid unsafe code, and without
#                   ASan the throughput is several times higher; use address to check dependencies)
#   FUZZ_RSS_MB     libFuzzer -rss_limit_mb (default 2048); FUZZ_TIMEOUT per-input seconds (default 10)
#
# Each target starts from fuzz/seeds/<t> (tracked) copied into fuzz/corpus/<t> (working corpus,
# ignored by git, grows across runs) and replays fuzz/regressions/<t> (tracked crash reproducers).
# A crash, timeout or OOM is written to fuzz/artifacts/<t>/; logs go to fuzz/logs/<t>.log.
# Prints target, executions, exec/s, coverage, crashes; exits 1 if any target crashed.
set -euo pipefail

secs="${1:-60}"
[[ $# -gt 0 ]] && shift
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
sanitizer="${FUZZ_SANITIZER:-none}"
rss_mb="${FUZZ_RSS_MB:-2048}"
timeout_s="${FUZZ_TIMEOUT:-10}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
cd "$fuzz"

# cargo-fuzz passes unstable rustc flags; the only toolchain here is stable.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} targets (sanitizer: $sanitizer)" >&2
cargo fuzz build -s "$sanitizer"

mkdir -p logs
results=()
failed=0
for t in "${targets[@]}"; do
    corpus="corpus/$t"
    artifacts="artifacts/$t"
    regressions="regressions/$t"
    log="logs/$t.log"
    mkdir -p "$corpus" "$artifacts" "$regressions"
    if [[ -d "seeds/$t" ]]; then
        cp -n "seeds/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    stamp="$(mktemp)"

    args=(-rss_limit_mb="$rss_mb" -timeout="$timeout_s" -print_final_stats=1
          -artifact_prefix="$fuzz/$artifacts/")
    [[ -f "dicts/$t.dict" ]] && args+=(-dict="dicts/$t.dict")
    if [[ "$secs" -eq 0 ]]; then
        args+=(-runs=0)
    else
        args+=(-max_total_time="$secs")
    fi

    echo "== $t: ${secs}s" >&2
    rc=0
    cargo fuzz run -s "$sanitizer" "$t" "$corpus" "$regressions" -- "${args[@]}" >"$log" 2>&1 || rc=$?

    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | awk '{print $2}')"
    new_artifacts="$(find "$artifacts" -type f -newer "$stamp")"
    rm -f "$stamp"
    crashes="$(printf '%s' "$new_artifacts" | grep -c . || true)"
    if [[ "$rc" -ne 0 && "$crashes" -eq 0 ]]; then
        crashes=1 # died without an artifact (build failure, signal): count it, see the log
    fi
    if [[ "$crashes" -ne 0 ]]; then
        failed=1
        {
            echo "-- $t failed (exit $rc); log: fuzz/$log"
            grep -m1 -A12 -E "panicked at|ERROR: libFuzzer|==ERROR" "$log" || tail -n 20 "$log"
            echo "-- artifacts:"
            printf '%s\n' "$new_artifacts" | sed 's/^/   fuzz\//'
            echo "-- minimize: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s $sanitizer $t <artifact>)"
            echo "-- then copy the minimized input to fuzz/regressions/$t/"
        } >&2
    fi
    results+=("$(printf '%-16s %12s %9s %7s %7s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$crashes")")
done

printf '\n%-16s %12s %9s %7s %7s\n' target executions exec/s cov crashes
printf '%s\n' "${results[@]}"
exit "$failed"
