#!/usr/bin/env bash
# A private net-snmp agent for the tests (docs/snmp-design.md § 13).
#   snmpd.sh start DIR PORT CONF_TEMPLATE   start snmpd on 127.0.0.1:PORT, wait until it answers,
#                                           print its engine ID and usmUser key lines
#   snmpd.sh stop DIR                       stop it
# The template's @PORT@ and @TESTS@ (absolute path of tests/) are replaced; its
# "# snmpd-modules: LIST" line is passed as -I LIST (default -smux). State lives in DIR only:
# DIR/snmpd.conf, DIR/persist (SNMP_PERSISTENT_DIR, where snmpd keeps engine ID, boots and the
# localized USM keys), DIR/snmpd.log, DIR/snmpd.pid. As root, snmpd runs as Debian-snmp (as the
# Debian package runs it), so DIR is handed to that user.
set -euo pipefail
usage() { echo "usage: $0 start DIR PORT CONF_TEMPLATE | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
tests="$(cd "$(dirname "$0")/.." && pwd)"

stop() {
    local pidf="$dir/snmpd.pid"
    [ -f "$pidf" ] || return 0
    local pid; pid=$(cat "$pidf" 2> /dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2> /dev/null && kill -9 "$pid" 2> /dev/null || true
    fi
    rm -f "$pidf"
}

case "$cmd" in
start)
    [ $# -eq 4 ] || usage
    port=$3 template=$4
    [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || { echo "bad port $port" >&2; exit 2; }
    if ! command -v snmpd > /dev/null && [ ! -x /usr/sbin/snmpd ] || ! command -v snmpget > /dev/null; then
        [ "$(id -u)" -eq 0 ] || { echo "snmpd/snmp missing: apt-get install -y snmpd snmp" >&2; exit 1; }
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends snmpd snmp > /dev/null
    fi
    snmpd=$(command -v snmpd || echo /usr/sbin/snmpd)
    if ss -Hlun "sport = :$port" | grep -q .; then echo "udp port $port already in use" >&2; exit 1; fi
    stop
    mkdir -p "$dir/persist"
    dir="$(cd "$dir" && pwd)"
    sed -e "s|@PORT@|$port|g" -e "s|@TESTS@|$tests|g" "$template" > "$dir/snmpd.conf"
    modules=$(sed -n 's/^# *snmpd-modules: *//p' "$template" | head -1)
    modules=${modules:--smux}
    run=()
    if [ "$(id -u)" -eq 0 ]; then
        chown -R Debian-snmp "$dir"
        run=(runuser -u Debian-snmp --)
    fi
    # -f: foreground (we background it, so the pid is snmpd's); -C: only this config file;
    # -m "": no MIB loading; -Lf: log to a file.
    setsid "${run[@]}" env SNMP_PERSISTENT_DIR="$dir/persist" "$snmpd" -f -C -c "$dir/snmpd.conf" \
        -m "" -I "$modules" -Lf "$dir/snmpd.log" -p "$dir/snmpd.pid" \
        < /dev/null > "$dir/snmpd.out" 2>&1 &
    up=
    for _ in $(seq 100); do
        if snmpget -m "" -v2c -c public -r 0 -t 0.3 -On 127.0.0.1:"$port" 1.3.6.1.2.1.1.3.0 > /dev/null 2>&1; then
            up=1; break
        fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "snmpd on 127.0.0.1:$port did not answer; log:" >&2
        cat "$dir/snmpd.log" "$dir/snmpd.out" >&2 2> /dev/null || true
        stop; exit 1
    fi
    # snmpd writes engine ID and localized keys to its persistent file shortly after start.
    for _ in $(seq 50); do grep -q '^usmUser' "$dir/persist/snmpd.conf" 2> /dev/null && break; sleep 0.1; done
    grep -h -E '^(oldEngineID|usmUser) ' "$dir/persist/snmpd.conf" 2> /dev/null || true
    ;;
stop) stop ;;
*) usage ;;
esac
