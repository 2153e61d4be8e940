#!/usr/bin/env bash
# End-to-end ingest benchmark of nmsd and its peers on loopback: builds nmsd and the bench tools
# in release, then runs nmsd-e2e (targets, rates and traffic as options; see --help).
#   benches/install-peers.sh                           # once: goflow2, nfacctd, nfcapd, matplotlib
#   benches/e2e.sh --targets ceiling,nmsd,questdb,goflow2,nfacctd,nfcapd --runs 5
#   benches/e2e.sh --targets questdb-sink,questdb-ceiling --runs 5
#   benches/e2e.sh                                     # ceiling + nmsd, 5k..300k datagrams/s
#   benches/e2e.sh --pcap tests/fixtures/softflowd-v9.pcap --rates 25k,50k --runs 1
# Results: bench-results/e2e-<UTC stamp>.{md,csv,png} (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p nmsd -p nmsd-benches --bins
exec target/release/nmsd-e2e "$@"
