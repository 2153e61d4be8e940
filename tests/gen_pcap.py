#!/usr/bin/env python3
"""Write a seeded synthetic pcap (Ethernet) with known flows, plus ground truth.

Mix: TCP, UDP, ICMP over IPv4 and TCP, UDP, ICMPv6 over IPv6. TCP sessions
have SYN / SYN-ACK / ACK, data, FIN exchanges (some are unanswered SYNs or
SYN+RST); UDP and ICMP echo may or may not be answered. Timestamps start at
--start (default 2026-01-01T00:00:00Z) and spread over --duration seconds.

Ground truth (--truth) counts what a unidirectional flow exporter such as
softflowd reports: one flow per direction that carried packets, keyed by
(src, dst, proto, sport, dport); for ICMP sport=0, dport=type*256+code.
Bytes are IP-level (IPv4 total length, IPv6 payload length + 40).  Frames
are NOT padded to the 60-byte Ethernet minimum: softflowd 1.1.0 counts the
captured length minus the 14-byte Ethernet header, so padding would be
counted by it (real routers count IP total length).  --flows-csv writes one
line per unidirectional flow; session_first/last_us span both directions
(softflowd tracks TCP/UDP flows bidirectionally and puts the session's
first/last time in both directions' records; ICMP request and reply have
different keys in softflowd, so for ICMP the session is the direction).

Stdlib only.  python3 gen_pcap.py --seed 1 --flows 20000 --out x.pcap --truth x.json
"""
import argparse
import json
import random
import struct

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# (ip version, proto, weight)
MIX = [(4, TCP, 35), (4, UDP, 20), (4, ICMP, 10), (6, TCP, 15), (6, UDP, 12), (6, ICMP6, 8)]
TCP_PORTS = [80, 443, 22, 25, 8080, 8443]
UDP_PORTS = [53, 123, 161, 514, 443, 5060]
MAC_C, MAC_S = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
PROTO_NAME = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMP6: "icmp6"}


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def words(b):
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


class Dir:
    """One direction of a flow: prebuilt headers and running counters."""

    def __init__(self, ver, proto, src, dst, sport, dport, smac, dmac):
        self.ver, self.proto, self.src, self.dst = ver, proto, src, dst
        self.sport, self.dport = sport, dport
        self.eth = dmac + smac + (b"\x08\x00" if ver == 4 else b"\x86\xdd")
        # pseudo-header part of the L4 checksum (ICMPv4 has none)
        self.psum = 0 if proto == ICMP else words(src) + words(dst) + proto
        self.flow_label = self.seq = 0
        self.packets = self.bytes = self.flags = 0
        self.first = self.last = None
        self.ip_id = 0

    def packet(self, l4hdr, paylen):
        """Return the Ethernet frame for an L4 header (checksum 0) + zero payload."""
        l4len = len(l4hdr) + paylen
        csum = fold(self.psum + (l4len if self.psum else 0) + words(l4hdr)) or 0xFFFF
        off = {TCP: 16, UDP: 6}.get(self.proto, 2)
        l4 = l4hdr[:off] + struct.pack("!H", csum) + l4hdr[off + 2:] + bytes(paylen)
        if self.ver == 4:
            self.ip_id = (self.ip_id + 1) & 0xFFFF
            hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + l4len, self.ip_id, 0x4000,
                              64, self.proto, 0, self.src, self.dst)
            hdr = hdr[:10] + struct.pack("!H", fold(words(hdr))) + hdr[12:]
            iplen = 20 + l4len
        else:
            hdr = struct.pack("!IHBB16s16s", 0x60000000 | self.flow_label, l4len,
                              self.proto, 64, self.src, self.dst)
            iplen = 40 + l4len
        frame = self.eth + hdr + l4  # no Ethernet padding: see module docstring
        self.packets += 1
        self.bytes += iplen
        return frame


