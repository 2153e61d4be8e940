//! SNMP messages (v1/v2c community-based) and PDUs.

use super::ber::{self, BackWriter, Reader};
use super::{OidRef, SnmpError, Value};

/// Message version field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2c,
    V3,
}

impl Version {
    pub const fn wire(self) -> i64 {
        match self {
            Version::V1 => 0,
            Version::V2c => 1,
            Version::V3 => 3,
        }
    }

    fn from_wire(v: i64) -> Result<Self, SnmpError> {
        match v {
            0 => Ok(Version::V1),
            1 => Ok(Version::V2c),
            3 => Ok(Version::V3),
            other => Err(SnmpError::UnknownVersion(other)),
        }
    }
}

/// PDU types (context-specific constructed tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduKind {
    Get = 0xA0,
    GetNext = 0xA1,
    Response = 0xA2,
    Set = 0xA3,
    TrapV1 = 0xA4,
    GetBulk = 0xA5,
    Inform = 0xA6,
    TrapV2 = 0xA7,
    Report = 0xA8,
}

impl PduKind {
    pub fn from_tag(tag: u8) -> Result<Self, SnmpError> {
        Ok(match tag {
            0xA0 => PduKind::Get,
            0xA1 => PduKind::GetNext,
            0xA2 => PduKind::Response,
            0xA3 => PduKind::Set,
            0xA4 => PduKind::TrapV1,
            0xA5 => PduKind::GetBulk,
            0xA6 => PduKind::Inform,
            0xA7 => PduKind::TrapV2,
            0xA8 => PduKind::Report,
            other => return Err(SnmpError::UnknownPdu(other)),
        })
    }
}

/// Error-status values (RFC 3416).
pub mod error_status {
    pub const NO_ERROR: i64 = 0;
    pub const TOO_BIG: i64 = 1;
    pub const NO_SUCH_NAME: i64 = 2;
    pub const GEN_ERR: i64 = 5;
    pub const AUTHORIZATION_ERROR: i64 = 16;

    /// Name of an error-status, for messages.
    pub fn name(v: i64) -> &'static str {
        match v {
            0 => "noError",
            1 => "tooBig",
            2 => "noSuchName",
            3 => "badValue",
            4 => "readOnly",
            5 => "genErr",
            6 => "noAccess",
            7 => "wrongType",
            8 => "wrongLength",
            9 => "wrongEncoding",
            10 => "wrongValue",
            11 => "noCreation",
            12 => "inconsistentValue",
            13 => "resourceUnavailable",
            14 => "commitFailed",
            15 => "undoFailed",
            16 => "authorizationError",
            17 => "notWritable",
            18 => "inconsistentName",
            _ => "unknown",
        }
    }
}

/// The varbind list of a PDU, decoded lazily. Yields an error (and then stops) at the first
/// varbind that does not decode: a response is never silently shortened.
#[derive(Clone, Copy, Debug)]
pub struct VarBinds<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> VarBinds<'a> {
    fn new(content: &'a [u8]) -> Self {
        VarBinds {
            r: Reader::new(content),
            failed: false,
        }
    }

    fn read_one(&mut self) -> Result<(OidRef<'a>, Value<'a>), SnmpError> {
        let vb = self.r.read(ber::SEQUENCE, "varbind")?;
        let mut vr = Reader::new(vb);
        let oid = OidRef::from_ber(vr.read(ber::OBJECT_IDENTIFIER, "varbind name")?)?;
        let (tag, c) = vr.read_any()?;
        if !vr.is_empty() {
            return Err(SnmpError::Trailing("varbind value"));
        }
        Ok((oid, Value::decode(tag, c)?))
    }
}

impl<'a> Iterator for VarBinds<'a> {
    type Item = Result<(OidRef<'a>, Value<'a>), SnmpError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = self.read_one();
        self.failed = item.is_err();
        Some(item)
    }
}

/// A request, response, report, INFORM or v2 trap PDU.
#[derive(Clone, Copy, Debug)]
pub struct Pdu<'a> {
    pub kind: PduKind,
    pub request_id: i32,
    /// error-status, or non-repeaters for GETBULK.
    pub error_status: i64,
    /// error-index, or max-repetitions for GETBULK.
    pub error_index: i64,
    varbinds: &'a [u8],
}

impl<'a> Pdu<'a> {
    pub fn varbinds(&self) -> VarBinds<'a> {
        VarBinds::new(self.varbinds)
    }
}

