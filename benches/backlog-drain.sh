#!/usr/bin/env bash
# How fast nmsd's QuestDB sink drains a disk-buffer backlog while live flows keep arriving,
# against the bare questdb-rs sender on the same QuestDB (issue 12: >= 80 %).
#
#   benches/backlog-drain.sh [BACKLOG_SECS=600] [LIVE_RATE=1000]
#
# 1. A private QuestDB and nmsd (release build, raw flows and roll-ups, disk buffer) start.
# 2. QuestDB is stopped; nmsd-replay sends LIVE_RATE datagrams/s (softflowd-like v9, ~27
#    flows each) for BACKLOG_SECS: the backlog goes to the disk buffer.
# 3. QuestDB starts again on the same data; live traffic goes on at the same rate. Every
#    second the flows table's written rows and the buffer's backlog are read from /metrics,
#    until the backlog is gone: rows/s written over the drain (replay and live together).
# 4. questdb-ceiling writes 3M of the same rows into the same QuestDB: the bare sender's rows/s.
# Prints both and their ratio; the host is `lscpu`'s. Scratch under target/backlog-drain.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKLOG=${1:-600}
RATE=${2:-1000}
cargo build --release --quiet -p nmsd -p nmsd-benches --bins
BIN=target/release
DIR=$PWD/target/backlog-drain
rm -rf "$DIR"
mkdir -p "$DIR"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port); PG=$(free_port); ILP=$(free_port); CTL=$(free_port); FLOW=$(free_port)
QDB="tests/peers/questdb.sh"
cleanup() {
  [ -n "${LIVE:-}" ] && kill "$LIVE" 2>/dev/null || true
  [ -n "${NMSD:-}" ] && kill "$NMSD" 2>/dev/null || true
  "$QDB" stop "$DIR/qdb" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$QDB" start "$DIR/qdb" "$HTTP" "$PG" "$ILP" >/dev/null
cat > "$DIR/config.toml" <<EOF
[general]
state_dir = "$DIR/state"
log_level = "info"
[control]
listen = "127.0.0.1:$CTL"
[sources.netflow]
type = "netflow"
listen = "127.0.0.1:$FLOW"
[processors.rollup]
type = "rollup"
inputs = ["netflow"]
[sinks.questdb]
type = "questdb"
inputs = ["netflow", "rollup"]
url = "http://127.0.0.1:$HTTP"
table_prefix = "drain_"
buffer = { type = "disk", max_size = "8GiB", when_full = "block", fsync = "100ms" }
EOF
"$BIN/nmsd" run -c "$DIR/config.toml" > "$DIR/nmsd.log" 2>&1 &
NMSD=$!
metric() { # sum of a metric family's samples matching a label fragment
  curl -s "http://127.0.0.1:$CTL/metrics" | awk -v n="$1" -v l="$2" \
    '$1 ~ "^"n"({|$)" && index($1, l) { s += $2 } END { printf "%.0f\n", s }'
}
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CTL/readyz" >/dev/null && break; sleep 0.2; done
for _ in $(seq 100); do [ "$(metric nmsd_sink_up '')" = 1 ] && break; sleep 0.2; done
"$QDB" stop "$DIR/qdb" >/dev/null
echo "backlog: QuestDB stopped; $RATE datagrams/s for $BACKLOG s"
"$BIN/nmsd-replay" --to "127.0.0.1:$FLOW" --generate v9 --rate "$RATE" --duration "$BACKLOG" > "$DIR/replay-backlog.txt"
echo "backlog: $(metric nmsd_buffer_bytes '') bytes, $(metric nmsd_buffer_records '') batches on disk"
# A quiet machine for the measured part: wait for test runs to finish (the backlog only grows).
while pgrep -f 'cargo test|target/debug/deps/' >/dev/null; do sleep 5; done
"$BIN/nmsd-replay" --to "127.0.0.1:$FLOW" --generate v9 --rate "$RATE" --duration 0.001 >/dev/null 2>&1 || true
echo "backlog at drain start: $(metric nmsd_buffer_bytes '') bytes, $(metric nmsd_buffer_records '') batches"
# Live traffic goes on while QuestDB comes back and the backlog drains.
"$BIN/nmsd-replay" --to "127.0.0.1:$FLOW" --generate v9 --rate "$RATE" --duration 3600 > "$DIR/replay-live.txt" &
LIVE=$!
"$QDB" start "$DIR/qdb" "$HTTP" "$PG" "$ILP" >/dev/null
T0=$(date +%s.%N)
R0=$(metric nmsd_sink_rows_written_total 'table="drain_flows"')
while true; do
  sleep 1
  B=$(metric nmsd_buffer_backlog_records '')
  if [ "$B" -le 2 ]; then break; fi
done
T1=$(date +%s.%N)
R1=$(metric nmsd_sink_rows_written_total 'table="drain_flows"')
kill "$LIVE"; LIVE=
DRAIN=$(python3 -c "print(f'{($R1-$R0)/($T1-$T0):.0f}')")
echo "drain: $((R1-R0)) rows in $(python3 -c "print(f'{$T1-$T0:.1f}')") s = $DRAIN rows/s (replay and live)"
BARE=$("$BIN/questdb-ceiling" --url "http://127.0.0.1:$HTTP" --rows 3M --table-prefix bare_ 2>&1 | tee "$DIR/bare.txt" | grep -o '[0-9.]* [kM]* rows/s' | head -1 || true)
echo "bare questdb-rs sender: $BARE"
cat "$DIR/bare.txt" | tail -3
lscpu | grep -E "Model name|^CPU\(s\)|L2|L3"
