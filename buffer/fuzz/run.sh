#!/usr/bin/env bash
# Build the nmsd-buffer fuzz targets and run each for a while.
#
# usage: buffer/fuzz/run.sh [SECONDS] [TARGET...]
#
#   SECONDS   time per target (default 60)
#   TARGET    run only these (default: decode_batch open_segment)
#
# Builds into $CARGO_TARGET_DIR/fuzz when CARGO_TARGET_DIR is set (else buffer/fuzz/target).
# New inputs go to a scratch corpus under that target dir, so a run never changes the
# repository. A committed corpus, buffer/fuzz/corpus/<target>/, is read as seeds when there is
# one: corpus/decode_batch/ holds one encoded batch per stream, the batches of the format
# fixtures (buffer/tests/format_v1.rs keeps them equal and rewrites them under NMSD_BLESS=1). Exits non-zero if a target crashed, printing where the input was written
# (buffer/fuzz/artifacts/<target>/). Needs cargo-fuzz; stable toolchain with RUSTC_BOOTSTRAP=1
# (cargo-fuzz passes -Z flags), as parsers/fuzz/run.sh does.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds=60
targets=()
for arg in "$@"; do
    case "$arg" in
        '' | *[!0-9]*) targets+=("$arg") ;;
        *) seconds="$arg" ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(decode_batch open_segment)

if command -v rustup >/dev/null 2>&1 && [[ -z "${RUSTUP_TOOLCHAIN:-}" ]]; then
    export RUSTUP_TOOLCHAIN=stable
fi
export RUSTC_BOOTSTRAP=1
triple="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}"
target_dir="${target_dir:-$here/target}"

# -O optimised, -a with debug assertions and overflow checks (arithmetic bugs become crashes).
(cd "$here/.." && cargo fuzz build -O -a --target "$triple" --target-dir "$target_dir")

failed=()
for t in "${targets[@]}"; do
    scratch="$target_dir/scratch-corpus/$t"
    seeds=()
    [[ -d "$here/corpus/$t" ]] && seeds=("$here/corpus/$t")
    artifacts="$here/artifacts/$t"
    log="$target_dir/logs/$t.log"
    mkdir -p "$scratch" "$artifacts" "$(dirname "$log")"
    echo "run.sh: $t for ${seconds}s (log: $log)"
    rc=0
    # The first corpus directory receives new inputs: the scratch one.
    "$target_dir/$triple/release/$t" "$scratch" "${seeds[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -max_len=8192 -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$log" 2>&1 || rc=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    echo "run.sh: $t: ${runs:-?} runs, $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")"
    if [[ $rc -ne 0 ]]; then
        failed+=("$t")
        grep -m1 -A12 'panicked at' "$log" >&2 || tail -n 20 "$log" >&2
    fi
done
[[ ${#failed[@]} -eq 0 ]] || { echo "run.sh: failed: ${failed[*]}" >&2; exit 1; }
