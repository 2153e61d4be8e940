//! SNMPv3 User-based Security Model (RFC 3414, RFC 3826, RFC 7860): keys, HMAC, privacy.
//!
//! Passwords become keys once (`password_to_key`, 1 MiB of hashing, a few ms); an engine's keys
//! are then one hash away (`localize`). Key material is zeroized on drop and has no `Debug` that
//! could print it.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use zeroize::{Zeroize, Zeroizing};

use super::SnmpError;

/// Authentication protocols (HMAC-MD5-96, HMAC-SHA-96, and the RFC 7860 SHA-2 ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthProtocol {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Privacy protocols. AES-192/256 need keys longer than some digests; `Aes192`/`Aes256` extend
/// them the Blumenthal way (draft-blumenthal-aes-usm-04, what net-snmp does, verified against
/// its stored keys), `Aes192Reeder`/`Aes256Reeder` the Reeder way (what Cisco IOS does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrivProtocol {
    Des,
    Aes128,
    Aes192,
    Aes256,
    Aes192Reeder,
    Aes256Reeder,
}

fn digest(proto: AuthProtocol, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    match proto {
        AuthProtocol::Md5 => run::<md5::Md5>(parts),
        AuthProtocol::Sha1 => run::<sha1::Sha1>(parts),
        AuthProtocol::Sha224 => run::<sha2::Sha224>(parts),
        AuthProtocol::Sha256 => run::<sha2::Sha256>(parts),
        AuthProtocol::Sha384 => run::<sha2::Sha384>(parts),
        AuthProtocol::Sha512 => run::<sha2::Sha512>(parts),
    }
}

impl AuthProtocol {
    /// Bytes of the truncated MAC in msgAuthenticationParameters.
    pub const fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Md5 | AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha224 => 16,
            AuthProtocol::Sha256 => 24,
            AuthProtocol::Sha384 => 32,
            AuthProtocol::Sha512 => 48,
        }
    }

    /// Digest length (= localized key length).
    pub const fn digest_len(self) -> usize {
        match self {
            AuthProtocol::Md5 => 16,
            AuthProtocol::Sha1 => 20,
            AuthProtocol::Sha224 => 28,
            AuthProtocol::Sha256 => 32,
            AuthProtocol::Sha384 => 48,
            AuthProtocol::Sha512 => 64,
        }
    }

    /// RFC 3414 A.2: digest of 1,048,576 octets of the password repeated.
    pub fn password_to_key(self, password: &[u8]) -> Result<Zeroizing<Vec<u8>>, SnmpError> {
        if password.is_empty() {
            return Err(SnmpError::OutOfRange("empty password"));
        }
        let mut chunk = Zeroizing::new([0u8; 64]);
        let mut idx = 0usize;
        macro_rules! p2k {
            ($d:ty) => {{
                use sha2::Digest as _;
                let mut d = <$d>::new();
                for _ in 0..(1_048_576 / 64) {
                    for b in chunk.iter_mut() {
                        *b = password[idx % password.len()];
                        idx += 1;
                    }
                    d.update(&chunk[..]);
                }
                d.finalize().to_vec()
            }};
        }
        let k = match self {
            AuthProtocol::Md5 => p2k!(md5::Md5),
            AuthProtocol::Sha1 => p2k!(sha1::Sha1),
            AuthProtocol::Sha224 => p2k!(sha2::Sha224),
            AuthProtocol::Sha256 => p2k!(sha2::Sha256),
            AuthProtocol::Sha384 => p2k!(sha2::Sha384),
            AuthProtocol::Sha512 => p2k!(sha2::Sha512),
        };
        Ok(Zeroizing::new(k))
    }

    /// RFC 3414 A.2.2: Kul = H(Ku ‖ engineID ‖ Ku).
    pub fn localize(self, ku: &[u8], engine_id: &[u8]) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(digest(self, &[ku, engine_id, ku]))
    }

    /// Truncated HMAC over `parts` (the message with its auth field zeroed, in pieces).
    pub fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length, so this cannot fail.
            let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        let mut full = match self {
            AuthProtocol::Md5 => run::<Hmac<md5::Md5>>(key, parts),
            AuthProtocol::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
            AuthProtocol::Sha224 => run::<Hmac<sha2::Sha224>>(key, parts),
            AuthProtocol::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
            AuthProtocol::Sha384 => run::<Hmac<sha2::Sha384>>(key, parts),
            AuthProtocol::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
        };
        full.truncate(self.mac_len());
        full
    }

    /// Config spelling: `md5`, `sha`/`sha1`, `sha224`, `sha256`, `sha384`, `sha512`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().replace('-', "").as_str() {
            "md5" => AuthProtocol::Md5,
            "sha" | "sha1" => AuthProtocol::Sha1,
            "sha224" => AuthProtocol::Sha224,
            "sha256" => AuthProtocol::Sha256,
            "sha384" => AuthProtocol::Sha384,
            "sha512" => AuthProtocol::Sha512,
            _ => return None,
        })
    }
}

