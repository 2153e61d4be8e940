#!/usr/bin/env bash
# Build the Debian package, install it on this machine with dpkg -i, check what it installed,
# run the installed daemon on the installed config as the unit would (its state directory from
# $STATE_DIRECTORY), then purge the package. Run as root (CI and the dev machines are root);
# needs cargo-deb (tests/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo deb -p nmsd --locked
deb=$(ls -t "${CARGO_TARGET_DIR:-target}"/debian/nmsd_*.deb | head -1)
dpkg -i "$deb"
trap 'dpkg --purge nmsd >/dev/null' EXIT

test -x /usr/bin/nmsd
dpkg-query -W -f='${Conffiles}\n' nmsd | grep -q '/etc/nmsd/config.toml'
for f in /usr/lib/systemd/system/nmsd.service /usr/lib/sysctl.d/60-nmsd.conf \
    /usr/share/man/man1/nmsd.1.gz /usr/share/bash-completion/completions/nmsd \
    /usr/share/zsh/vendor-completions/_nmsd /usr/share/fish/vendor_completions.d/nmsd.fish \
    /usr/share/nmsd/prometheus/nmsd.rules.yml /usr/share/nmsd/grafana/dashboards/flows.json; do
    test -f "$f" || { echo "check-deb: $f is missing" >&2; exit 1; }
done
nmsd version
nmsd check-config /etc/nmsd/config.toml
systemd-analyze verify /usr/lib/systemd/system/nmsd.service
# The unit runs /usr/bin/nmsd without CAP_NET_ADMIN: the package raises the limit instead.
grep -q '^net.core.rmem_max' /usr/lib/sysctl.d/60-nmsd.conf
if grep -Eq '^(AmbientCapabilities|CapabilityBoundingSet)=.*CAP_NET_ADMIN' \
    /usr/lib/systemd/system/nmsd.service; then
    echo "check-deb: the unit still grants CAP_NET_ADMIN" >&2
    exit 1
fi

# The shipped config runs as shipped: state under $STATE_DIRECTORY, ready on its control port,
# a clean exit on SIGTERM.
state=$(mktemp -d)
STATE_DIRECTORY="$state" NO_COLOR=1 /usr/bin/nmsd run -c /etc/nmsd/config.toml 2>"$state/log" &
pid=$!
ready=no
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null http://127.0.0.1:9464/readyz; then ready=yes; break; fi
    sleep 0.1
done
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
if [ "$ready" != yes ] || [ "$status" -ne 0 ]; then
    echo "check-deb: the installed nmsd on the shipped config: ready=$ready exit=$status" >&2
    cat "$state/log" >&2
    exit 1
fi
ls "$state" | grep -q . || { echo "check-deb: nothing saved in \$STATE_DIRECTORY" >&2; exit 1; }
rm -rf "$state"
echo "check-deb: ok ($deb)"