/// An SNMPv1 trap PDU.
#[derive(Clone, Copy, Debug)]
pub struct TrapV1Pdu<'a> {
    pub enterprise: OidRef<'a>,
    pub agent_addr: [u8; 4],
    pub generic_trap: i64,
    pub specific_trap: i64,
    pub timestamp: u32,
    varbinds: &'a [u8],
}

impl<'a> TrapV1Pdu<'a> {
    pub fn varbinds(&self) -> VarBinds<'a> {
        VarBinds::new(self.varbinds)
    }
}

/// Any PDU.
#[derive(Clone, Copy, Debug)]
pub enum AnyPdu<'a> {
    Standard(Pdu<'a>),
    TrapV1(TrapV1Pdu<'a>),
}

/// Decode a PDU from its tag and content.
pub fn decode_pdu(tag: u8, c: &[u8]) -> Result<AnyPdu<'_>, SnmpError> {
    let kind = PduKind::from_tag(tag)?;
    let mut r = Reader::new(c);
    if kind == PduKind::TrapV1 {
        let enterprise = OidRef::from_ber(r.read(ber::OBJECT_IDENTIFIER, "enterprise")?)?;
        let addr = r.read(ber::IP_ADDRESS, "agent-addr")?;
        let agent_addr = addr
            .try_into()
            .map_err(|_| SnmpError::OutOfRange("agent-addr length"))?;
        let generic_trap = r.read_integer("generic-trap")?;
        let specific_trap = r.read_integer("specific-trap")?;
        let timestamp =
            ber::unsigned(r.read(ber::TIMETICKS, "time-stamp")?, 32, "time-stamp")? as u32;
        let varbinds = r.read(ber::SEQUENCE, "varbind list")?;
        if !r.is_empty() {
            return Err(SnmpError::Trailing("trap PDU"));
        }
        return Ok(AnyPdu::TrapV1(TrapV1Pdu {
            enterprise,
            agent_addr,
            generic_trap,
            specific_trap,
            timestamp,
            varbinds,
        }));
    }
    let request_id = r.read_integer("request-id")?;
    let request_id = i32::try_from(request_id).map_err(|_| SnmpError::OutOfRange("request-id"))?;
    let error_status = r.read_integer("error-status")?;
    let error_index = r.read_integer("error-index")?;
    let varbinds = r.read(ber::SEQUENCE, "varbind list")?;
    if !r.is_empty() {
        return Err(SnmpError::Trailing("PDU"));
    }
    Ok(AnyPdu::Standard(Pdu {
        kind,
        request_id,
        error_status,
        error_index,
        varbinds,
    }))
}

/// A community-based (v1/v2c) message.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub version: Version,
    pub community: &'a [u8],
    pub pdu: AnyPdu<'a>,
}

/// The version of a message, to route v3 to its own decoder.
pub fn peek_version(datagram: &[u8]) -> Result<Version, SnmpError> {
    let mut r = Reader::new(datagram);
    let body = r.read(ber::SEQUENCE, "message")?;
    Version::from_wire(Reader::new(body).read_integer("version")?)
}

impl<'a> Message<'a> {
    /// Decode a v1/v2c message. A v3 message is `UnknownVersion(3)` here.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, SnmpError> {
        let mut outer = Reader::new(datagram);
        let body = outer.read(ber::SEQUENCE, "message")?;
        if !outer.is_empty() {
            return Err(SnmpError::Trailing("message"));
        }
        let mut r = Reader::new(body);
        let version = match Version::from_wire(r.read_integer("version")?)? {
            Version::V3 => return Err(SnmpError::UnknownVersion(3)),
            v => v,
        };
        let community = r.read(ber::OCTET_STRING, "community")?;
        let (tag, c) = r.read_any()?;
        if !r.is_empty() {
            return Err(SnmpError::Trailing("message body"));
        }
        Ok(Message {
            version,
            community,
            pdu: decode_pdu(tag, c)?,
        })
    }
}

/// The fixed fields of a PDU to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PduHeader {
    pub kind: PduKind,
    pub request_id: i32,
    /// error-status, or non-repeaters for GETBULK.
    pub a: i64,
    /// error-index, or max-repetitions for GETBULK.
    pub b: i64,
}

impl PduHeader {
    /// A GET, GETNEXT or response-style header with zero error fields.
    pub const fn new(kind: PduKind, request_id: i32) -> Self {
        PduHeader {
            kind,
            request_id,
            a: 0,
            b: 0,
        }
    }

    pub const fn bulk(request_id: i32, non_repeaters: i64, max_repetitions: i64) -> Self {
        PduHeader {
            kind: PduKind::GetBulk,
            request_id,
            a: non_repeaters,
            b: max_repetitions,
        }
    }
}

