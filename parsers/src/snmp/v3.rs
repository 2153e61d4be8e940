//! SNMPv3 messages (RFC 3412) with USM security parameters (RFC 3414).
//!
//! Decoding borrows the datagram and records where the authentication field is, so a MAC can
//! be verified without copying the message. Encoding writes back to front: the ScopedPDU first
//! (encrypted in place for authPriv), then the security parameters with a zeroed MAC, then the
//! header; the MAC is computed over the finished message and written into its place.

use super::ber::{self, BackWriter, Reader};
use super::pdu::{AnyPdu, Pdu, PduHeader, decode_pdu, encode_pdu};
use super::usm::LocalKeys;
use super::{OidRef, SnmpError, Value};

pub const FLAG_AUTH: u8 = 0x01;
pub const FLAG_PRIV: u8 = 0x02;
pub const FLAG_REPORTABLE: u8 = 0x04;
/// msgSecurityModel for USM.
pub const USM: i64 = 3;
/// msgMaxSize we announce (as net-snmp does).
pub const MAX_SIZE: i64 = 65507;

/// RFC 3411 securityLevel, ordered: a message meets a requirement when its level is at least
/// the required one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityLevel {
    NoAuthNoPriv,
    AuthNoPriv,
    AuthPriv,
}

impl SecurityLevel {
    /// The level of `flags` (msgFlags); privacy without authentication is refused by the
    /// decoder, so it never reaches here as a level.
    pub const fn from_flags(flags: u8) -> Self {
        match (flags & FLAG_AUTH != 0, flags & FLAG_PRIV != 0) {
            (true, true) => SecurityLevel::AuthPriv,
            (true, false) => SecurityLevel::AuthNoPriv,
            _ => SecurityLevel::NoAuthNoPriv,
        }
    }

    /// As configured and as net-snmp spells it (`-l`).
    pub const fn name(self) -> &'static str {
        match self {
            SecurityLevel::NoAuthNoPriv => "noAuthNoPriv",
            SecurityLevel::AuthNoPriv => "authNoPriv",
            SecurityLevel::AuthPriv => "authPriv",
        }
    }
}

/// The message data: a plain ScopedPDU (its SEQUENCE content) or the encrypted one.
#[derive(Clone, Copy, Debug)]
pub enum ScopedData<'a> {
    Plain(&'a [u8]),
    Encrypted(&'a [u8]),
}

/// A decoded v3 message.
#[derive(Clone, Copy, Debug)]
pub struct V3Message<'a> {
    pub msg_id: i32,
    pub max_size: i64,
    pub flags: u8,
    pub engine_id: &'a [u8],
    pub engine_boots: u32,
    pub engine_time: u32,
    pub user: &'a [u8],
    pub auth_params: &'a [u8],
    /// Offset of `auth_params` in the datagram.
    pub auth_offset: usize,
    pub priv_params: &'a [u8],
    pub data: ScopedData<'a>,
}

/// A ScopedPDU.
#[derive(Clone, Copy, Debug)]
pub struct ScopedPdu<'a> {
    pub context_engine_id: &'a [u8],
    pub context_name: &'a [u8],
    pub pdu: AnyPdu<'a>,
}

fn u32_field(r: &mut Reader<'_>, what: &'static str) -> Result<u32, SnmpError> {
    u32::try_from(r.read_integer(what)?).map_err(|_| SnmpError::OutOfRange(what))
}

