#!/usr/bin/env bash
# End-to-end ingest benchmark of nmsd on loopback: builds nmsd and the bench tools in release,
# then runs nmsd-e2e (targets, rates and traffic as options; see --help).
#   benches/e2e.sh                                     # ceiling + nmsd, 25k..300k datagrams/s
#   benches/e2e.sh --targets nmsd,questdb,questdb-raw --rates 25k,50k,100k --duration 10
#   benches/e2e.sh --pcap tests/fixtures/softflowd_v9.pcap
# Results: bench-results/e2e-<UTC stamp>.md (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p nmsd -p nmsd-benches --bins
exec target/release/nmsd-e2e "$@"
