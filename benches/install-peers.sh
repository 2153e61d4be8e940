#!/usr/bin/env bash
# Install the collectors nmsd-e2e compares nmsd with, and the plotting tool. Idempotent: what is
# already there is left alone.
#   - goflow2 (Go module proxy, pinned below) -> $GOBIN or $(go env GOPATH)/bin/goflow2
#   - pmacct (nfacctd) and nfdump (nfcapd, nfdump) from Debian
#   - python3-matplotlib from Debian (for the PNG plot; used with /usr/bin/python3)
#   - softflowd and tcpreplay from Debian (benches/capture-veth.sh, benches/pcap-file.sh)
# Usage: benches/install-peers.sh            (needs root for apt-get, or sudo)
# Env:   GOFLOW2_VERSION overrides the pinned version; SKIP_APT=1 skips the Debian packages.
set -euo pipefail

# The one place the goflow2 version is pinned (the latest v2 release the Go proxy served on
# 2026-11-25). nmsd-e2e reads the installed binary's `-v` output into its report.
GOFLOW2_VERSION=${GOFLOW2_VERSION:-v2.2.6}

say() { echo "install-peers: $*" >&2; }

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi

# --- Debian packages -----------------------------------------------------------------------
if [ "${SKIP_APT:-0}" != 1 ]; then
    missing=()
    command -v nfacctd >/dev/null 2>&1 || missing+=(pmacct)
    { command -v nfcapd >/dev/null 2>&1 && command -v nfdump >/dev/null 2>&1; } || missing+=(nfdump)
    /usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || missing+=(python3-matplotlib)
    command -v softflowd >/dev/null 2>&1 || missing+=(softflowd)
    command -v tcpreplay >/dev/null 2>&1 || missing+=(tcpreplay)
    if [ ${#missing[@]} -gt 0 ]; then
        say "apt-get install ${missing[*]}"
        $SUDO apt-get update -qq
        # pmacct's package enables no service by default; nfdump's nfdump.service is not
        # started by policy-rc.d in containers. Neither is needed: nmsd-e2e starts its own.
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    else
        say "pmacct, nfdump, python3-matplotlib, softflowd, tcpreplay already installed"
    fi
fi

# --- goflow2 ---------------------------------------------------------------------------------
command -v go >/dev/null 2>&1 || { say "go not found (needed for goflow2)"; exit 1; }
gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
have=
if [ -x "$gobin/goflow2" ]; then
    # goflow2 -v prints "GoFlow2 VERSION ..." (the module version when built by go install).
    have=$("$gobin/goflow2" -v 2>&1 | head -1 || true)
fi
if [[ "$have" == *"$GOFLOW2_VERSION"* ]]; then
    say "goflow2 $GOFLOW2_VERSION already at $gobin/goflow2"
else
    say "go install github.com/netsampler/goflow2/v2/cmd/goflow2@$GOFLOW2_VERSION"
    # The module's main package sets its version through -ldflags in its Makefile; pass it the
    # same way so `goflow2 -v` names the version installed.
    go install -ldflags "-X main.version=$GOFLOW2_VERSION" \
        "github.com/netsampler/goflow2/v2/cmd/goflow2@$GOFLOW2_VERSION"
fi

for b in "$gobin/goflow2" "$(command -v nfacctd || true)" "$(command -v nfcapd || true)" \
    "$(command -v nfdump || true)"; do
    [ -n "$b" ] && [ -x "$b" ] || { say "missing after install: $b"; exit 1; }
done
say "goflow2: $("$gobin/goflow2" -v 2>&1 | head -1)"
say "nfacctd: $(nfacctd -V 2>&1 | head -1)"
say "nfcapd:  $(nfcapd -V 2>&1 | head -1)"
say "matplotlib: $(/usr/bin/python3 -c 'import matplotlib; print(matplotlib.__version__)' 2>/dev/null || echo missing)"
