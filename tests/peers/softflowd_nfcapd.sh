#!/usr/bin/env bash
# Replay a pcap through softflowd into nfcapd (reference collector), optionally
# capturing softflowd's export datagrams, and print nfdump totals as CSV.
#   softflowd_nfcapd.sh VERSION(5|9|10) PORT PCAP OUTDIR [extra softflowd args, e.g. -A milli]
# Writes OUTDIR/nfcapd/ (nfcapd files) and, if dumpcap is present, OUTDIR/export.pcap
# (classic pcap of the UDP datagrams). Compare with ground truth:
#   python3 tests/peers/nfdump_vs_truth.py OUTDIR/nfcapd TRUTH.json
# Never pass -c to softflowd with -r: 1.1.0 then blocks forever on its control socket.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 VERSION PORT PCAP OUTDIR [softflowd args]" >&2; exit 2; }
ver=$1 port=$2 pcap=$3 out=$4; shift 4
[ "$port" -ge 1 ] && [ "$port" -le 65535 ] || { echo "bad port $port" >&2; exit 2; }
rm -rf "$out/nfcapd"; mkdir -p "$out/nfcapd"

udp_bound() { ss -Hlun "sport = :$port" | grep -q .; }
if udp_bound; then echo "udp port $port already in use" >&2; exit 1; fi

cap_pid=
if command -v dumpcap > /dev/null; then
    dumpcap -q -P -i lo -f "udp port $port" -B 64 -w "$out/export.pcap" 2> "$out/dumpcap.log" &
    cap_pid=$!
fi
nfcapd -b 127.0.0.1 -p "$port" -w "$out/nfcapd" -t 3600 -B 4194304 -I "softflowd_v$ver" \
    > "$out/nfcapd.log" 2>&1 &
nf_pid=$!
cleanup() {
    kill "$nf_pid" 2> /dev/null || true
    [ -z "$cap_pid" ] || kill "$cap_pid" 2> /dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do udp_bound && break; sleep 0.1; done
[ -z "$cap_pid" ] || sleep 1  # let dumpcap attach its filter

softflowd -r "$pcap" -n "127.0.0.1:$port" -v "$ver" -a -m 200000 -d "$@" > "$out/softflowd.log" 2>&1
sleep 1  # let nfcapd drain its socket
kill "$nf_pid"; wait "$nf_pid" || true
if [ -n "$cap_pid" ]; then kill "$cap_pid" 2> /dev/null || true; wait "$cap_pid" || true; fi
trap - EXIT

grep -h -E 'Flows exported' "$out/softflowd.log" || true
grep -h -E '^Ident' "$out/nfcapd.log" || true
for f in ipv4 ipv6; do
    echo "# $f"
    nfdump -R "$out/nfcapd" -q -N -o csv -s proto "$f" | grep . || true
done