impl<'a> V3Message<'a> {
    pub fn decode(datagram: &'a [u8]) -> Result<Self, SnmpError> {
        let mut outer = Reader::new(datagram);
        let body = outer.read(ber::SEQUENCE, "message")?;
        let mut r = Reader::new(body);
        let version = r.read_integer("version")?;
        if version != 3 {
            return Err(SnmpError::UnknownVersion(version));
        }
        let mut g = Reader::new(r.read(ber::SEQUENCE, "msgGlobalData")?);
        let msg_id =
            i32::try_from(g.read_integer("msgID")?).map_err(|_| SnmpError::OutOfRange("msgID"))?;
        let max_size = g.read_integer("msgMaxSize")?;
        let flags = match g.read(ber::OCTET_STRING, "msgFlags")? {
            [f] => *f,
            _ => return Err(SnmpError::OutOfRange("msgFlags length")),
        };
        if flags & FLAG_PRIV != 0 && flags & FLAG_AUTH == 0 {
            return Err(SnmpError::OutOfRange(
                "msgFlags: privacy without authentication",
            ));
        }
        let model = g.read_integer("msgSecurityModel")?;
        if model != USM {
            return Err(SnmpError::Unsupported("security model other than USM"));
        }
        let sp = r.read(ber::OCTET_STRING, "msgSecurityParameters")?;
        let mut u = Reader::new(Reader::new(sp).read(ber::SEQUENCE, "UsmSecurityParameters")?);
        let engine_id = u.read(ber::OCTET_STRING, "msgAuthoritativeEngineID")?;
        let engine_boots = u32_field(&mut u, "msgAuthoritativeEngineBoots")?;
        let engine_time = u32_field(&mut u, "msgAuthoritativeEngineTime")?;
        let user = u.read(ber::OCTET_STRING, "msgUserName")?;
        let auth_params = u.read(ber::OCTET_STRING, "msgAuthenticationParameters")?;
        let priv_params = u.read(ber::OCTET_STRING, "msgPrivacyParameters")?;
        // Both slices borrow `datagram`, so the difference of their addresses is the offset.
        let auth_offset = auth_params.as_ptr() as usize - datagram.as_ptr() as usize;
        let data = if flags & FLAG_PRIV != 0 {
            ScopedData::Encrypted(r.read(ber::OCTET_STRING, "encryptedPDU")?)
        } else {
            ScopedData::Plain(r.read(ber::SEQUENCE, "ScopedPDU")?)
        };
        Ok(V3Message {
            msg_id,
            max_size,
            flags,
            engine_id,
            engine_boots,
            engine_time,
            user,
            auth_params,
            auth_offset,
            priv_params,
            data,
        })
    }

    pub fn is_authenticated(&self) -> bool {
        self.flags & FLAG_AUTH != 0
    }

    pub fn is_reportable(&self) -> bool {
        self.flags & FLAG_REPORTABLE != 0
    }

    pub const fn security_level(&self) -> SecurityLevel {
        SecurityLevel::from_flags(self.flags)
    }
}

/// Decode a ScopedPDU from its SEQUENCE content.
pub fn decode_scoped(content: &[u8]) -> Result<ScopedPdu<'_>, SnmpError> {
    let mut r = Reader::new(content);
    let context_engine_id = r.read(ber::OCTET_STRING, "contextEngineID")?;
    let context_name = r.read(ber::OCTET_STRING, "contextName")?;
    let (tag, c) = r.read_any()?;
    Ok(ScopedPdu {
        context_engine_id,
        context_name,
        pdu: decode_pdu(tag, c)?,
    })
}

/// Decode a decrypted ScopedPDU (a whole SEQUENCE TLV; DES padding after it is ignored).
pub fn decode_decrypted(plain: &[u8]) -> Result<ScopedPdu<'_>, SnmpError> {
    decode_scoped(Reader::new(plain).read(ber::SEQUENCE, "decrypted ScopedPDU")?)
}

/// What a Report PDU reports, from its first varbind (RFC 3414 usmStats, RFC 3412 snmpMPD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    UnsupportedSecLevel,
    NotInTimeWindow,
    UnknownUserName,
    UnknownEngineId,
    WrongDigest,
    DecryptionError,
    UnknownSecurityModel,
    InvalidMsg,
    UnknownPduHandler,
    Other,
}

impl ReportKind {
    pub const fn label(self) -> &'static str {
        match self {
            ReportKind::UnsupportedSecLevel => "unsupported_sec_level",
            ReportKind::NotInTimeWindow => "not_in_time_window",
            ReportKind::UnknownUserName => "unknown_user",
            ReportKind::UnknownEngineId => "unknown_engine_id",
            ReportKind::WrongDigest => "wrong_digest",
            ReportKind::DecryptionError => "decryption_error",
            ReportKind::UnknownSecurityModel => "unknown_security_model",
            ReportKind::InvalidMsg => "invalid_msg",
            ReportKind::UnknownPduHandler => "unknown_pdu_handler",
            ReportKind::Other => "other_report",
        }
    }
}