class Gen:
    def __init__(self, args):
        self.r = random.Random(args.seed)
        self.args = args
        self.start_us = args.start * 1_000_000
        self.out = []  # (ts_us, frame)
        self.dirs = []
        self.used = set()
        self.srv4 = [bytes([192, 0, 2, i]) for i in range(1, 33)] + \
                    [bytes([198, 51, 100, i]) for i in range(1, 33)]
        self.srv6 = [bytes.fromhex("20010db8000500000000000000000000")[:15] + bytes([i])
                     for i in range(1, 65)]

    def addr(self, ver):
        r = self.r
        if ver == 4:
            return bytes([10, r.randrange(256), r.randrange(256), r.randrange(1, 255)])
        return bytes.fromhex("20010db8000c0000") + r.getrandbits(64).to_bytes(8, "big")

    def emit(self, d, t, l4hdr, paylen, flags=0):
        self.out.append((t, d.packet(l4hdr, paylen)))
        d.flags |= flags
        if d.first is None:
            d.first = t
        d.last = t

    def new_flow(self, ver, proto):
        r = self.r
        while True:
            c = self.addr(ver)
            s = r.choice(self.srv4 if ver == 4 else self.srv6)
            cp = r.randrange(1024, 65536) if proto in (TCP, UDP) else 0
            sp = r.choice(TCP_PORTS if proto == TCP else UDP_PORTS) if proto in (TCP, UDP) else 0
            k = (proto, frozenset([(c, cp), (s, sp)]))
            if k not in self.used:
                self.used.add(k)
                break
        fwd = Dir(ver, proto, c, s, cp, sp, MAC_C, MAC_S)
        rev = Dir(ver, proto, s, c, sp, cp, MAC_S, MAC_C)
        if ver == 6:
            fwd.flow_label, rev.flow_label = r.getrandbits(20), r.getrandbits(20)
        t = self.start_us + r.randrange(self.args.duration * 1_000_000)
        getattr(self, "flow_" + ("tcp" if proto == TCP else "udp" if proto == UDP else "icmp"))(
            fwd, rev, t)
        for d, other in ((fwd, rev), (rev, fwd)):
            if d.packets:
                d.peer = d if proto in (ICMP, ICMP6) else other  # ICMP: no pairing
                self.dirs.append(d)

    def gap(self):
        return self.r.randrange(50, 2_000_000 if self.r.random() < 0.1 else 200_000)

    def tcp(self, d, peer, t, flags, paylen=0):
        ack = peer.seq if flags & ACK else 0
        hdr = struct.pack("!HHIIBBHHH", d.sport, d.dport, d.seq, ack, 0x50, flags, 65535, 0, 0)
        d.seq = (d.seq + paylen + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        self.emit(d, t, hdr, paylen, flags)

    def flow_tcp(self, c, s, t):
        r = self.r
        mss = 1460 if c.ver == 4 else 1440
        kind = r.random()
        c.seq, s.seq = r.getrandbits(32), r.getrandbits(32)
        self.tcp(c, s, t, SYN)
        if kind < 0.05:  # unanswered SYN with retransmissions
            for _ in range(r.randrange(0, 3)):
                t += 1_000_000
                c.seq = (c.seq - 1) & 0xFFFFFFFF  # retransmission: same ISN
                self.tcp(c, s, t, SYN)
            return
        t += self.gap()
        if kind < 0.10:  # refused
            self.tcp(s, c, t, RST | ACK)
            return
        self.tcp(s, c, t, SYN | ACK)
        t += self.gap()
        self.tcp(c, s, t, ACK)
        for _ in range(r.randrange(1, 4)):
            t += self.gap()
            self.tcp(c, s, t, PSH | ACK, r.randrange(20, 600))
            for _ in range(r.randrange(1, 5)):
                t += r.randrange(10, 5000)
                self.tcp(s, c, t, ACK | (PSH if r.random() < 0.3 else 0), r.randrange(1, mss + 1))
            t += self.gap()
            self.tcp(c, s, t, ACK)
        t += self.gap()
        self.tcp(c, s, t, FIN | ACK)
        t += self.gap()
        self.tcp(s, c, t, FIN | ACK)
        t += self.gap()
        self.tcp(c, s, t, ACK)

    def flow_udp(self, c, s, t):
        r = self.r
        answered = r.random() < 0.7
        for _ in range(r.randrange(1, 8)):
            n = r.randrange(8, 1200)
            self.emit(c, t, struct.pack("!HHHH", c.sport, c.dport, 8 + n, 0), n)
            t += self.gap()
            if answered:
                n = r.randrange(8, 1400)
                self.emit(s, t, struct.pack("!HHHH", s.sport, s.dport, 8 + n, 0), n)
                t += self.gap()

    def flow_icmp(self, c, s, t):
        r = self.r
        req, rep = (8, 0) if c.ver == 4 else (128, 129)
        c.dport, s.dport = req * 256, rep * 256  # how exporters encode type/code
        answered = r.random() < 0.8
        ident, size = r.randrange(65536), r.choice([56, 56, 8, 100, 512, 1000])
        for i in range(r.randrange(1, 6)):
            self.emit(c, t, struct.pack("!BBHHH", req, 0, 0, ident, i), size)
            t += r.randrange(100, 50_000)
            if answered:
                self.emit(s, t, struct.pack("!BBHHH", rep, 0, 0, ident, i), size)
            t += r.randrange(900_000, 1_100_000)

    def run(self):
        cats = [(v, p) for v, p, _ in MIX]
        weights = [w for _, _, w in MIX]
        for v, p in self.r.choices(cats, weights, k=self.args.flows):
            self.new_flow(v, p)
        self.out.sort(key=lambda x: x[0])

    def write_pcap(self, path):
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            pk = struct.Struct("<IIII").pack
            f.writelines(pk(t // 1_000_000, t % 1_000_000, len(fr), len(fr)) + fr
                         for t, fr in self.out)

    def truth(self):
        def zero():
            return {"flows": 0, "packets": 0, "bytes": 0}

        def add(acc, d):
            acc["flows"] += 1
            acc["packets"] += d.packets
            acc["bytes"] += d.bytes

        by_proto, by_ver, total, minutes = {}, {}, zero(), {}
        for d in self.dirs:
            add(by_proto.setdefault("ipv%d/%s" % (d.ver, PROTO_NAME[d.proto]), zero()), d)
            add(by_ver.setdefault("ipv%d" % d.ver, zero()), d)
            add(total, d)
            m = (d.first // 60_000_000) * 60
            minutes.setdefault(m, zero())["flows"] += 1
        per_min = {}  # packets/bytes by packet timestamp, flows by first packet
        for t, fr in self.out:
            m = (t // 60_000_000) * 60
            b = per_min.setdefault(m, zero())
            b["packets"] += 1
            b["bytes"] += (struct.unpack_from("!H", fr, 16)[0] if fr[12:14] == b"\x08\x00"
                           else struct.unpack_from("!H", fr, 18)[0] + 40)
        for m, v in minutes.items():
            per_min.setdefault(m, zero())["flows"] = v["flows"]
        return {
            "seed": self.args.seed, "sessions": self.args.flows,
            "first_ts_us": self.out[0][0], "last_ts_us": self.out[-1][0],
            "total": total, "by_version": by_ver, "by_proto": dict(sorted(by_proto.items())),
            "by_minute": {str(k): per_min[k] for k in sorted(per_min)},
            "note": "flows = unidirectional (src,dst,proto,sport,dport); bytes = IP total "
                    "length; by_minute packets/bytes by packet time, flows by first packet",
        }

    def write_flows_csv(self, path):
        import ipaddress
        with open(path, "w") as f:
            f.write("ver,proto,src,dst,sport,dport,packets,bytes,tcp_flags,first_us,last_us,"
                    "session_first_us,session_last_us\n")
            for d in sorted(self.dirs, key=lambda d: d.first):
                p = d.peer
                f.write("%d,%d,%s,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d\n" % (
                    d.ver, d.proto, ipaddress.ip_address(d.src), ipaddress.ip_address(d.dst),
                    d.sport, d.dport, d.packets, d.bytes, d.flags, d.first, d.last,
                    min(d.first, p.first or d.first), max(d.last, p.last or d.last)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flows", type=int, default=1000, help="sessions (each gives 1-2 uni-flows)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--truth", help="ground truth JSON")
    ap.add_argument("--flows-csv", help="one CSV line per unidirectional flow")
    ap.add_argument("--start", type=int, default=1767225600, help="epoch s (2026-01-01Z)")
    ap.add_argument("--duration", type=int, default=240, help="seconds over which flows start")
    args = ap.parse_args()
    g = Gen(args)
    g.run()
    g.write_pcap(args.out)
    if args.truth:
        with open(args.truth, "w") as f:
            json.dump(g.truth(), f, indent=1)
            f.write("\n")
    if args.flows_csv:
        g.write_flows_csv(args.flows_csv)


if __name__ == "__main__":
    main()