impl PrivProtocol {
    /// Privacy key bytes needed (DES: 8 key + 8 pre-IV).
    pub const fn key_len(self) -> usize {
        match self {
            PrivProtocol::Des | PrivProtocol::Aes128 => 16,
            PrivProtocol::Aes192 | PrivProtocol::Aes192Reeder => 24,
            PrivProtocol::Aes256 | PrivProtocol::Aes256Reeder => 32,
        }
    }

    /// Config spelling: `des`, `aes`/`aes128`, `aes192`, `aes256`, `aes192c`, `aes256c`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().replace('-', "").as_str() {
            "des" => PrivProtocol::Des,
            "aes" | "aes128" => PrivProtocol::Aes128,
            "aes192" => PrivProtocol::Aes192,
            "aes256" => PrivProtocol::Aes256,
            "aes192c" => PrivProtocol::Aes192Reeder,
            "aes256c" => PrivProtocol::Aes256Reeder,
            _ => return None,
        })
    }

    /// The localized privacy key, extended to `key_len` if the digest is shorter.
    pub fn localized_key(
        self,
        auth: AuthProtocol,
        ku: &[u8],
        engine_id: &[u8],
    ) -> Zeroizing<Vec<u8>> {
        let mut k = auth.localize(ku, engine_id);
        let need = self.key_len();
        match self {
            PrivProtocol::Aes192Reeder | PrivProtocol::Aes256Reeder => {
                while k.len() < need {
                    // Reeder: the next block is the localized key of the previous one, taken as
                    // a password-equivalent Ku.
                    let start = k.len() - auth.digest_len();
                    let prev = Zeroizing::new(k[start..].to_vec());
                    let ku2 = match auth.password_to_key(&prev) {
                        Ok(ku2) => ku2,
                        Err(_) => break,
                    };
                    let next = auth.localize(&ku2, engine_id);
                    k.extend_from_slice(&next);
                }
            }
            _ => {
                while k.len() < need {
                    // Blumenthal: K ‖= H(K).
                    let next = Zeroizing::new(digest(auth, &[&k]));
                    k.extend_from_slice(&next);
                }
            }
        }
        k.truncate(need);
        k
    }
}

/// Keys of one user at one authoritative engine.
pub struct LocalKeys {
    pub auth: AuthProtocol,
    auth_key: Zeroizing<Vec<u8>>,
    privacy: Option<(PrivProtocol, Zeroizing<Vec<u8>>)>,
}

impl fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("LocalKeys")
            .field("auth", &self.auth)
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| *p))
            .finish_non_exhaustive()
    }
}

/// A user's password-derived keys (Ku), computed once per profile; localize per engine.
pub struct UserKeys {
    pub auth: AuthProtocol,
    auth_ku: Zeroizing<Vec<u8>>,
    privacy: Option<(PrivProtocol, Zeroizing<Vec<u8>>)>,
}

impl fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserKeys")
            .field("auth", &self.auth)
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| *p))
            .finish_non_exhaustive()
    }
}

