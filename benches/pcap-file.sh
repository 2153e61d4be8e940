#!/usr/bin/env bash
# Packets/s per CPU-second from a pcap file into flows (issue 13): nmsd's `replay` (decode +
# flow table, flows printed to a file), softflowd -r (NetFlow v9 to a discard port) and
# nfdump's nfpcapd -r (nfcapd files), on the same generated file, in one run.
#
#   benches/pcap-file.sh [SESSIONS=100000] [RUNS=3]
#
# The capture comes from tests/gen_pcap.py (Ethernet, TCP/UDP/ICMP, IPv4/IPv6, about 10
# packets per session); scratch under target/pcap-file. The host is `lscpu`'s.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-100000}
RUNS=${2:-3}
cargo build --release --quiet -p nmsd
DIR=$PWD/target/pcap-file
rm -rf "$DIR"
mkdir -p "$DIR"
PCAP=$DIR/traffic.pcap
python3 tests/gen_pcap.py --flows "$SESSIONS" --duration 600 --out "$PCAP" >/dev/null
PACKETS=$(capinfos -c -M "$PCAP" | awk -F: '/Number of packets/ { gsub(/ /, "", $2); print $2 }')
cat "$PCAP" > /dev/null
echo "file: $PACKETS packets, $(stat -c %s "$PCAP") bytes"
measure() { # name, command...: prints CPU seconds and packets per CPU-second
  local name=$1; shift
  /usr/bin/time -f "%U %S %M" -o "$DIR/time" "$@" > "$DIR/out" 2>"$DIR/err" || { echo "$name failed:"; cat "$DIR/err"; return; }
  read -r user sys rss < "$DIR/time"
  python3 -c "c=$user+$sys; print(f'$name: {c:.2f} CPU s, {$PACKETS/c/1e6:.2f} M packets per CPU-second, peak RSS {$rss/1024:.0f} MiB')"
}
for run in $(seq "$RUNS"); do
  echo "run $run"
  measure "  nmsd replay" target/release/nmsd replay "$PCAP"
  rm -rf "$DIR/nfp" && mkdir -p "$DIR/nfp"
  measure "  nfpcapd -r" nfpcapd -r "$PCAP" -w "$DIR/nfp"
  measure "  softflowd -r" softflowd -r "$PCAP" -n 127.0.0.1:9 -v 9
done
lscpu | grep -E "Model name|^CPU\(s\)|L2|L3"
rm -rf "$DIR"
