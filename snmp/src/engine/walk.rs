//! Multi-column GETBULK walks of IF-MIB's ifTable and ifXTable, and the rows they build.
//!
//! A walk asks for several columns at once (row-major responses), advancing each column's
//! cursor independently, with `sysUpTime` as a non-repeater in every request so each response
//! carries the agent's clock. A column ends at endOfMibView, at the first OID outside it, or at
//! an OID that does not increase (an agent bug that would otherwise loop forever).

use std::collections::BTreeMap;
use std::sync::Arc;

use nmsd_parsers::snmp::{Oid, OidRef, SnmpError, Value};

/// sysUpTime (1.3.6.1.2.1.1.3): asked by GETNEXT as a non-repeater, so the answer is `.0`.
pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3];
const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
const IF_X_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The table a walk covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfTable {
    /// ifTable: descriptions, types, speeds, statuses, errors, discards (and 32-bit counters).
    If,
    /// ifXTable: names, aliases, high speed, HC counters, discontinuity time.
    IfX,
    /// LLDP-MIB lldpLocPortTable: local port ids (to map LLDP ports to interfaces).
    LldpLocPort,
    /// LLDP-MIB lldpRemTable: neighbours.
    LldpRem,
    /// CISCO-CDP-MIB cdpCacheTable: CDP neighbours, indexed by local ifIndex and device index.
    CdpCache,
    /// A user-defined table: (module index, table index); its columns are given explicitly.
    Custom(u16, u16),
}

const LLDP_LOC_PORT_ENTRY: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 3, 7, 1];
const LLDP_LOC_PORT_COLUMNS: &[u32] = &[2, 3, 4];
const LLDP_REM_ENTRY: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1];
const LLDP_REM_COLUMNS: &[u32] = &[4, 5, 6, 7, 8, 9];
/// cdpCacheEntry (1.3.6.1.4.1.9.9.23.1.2.1.1); index cdpCacheIfIndex.cdpCacheDeviceIndex.
pub const CDP_CACHE_ENTRY: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 23, 1, 2, 1, 1];
/// AddressType 3, Address 4, DeviceId 6, DevicePort 7, Platform 8.
const CDP_CACHE_COLUMNS: &[u32] = &[3, 4, 6, 7, 8];

/// ifTable columns polled always.
const IF_COLUMNS: &[u32] = &[2, 3, 5, 7, 8, 13, 14, 19, 20];
/// ifTable 32-bit counters, polled for agents without HC counters.
const IF_C32_COLUMNS: &[u32] = &[10, 11, 12, 16, 17, 18];
const IFX_COLUMNS: &[u32] = &[1, 6, 7, 8, 9, 10, 11, 12, 13, 15, 18, 19];

/// One interface, as the walks fill it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfRowBuild {
    pub descr: Option<Arc<str>>,
    pub if_type: Option<i64>,
    pub speed: Option<u64>,
    pub admin: Option<i64>,
    pub oper: Option<i64>,
    pub in_discards: Option<u32>,
    pub in_errors: Option<u32>,
    pub out_discards: Option<u32>,
    pub out_errors: Option<u32>,
    pub in_octets32: Option<u32>,
    pub in_ucast32: Option<u32>,
    pub in_nucast32: Option<u32>,
    pub out_octets32: Option<u32>,
    pub out_ucast32: Option<u32>,
    pub out_nucast32: Option<u32>,
    pub name: Option<Arc<str>>,
    pub hc: [Option<u64>; 8],
    pub high_speed: Option<u64>,
    pub alias: Option<Arc<str>>,
    pub discontinuity: Option<u32>,
    /// sysUpTime of the response that carried the octet counters (the rate clock).
    pub counters_uptime: Option<u32>,
}

fn text(v: &Value<'_>) -> Option<Arc<str>> {
    v.as_text().map(|t| Arc::from(t.as_ref()))
}