impl UserKeys {
    /// Derive Ku for the auth password and, for authPriv, the privacy password (a few ms each).
    pub fn new(
        auth: AuthProtocol,
        auth_password: &[u8],
        privacy: Option<(PrivProtocol, &[u8])>,
    ) -> Result<Self, SnmpError> {
        let auth_ku = auth.password_to_key(auth_password)?;
        let privacy = match privacy {
            Some((p, pw)) => Some((p, auth.password_to_key(pw)?)),
            None => None,
        };
        Ok(UserKeys {
            auth,
            auth_ku,
            privacy,
        })
    }

    pub fn privacy(&self) -> Option<PrivProtocol> {
        self.privacy.as_ref().map(|(p, _)| *p)
    }

    /// The security level these keys serve: authPriv with a privacy key, else authNoPriv.
    pub fn security_level(&self) -> super::v3::SecurityLevel {
        if self.privacy.is_some() {
            super::v3::SecurityLevel::AuthPriv
        } else {
            super::v3::SecurityLevel::AuthNoPriv
        }
    }

    /// Keys for one authoritative engine.
    pub fn localize(&self, engine_id: &[u8]) -> LocalKeys {
        LocalKeys {
            auth: self.auth,
            auth_key: self.auth.localize(&self.auth_ku, engine_id),
            privacy: self
                .privacy
                .as_ref()
                .map(|(p, ku)| (*p, p.localized_key(self.auth, ku, engine_id))),
        }
    }
}

impl LocalKeys {
    /// From already localized keys (e.g. test vectors, or a `usmUser` line of snmpd).
    pub fn from_localized(
        auth: AuthProtocol,
        auth_key: &[u8],
        privacy: Option<(PrivProtocol, &[u8])>,
    ) -> Self {
        LocalKeys {
            auth,
            auth_key: Zeroizing::new(auth_key.to_vec()),
            privacy: privacy.map(|(p, k)| (p, Zeroizing::new(k.to_vec()))),
        }
    }

    pub fn privacy(&self) -> Option<PrivProtocol> {
        self.privacy.as_ref().map(|(p, _)| *p)
    }

    pub fn auth_key(&self) -> &[u8] {
        &self.auth_key
    }

    pub fn priv_key(&self) -> Option<&[u8]> {
        self.privacy.as_ref().map(|(_, k)| k.as_slice())
    }

    /// MAC of a whole message whose auth field `[at, at + mac_len)` is taken as zeros.
    pub fn mac_over(&self, message: &[u8], at: usize) -> Vec<u8> {
        let n = self.auth.mac_len();
        let zeros = [0u8; 48];
        let end = (at + n).min(message.len());
        let at = at.min(end);
        self.auth.mac(
            &self.auth_key,
            &[&message[..at], &zeros[..end - at], &message[end..]],
        )
    }

