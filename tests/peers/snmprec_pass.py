#!/usr/bin/python3
# net-snmp pass_persist backend serving the rows of a static .snmprec file (OID|TAG|VALUE,
# snmpsim format) under one subtree: snmprec_pass.py FIXTURE SUBTREE
import sys, bisect
TYPES = {'2': 'integer', '4': 'string', '4x': 'octet', '6': 'objectid', '64': 'ipaddress',
         '65': 'counter', '66': 'gauge', '67': 'timeticks', '70': 'counter64'}
def key(o): return tuple(int(x) for x in o.strip('.').split('.'))
rows = []; top = key(sys.argv[2])
for line in open(sys.argv[1]):
    line = line.rstrip('\n')
    if not line or line.startswith('#'): continue
    o, t, v = line.split('|', 2)
    if key(o)[:len(top)] == top: rows.append((key(o), o, t, v))
rows.sort(); keys = [r[0] for r in rows]
def out(r):
    _, o, t, v = r
    if t == '4x': v = ' '.join(v[i:i+2] for i in range(0, len(v), 2))
    sys.stdout.write(f".{o.strip('.')}\n{TYPES[t]}\n{v}\n")
for line in sys.stdin:
    cmd = line.strip()
    if cmd == 'PING': sys.stdout.write('PONG\n')
    elif cmd in ('get', 'getnext'):
        k = key(sys.stdin.readline().strip()); i = bisect.bisect_left(keys, k)
        if cmd == 'get':
            out(rows[i]) if i < len(keys) and keys[i] == k else sys.stdout.write('NONE\n')
        else:
            if i < len(keys) and keys[i] == k: i += 1
            out(rows[i]) if i < len(keys) else sys.stdout.write('NONE\n')
    elif cmd == 'set': sys.stdin.readline(); sys.stdin.readline(); sys.stdout.write('not-writable\n')
    elif cmd == '': break
    sys.stdout.flush()
