//! CISCO-CDP-MIB cdpCacheTable rows of one poll (docs/snmp-design.md §11).
//!
//! The table (1.3.6.1.4.1.9.9.23.1.2.1.1) is indexed by cdpCacheIfIndex.cdpCacheDeviceIndex; the
//! first index component is the local ifIndex. Polled columns: AddressType 3 (CiscoNetworkProtocol,
//! ip = 1, ipv6 = 20), Address 4 (4 octets for ip), DeviceId 6, DevicePort 7, Platform 8. An
//! agent without CDP ends the walk at once (endOfMibView, noSuchObject or a row outside the
//! table), which leaves this empty: no error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nmsd_parsers::snmp::Value;

use crate::topology::Neighbour;

/// One cdpCacheEntry as polled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdpRow {
    pub address_type: Option<i64>,
    pub address: Option<Vec<u8>>,
    pub device_id: Option<String>,
    pub device_port: Option<String>,
    pub platform: Option<String>,
}

/// The cdpCacheTable of one poll: (local ifIndex, device index) → row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdpCache {
    pub rows: BTreeMap<(u32, u32), CdpRow>,
}

/// CiscoNetworkProtocol values with an address we can read.
const CDP_IP: i64 = 1;
const CDP_IPV6: i64 = 20;

fn text(v: &Value<'_>) -> Option<String> {
    v.as_text().map(|t| t.trim_end_matches('\0').to_string())
}

impl CdpCache {
    /// Take one cell of the walk: `column` of cdpCacheEntry, `index` the row's index arcs.
    /// Cells with an index that is not ifIndex.deviceIndex, or of another type than the MIB's,
    /// are ignored.
    pub fn cell(&mut self, column: u32, index: &[u32], v: &Value<'_>) {
        let &[if_index, device_index] = index else {
            return;
        };
        let row = self.rows.entry((if_index, device_index)).or_default();
        match (column, v) {
            (3, Value::Integer(t)) => row.address_type = Some(*t),
            (4, Value::OctetString(b)) => row.address = Some(b.to_vec()),
            // DeviceId is usually a host name; old devices send their MAC address in binary.
            (6, _) => row.device_id = super::lldp::lldp_text(v),
            (7, _) => row.device_port = text(v),
            (8, _) => row.platform = text(v),
            _ => {}
        }
    }

    /// The neighbours by local ifIndex; of several on one port, the lowest device index.
    pub fn neighbours(&self) -> BTreeMap<u32, Neighbour> {
        let mut out = BTreeMap::new();
        for (&(if_index, _), r) in &self.rows {
            if r.device_id.is_none() && r.device_port.is_none() && r.address.is_none() {
                continue;
            }
            out.entry(if_index).or_insert_with(|| Neighbour {
                local_if_index: Some(if_index),
                chassis_id: String::new(),
                port_id: r.device_port.clone().unwrap_or_default(),
                port_descr: String::new(),
                sys_name: r.device_id.clone().unwrap_or_default(),
                address: address(r.address_type, r.address.as_deref()),
                platform: r.platform.clone().unwrap_or_default(),
            });
        }
        out
    }
}