    /// Constant-time check of a received message's MAC at `[at, at + mac_len)`.
    pub fn verify(&self, message: &[u8], at: usize) -> bool {
        let n = self.auth.mac_len();
        let Some(got) = message.get(at..at + n) else {
            return false;
        };
        let want = self.mac_over(message, at);
        want.len() == got.len() && want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Encrypt a ScopedPDU in place (DES pads it to 8 bytes first). `salt` must never repeat
    /// for these keys; returns msgPrivacyParameters.
    pub fn encrypt(
        &self,
        data: &mut Vec<u8>,
        boots: u32,
        time: u32,
        salt: u64,
    ) -> Result<[u8; 8], SnmpError> {
        let (proto, key) = self
            .privacy
            .as_ref()
            .ok_or(SnmpError::Unsupported("encryption without a privacy key"))?;
        match proto {
            PrivProtocol::Des => {
                let salt_bytes = {
                    let mut s = [0u8; 8];
                    s[..4].copy_from_slice(&boots.to_be_bytes());
                    s[4..].copy_from_slice(&(salt as u32).to_be_bytes());
                    s
                };
                while !data.len().is_multiple_of(8) {
                    data.push(0);
                }
                des_cbc(key, &salt_bytes, data, true)?;
                Ok(salt_bytes)
            }
            _ => {
                let salt_bytes = salt.to_be_bytes();
                aes_cfb(key, boots, time, &salt_bytes, data, true)?;
                Ok(salt_bytes)
            }
        }
    }

    /// Decrypt an encryptedPDU in place. `boots`/`time` are the message's authoritative engine
    /// values; `priv_params` its msgPrivacyParameters.
    pub fn decrypt(
        &self,
        data: &mut [u8],
        boots: u32,
        time: u32,
        priv_params: &[u8],
    ) -> Result<(), SnmpError> {
        let (proto, key) = self.privacy.as_ref().ok_or(SnmpError::Unsupported(
            "encrypted message without a privacy key",
        ))?;
        let salt: [u8; 8] = priv_params
            .try_into()
            .map_err(|_| SnmpError::OutOfRange("msgPrivacyParameters length"))?;
        match proto {
            PrivProtocol::Des => {
                if !data.len().is_multiple_of(8) {
                    return Err(SnmpError::OutOfRange("DES ciphertext length"));
                }
                des_cbc(key, &salt, data, false)
            }
            _ => aes_cfb(key, boots, time, &salt, data, false),
        }
    }
}

impl Drop for UserKeys {
    fn drop(&mut self) {
        self.auth_ku.zeroize();
    }
}

/// AES-CFB128 with IV = boots ‖ time ‖ salt (RFC 3826 §3.1.2.1).
fn aes_cfb(
    key: &[u8],
    boots: u32,
    time: u32,
    salt: &[u8; 8],
    data: &mut [u8],
    encrypt: bool,
) -> Result<(), SnmpError> {
    use cfb_mode::cipher::KeyIvInit;
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    let bad_key = |_| SnmpError::OutOfRange("AES key length");
    macro_rules! run {
        ($c:ty) => {{
            if encrypt {
                cfb_mode::Encryptor::<$c>::new_from_slices(key, &iv)
                    .map_err(bad_key)?
                    .encrypt(data);
            } else {
                cfb_mode::Decryptor::<$c>::new_from_slices(key, &iv)
                    .map_err(bad_key)?
                    .decrypt(data);
            }
        }};
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        32 => run!(aes::Aes256),
        _ => return Err(SnmpError::OutOfRange("AES key length")),
    }
    Ok(())
}

/// DES-CBC (RFC 3414 §8.1.1): key = priv[0..8], IV = priv[8..16] ⊕ salt. `data` is a
/// multiple of 8 bytes.
fn des_cbc(key: &[u8], salt: &[u8; 8], data: &mut [u8], encrypt: bool) -> Result<(), SnmpError> {
    use cbc::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
    if key.len() < 16 {
        return Err(SnmpError::OutOfRange("DES key length"));
    }
    let mut iv = [0u8; 8];
    for (i, b) in iv.iter_mut().enumerate() {
        *b = key[8 + i] ^ salt[i];
    }
    let (blocks, rest) = Array::slice_as_chunks_mut(data);
    if !rest.is_empty() {
        return Err(SnmpError::OutOfRange("DES data length"));
    }
    let bad_key = |_| SnmpError::OutOfRange("DES key length");
    if encrypt {
        cbc::Encryptor::<des::Des>::new_from_slices(&key[..8], &iv)
            .map_err(bad_key)?
            .encrypt_blocks(blocks);
    } else {
        cbc::Decryptor::<des::Des>::new_from_slices(&key[..8], &iv)
            .map_err(bad_key)?
            .decrypt_blocks(blocks);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc3414_key_localization() {
        let engine = hex("000000000000000000000002");
        let md5 = AuthProtocol::Md5.password_to_key(b"maplesyrup").unwrap();
        assert_eq!(
            *AuthProtocol::Md5.localize(&md5, &engine),
            hex("526f5eed9fcce26f8964c2930787d82b")
        );
        let sha = AuthProtocol::Sha1.password_to_key(b"maplesyrup").unwrap();
        assert_eq!(
            *AuthProtocol::Sha1.localize(&sha, &engine),
            hex("6695febc9288e36282235fc7151f128497b38f3f")
        );
    }

    /// Keys net-snmp 5.9.3 stored for users created with these passwords (docs/snmp-design.md).
    #[test]
    fn matches_net_snmp_stored_keys() {
        let engine = hex("80001f88805bbc447e188a076b00000000");
        /// (auth, auth password, localized auth key, privacy (proto, password, localized key))
        type Case = (
            AuthProtocol,
            &'static str,
            &'static str,
            Option<(PrivProtocol, &'static str, &'static str)>,
        );
        let cases: &[Case] = &[
            (
                AuthProtocol::Sha1,
                "authpass-sha1",
                "67b0c859b30dc61c49419db55955dd8ea0139b6f",
                Some((
                    PrivProtocol::Aes128,
                    "privpass-aes128",
                    "9927629c180f406f3e5f9317395cca00",
                )),
            ),
            (
                AuthProtocol::Sha256,
                "authpass-sha256",
                "fb23736883448ae75773d421e9a7081e274c7208f6cdacb8a99a3fcbcf1ae708",
                Some((
                    PrivProtocol::Aes256,
                    "privpass-aes256",
                    "8831e39755d96be6072e5a5d7d766b6933c89aaa4c16ae40b198fc36485b69b9",
                )),
            ),
            (
                AuthProtocol::Sha1,
                "authpass-sha1b",
                "097cfde22586fe203e69376250988c377045a771",
                Some((
                    PrivProtocol::Aes256,
                    "privpass-aes256b",
                    "f523dacdcb2ec1316e512ef7f4072f0d0781c36ed1d26648e77292670a482021",
                )),
            ),
            (
                AuthProtocol::Sha1,
                "authpass-sha1c",
                "f181c563dc57ee38e48792fd6e4d172d79f8dbe1",
                Some((
                    PrivProtocol::Aes192,
                    "privpass-aes192c",
                    "56def25a75a8bfada897d724ccb11f717011ab70411b1886",
                )),
            ),
            (
                AuthProtocol::Md5,
                "authpass-md5",
                "229709e3bf58cd63ecafc462fbc3f462",
                Some((
                    PrivProtocol::Des,
                    "privpass-des",
                    "02b46ed5525dfcaae31173866efc4a25",
                )),
            ),
        ];
        for (auth, apw, akey, privacy) in cases {
            let keys = UserKeys::new(
                *auth,
                apw.as_bytes(),
                privacy.map(|(p, pw, _)| (p, pw.as_bytes())),
            )
            .unwrap()
            .localize(&engine);
            assert_eq!(keys.auth_key(), hex(akey).as_slice(), "{apw}");
            if let Some((_, _, pkey)) = privacy {
                assert_eq!(keys.priv_key().unwrap(), hex(pkey).as_slice(), "{apw}");
            }
        }
    }

    #[test]
    fn privacy_round_trips() {
        for p in [
            PrivProtocol::Des,
            PrivProtocol::Aes128,
            PrivProtocol::Aes192,
            PrivProtocol::Aes256,
        ] {
            let keys = LocalKeys::from_localized(
                AuthProtocol::Sha1,
                &[1; 20],
                Some((p, &vec![7u8; p.key_len()])),
            );
            let plain: Vec<u8> = (0..37u8).collect();
            let mut data = plain.clone();
            let salt = keys.encrypt(&mut data, 3, 1000, 42).unwrap();
            assert_ne!(&data[..plain.len()], &plain[..]);
            keys.decrypt(&mut data, 3, 1000, &salt).unwrap();
            assert_eq!(&data[..plain.len()], &plain[..], "{p:?}");
        }
    }

    #[test]
    fn mac_lengths_and_verification() {
        let keys = LocalKeys::from_localized(AuthProtocol::Sha256, &[9; 32], None);
        let mut msg = vec![0xAAu8; 100];
        let mac = keys.mac_over(&msg, 40);
        assert_eq!(mac.len(), 24);
        msg[40..64].copy_from_slice(&mac);
        assert!(keys.verify(&msg, 40));
        msg[70] ^= 1;
        assert!(!keys.verify(&msg, 40));
        assert!(
            format!("{keys:?}").find("9, 9").is_none(),
            "no key in Debug"
        );
    }
}
