//! The lab's SNMP agents: one SNMPv2c agent per lab router, at the router's address, serving
//! the system group and IF-MIB (ifTable, ifXTable) with counters that are the sums of the
//! flows the router exported. GET, GETNEXT and GETBULK; a wrong community gets no answer, as
//! from a real agent.
//!
//! It uses nmsd's own BER and PDU code (nmsd-parsers, already in the binary); the test-only
//! simulator `nmsd-snmpsim` is not linked (decision 0016).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nmsd_parsers::snmp::ber::BackWriter;
use nmsd_parsers::snmp::pdu::{AnyPdu, encode_community_message};
use nmsd_parsers::snmp::{Message, Oid, PduHeader, PduKind, Value};

use super::flows::Router;

/// A value the agent serves (owned; borrowed as a [`Value`] to encode).
#[derive(Clone, Debug)]
enum Served {
    Integer(i64),
    Text(String),
    Counter32(u32),
    Counter64(u64),
    Gauge32(u32),
    TimeTicks(u32),
}

const SYSTEM: [u32; 7] = [1, 3, 6, 1, 2, 1, 1];
const IF_ENTRY: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IF_X_ENTRY: [u32; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

fn oid(prefix: &[u32], rest: &[u32]) -> Vec<u32> {
    prefix.iter().chain(rest).copied().collect()
}

/// Every object of `router`'s MIB now, in OID order.
fn mib(router: &Router, started: Instant) -> Vec<(Vec<u32>, Served)> {
    use Served::*;
    let ticks = (started.elapsed().as_millis() / 10) as u32 + 8_640_000;
    let mut m = vec![
        (
            oid(&SYSTEM, &[1, 0]),
            Text(format!("nmsd lab router {}", router.name)),
        ),
        (oid(&SYSTEM, &[3, 0]), TimeTicks(ticks)),
        (oid(&SYSTEM, &[4, 0]), Text("nmsd lab".into())),
        (oid(&SYSTEM, &[5, 0]), Text(router.name.into())),
        (oid(&SYSTEM, &[6, 0]), Text("the nmsd lab".into())),
        (
            vec![1, 3, 6, 1, 2, 1, 2, 1, 0],
            Integer(router.interfaces.len() as i64),
        ),
    ];
    let counter = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    for col in [1u32, 2, 3, 5, 7, 8, 10, 11, 13, 14, 16, 17, 19, 20] {
        for i in &router.interfaces {
            let v = match col {
                1 => Integer(i64::from(i.index)),
                2 => Text(i.name.into()),
                3 => Integer(6), // ethernetCsmacd
                5 => Gauge32(u32::try_from(i.speed_bps).unwrap_or(u32::MAX)),
                7 | 8 => Integer(1), // up
                10 => Counter32(counter(&i.in_octets) as u32),
                11 => Counter32(counter(&i.in_packets) as u32),
                16 => Counter32(counter(&i.out_octets) as u32),
                17 => Counter32(counter(&i.out_packets) as u32),
                _ => Counter32(0), // discards and errors: a healthy lab
            };
            m.push((oid(&IF_ENTRY, &[col, i.index]), v));
        }
    }
    for col in [1u32, 6, 7, 10, 11, 15, 18] {
        for i in &router.interfaces {
            let v = match col {
                1 => Text(i.name.into()),
                6 => Counter64(counter(&i.in_octets)),
                7 => Counter64(counter(&i.in_packets)),
                10 => Counter64(counter(&i.out_octets)),
                11 => Counter64(counter(&i.out_packets)),
                15 => Gauge32((i.speed_bps / 1_000_000) as u32),
                _ => Text(i.alias.into()),
            };
            m.push((oid(&IF_X_ENTRY, &[col, i.index]), v));
        }
    }
    m
}

/// The answer to one request PDU: (oid, value) pairs, the value `None` for noSuchObject
/// (GET) or endOfMibView (GETNEXT/GETBULK past the end).
fn answer(
    mib: &[(Vec<u32>, Served)],
    kind: PduKind,
    non_repeaters: usize,
    max_repetitions: usize,
    asked: &[Vec<u32>],
) -> Vec<(Vec<u32>, Option<Served>)> {
    let next = |o: &[u32]| {
        mib.iter()
            .find(|(k, _)| k.as_slice() > o)
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .unwrap_or_else(|| (o.to_vec(), None))
    };
    match kind {
        PduKind::Get => asked
            .iter()
            .map(|o| {
                let v = mib.iter().find(|(k, _)| k == o).map(|(_, v)| v.clone());
                (o.clone(), v)
            })
            .collect(),
        PduKind::GetNext => asked.iter().map(|o| next(o)).collect(),
        _ => {
            let n = non_repeaters.min(asked.len());
            let mut out: Vec<_> = asked[..n].iter().map(|o| next(o)).collect();
            let mut cursors: Vec<Vec<u32>> = asked[n..].to_vec();
            for _ in 0..max_repetitions.clamp(1, 50) {
                if cursors.is_empty() {
                    break;
                }
                let mut all_done = true;
                for c in cursors.iter_mut() {
                    let (k, v) = next(c);
                    all_done &= v.is_none();
                    *c = k.clone();
                    out.push((k, v));
                }
                if all_done {
                    break;
                }
            }
            out
        }
    }
}

/// Serve `router` on `addr` with `community`, forever (a lab thread).
pub fn run_agent(router: Arc<Router>, addr: SocketAddr, community: String) -> std::io::Result<()> {
    let socket = UdpSocket::bind(addr)?;
    let started = Instant::now();
    let mut buf = vec![0u8; 65_535];
    let mut w = BackWriter::with_capacity(4_096);
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        // Anything that is not a well-formed v2c request for our community is ignored.
        let Ok(msg) = Message::decode(datagram) else {
            continue;
        };
        if msg.community != community.as_bytes() {
            continue;
        }
        let AnyPdu::Standard(pdu) = msg.pdu else {
            continue;
        };
        if !matches!(pdu.kind, PduKind::Get | PduKind::GetNext | PduKind::GetBulk) {
            continue;
        }
        let asked: Option<Vec<Vec<u32>>> = pdu
            .varbinds()
            .map(|vb| vb.ok().map(|(o, _)| o.arcs().collect()))
            .collect();
        let Some(asked) = asked else { continue };
        let table = mib(&router, started);
        let answers = answer(
            &table,
            pdu.kind,
            usize::try_from(pdu.error_status).unwrap_or(0),
            usize::try_from(pdu.error_index).unwrap_or(0),
            &asked,
        );
        let oids: Vec<Option<Oid>> = answers
            .iter()
            .map(|(o, _)| Oid::from_arcs(o).ok())
            .collect();
        let mut varbinds = Vec::with_capacity(answers.len());
        for ((_, v), o) in answers.iter().zip(&oids) {
            let Some(o) = o else { continue };
            let value = match v {
                None if pdu.kind == PduKind::Get => Value::NoSuchObject,
                None => Value::EndOfMibView,
                Some(Served::Integer(i)) => Value::Integer(*i),
                Some(Served::Text(t)) => Value::OctetString(t.as_bytes()),
                Some(Served::Counter32(c)) => Value::Counter32(*c),
                Some(Served::Counter64(c)) => Value::Counter64(*c),
                Some(Served::Gauge32(g)) => Value::Gauge32(*g),
                Some(Served::TimeTicks(t)) => Value::TimeTicks(*t),
            };
            varbinds.push((o.as_ref(), value));
        }
        let header = PduHeader::new(PduKind::Response, pdu.request_id);
        encode_community_message(&mut w, msg.version, msg.community, &header, &varbinds);
        let _ = socket.send_to(w.as_bytes(), from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getnext_walks_in_order_and_getbulk_ends_with_end_of_mib_view() {
        let routers = super::super::flows::network(100);
        let table = mib(&routers[2], Instant::now());
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        let first = answer(
            &table,
            PduKind::GetNext,
            0,
            0,
            &[vec![1, 3, 6, 1, 2, 1, 2, 2]],
        );
        assert_eq!(first[0].0, oid(&IF_ENTRY, &[1, 1]));
        let bulk = answer(
            &table,
            PduKind::GetBulk,
            0,
            50,
            &[oid(&IF_X_ENTRY, &[18, 1])],
        );
        assert_eq!(bulk.len(), 2, "{bulk:?}");
        assert!(bulk[1].1.is_none(), "end of MIB view");
    }
}