/// usmStats (1.3.6.1.6.3.15.1.1.N.0) and snmpMPDStats (1.3.6.1.6.3.11.2.1.N.0) prefixes.
const USM_STATS: &[u8] = &[0x2B, 6, 1, 6, 3, 15, 1, 1];
const MPD_STATS: &[u8] = &[0x2B, 6, 1, 6, 3, 11, 2, 1];

pub fn classify_report(pdu: &Pdu<'_>) -> ReportKind {
    let Some(Ok((oid, _))) = pdu.varbinds().next() else {
        return ReportKind::Other;
    };
    let b = oid.as_bytes();
    let n = |prefix: &[u8]| -> Option<u8> {
        match b.strip_prefix(prefix)? {
            [n, 0] => Some(*n),
            _ => None,
        }
    };
    match (n(USM_STATS), n(MPD_STATS)) {
        (Some(1), _) => ReportKind::UnsupportedSecLevel,
        (Some(2), _) => ReportKind::NotInTimeWindow,
        (Some(3), _) => ReportKind::UnknownUserName,
        (Some(4), _) => ReportKind::UnknownEngineId,
        (Some(5), _) => ReportKind::WrongDigest,
        (Some(6), _) => ReportKind::DecryptionError,
        (_, Some(1)) => ReportKind::UnknownSecurityModel,
        (_, Some(2)) => ReportKind::InvalidMsg,
        (_, Some(3)) => ReportKind::UnknownPduHandler,
        _ => ReportKind::Other,
    }
}

/// Security parameters of an outgoing message.
#[derive(Clone, Copy, Debug)]
pub struct V3Params<'a> {
    pub msg_id: i32,
    pub reportable: bool,
    pub engine_id: &'a [u8],
    pub engine_boots: u32,
    pub engine_time: u32,
    pub user: &'a [u8],
    /// Context engine ID (usually the authoritative engine's) and name.
    pub context_engine_id: &'a [u8],
    pub context_name: &'a [u8],
}

/// Encode a v3 message into `w` (cleared first). With `keys`, the message is authenticated,
/// and encrypted too if the keys have a privacy part; `salt` must not repeat for those keys.
/// `scratch` is reused for the plaintext to encrypt.
#[allow(clippy::too_many_arguments)]
pub fn encode_v3(
    w: &mut BackWriter,
    scratch: &mut Vec<u8>,
    p: &V3Params<'_>,
    keys: Option<&LocalKeys>,
    salt: u64,
    h: &PduHeader,
    varbinds: &[(OidRef<'_>, Value<'_>)],
) -> Result<(), SnmpError> {
    w.clear();
    encode_pdu(w, h, varbinds);
    frame_pdu(w, scratch, p, keys, salt)
}

