#!/usr/bin/env bash
# Fuzzing smoke test for CI: builds the fuzz targets and runs each one for a bounded time
# over the committed seeds and regression inputs. Exits non-zero if any target crashes,
# hangs (> 10 s on one input) or runs out of memory.
#
#   bash fuzz/smoke.sh            # 20 s per target
#   FUZZ_SECONDS=120 bash fuzz/smoke.sh
#
# Uses the stable toolchain with `-s none` (no sanitizer). New inputs found go to a scratch
# directory, so the committed corpus is never modified; crash inputs land in
# fuzz/artifacts/<target>/ (gitignored).
set -euo pipefail
cd "$(dirname "$0")"

SECS="${FUZZ_SECONDS:-20}"
TARGETS=(record segment index inspect signed_index recover)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== building fuzz targets"
cargo fuzz build -s none

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${TARGETS[@]}"; do
    echo "== fuzzing $t for ${SECS}s"
    mkdir -p "$scratch/$t"
    inputs=("corpus/$t")
    [ -d "regressions/$t" ] && inputs+=("regressions/$t")
    if ! cargo fuzz run -s none "$t" "$scratch/$t" "${inputs[@]}" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        failed+=("$t")
    else
        grep -E '^(stat::number_of_executed_units|Done )' "$scratch/$t.log" || true
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz smoke FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke passed: ${TARGETS[*]}"