/// A cdpCacheAddress as an IP address: 4 octets for ip(1), 16 for ipv6(20); else none.
pub fn address(kind: Option<i64>, bytes: Option<&[u8]>) -> Option<IpAddr> {
    match (kind?, bytes?) {
        (CDP_IP, &[a, b, c, d]) => Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
        (CDP_IPV6, b) => <[u8; 16]>::try_from(b)
            .ok()
            .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::walk::{CDP_CACHE_ENTRY, IfTable, Walk};
    use nmsd_parsers::snmp::ber::BackWriter;
    use nmsd_parsers::snmp::pdu::{AnyPdu, Message, PduHeader, encode_community_message};
    use nmsd_parsers::snmp::{Oid, PduKind, Version};

    fn oid(arcs: &[u32]) -> Oid {
        Oid::from_arcs(arcs).unwrap()
    }

    fn col(c: u32, if_index: u32, dev: u32) -> Oid {
        let mut a = CDP_CACHE_ENTRY.to_vec();
        a.extend([c, if_index, dev]);
        oid(&a)
    }

    /// Run a GETBULK response (sysUpTime first) through a cdpCacheTable walk.
    fn respond(walk: &mut Walk, cache: &mut CdpCache, vbs: &[(Oid, Value<'_>)]) {
        let up = oid(&[1, 3, 6, 1, 2, 1, 1, 3, 0]);
        let mut pairs = vec![(up.as_ref(), Value::TimeTicks(7))];
        pairs.extend(vbs.iter().map(|(o, v)| (o.as_ref(), *v)));
        let mut w = BackWriter::default();
        encode_community_message(
            &mut w,
            Version::V2c,
            b"public",
            &PduHeader::new(PduKind::Response, 1),
            &pairs,
        );
        let m = Message::decode(w.as_bytes()).unwrap();
        let AnyPdu::Standard(p) = m.pdu else { panic!() };
        walk.absorb_cells(p.varbinds(), |c, idx, v, _| cache.cell(c, idx, v))
            .unwrap();
    }

    #[test]
    fn parses_rows_by_local_if_index() {
        let mut walk = Walk::new(IfTable::CdpCache, false);
        let (oids, reps) = walk.next_request(25, 100);
        assert_eq!(
            oids.len(),
            5,
            "AddressType, Address, DeviceId, DevicePort, Platform"
        );
        assert_eq!(reps, 1, "one row first: most agents have no CDP");
        let mut cache = CdpCache::default();
        // Row-major: ifIndex 1 device 3, ifIndex 7 device 1, then every column runs past the
        // table's end (into cdpCacheTable's sibling or the next column).
        let mut vbs = Vec::new();
        for (i, d, addr, id, port) in [
            (
                1u32,
                3u32,
                &[10u8, 0, 0, 2][..],
                &b"R2.lab.example"[..],
                &b"GigabitEthernet0/1"[..],
            ),
            (
                7,
                1,
                &[192, 0, 2, 50][..],
                &b"SEP001122334455"[..],
                &b"Port 1"[..],
            ),
        ] {
            vbs.push((col(3, i, d), Value::Integer(1)));
            vbs.push((col(4, i, d), Value::OctetString(addr)));
            vbs.push((col(6, i, d), Value::OctetString(id)));
            vbs.push((col(7, i, d), Value::OctetString(port)));
            vbs.push((col(8, i, d), Value::OctetString(b"cisco WS-C3850-24P")));
        }
        for c in [4u32, 5, 7, 8, 9] {
            vbs.push((col(c, 1, 3), Value::Integer(0)));
        }
        // The first row answers the probe; then pages are as large as the varbind cap allows.
        respond(&mut walk, &mut cache, &vbs[..5]);
        assert!(!walk.is_done());
        assert_eq!(walk.next_request(25, 100).1, 99 / 5);
        respond(&mut walk, &mut cache, &vbs[5..]);
        assert!(walk.is_done());
        let n = cache.neighbours();
        assert_eq!(n.len(), 2);
        assert_eq!(
            n[&1],
            Neighbour {
                local_if_index: Some(1),
                chassis_id: String::new(),
                port_id: "GigabitEthernet0/1".into(),
                port_descr: String::new(),
                sys_name: "R2.lab.example".into(),
                address: Some("10.0.0.2".parse().unwrap()),
                platform: "cisco WS-C3850-24P".into(),
            }
        );
        assert_eq!(n[&7].address, Some("192.0.2.50".parse().unwrap()));
    }

    #[test]
    fn an_agent_without_cdp_ends_the_walk_empty() {
        // endOfMibView for every column (the end of the agent's MIB view).
        let mut walk = Walk::new(IfTable::CdpCache, false);
        let mut cache = CdpCache::default();
        let (oids, _) = walk.next_request(25, 100);
        let vbs: Vec<_> = oids.into_iter().map(|o| (o, Value::EndOfMibView)).collect();
        respond(&mut walk, &mut cache, &vbs);
        assert!(walk.is_done());
        assert!(cache.neighbours().is_empty());
        // The next OID after the table belongs to another MIB.
        let mut walk = Walk::new(IfTable::CdpCache, false);
        let after = oid(&[1, 3, 6, 1, 4, 1, 9, 9, 109, 1, 1, 1, 1, 8, 1]);
        let vbs: Vec<_> = (0..5).map(|_| (after.clone(), Value::Gauge32(3))).collect();
        respond(&mut walk, &mut cache, &vbs);
        assert!(walk.is_done());
        assert!(cache.neighbours().is_empty());
        // noSuchObject (as some agents answer GETNEXT/GETBULK for an unsupported subtree).
        let mut walk = Walk::new(IfTable::CdpCache, false);
        let (oids, _) = walk.next_request(25, 100);
        let vbs: Vec<_> = oids.into_iter().map(|o| (o, Value::NoSuchObject)).collect();
        respond(&mut walk, &mut cache, &vbs);
        assert!(walk.is_done());
        assert!(cache.rows.is_empty());
    }

    #[test]
    fn addresses_and_odd_cells() {
        assert_eq!(
            address(Some(1), Some(&[127, 0, 0, 2])),
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(address(Some(1), Some(&[127, 0, 0])), None, "short");
        assert_eq!(address(Some(1), Some(&[1, 2, 3, 4, 5])), None, "long");
        assert_eq!(address(Some(7), Some(&[1, 2, 3, 4])), None, "not ip");
        assert_eq!(address(None, Some(&[1, 2, 3, 4])), None);
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(address(Some(20), Some(&v6)), Some("::1".parse().unwrap()));

        let mut cache = CdpCache::default();
        // Wrong index shapes and wrong types are ignored; a binary device ID becomes hex.
        cache.cell(6, &[1], &Value::OctetString(b"x"));
        cache.cell(6, &[1, 2, 3], &Value::OctetString(b"x"));
        cache.cell(3, &[2, 1], &Value::OctetString(b"1"));
        cache.cell(4, &[2, 1], &Value::Integer(5));
        cache.cell(
            6,
            &[2, 1],
            &Value::OctetString(&[0x00, 0x1b, 0x54, 0xaa, 0xbb, 0xcc]),
        );
        cache.cell(6, &[2, 2], &Value::OctetString(b"second"));
        let n = cache.neighbours();
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(
            n[&2].sys_name, "00:1b:54:aa:bb:cc",
            "the lowest device index wins"
        );
        assert_eq!(n[&2].address, None);
    }
}
