#!/usr/bin/env bash
# Build the nmsd-parsers fuzz targets and run each for a while.
#
# usage: parsers/fuzz/run.sh [--merge] [SECONDS] [TARGET...]
#
#   SECONDS   time per target (default 60)
#   TARGET    run only these (default: all of them)
#   --merge   afterwards, merge the inputs that found new coverage into the committed corpus
#             (parsers/fuzz/corpus/<target>/); without it that corpus is only read
#
# New inputs go to a scratch corpus (parsers/fuzz/target/scratch-corpus/<target>/, ignored by
# git), so a run never changes the repository unless --merge is given. Exits non-zero if any
# target crashed, leaked, ran out of memory or timed out, after printing where the input that
# did it was written (parsers/fuzz/artifacts/<target>/) and how to replay it.
#
# Needs cargo; installs cargo-fuzz if missing. Builds on the stable toolchain with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags for the sanitizer and coverage).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
parsers="$(dirname "$here")"
all_targets=(decode_v5 decode_v9 decode_ipfix differential persist_restore snmp_decode decode_packet decode_sflow)

seconds=60
merge=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --merge) merge=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        '' | *[!0-9]*)
            if [[ " ${all_targets[*]} " != *" $arg "* ]]; then
                echo "run.sh: unknown target or option '$arg' (targets: ${all_targets[*]})" >&2
                exit 2
            fi
            targets+=("$arg")
            ;;
        *) seconds="$arg" ;;
    esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all_targets[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Stable, not whatever toolchain happens to be the default; RUSTC_BOOTSTRAP lets stable take
# the -Z flags. An explicit RUSTUP_TOOLCHAIN from the caller wins.
if command -v rustup >/dev/null 2>&1 && [[ -z "${RUSTUP_TOOLCHAIN:-}" ]]; then
    export RUSTUP_TOOLCHAIN=stable
fi
export RUSTC_BOOTSTRAP=1

triple="$(rustc -vV | sed -n 's/^host: //p')"
build_start=$SECONDS
# -O: optimised; -a: keep debug assertions and overflow checks, which -O would turn off and
# which are how arithmetic bugs (a counter underflow, an overflowing sum) show up as crashes.
(cd "$parsers" && cargo fuzz build -O -a --target "$triple")
echo "run.sh: fuzz build took $((SECONDS - build_start)) s"

bin_dir="$here/target/$triple/release"
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$here/corpus/$t"
    scratch="$here/target/scratch-corpus/$t"
    artifacts="$here/artifacts/$t"
    log="$here/target/logs/$t.log"
    mkdir -p "$corpus" "$scratch" "$artifacts" "$(dirname "$log")"
    echo "run.sh: $t for ${seconds}s (log: $log)"
    rc=0
    # The first corpus directory receives new inputs: the scratch one. The committed one is
    # only read.
    "$bin_dir/$t" "$scratch" "$corpus" \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 \
        -max_len=8192 \
        -timeout=10 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        >"$log" 2>&1 || rc=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
    summary+=("$(printf '%-16s %10s runs %7s exec/s  cov %6s  %s' "$t" "${runs:-?}" \
        "${speed:-?}" "${cov:-?}" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
    if [[ $rc -ne 0 ]]; then
        failed+=("$t")
        echo "run.sh: $t FAILED (exit $rc). From its log ($log):" >&2
        # The panic message (with the failing input in hex for the differential target) or
        # the sanitizer's / libFuzzer's report, then the closing lines.
        if grep -q 'panicked at' "$log"; then
            grep -m1 -A12 'panicked at' "$log" | grep -v '^stack backtrace:' | head -n 12 >&2
        else
            grep -m1 -A25 'ERROR: ' "$log" >&2 || true
        fi
        tail -n 8 "$log" >&2
        artifact="$(grep -oE "(Test unit|artifact) written to [^ ]+" "$log" | tail -1 \
            | awk '{print $NF}')" || true
        if [[ -n "$artifact" ]]; then
            echo "run.sh: crash artifact: $artifact" >&2
            echo "run.sh: replay: $bin_dir/$t $artifact" >&2
            echo "run.sh:     or: (cd $parsers && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a $t $artifact)" >&2
        else
            echo "run.sh: no artifact was written; see $log" >&2
        fi
    fi
    if [[ $merge -eq 1 ]]; then
        before="$(find "$corpus" -type f | wc -l)"
        # set_cover_merge keeps fewer inputs than -merge=1 for the same coverage.
        "$bin_dir/$t" -set_cover_merge=1 -rss_limit_mb=2048 -max_len=8192 -timeout=10 \
            "$corpus" "$scratch" >>"$log" 2>&1 || {
            echo "run.sh: merging $t failed; see $log" >&2
            failed+=("$t (merge)")
        }
        echo "run.sh: $t corpus: $before -> $(find "$corpus" -type f | wc -l) files," \
            "$(cat "$corpus"/* | wc -c) bytes"
    fi
done

echo
echo "run.sh: summary (${seconds}s per target)"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run.sh: failed: ${failed[*]}" >&2
    exit 1
fi