/// Prepend a PDU.
pub fn encode_pdu(w: &mut BackWriter, h: &PduHeader, varbinds: &[(OidRef<'_>, Value<'_>)]) {
    let pdu_mark = w.len();
    let list_mark = w.len();
    for (oid, value) in varbinds.iter().rev() {
        let vb_mark = w.len();
        value.encode(w);
        w.tlv(ber::OBJECT_IDENTIFIER, oid.as_bytes());
        w.wrap(ber::SEQUENCE, vb_mark);
    }
    w.wrap(ber::SEQUENCE, list_mark);
    w.integer(ber::INTEGER, h.b);
    w.integer(ber::INTEGER, h.a);
    w.integer(ber::INTEGER, h.request_id as i64);
    w.wrap(h.kind as u8, pdu_mark);
}

/// Encode a whole v1/v2c message into `w` (cleared first).
pub fn encode_community_message(
    w: &mut BackWriter,
    version: Version,
    community: &[u8],
    h: &PduHeader,
    varbinds: &[(OidRef<'_>, Value<'_>)],
) {
    w.clear();
    encode_pdu(w, h, varbinds);
    w.tlv(ber::OCTET_STRING, community);
    w.integer(ber::INTEGER, version.wire());
    w.wrap(ber::SEQUENCE, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snmp::Oid;

    /// `snmpget -v2c -c public localhost 1.3.6.1.2.1.1.3.0` as net-snmp encodes it
    /// (request-id 0x1234 substituted).
    const GET_SYSUPTIME: &[u8] = &[
        0x30, 0x27, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xA0, 0x1A,
        0x02, 0x02, 0x12, 0x34, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0E, 0x30, 0x0C, 0x06,
        0x08, 0x2B, 0x06, 0x01, 0x02, 0x01, 0x01, 0x03, 0x00, 0x05, 0x00,
    ];

    #[test]
    fn encodes_like_net_snmp() {
        let oid: Oid = "1.3.6.1.2.1.1.3.0".parse().unwrap();
        let mut w = BackWriter::with_capacity(64);
        encode_community_message(
            &mut w,
            Version::V2c,
            b"public",
            &PduHeader::new(PduKind::Get, 0x1234),
            &[(oid.as_ref(), Value::Null)],
        );
        assert_eq!(w.as_bytes(), GET_SYSUPTIME);
    }

    #[test]
    fn decodes_a_response() {
        let oid: Oid = "1.3.6.1.2.1.31.1.1.1.6.1".parse().unwrap();
        let name: Oid = "1.3.6.1.2.1.1.5.0".parse().unwrap();
        let mut w = BackWriter::default();
        encode_community_message(
            &mut w,
            Version::V2c,
            b"public",
            &PduHeader::new(PduKind::Response, -7),
            &[
                (oid.as_ref(), Value::Counter64(u64::MAX - 5)),
                (name.as_ref(), Value::OctetString(b"router1")),
                (name.as_ref(), Value::EndOfMibView),
            ],
        );
        let m = Message::decode(w.as_bytes()).unwrap();
        assert_eq!(m.version, Version::V2c);
        assert_eq!(m.community, b"public");
        let AnyPdu::Standard(p) = m.pdu else {
            panic!("not a standard PDU")
        };
        assert_eq!((p.kind, p.request_id), (PduKind::Response, -7));
        let vbs: Vec<_> = p.varbinds().map(Result::unwrap).collect();
        assert_eq!(vbs.len(), 3);
        assert_eq!(vbs[0].0, oid.as_ref());
        assert_eq!(vbs[0].1, Value::Counter64(u64::MAX - 5));
        assert_eq!(vbs[1].1.as_text().as_deref(), Some("router1"));
        assert!(vbs[2].1.is_exception());
        assert_eq!(peek_version(w.as_bytes()), Ok(Version::V2c));
    }

    #[test]
    fn a_bad_varbind_ends_the_list_with_an_error() {
        let mut bytes = GET_SYSUPTIME.to_vec();
        // Corrupt the value tag (NULL → an unknown application tag).
        let n = bytes.len();
        bytes[n - 2] = 0x4F;
        let m = Message::decode(&bytes).unwrap();
        let AnyPdu::Standard(p) = m.pdu else {
            panic!("not a standard PDU")
        };
        let got: Vec<_> = p.varbinds().collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }

    #[test]
    fn never_panics_on_truncation() {
        for cut in 0..GET_SYSUPTIME.len() {
            let r = Message::decode(&GET_SYSUPTIME[..cut]);
            assert!(r.is_err(), "cut at {cut}");
        }
    }
}