impl IfRowBuild {
    fn store(&mut self, table: IfTable, column: u32, v: &Value<'_>, uptime: Option<u32>) {
        let u32v = || match v {
            Value::Counter32(x) | Value::Gauge32(x) | Value::TimeTicks(x) => Some(*x),
            Value::Integer(x) => u32::try_from(*x).ok(),
            _ => None,
        };
        match (table, column) {
            (IfTable::If, 2) => self.descr = text(v),
            (IfTable::If, 3) => self.if_type = integer(v),
            (IfTable::If, 5) => self.speed = v.as_u64(),
            (IfTable::If, 7) => self.admin = integer(v),
            (IfTable::If, 8) => self.oper = integer(v),
            (IfTable::If, 10) => {
                self.in_octets32 = u32v();
                if self.counters_uptime.is_none() {
                    self.counters_uptime = uptime;
                }
            }
            (IfTable::If, 11) => self.in_ucast32 = u32v(),
            (IfTable::If, 12) => self.in_nucast32 = u32v(),
            (IfTable::If, 13) => self.in_discards = u32v(),
            (IfTable::If, 14) => self.in_errors = u32v(),
            (IfTable::If, 16) => self.out_octets32 = u32v(),
            (IfTable::If, 17) => self.out_ucast32 = u32v(),
            (IfTable::If, 18) => self.out_nucast32 = u32v(),
            (IfTable::If, 19) => self.out_discards = u32v(),
            (IfTable::If, 20) => self.out_errors = u32v(),
            (IfTable::IfX, 1) => self.name = text(v),
            (IfTable::IfX, 6..=13) => {
                if let Value::Counter64(x) = v {
                    self.hc[(column - 6) as usize] = Some(*x);
                }
                if column == 6 {
                    // The HC octets' response clock wins: rates come from HC counters.
                    self.counters_uptime = uptime.or(self.counters_uptime);
                }
            }
            (IfTable::IfX, 15) => self.high_speed = v.as_u64(),
            (IfTable::IfX, 18) => self.alias = text(v),
            (IfTable::IfX, 19) => self.discontinuity = u32v(),
            _ => {}
        }
    }

    /// True when the agent gave 64-bit counters for this row.
    pub fn has_hc(&self) -> bool {
        self.hc[0].is_some() || self.hc[4].is_some()
    }
}

fn integer(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Integer(x) => Some(*x),
        _ => None,
    }
}

#[derive(Clone, Debug)]
struct Column {
    number: u32,
    base: Oid,
    last: Oid,
    done: bool,
}

/// A walk in progress.
#[derive(Clone, Debug)]
pub struct Walk {
    pub table: IfTable,
    columns: Vec<Column>,
    /// Rows seen, to cap runaway tables.
    pub rows_seen: usize,
    /// Columns ended by a non-increasing OID.
    pub non_increasing: u32,
    /// Ask for one row first: for tables many agents lack (CDP), whose walk would otherwise
    /// bring a full response of whatever MIB follows.
    probing: bool,
}

/// Most rows a walk accepts before giving up on an agent that never ends its table.
pub const MAX_ROWS_PER_WALK: usize = 100_000;

/// Why a walk stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    Decode(SnmpError),
    TooManyRows,
}

impl Walk {
    /// A walk of `table`; `c32` adds ifTable's 32-bit counters.
    pub fn new(table: IfTable, c32: bool) -> Self {
        let (entry, cols): (&[u32], Vec<u32>) = match table {
            IfTable::If => {
                let mut c = IF_COLUMNS.to_vec();
                if c32 {
                    c.extend_from_slice(IF_C32_COLUMNS);
                    c.sort_unstable();
                }
                (IF_ENTRY, c)
            }
            IfTable::IfX => (IF_X_ENTRY, IFX_COLUMNS.to_vec()),
            IfTable::LldpLocPort => (LLDP_LOC_PORT_ENTRY, LLDP_LOC_PORT_COLUMNS.to_vec()),
            IfTable::LldpRem => (LLDP_REM_ENTRY, LLDP_REM_COLUMNS.to_vec()),
            IfTable::CdpCache => (CDP_CACHE_ENTRY, CDP_CACHE_COLUMNS.to_vec()),
            IfTable::Custom(..) => (&[], Vec::new()),
        };
        let columns = cols
            .into_iter()
            .filter_map(|n| {
                let mut arcs = entry.to_vec();
                arcs.push(n);
                let base = Oid::from_arcs(&arcs).ok()?;
                Some(Column {
                    number: n,
                    last: base.clone(),
                    base,
                    done: false,
                })
            })
            .collect();
        Walk {
            table,
            columns,
            rows_seen: 0,
            non_increasing: 0,
            probing: table == IfTable::CdpCache,
        }
    }