/// Wrap the PDU already in `w` into a v3 message: ScopedPDU (context engine ID and name),
/// encryption in place if the keys have a privacy part, USM parameters with a zeroed MAC, the
/// header, then the MAC over the whole message. For encoders that write the PDU themselves
/// (the agent simulator writes varbinds straight from its data layout).
pub fn frame_pdu(
    w: &mut BackWriter,
    scratch: &mut Vec<u8>,
    p: &V3Params<'_>,
    keys: Option<&LocalKeys>,
    salt: u64,
) -> Result<(), SnmpError> {
    // ScopedPDU.
    w.tlv(ber::OCTET_STRING, p.context_name);
    w.tlv(ber::OCTET_STRING, p.context_engine_id);
    w.wrap(ber::SEQUENCE, 0);
    let mut flags = if p.reportable { FLAG_REPORTABLE } else { 0 };
    let mut priv_params = [0u8; 8];
    let mut priv_len = 0;
    if let Some(k) = keys {
        flags |= FLAG_AUTH;
        if k.privacy().is_some() {
            flags |= FLAG_PRIV;
            scratch.clear();
            scratch.extend_from_slice(w.as_bytes());
            priv_params = k.encrypt(scratch, p.engine_boots, p.engine_time, salt)?;
            priv_len = 8;
            w.clear();
            w.tlv(ber::OCTET_STRING, scratch);
        }
    }
    let data_len = w.len();
    // UsmSecurityParameters, inside an OCTET STRING.
    w.tlv(ber::OCTET_STRING, &priv_params[..priv_len]);
    let mac_len = keys.map_or(0, |k| k.auth.mac_len());
    // The auth field's distance from the end stays fixed as the header is prepended.
    let auth_end_from_end = w.len();
    w.tlv(ber::OCTET_STRING, &[0u8; 48][..mac_len]);
    w.tlv(ber::OCTET_STRING, p.user);
    w.integer(ber::INTEGER, p.engine_time as i64);
    w.integer(ber::INTEGER, p.engine_boots as i64);
    w.tlv(ber::OCTET_STRING, p.engine_id);
    w.wrap(ber::SEQUENCE, data_len);
    w.wrap(ber::OCTET_STRING, data_len);
    // msgGlobalData.
    let g = w.len();
    w.integer(ber::INTEGER, USM);
    w.tlv(ber::OCTET_STRING, &[flags]);
    w.integer(ber::INTEGER, MAX_SIZE);
    w.integer(ber::INTEGER, p.msg_id as i64);
    w.wrap(ber::SEQUENCE, g);
    w.integer(ber::INTEGER, 3);
    w.wrap(ber::SEQUENCE, 0);
    if let Some(k) = keys {
        let total = w.len();
        let at = total - auth_end_from_end - mac_len;
        let mac = k.mac_over(w.as_bytes(), at);
        w.as_bytes_mut()[at..at + mac_len].copy_from_slice(&mac);
    }
    Ok(())
}

