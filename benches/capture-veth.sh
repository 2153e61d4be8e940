#!/usr/bin/env bash
# Live capture (issue 13): packets per second on a veth pair without kernel drops, nmsd's
# `capture` source against `softflowd -i`, at the same offered rates, in one run.
#
#   sudo benches/capture-veth.sh [RATES="100000 200000 400000 max"] [SECONDS=5] [THREADS=1]
#
# Needs root (a network namespace, AF_PACKET) and tcpreplay (benches/install-peers.sh). It
# makes namespace nmsdbench with a veth pair: nmsdb1 inside, where tcpreplay sends a generated
# capture (tests/gen_pcap.py) at each rate, and nmsdb0 outside, where the collector captures.
# Traffic never leaves the pair. Per collector and rate it prints what tcpreplay sent, what
# the collector read, what the kernel dropped for it, and its CPU seconds. Both collectors
# capture whole frames' headers (nmsd: snap_length 256; softflowd: its own snap length) and
# export nowhere that costs (softflowd to the discard port, nmsd to no sink). The host is
# `lscpu`'s; the sender shares its cores.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${1:-"100000 200000 400000 max"}
SECS=${2:-5}
THREADS=${3:-1} # the capture source's `threads`
NS=nmsdbench
for tool in tcpreplay softflowd softflowctl ip; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run benches/install-peers.sh" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespace, AF_PACKET)" >&2; exit 1; }
cargo build --release --quiet -p nmsd
DIR=$PWD/target/capture-veth
rm -rf "$DIR"
mkdir -p "$DIR/state"
PCAP=$DIR/traffic.pcap
python3 tests/gen_pcap.py --flows 20000 --duration 60 --out "$PCAP" >/dev/null

cleanup() {
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip link add nmsdb0 type veth peer name nmsdb1
ip link set nmsdb1 netns "$NS"
ip link set nmsdb0 up
ip netns exec "$NS" ip link set nmsdb1 up
# No IPv6 autoconfiguration chatter on the pair.
sysctl -qw net.ipv6.conf.nmsdb0.disable_ipv6=1 || true
sleep 1

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick_hz=$(getconf CLK_TCK)

# tcpreplay at RATE for SECS; prints the packets it sent. RATE "max": two senders at top
# speed (one tcpreplay tops out near 450k packets/s here).
send() {
    if [ "$1" = max ]; then
        for _ in 1 2; do
            ip netns exec "$NS" tcpreplay -q -i nmsdb1 --topspeed --loop=1000 --duration="$SECS" \
                "$PCAP" 2>&1 | awk '/Actual:/ { print $2; exit }' &
        done | awk '{ s += $1 } END { print s }'
        wait
        return
    fi
    ip netns exec "$NS" tcpreplay -q -i nmsdb1 --pps="$1" --loop=1000 --duration="$SECS" "$PCAP" \
        2>&1 | awk '/Actual:/ { print $2; exit }'
}

metric() { # name: the sum of its series on nmsd's /metrics
    curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $NF } END { printf "%d", s }'
}

PORT=19877
for rate in $RATES; do
    # nmsd
    cat > "$DIR/config.toml" <<EOF
[general]
state_dir = "$DIR/state"
log_level = "warn"
[control]
listen = "127.0.0.1:$PORT"
[sources.cap]
type = "capture"
interface = "nmsdb0"
threads = $THREADS
EOF
    target/release/nmsd run --config "$DIR/config.toml" 2>"$DIR/nmsd.log" &
    PID=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
    t0=$(cpu_ticks "$PID")
    sent=$(send "$rate")
    sleep 1.5 # the drop count is read every second
    t1=$(cpu_ticks "$PID")
    read_=$(metric nmsd_packet_frames_total)
    drops=$(metric nmsd_capture_kernel_drops_total)
    kill "$PID"; wait "$PID" || true; PID=
    printf 'nmsd (%st)  %7s pps offered: sent %9s, read %9s, kernel drops %8s, CPU %5.2f s\n' \
        "$THREADS" "$rate" "$sent" "$read_" "$drops" "$(echo "($t1 - $t0) / $tick_hz" | bc -l)"

    # softflowd
    rm -f "$DIR/ctl"
    softflowd -d -i nmsdb0 -n 127.0.0.1:9 -v 9 -c "$DIR/ctl" >"$DIR/softflowd.log" 2>&1 &
    PID=$!
    for _ in $(seq 50); do [ -S "$DIR/ctl" ] && break; sleep 0.1; done
    sleep 0.5
    t0=$(cpu_ticks "$PID")
    sent=$(send "$rate")
    sleep 1.5
    t1=$(cpu_ticks "$PID")
    softflowctl -c "$DIR/ctl" statistics > "$DIR/stats" 2>&1 || true
    # libpcap's "received" includes what the kernel dropped (PACKET_STATISTICS adds them).
    drops=$(awk -F': *' '/^Packets dropped by (libpcap|interface)/ { s += $2 } END { print s }' "$DIR/stats")
    read_=$(awk -F': *' -v d="$drops" '/^Packets received by libpcap/ { print $2 - d; exit }' "$DIR/stats")
    kill "$PID"; wait "$PID" || true; PID=
    printf 'softflowd  %7s pps offered: sent %9s, read %9s, kernel drops %8s, CPU %5.2f s\n' \
        "$rate" "$sent" "${read_:-?}" "${drops:-?}" "$(echo "($t1 - $t0) / $tick_hz" | bc -l)"
done
lscpu | grep -E "Model name|^CPU\(s\)|L2|L3"