    /// A walk of arbitrary columns (user-defined tables); column `i` is reported as number `i`.
    pub fn columns(table: IfTable, bases: &[Oid]) -> Self {
        Walk {
            table,
            columns: bases
                .iter()
                .enumerate()
                .map(|(i, b)| Column {
                    number: i as u32,
                    base: b.clone(),
                    last: b.clone(),
                    done: false,
                })
                .collect(),
            rows_seen: 0,
            non_increasing: 0,
            probing: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.columns.iter().all(|c| c.done)
    }

    fn active(&self) -> impl Iterator<Item = usize> + '_ {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.done)
            .map(|(i, _)| i)
    }

    /// The OIDs of the next GETBULK after the sysUpTime non-repeater, and max-repetitions
    /// bounded so the response stays within `max_varbinds`.
    pub fn next_request(&self, max_repetitions: u32, max_varbinds: u32) -> (Vec<Oid>, u32) {
        let oids: Vec<Oid> = self
            .active()
            .map(|i| self.columns[i].last.clone())
            .collect();
        let per_row = oids.len().max(1) as u32;
        let reps = if self.probing {
            1
        } else {
            max_repetitions
                .min(max_varbinds.saturating_sub(1) / per_row)
                .max(1)
        };
        (oids, reps)
    }

    /// Take a GETBULK response's varbinds (after the sysUpTime one) into `rows`.
    /// Returns the sysUpTime the response carried, if any.
    pub fn absorb<'a>(
        &mut self,
        varbinds: impl Iterator<Item = Result<(OidRef<'a>, Value<'a>), SnmpError>>,
        rows: &mut BTreeMap<u32, IfRowBuild>,
    ) -> Result<Option<u32>, WalkError> {
        let table = self.table;
        self.absorb_cells(varbinds, |column, index, value, uptime| {
            // IF-MIB rows are indexed by ifIndex alone.
            let Some(&if_index) = index.first() else {
                return;
            };
            rows.entry(if_index)
                .or_default()
                .store(table, column, value, uptime);
        })
    }

    /// Take a GETBULK response's varbinds, calling `cell(column, row index arcs, value,
    /// sysUpTime)` for each cell of the table. Returns the sysUpTime the response carried.
    pub fn absorb_cells<'a>(
        &mut self,
        varbinds: impl Iterator<Item = Result<(OidRef<'a>, Value<'a>), SnmpError>>,
        mut cell: impl FnMut(u32, &[u32], &Value<'a>, Option<u32>),
    ) -> Result<Option<u32>, WalkError> {
        self.probing = false;
        let active: Vec<usize> = self.active().collect();
        let first_column = self.columns.first().map_or(0, |c| c.number);
        let mut uptime = None;
        let mut index: Vec<u32> = Vec::with_capacity(8);
        for (i, vb) in varbinds.enumerate() {
            let (oid, value) = vb.map_err(WalkError::Decode)?;
            if i == 0 {
                // The non-repeater: sysUpTime.0.
                if let Value::TimeTicks(t) = value {
                    uptime = Some(t);
                }
                continue;
            }
            if active.is_empty() {
                break;
            }
            let col = &mut self.columns[active[(i - 1) % active.len()]];
            if col.done {
                continue;
            }
            if value.is_exception() {
                col.done = true;
                continue;
            }
            let Some(arcs) = oid.suffix_arcs(col.base.as_ref()) else {
                // Past the column: the agent moved on to the next one.
                col.done = true;
                continue;
            };
            if oid <= col.last.as_ref() {
                col.done = true;
                self.non_increasing += 1;
                continue;
            }
            col.last = oid.to_owned();
            index.clear();
            index.extend(arcs);
            if index.is_empty() {
                continue;
            }
            // Rows are counted by the first column: every row appears there once.
            if col.number == first_column {
                self.rows_seen += 1;
                if self.rows_seen > MAX_ROWS_PER_WALK {
                    return Err(WalkError::TooManyRows);
                }
            }
            cell(col.number, &index, &value, uptime);
        }
        Ok(uptime)
    }

    /// End every column (e.g. after tooBig at one repetition, or noSuchName).
    pub fn abandon(&mut self) {
        for c in &mut self.columns {
            c.done = true;
        }
    }
}

