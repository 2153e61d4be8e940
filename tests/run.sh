#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs lint, unit, differential, acceptance
# (real softflowd, nfcapd/nfdump and QuestDB on loopback) tests and a short fuzz run.
#   tests/run.sh              everything (what CI runs)
#   FUZZ_SECONDS=0 tests/run.sh   skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"

step() { printf '\n== %s\n' "$*"; }

step "installing test dependencies"
tests/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "promtool: the example Prometheus config, nmsd's rules and their unit tests"
promtool check config prometheus/prometheus.yml
promtool check rules prometheus/nmsd.rules.yml
promtool test rules prometheus/nmsd.rules.test.yml

step "cargo test (unit, differential, acceptance)"
cargo build --locked -p nmsd
# Scratch dirs (QuestDB data, daemon state and logs) of earlier runs; they add up to gigabytes.
rm -rf target/acceptance
# Acceptance tests start real peers; one test binary at a time keeps 2-core machines honest.
# The promtool tests run in their own step below.
cargo test --workspace --locked -- --test-threads=2 --skip promtool_accepts_metrics

step "promtool check metrics on a scrape with NetFlow, SNMP polling (snmpd) and traps configured"
cargo test --locked -p nmsd-acceptance --test metrics_lint -- --test-threads=1

step "Debian package: build, dpkg -i, check-config, systemd-analyze verify, run the shipped config, purge"
packaging/check-deb.sh

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    step "fuzzing each decoder for ${FUZZ_SECONDS}s"
    parsers/fuzz/run.sh "$FUZZ_SECONDS"
    # The disk buffer's segment reader and batch decoder read files a crash may have torn.
    buffer/fuzz/run.sh "$(( (FUZZ_SECONDS + 1) / 2 ))"
fi

step "all tests passed"