/// The engine-discovery probe (RFC 3414 §4): reportable, unauthenticated, empty engine ID and
/// user, a GET with no varbinds. The agent answers with an unknownEngineID Report carrying its
/// engine ID, boots and time.
pub fn encode_discovery(w: &mut BackWriter, msg_id: i32, request_id: i32) {
    let p = V3Params {
        msg_id,
        reportable: true,
        engine_id: &[],
        engine_boots: 0,
        engine_time: 0,
        user: &[],
        context_engine_id: &[],
        context_name: &[],
    };
    let mut scratch = Vec::new();
    // No keys: cannot fail.
    let _ = encode_v3(
        w,
        &mut scratch,
        &p,
        None,
        0,
        &PduHeader::new(super::PduKind::Get, request_id),
        &[],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snmp::usm::{AuthProtocol, PrivProtocol};
    use crate::snmp::{Oid, PduKind};

    /// The probe net-snmp's `snmpget -v3` sends (msgID/request-id substituted), 64 bytes.
    #[test]
    fn discovery_probe_shape() {
        let mut w = BackWriter::default();
        encode_discovery(&mut w, 0x1111, 0x2222);
        let m = V3Message::decode(w.as_bytes()).unwrap();
        assert_eq!(m.flags, FLAG_REPORTABLE);
        assert!(m.engine_id.is_empty() && m.user.is_empty() && m.auth_params.is_empty());
        let ScopedData::Plain(sp) = m.data else {
            panic!("plain")
        };
        let s = decode_scoped(sp).unwrap();
        let AnyPdu::Standard(pdu) = s.pdu else {
            panic!("standard")
        };
        assert_eq!((pdu.kind, pdu.request_id), (PduKind::Get, 0x2222));
        assert_eq!(pdu.varbinds().count(), 0);
    }

    #[test]
    fn auth_priv_round_trip() {
        let engine = b"\x80\x00\x1f\x88\x80engine-id";
        for (auth, privacy) in [
            (AuthProtocol::Sha1, Some(PrivProtocol::Aes128)),
            (AuthProtocol::Sha256, Some(PrivProtocol::Aes256)),
            (AuthProtocol::Md5, Some(PrivProtocol::Des)),
            (AuthProtocol::Sha512, None),
        ] {
            let user = crate::snmp::usm::UserKeys::new(
                auth,
                b"authpassword",
                privacy.map(|p| (p, &b"privpassword"[..])),
            )
            .unwrap();
            let keys = user.localize(engine);
            let p = V3Params {
                msg_id: 77,
                reportable: true,
                engine_id: engine,
                engine_boots: 5,
                engine_time: 123_456,
                user: b"nmsd",
                context_engine_id: engine,
                context_name: b"",
            };
            let oid: Oid = "1.3.6.1.2.1.1.3.0".parse().unwrap();
            let mut w = BackWriter::default();
            let mut scratch = Vec::new();
            encode_v3(
                &mut w,
                &mut scratch,
                &p,
                Some(&keys),
                0xDEAD_BEEF,
                &PduHeader::bulk(99, 1, 25),
                &[(oid.as_ref(), Value::Null)],
            )
            .unwrap();
            let bytes = w.as_bytes().to_vec();
            let m = V3Message::decode(&bytes).unwrap();
            assert_eq!((m.msg_id, m.engine_boots, m.engine_time), (77, 5, 123_456));
            assert_eq!(m.auth_params.len(), auth.mac_len());
            assert!(keys.verify(&bytes, m.auth_offset), "{auth:?}");
            let mut tampered = bytes.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            assert!(!keys.verify(&tampered, m.auth_offset));
            let pdu = match m.data {
                ScopedData::Plain(sp) => decode_scoped(sp).unwrap().pdu,
                ScopedData::Encrypted(ct) => {
                    let mut plain = ct.to_vec();
                    keys.decrypt(&mut plain, m.engine_boots, m.engine_time, m.priv_params)
                        .unwrap();
                    let s = decode_decrypted(&plain).unwrap();
                    assert_eq!(s.context_engine_id, engine);
                    match s.pdu {
                        AnyPdu::Standard(p) => {
                            assert_eq!(
                                (p.kind, p.request_id, p.error_index),
                                (PduKind::GetBulk, 99, 25)
                            );
                            continue;
                        }
                        AnyPdu::TrapV1(_) => panic!("trap"),
                    }
                }
            };
            assert!(matches!(pdu, AnyPdu::Standard(p) if p.request_id == 99));
        }
    }

    #[test]
    fn classifies_reports() {
        let oid: Oid = "1.3.6.1.6.3.15.1.1.4.0".parse().unwrap();
        let mut w = BackWriter::default();
        encode_pdu(
            &mut w,
            &PduHeader::new(PduKind::Report, 0),
            &[(oid.as_ref(), Value::Counter32(3))],
        );
        let mut r = Reader::new(w.as_bytes());
        let (tag, c) = r.read_any().unwrap();
        let AnyPdu::Standard(p) = decode_pdu(tag, c).unwrap() else {
            panic!("standard")
        };
        assert_eq!(classify_report(&p), ReportKind::UnknownEngineId);
    }

    #[test]
    fn never_panics_on_truncation() {
        let mut w = BackWriter::default();
        encode_discovery(&mut w, 1, 2);
        let b = w.as_bytes();
        for cut in 0..b.len() {
            assert!(V3Message::decode(&b[..cut]).is_err());
        }
    }

    #[test]
    fn security_levels_are_ordered_by_flags() {
        use SecurityLevel::*;
        assert_eq!(SecurityLevel::from_flags(FLAG_REPORTABLE), NoAuthNoPriv);
        assert_eq!(SecurityLevel::from_flags(FLAG_AUTH), AuthNoPriv);
        assert_eq!(SecurityLevel::from_flags(FLAG_AUTH | FLAG_PRIV), AuthPriv);
        assert!(NoAuthNoPriv < AuthNoPriv && AuthNoPriv < AuthPriv);
        let user = crate::snmp::usm::UserKeys::new(
            crate::snmp::usm::AuthProtocol::Sha1,
            b"authpassword",
            Some((crate::snmp::usm::PrivProtocol::Aes128, &b"privpassword"[..])),
        )
        .unwrap();
        assert_eq!(user.security_level(), AuthPriv);
    }
}