/// The sysUpTime prefix as an OID.
pub fn sys_uptime_oid() -> Oid {
    // A constant, valid by construction.
    Oid::from_arcs(SYS_UPTIME).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmsd_parsers::snmp::ber::BackWriter;
    use nmsd_parsers::snmp::pdu::{AnyPdu, Message, PduHeader, encode_community_message};
    use nmsd_parsers::snmp::{PduKind, Version};

    /// Build a response PDU from (oid, value) pairs and run it through `absorb`.
    fn respond(walk: &mut Walk, rows: &mut BTreeMap<u32, IfRowBuild>, vbs: &[(Oid, Value<'_>)]) {
        let pairs: Vec<_> = vbs.iter().map(|(o, v)| (o.as_ref(), *v)).collect();
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
        walk.absorb(p.varbinds(), rows).unwrap();
    }

    fn col(table: &[u32], c: u32, idx: u32) -> Oid {
        let mut a = table.to_vec();
        a.push(c);
        a.push(idx);
        Oid::from_arcs(&a).unwrap()
    }

    #[test]
    fn walks_row_major_until_the_table_ends() {
        let mut walk = Walk::new(IfTable::IfX, false);
        let mut rows = BTreeMap::new();
        let (oids, reps) = walk.next_request(25, 100);
        assert_eq!(oids.len(), IFX_COLUMNS.len());
        assert_eq!(reps, 99 / 12);
        let up = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1, 3, 0]).unwrap();
        // Two rows of two interfaces, then every column runs past its end.
        let mut vbs = vec![(up.clone(), Value::TimeTicks(4242))];
        for idx in [1u32, 2] {
            for &c in IFX_COLUMNS {
                let v = match c {
                    1 => Value::OctetString(if idx == 1 { b"lo" } else { b"eth0" }),
                    6..=13 => Value::Counter64(1000 * idx as u64 + c as u64),
                    15 => Value::Gauge32(10),
                    18 => Value::OctetString(b""),
                    _ => Value::TimeTicks(0),
                };
                vbs.push((col(IF_X_ENTRY, c, idx), v));
            }
        }
        for &c in IFX_COLUMNS {
            // The next column's first row (or beyond the table for the last one).
            vbs.push((col(IF_X_ENTRY, c + 1, 1), Value::Integer(0)));
        }
        respond(&mut walk, &mut rows, &vbs);
        assert!(walk.is_done());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[&2].name.as_deref(), Some("eth0"));
        assert_eq!(rows[&2].hc[0], Some(2006));
        assert_eq!(rows[&2].counters_uptime, Some(4242));
        assert!(rows[&1].has_hc());
    }

    #[test]
    fn a_non_increasing_oid_ends_the_column() {
        let mut walk = Walk::new(IfTable::If, false);
        let mut rows = BTreeMap::new();
        let up = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1, 3, 0]).unwrap();
        let mut vbs = vec![(up.clone(), Value::TimeTicks(1))];
        for &c in IF_COLUMNS {
            vbs.push((col(IF_ENTRY, c, 5), Value::Integer(1)));
        }
        respond(&mut walk, &mut rows, &vbs);
        assert!(!walk.is_done());
        // The agent repeats the same row: every column must end, not loop.
        respond(&mut walk, &mut rows, &vbs);
        assert!(walk.is_done());
        assert_eq!(walk.non_increasing as usize, IF_COLUMNS.len());
    }

    #[test]
    fn end_of_mib_view_ends_columns() {
        let mut walk = Walk::new(IfTable::If, true);
        let mut rows = BTreeMap::new();
        let up = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1, 3, 0]).unwrap();
        let mut vbs = vec![(up, Value::TimeTicks(1))];
        let (oids, _) = walk.next_request(10, 100);
        for o in oids {
            vbs.push((o, Value::EndOfMibView));
        }
        respond(&mut walk, &mut rows, &vbs);
        assert!(walk.is_done());
        assert!(rows.is_empty());
    }
}
