#!/usr/bin/env python3
"""Compare nfdump per-protocol totals of an nfcapd directory with gen_pcap.py ground truth.

usage: nfdump_vs_truth.py NFCAPD_DIR TRUTH.json [--ipv4-only]   (--ipv4-only for NetFlow v5)
Runs `nfdump -R DIR -q -N -o csv -s proto ipv4|ipv6`; exits 1 on any difference.
"""
import csv
import json
import subprocess
import sys

NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmp6"}


def nfdump_by_proto(d, ver):
    out = subprocess.run(["nfdump", "-R", d, "-q", "-N", "-o", "csv", "-s", "proto", ver],
                         capture_output=True, text=True, check=True).stdout
    got = {}
    for row in csv.DictReader(l for l in out.splitlines() if l.strip()):
        if row.get("fl") is None:  # "No matching flows" and similar
            continue
        key = "%s/%s" % (ver, NAMES.get(row["val"].strip(), row["val"].strip()))
        got[key] = {"flows": int(row["fl"]), "packets": int(row["ipkt"]),
                    "bytes": int(row["ibyt"])}
    return got


def main():
    d, truth = sys.argv[1], json.load(open(sys.argv[2]))
    versions = ["ipv4"] if "--ipv4-only" in sys.argv else ["ipv4", "ipv6"]
    zero = {"flows": 0, "packets": 0, "bytes": 0}
    ok = True
    for ver in versions:
        got = nfdump_by_proto(d, ver)
        for k in sorted(set(got) | {k for k in truth["by_proto"] if k.startswith(ver + "/")}):
            g, t = got.get(k, zero), truth["by_proto"].get(k, zero)
            same = g == t
            ok &= same
            print("%-11s nfdump %-48s truth %-48s %s" % (k, g, t, "OK" if same else "DIFF"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
