#!/usr/bin/env bash
# Start/stop a private QuestDB for tests, bound to 127.0.0.1 only.
#   questdb.sh start DIR HTTP_PORT PG_PORT ILP_TCP_PORT   # waits until /exec answers
#   questdb.sh stop DIR
# Env: QUESTDB_JAR (default: the Maven-local 9.3.4 jar), JAVA (default java),
#      QUESTDB_JAVA_OPTS (default -Xms64m -Xmx1g), QUESTDB_START_TIMEOUT (s, default 60),
#      QUESTDB_EXTRA_CONF (lines appended to server.conf, e.g. line.auto.create.new.columns=false).
set -euo pipefail

JAR=${QUESTDB_JAR:-$HOME/.m2/repository/org/questdb/questdb/9.3.4/questdb-9.3.4.jar}
JAVA=${JAVA:-java}

usage() { echo "usage: $0 start DIR HTTP_PORT PG_PORT ILP_TCP_PORT | stop DIR" >&2; exit 2; }

start() {
    local dir=$1 http=$2 pg=$3 ilp=$4
    [ -f "$JAR" ] || { echo "questdb jar not found: $JAR" >&2; exit 1; }
    mkdir -p "$dir/conf" "$dir/log"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/questdb.pid" ] && kill -0 "$(cat "$dir/questdb.pid")" 2>/dev/null; then
        echo "questdb already running in $dir" >&2; exit 1
    fi
    local p
    for p in "$http" "$pg" "$ilp"; do  # a foreign server on our port would fool the wait below
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "port $p on 127.0.0.1 is already in use" >&2; exit 1
        fi
    done
    cat > "$dir/conf/server.conf" <<EOF
config.validation.strict=true
http.net.bind.to=127.0.0.1:$http
pg.net.bind.to=127.0.0.1:$pg
line.tcp.net.bind.to=127.0.0.1:$ilp
# nothing else listens: no min HTTP (health/metrics) server, no ILP/UDP
http.min.enabled=false
line.udp.enabled=false
metrics.enabled=false
telemetry.enabled=false
shared.worker.count=2
${QUESTDB_EXTRA_CONF:-}
EOF
    # shellcheck disable=SC2086
    nohup "$JAVA" ${QUESTDB_JAVA_OPTS:--Xms64m -Xmx1g} -cp "$JAR" io.questdb.ServerMain \
        -d "$dir" > "$dir/log/stdout.log" 2>&1 < /dev/null &
    echo $! > "$dir/questdb.pid"
    local deadline=$((SECONDS + ${QUESTDB_START_TIMEOUT:-60}))
    while :; do
        if ! kill -0 "$(cat "$dir/questdb.pid")" 2>/dev/null; then
            echo "questdb exited; see $dir/log/stdout.log" >&2; tail -20 "$dir/log/stdout.log" >&2
            rm -f "$dir/questdb.pid"; exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "questdb did not answer on :$http in time" >&2; stop "$dir"; exit 1
        fi
        curl -fsS -o /dev/null "http://127.0.0.1:$http/exec?query=select%201" 2>/dev/null && break
        sleep 0.2
    done
    kill -0 "$(cat "$dir/questdb.pid")" 2>/dev/null || { echo "questdb exited" >&2; exit 1; }
}

stop() {
    local dir=$1 pid i
    [ -f "$dir/questdb.pid" ] || return 0
    pid=$(cat "$dir/questdb.pid")
    if kill "$pid" 2>/dev/null; then
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/questdb.pid"
}

case "${1:-}" in
    start) [ $# -eq 5 ] || usage; start "$2" "$3" "$4" "$5" ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
