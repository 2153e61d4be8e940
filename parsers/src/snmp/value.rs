//! Varbind values.

use std::fmt;

use super::ber::{self, BackWriter};
use super::{OidRef, SnmpError};

/// A value as it came off the wire, borrowing the datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Integer(i64),
    OctetString(&'a [u8]),
    Null,
    ObjectId(OidRef<'a>),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(&'a [u8]),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl<'a> Value<'a> {
    /// Decode a value TLV's tag and content.
    pub fn decode(tag: u8, c: &'a [u8]) -> Result<Self, SnmpError> {
        Ok(match tag {
            ber::INTEGER => Value::Integer(ber::integer(c)?),
            ber::OCTET_STRING => Value::OctetString(c),
            ber::NULL => Value::Null,
            ber::OBJECT_IDENTIFIER => Value::ObjectId(OidRef::from_ber(c)?),
            ber::IP_ADDRESS => Value::IpAddress(
                c.try_into()
                    .map_err(|_| SnmpError::OutOfRange("IpAddress length"))?,
            ),
            ber::COUNTER32 => Value::Counter32(ber::unsigned(c, 32, "Counter32")? as u32),
            ber::GAUGE32 => Value::Gauge32(ber::unsigned(c, 32, "Gauge32")? as u32),
            ber::TIMETICKS => Value::TimeTicks(ber::unsigned(c, 32, "TimeTicks")? as u32),
            ber::OPAQUE => Value::Opaque(c),
            ber::COUNTER64 => Value::Counter64(ber::unsigned(c, 64, "Counter64")?),
            ber::NO_SUCH_OBJECT => Value::NoSuchObject,
            ber::NO_SUCH_INSTANCE => Value::NoSuchInstance,
            ber::END_OF_MIB_VIEW => Value::EndOfMibView,
            _ => return Err(SnmpError::Unsupported("value type")),
        })
    }

    /// Prepend this value's TLV.
    pub fn encode(&self, w: &mut BackWriter) {
        match *self {
            Value::Integer(v) => w.integer(ber::INTEGER, v),
            Value::OctetString(s) => w.tlv(ber::OCTET_STRING, s),
            Value::Null => w.tlv(ber::NULL, &[]),
            Value::ObjectId(o) => w.tlv(ber::OBJECT_IDENTIFIER, o.as_bytes()),
            Value::IpAddress(a) => w.tlv(ber::IP_ADDRESS, &a),
            Value::Counter32(v) => w.unsigned(ber::COUNTER32, v as u64),
            Value::Gauge32(v) => w.unsigned(ber::GAUGE32, v as u64),
            Value::TimeTicks(v) => w.unsigned(ber::TIMETICKS, v as u64),
            Value::Opaque(s) => w.tlv(ber::OPAQUE, s),
            Value::Counter64(v) => w.unsigned(ber::COUNTER64, v),
            Value::NoSuchObject => w.tlv(ber::NO_SUCH_OBJECT, &[]),
            Value::NoSuchInstance => w.tlv(ber::NO_SUCH_INSTANCE, &[]),
            Value::EndOfMibView => w.tlv(ber::END_OF_MIB_VIEW, &[]),
        }
    }

    /// True for the v2 exceptions (noSuchObject, noSuchInstance, endOfMibView).
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }

    /// The value as an unsigned integer, for counters, gauges and non-negative integers.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Integer(v) => u64::try_from(v).ok(),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => Some(v as u64),
            Value::Counter64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as text, for display strings (lossy for non-UTF-8).
    pub fn as_text(&self) -> Option<std::borrow::Cow<'a, str>> {
        match *self {
            Value::OctetString(s) => Some(String::from_utf8_lossy(s)),
            _ => None,
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(v) => write!(f, "INTEGER: {v}"),
            Value::OctetString(s) => match std::str::from_utf8(s) {
                Ok(t) if t.chars().all(|c| !c.is_control()) => write!(f, "STRING: {t:?}"),
                _ => write!(f, "Hex-STRING: {s:02X?}"),
            },
            Value::Null => write!(f, "NULL"),
            Value::ObjectId(o) => write!(f, "OID: {o}"),
            Value::IpAddress(a) => write!(f, "IpAddress: {}.{}.{}.{}", a[0], a[1], a[2], a[3]),
            Value::Counter32(v) => write!(f, "Counter32: {v}"),
            Value::Gauge32(v) => write!(f, "Gauge32: {v}"),
            Value::TimeTicks(v) => write!(f, "Timeticks: ({v})"),
            Value::Opaque(s) => write!(f, "OPAQUE: {s:02X?}"),
            Value::Counter64(v) => write!(f, "Counter64: {v}"),
            Value::NoSuchObject => write!(f, "No Such Object"),
            Value::NoSuchInstance => write!(f, "No Such Instance"),
            Value::EndOfMibView => write!(f, "End of MIB"),
        }
    }
}
