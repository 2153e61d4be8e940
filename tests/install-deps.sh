#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian 12 machine (idempotent):
# the real peers (softflowd, pmacct, nfdump and its sfcapd, tshark, snmpd, snmpsim), promtool (Debian's `prometheus`) to lint
# /metrics, a JDK and the QuestDB jar from Maven Central, rustfmt/clippy, Python 3. Run as root (CI and the dev machines are root).
set -euo pipefail

QUESTDB_VERSION="${QUESTDB_VERSION:-9.3.4}"

need_apt=()
for pkg_bin in softflowd:softflowd pmacct:pmacctd nfdump:nfcapd nfdump-sflow:sfcapd tshark:tshark snmpd:snmpd snmp:snmpget python3:python3 openjdk-17-jre-headless:java maven:mvn prometheus:promtool; do
    pkg="${pkg_bin%%:*}"
    bin="${pkg_bin##*:}"
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer for it.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

jar="$HOME/.m2/repository/org/questdb/questdb/$QUESTDB_VERSION/questdb-$QUESTDB_VERSION.jar"
if [ ! -f "$jar" ]; then
    echo "install-deps: fetching org.questdb:questdb:$QUESTDB_VERSION from Maven Central"
    mvn -q dependency:get -Dartifact="org.questdb:questdb:$QUESTDB_VERSION" -Dtransitive=false
fi
test -f "$jar"

# snmpsim from PyPI, an SNMP agent independent of nmsd (tests/tests/snmp_snmpsim.rs), in its own
# venv where tests/src/snmpsim.rs looks for it. snmpsim 1.2.2 imports pysmi without declaring it.
SNMPSIM_VERSION="1.2.2"
SNMPSIM_VENV="${SNMPSIM_VENV:-$HOME/.cache/nmsd-tests/snmpsim-$SNMPSIM_VERSION}"
if ! "$SNMPSIM_VENV/bin/python" -c 'import snmpsim, pysmi' >/dev/null 2>&1 \
    || [ ! -x "$SNMPSIM_VENV/bin/snmpsim-command-responder" ]; then
    echo "install-deps: pip install snmpsim==$SNMPSIM_VERSION into $SNMPSIM_VENV"
    rm -rf "$SNMPSIM_VENV"
    mkdir -p "$(dirname "$SNMPSIM_VENV")"
    if ! python3 -m venv "$SNMPSIM_VENV" >/dev/null 2>&1; then
        # Debian's python3 needs python3-venv for ensurepip.
        rm -rf "$SNMPSIM_VENV"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$SNMPSIM_VENV"
    fi
    "$SNMPSIM_VENV/bin/pip" install -q --disable-pip-version-check \
        "snmpsim==$SNMPSIM_VERSION" "pysnmp==7.1.30" "pysmi==2.0.0"
fi
test -x "$SNMPSIM_VENV/bin/snmpsim-command-responder"

# cargo-deb builds the Debian package (packaging/check-deb.sh).
CARGO_DEB_VERSION="3.8.0"
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "install-deps: cargo install cargo-deb@$CARGO_DEB_VERSION"
    cargo install --quiet --locked "cargo-deb@$CARGO_DEB_VERSION"
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "install-deps: ok (softflowd $(softflowd -v 2>&1 | head -1 | grep -o '[0-9.]*' | head -1 || true), $(nfdump -V 2>&1 | head -1), QuestDB $QUESTDB_VERSION, snmpsim $SNMPSIM_VERSION)"
