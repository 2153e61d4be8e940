//! SNMP messages from the network: v1/v2c and v3 decoding, every varbind, and v3
//! authentication and decryption with fixed keys must never panic on any input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nmsd_parsers::snmp::pdu::{self, AnyPdu, Message};
use nmsd_parsers::snmp::usm::{AuthProtocol, LocalKeys, PrivProtocol};
use nmsd_parsers::snmp::v3::{self, ScopedData, V3Message};

fn keys() -> &'static [LocalKeys; 3] {
    static K: OnceLock<[LocalKeys; 3]> = OnceLock::new();
    K.get_or_init(|| {
        [
            LocalKeys::from_localized(
                AuthProtocol::Sha1,
                &[1; 20],
                Some((PrivProtocol::Aes128, &[2; 16])),
            ),
            LocalKeys::from_localized(
                AuthProtocol::Sha256,
                &[3; 32],
                Some((PrivProtocol::Aes256, &[4; 32])),
            ),
            LocalKeys::from_localized(
                AuthProtocol::Md5,
                &[5; 16],
                Some((PrivProtocol::Des, &[6; 16])),
            ),
        ]
    })
}

fn walk(p: &AnyPdu<'_>) {
    let vbs = match p {
        AnyPdu::Standard(p) => p.varbinds(),
        AnyPdu::TrapV1(t) => t.varbinds(),
    };
    for vb in vbs {
        if let Ok((oid, v)) = vb {
            let _ = oid.to_string();
            let _ = format!("{v:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = pdu::peek_version(data);
    if let Ok(m) = Message::decode(data) {
        walk(&m.pdu);
    }
    if let Ok(m) = V3Message::decode(data) {
        for k in keys() {
            let _ = k.verify(data, m.auth_offset);
            match m.data {
                ScopedData::Plain(sp) => {
                    if let Ok(s) = v3::decode_scoped(sp) {
                        walk(&s.pdu);
                    }
                }
                ScopedData::Encrypted(ct) => {
                    let mut buf = ct.to_vec();
                    if k.decrypt(&mut buf, m.engine_boots, m.engine_time, m.priv_params)
                        .is_ok()
                        && let Ok(s) = v3::decode_decrypted(&buf)
                    {
                        walk(&s.pdu);
                    }
                }
            }
        }
    }
});
