//! `[sources.<id>] type = "snmp"`: SNMP polling of devices (v2c and v3).
//!
//! This file turns config into the engine's `Plan`: addresses resolved, secrets read from files,
//! environment variables or systemd credentials (never inline, never logged), passwords turned
//! into keys once. The engine itself lives in the `nmsd-snmp` crate.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nmsd_parsers::snmp::usm::{AuthProtocol, PrivProtocol, UserKeys};
use nmsd_pipeline::units::HumanDuration;
use nmsd_snmp::engine::plan::{Credentials, DeviceSpec, Modules, Plan};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use zeroize::Zeroizing;

/// `[sources.snmp]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpSourceConfig {
    /// Source address of polls (port 0: ephemeral).
    #[serde(default = "default_bind4")]
    pub bind: SocketAddr,
    #[serde(default = "default_bind6")]
    pub bind6: SocketAddr,
    /// Requests in flight over all devices.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most per-interface series on /metrics over all devices with `prometheus = true`.
    #[serde(default = "default_max_series")]
    pub prometheus_max_series: usize,
    #[serde(default)]
    pub defaults: DeviceDefaults,
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// User-defined modules: scalars and tables by OID, each written to its own table.
    #[serde(default)]
    pub modules: Vec<CustomModuleConfig>,
}

/// `[[sources.snmp.modules]]`: scalars go to table `snmp_<name>`, each table to `snmp_<table>`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomModuleConfig {
    pub name: String,
    #[serde(default)]
    pub scalars: Vec<CustomOidConfig>,
    #[serde(default)]
    pub tables: Vec<CustomTableConfig>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTableConfig {
    pub name: String,
    pub columns: Vec<CustomOidConfig>,
}

/// One OID: a scalar instance (e.g. `1.3.6.1.4.1.9.9.109.1.1.1.1.8.1`) or a table column.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomOidConfig {
    pub name: String,
    pub oid: String,
    /// gauge (a number), counter (raw value and per-second rate) or label (text).
    pub kind: String,
}

/// Names become QuestDB table and column names: keep them plain.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn custom_kind(s: &str) -> Option<nmsd_pipeline::snmp::CustomKind> {
    use nmsd_pipeline::snmp::CustomKind;
    Some(match s {
        "gauge" => CustomKind::Gauge,
        "counter" => CustomKind::Counter,
        "label" => CustomKind::Label,
        _ => return None,
    })
}

fn default_bind4() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}
fn default_bind6() -> SocketAddr {
    SocketAddr::from(([0u16; 8], 0))
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_max_series() -> usize {
    20_000
}

/// `[sources.snmp.defaults]`: every key can be overridden per device.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceDefaults {
    pub port: u16,
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    pub retries: u32,
    pub max_repetitions: u32,
    pub max_in_flight: u32,
    pub modules: Vec<String>,
    /// Export per-interface gauges (bps, utilization, status) on /metrics.
    pub prometheus: bool,
}

impl Default for DeviceDefaults {
    fn default() -> Self {
        DeviceDefaults {
            port: 161,
            interval: HumanDuration::from_secs(60),
            timeout: HumanDuration::from_secs(2),
            retries: 2,
            max_repetitions: 25,
            max_in_flight: 2,
            modules: vec!["system".into(), "interfaces".into()],
            prometheus: false,
        }
    }
}

/// Where a secret comes from. Exactly one of the keys.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// `$CREDENTIALS_DIRECTORY/NAME` (systemd `LoadCredential=`).
    Credential(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Where, never what.
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
            SecretSource::Credential(c) => write!(f, "credential {c}"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{ file = \"PATH\" }, { env = \"NAME\" } or { credential = \"NAME\" }")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(
                    "secrets are not written inline in config.toml; use { file = \"PATH\" }, \
                     { env = \"NAME\" } or { credential = \"NAME\" }",
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<SecretSource, A::Error> {
                let mut out = None;
                while let Some(k) = m.next_key::<String>()? {
                    let v: String = m.next_value()?;
                    let s = match k.as_str() {
                        "file" => SecretSource::File(PathBuf::from(v)),
                        "env" => SecretSource::Env(v),
                        "credential" => SecretSource::Credential(v),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["file", "env", "credential"],
                            ));
                        }
                    };
                    if out.replace(s).is_some() {
                        return Err(de::Error::custom(
                            "give exactly one of file, env, credential",
                        ));
                    }
                }
                out.ok_or_else(|| de::Error::custom("give one of file, env, credential"))
            }
        }
        d.deserialize_any(V)
    }
}

impl SecretSource {
    /// Read the secret (one trailing newline stripped). Errors name the source, never the value.
    pub fn read(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut v = match self {
            SecretSource::File(p) => std::fs::read(p)
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?,
            SecretSource::Env(n) => std::env::var_os(n)
                .ok_or_else(|| format!("environment variable {n} is not set"))?
                .into_encoded_bytes(),
            SecretSource::Credential(c) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "credential {c}: CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)"
                    )
                })?;
                let p = PathBuf::from(dir).join(c);
                std::fs::read(&p).map_err(|e| format!("cannot read credential {c}: {e}"))?
            }
        };
        if v.last() == Some(&b'\n') {
            v.pop();
        }
        if v.is_empty() {
            return Err(format!("the secret from {self:?} is empty"));
        }
        Ok(Zeroizing::new(v))
    }
}

/// `[[sources.snmp.profiles]]`: credentials shared by devices.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    pub name: String,
    /// "2c" or "3".
    pub version: String,
    /// v2c.
    pub community: Option<SecretSource>,
    /// v3.
    pub user: Option<String>,
    /// noAuthNoPriv | authNoPriv | authPriv.
    pub level: Option<String>,
    /// md5 | sha | sha224 | sha256 | sha384 | sha512.
    pub auth: Option<String>,
    pub auth_password: Option<SecretSource>,
    /// des | aes | aes192 | aes256 (Blumenthal, net-snmp) | aes192c | aes256c (Reeder, Cisco).
    #[serde(rename = "priv")]
    pub privacy: Option<String>,
    pub priv_password: Option<SecretSource>,
}

/// `[[sources.snmp.devices]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    /// IP address or host name.
    pub address: String,
    pub profile: String,
    pub port: Option<u16>,
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub retries: Option<u32>,
    pub max_repetitions: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub modules: Option<Vec<String>>,
    /// Addresses this device's NetFlow/IPFIX comes from, if not `address`: its interface names
    /// then label those flows in flows_1m.
    pub flow_exporters: Option<Vec<std::net::IpAddr>>,
    pub prometheus: Option<bool>,
    /// Operator tags (`tags = { site = "ams1", role = "core" }`): a `tag_NAME` SYMBOL column in
    /// snmp_device and snmp_interface, and in /api/v1/devices.
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

/// Most tags per device: each is a column in two tables.
const MAX_TAGS: usize = 16;

/// A tag name becomes part of a QuestDB column name: lowercase ASCII letters, digits and `_`,
/// starting with a letter, at most 32 characters.
fn check_tag(name: &str, value: &str) -> Result<(), String> {
    let ok_name = name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok_name {
        return Err(format!(
            "tag name \"{name}\" must be lowercase letters, digits and _, start with a letter, \
             at most 32 characters"
        ));
    }
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(format!(
            "tag {name}: the value must be 1 to 256 characters without control characters"
        ));
    }
    Ok(())
}

/// A problem with the SNMP config: (key, message).
pub type SnmpConfigError = (String, String);

/// Checks of credential profiles that need no I/O; `table` is where they are
/// (`sources.snmp.`, with its dot; empty for keys relative to the table), for errors.
pub(crate) fn validate_profiles(
    profiles: &[ProfileConfig],
    table: &str,
) -> Result<(), SnmpConfigError> {
    let e = |k: String, m: String| Err((k, m));
    for (i, p) in profiles.iter().enumerate() {
        let k = |f: &str| format!("{table}profiles[{i}].{f}");
        match p.version.as_str() {
            "2c" => {
                if p.community.is_none() {
                    return e(k("community"), "a v2c profile needs a community".into());
                }
            }
            "3" => {
                if p.user.as_deref().is_none_or(str::is_empty) {
                    return e(k("user"), "a v3 profile needs a user".into());
                }
                let level = p.level.as_deref().unwrap_or("authPriv");
                if !["noAuthNoPriv", "authNoPriv", "authPriv"].contains(&level) {
                    return e(
                        k("level"),
                        "level must be noAuthNoPriv, authNoPriv or authPriv".into(),
                    );
                }
                if level != "noAuthNoPriv" {
                    if p.auth.as_deref().and_then(AuthProtocol::parse).is_none() {
                        return e(
                            k("auth"),
                            "auth must be md5, sha, sha224, sha256, sha384 or sha512".into(),
                        );
                    }
                    if p.auth_password.is_none() {
                        return e(
                            k("auth_password"),
                            "authNoPriv and authPriv need auth_password".into(),
                        );
                    }
                }
                if level == "authPriv" {
                    if p.privacy.as_deref().and_then(PrivProtocol::parse).is_none() {
                        return e(
                            k("priv"),
                            "priv must be des, aes, aes192, aes256, aes192c or aes256c".into(),
                        );
                    }
                    if p.priv_password.is_none() {
                        return e(k("priv_password"), "authPriv needs priv_password".into());
                    }
                } else if p.privacy.is_some() {
                    return e(k("priv"), "priv needs level = \"authPriv\"".into());
                }
            }
            _ => return e(k("version"), "version must be \"2c\" or \"3\"".into()),
        }
    }
    Ok(())
}

/// Credentials of a profile: secrets read, keys derived (a few ms per password). `at` is its
/// key (`sources.snmp.profiles[0]`), for errors.
pub(crate) fn profile_credentials(
    p: &ProfileConfig,
    at: &str,
) -> Result<Credentials, SnmpConfigError> {
    let k = |f: &str| format!("{at}.{f}");
    let creds = if p.version == "2c" {
        let c = p
            .community
            .as_ref()
            .ok_or((k("community"), "missing".to_string()))?;
        Credentials::V2c {
            community: Arc::new(c.read().map_err(|m| (k("community"), m))?),
        }
    } else {
        let level = p.level.as_deref().unwrap_or("authPriv");
        let keys = if level == "noAuthNoPriv" {
            None
        } else {
            let auth = p
                .auth
                .as_deref()
                .and_then(AuthProtocol::parse)
                .ok_or((k("auth"), "invalid".to_string()))?;
            let apw = p
                .auth_password
                .as_ref()
                .ok_or((k("auth_password"), "missing".to_string()))?
                .read()
                .map_err(|m| (k("auth_password"), m))?;
            if apw.len() < 8 {
                return Err((
                    k("auth_password"),
                    "SNMPv3 passwords must have at least 8 characters".into(),
                ));
            }
            let privacy = if level == "authPriv" {
                let proto = p
                    .privacy
                    .as_deref()
                    .and_then(PrivProtocol::parse)
                    .ok_or((k("priv"), "invalid".to_string()))?;
                let ppw = p
                    .priv_password
                    .as_ref()
                    .ok_or((k("priv_password"), "missing".to_string()))?
                    .read()
                    .map_err(|m| (k("priv_password"), m))?;
                if ppw.len() < 8 {
                    return Err((
                        k("priv_password"),
                        "SNMPv3 passwords must have at least 8 characters".into(),
                    ));
                }
                Some((proto, ppw))
            } else {
                None
            };
            let keys = UserKeys::new(
                auth,
                &apw,
                privacy.as_ref().map(|(p, pw)| (*p, pw.as_slice())),
            )
            .map_err(|e| (k("auth_password"), e.to_string()))?;
            Some(Arc::new(keys))
        };
        Credentials::V3 {
            user: Arc::from(p.user.clone().unwrap_or_default().into_bytes()),
            keys,
        }
    };
    Ok(creds)
}

impl SnmpSourceConfig {
    /// Checks that need no I/O.
    pub fn validate(&self) -> Result<(), SnmpConfigError> {
        let e = |k: String, m: String| Err((k, m));
        let mut names = std::collections::HashSet::new();
        validate_profiles(&self.profiles, "sources.snmp.")?;
        let mut tables = std::collections::HashSet::new();
        for (i, m) in self.modules.iter().enumerate() {
            let k = |f: &str| format!("sources.snmp.modules[{i}].{f}");
            if !plain_name(&m.name) || ["system", "interfaces", "lldp"].contains(&m.name.as_str()) {
                return e(k("name"), "a module name is lowercase letters, digits and _, and not system, interfaces or lldp".into());
            }
            let check_oids = |f: &str, cols: &[CustomOidConfig]| -> Result<(), SnmpConfigError> {
                for (j, c) in cols.iter().enumerate() {
                    if !plain_name(&c.name) || ["ts", "device", "idx"].contains(&c.name.as_str()) {
                        return Err((format!("{}[{j}].name", k(f)), "a column name is lowercase letters, digits and _ (not ts, device, idx)".into()));
                    }
                    if c.oid.parse::<nmsd_parsers::snmp::Oid>().is_err() {
                        return Err((
                            format!("{}[{j}].oid", k(f)),
                            format!(
                                "\"{}\" is not a numeric OID (e.g. 1.3.6.1.2.1.1.3.0)",
                                c.oid
                            ),
                        ));
                    }
                    if custom_kind(&c.kind).is_none() {
                        return Err((
                            format!("{}[{j}].kind", k(f)),
                            "kind must be gauge, counter or label".into(),
                        ));
                    }
                }
                Ok(())
            };
            check_oids("scalars", &m.scalars)?;
            let mut names: Vec<String> = Vec::new();
            if !m.scalars.is_empty() {
                names.push(format!("snmp_{}", m.name));
            }
            for (j, t) in m.tables.iter().enumerate() {
                if !plain_name(&t.name) {
                    return e(
                        format!("{}[{j}].name", k("tables")),
                        "a table name is lowercase letters, digits and _".into(),
                    );
                }
                check_oids(&format!("tables[{j}].columns"), &t.columns)?;
                names.push(format!("snmp_{}", t.name));
            }
            for n in names {
                if ["snmp_interface", "snmp_device", "snmp_trap"].contains(&n.as_str())
                    || !tables.insert(n.clone())
                {
                    return e(
                        k("name"),
                        format!("table {n} is used twice or is a built-in table"),
                    );
                }
            }
        }
        let d = &self.defaults;
        check_timing(&d.interval, &d.timeout, d.retries, d.max_repetitions)
            .map_err(|(f, m)| (format!("sources.snmp.defaults.{f}"), m))?;
        for (i, dev) in self.devices.iter().enumerate() {
            let k = |f: &str| format!("sources.snmp.devices[{i}].{f}");
            if !names.insert(dev.name.as_str()) {
                return e(
                    k("name"),
                    format!("device name \"{}\" is used twice", dev.name),
                );
            }
            if !self.profiles.iter().any(|p| p.name == dev.profile) {
                return e(
                    k("profile"),
                    format!("no profile named \"{}\"", dev.profile),
                );
            }
            if let Some(tags) = &dev.tags {
                if tags.len() > MAX_TAGS {
                    return e(k("tags"), format!("at most {MAX_TAGS} tags per device"));
                }
                for (n, v) in tags {
                    check_tag(n, v).map_err(|m| (k(&format!("tags.{n}")), m))?;
                }
            }
            check_timing(
                &dev.interval.unwrap_or(d.interval),
                &dev.timeout.unwrap_or(d.timeout),
                dev.retries.unwrap_or(d.retries),
                dev.max_repetitions.unwrap_or(d.max_repetitions),
            )
            .map_err(|(f, m)| (k(f), m))?;
            for m in dev.modules.as_ref().unwrap_or(&d.modules) {
                if !["system", "interfaces", "lldp"].contains(&m.as_str())
                    && !self.modules.iter().any(|c| &c.name == m)
                {
                    return e(
                        k("modules"),
                        format!(
                            "unknown module \"{m}\" (built-in: system, interfaces, lldp; or a [[sources.snmp.modules]] name)"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// The user-defined modules as the engine runs them (validated before).
    fn custom_modules(&self) -> Vec<nmsd_snmp::engine::plan::CustomModule> {
        use nmsd_snmp::engine::plan::{CustomModule, CustomOid, CustomTable};
        let oids = |cols: &[CustomOidConfig]| -> Vec<CustomOid> {
            cols.iter()
                .filter_map(|c| {
                    Some(CustomOid {
                        name: Arc::from(c.name.as_str()),
                        oid: c.oid.parse().ok()?,
                        kind: custom_kind(&c.kind)?,
                    })
                })
                .collect()
        };
        self.modules
            .iter()
            .map(|m| CustomModule {
                name: Arc::from(m.name.as_str()),
                scalar_table: Arc::from(format!("snmp_{}", m.name).as_str()),
                scalars: oids(&m.scalars),
                tables: m
                    .tables
                    .iter()
                    .map(|t| CustomTable {
                        table: Arc::from(format!("snmp_{}", t.name).as_str()),
                        columns: oids(&t.columns),
                    })
                    .collect(),
            })
            .collect()
    }

    /// QuestDB schemas of the user-defined tables.
    pub fn custom_schemas(&self) -> Vec<nmsd_pipeline::snmp::CustomTableSchema> {
        let cols = |cs: &[CustomOidConfig]| -> Vec<(String, nmsd_pipeline::snmp::CustomKind)> {
            cs.iter()
                .filter_map(|c| Some((c.name.clone(), custom_kind(&c.kind)?)))
                .collect()
        };
        let mut out = Vec::new();
        for m in &self.modules {
            if !m.scalars.is_empty() {
                out.push(nmsd_pipeline::snmp::CustomTableSchema {
                    table: format!("snmp_{}", m.name),
                    indexed: false,
                    columns: cols(&m.scalars),
                });
            }
            for t in &m.tables {
                out.push(nmsd_pipeline::snmp::CustomTableSchema {
                    table: format!("snmp_{}", t.name),
                    indexed: true,
                    columns: cols(&t.columns),
                });
            }
        }
        out
    }

    /// Credentials of profile `i`: secrets read, keys derived (a few ms per password).
    fn profile(&self, i: usize) -> Result<Credentials, SnmpConfigError> {
        profile_credentials(&self.profiles[i], &format!("sources.snmp.profiles[{i}]"))
    }

    /// Read secrets, derive keys, resolve addresses: the engine's plan.
    pub fn plan(&self) -> Result<Plan, SnmpConfigError> {
        let mut profiles: Vec<(String, Credentials)> = Vec::new();
        for (i, p) in self.profiles.iter().enumerate() {
            profiles.push((p.name.clone(), self.profile(i)?));
        }
        let d = &self.defaults;
        let mut devices = Vec::new();
        for (i, dev) in self.devices.iter().enumerate() {
            let k = |f: &str| format!("sources.snmp.devices[{i}].{f}");
            let port = dev.port.unwrap_or(d.port);
            let addr = (dev.address.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| {
                    (
                        k("address"),
                        format!("cannot resolve \"{}\": {e}", dev.address),
                    )
                })?
                .next()
                .ok_or((
                    k("address"),
                    format!("\"{}\" resolves to no address", dev.address),
                ))?;
            let credentials = profiles
                .iter()
                .find(|(n, _)| *n == dev.profile)
                .map(|(_, c)| c.clone())
                .ok_or((k("profile"), "unknown profile".to_string()))?;
            let modules = dev.modules.as_ref().unwrap_or(&d.modules);
            devices.push(DeviceSpec {
                name: Arc::from(dev.name.as_str()),
                addr,
                credentials,
                interval: dev.interval.unwrap_or(d.interval).get(),
                timeout: dev.timeout.unwrap_or(d.timeout).get(),
                retries: dev.retries.unwrap_or(d.retries),
                max_repetitions: dev.max_repetitions.unwrap_or(d.max_repetitions),
                max_in_flight: dev.max_in_flight.unwrap_or(d.max_in_flight).max(1),
                modules: Modules {
                    system: modules.iter().any(|m| m == "system"),
                    interfaces: modules.iter().any(|m| m == "interfaces"),
                    lldp: modules.iter().any(|m| m == "lldp"),
                    // The topology module: LLDP-MIB, and CISCO-CDP-MIB where the agent has it.
                    cdp: modules.iter().any(|m| m == "lldp"),
                },
                flow_exporters: dev
                    .flow_exporters
                    .clone()
                    .unwrap_or_else(|| vec![addr.ip()]),
                prometheus: dev.prometheus.unwrap_or(d.prometheus),
                custom: modules
                    .iter()
                    .filter_map(|m| self.modules.iter().position(|c| &c.name == m))
                    .collect(),
                tags: dev
                    .tags
                    .iter()
                    .flatten()
                    .map(|(n, v)| {
                        (
                            Arc::from(format!("{}{n}", nmsd_snmp::engine::TAG_PREFIX).as_str()),
                            Arc::from(v.as_str()),
                        )
                    })
                    .collect(),
            });
        }
        Ok(Plan {
            devices,
            max_in_flight: self.max_in_flight.max(1),
            custom: self.custom_modules(),
        })
    }
}

fn check_timing(
    interval: &HumanDuration,
    timeout: &HumanDuration,
    retries: u32,
    max_repetitions: u32,
) -> Result<(), (&'static str, String)> {
    if interval.get() < Duration::from_secs(5) {
        return Err((
            "interval",
            "must be at least 5s (agents cache interface counters for ~3 s)".into(),
        ));
    }
    if timeout.get() < Duration::from_millis(100) || timeout.get() > Duration::from_secs(60) {
        return Err(("timeout", "must be between 100ms and 60s".into()));
    }
    if retries > 10 {
        return Err(("retries", "must be at most 10".into()));
    }
    if !(1..=100).contains(&max_repetitions) {
        return Err(("max_repetitions", "must be between 1 and 100".into()));
    }
    Ok(())
}

/// Keys of this file's checks are written `sources.snmp.…`; the config layer puts the source's
/// own id in front.
fn relative(e: SnmpConfigError) -> (String, String) {
    let (k, m) = e;
    let k = k
        .strip_prefix("sources.snmp.")
        .map(str::to_string)
        .unwrap_or(k);
    (k, m)
}

impl super::SourceSpec for SnmpSourceConfig {
    fn outputs(&self) -> nmsd_pipeline::StreamSet {
        use nmsd_pipeline::StreamKind as K;
        nmsd_pipeline::StreamSet::of(&[
            K::SnmpInterfaces,
            K::SnmpDevices,
            K::TopologyLinks,
            K::SnmpCustom,
        ])
    }

    fn validate(&self) -> Result<(), (String, String)> {
        SnmpSourceConfig::validate(self).map_err(relative)
    }

    fn check_environment(&self) -> Result<(), (String, String)> {
        self.plan().map(|_| ()).map_err(relative)
    }

    fn publishes_interfaces(&self) -> bool {
        true
    }

    fn custom_tables(&self) -> Vec<nmsd_pipeline::snmp::CustomTableSchema> {
        self.custom_schemas()
    }

    fn start(&self, ctx: super::SourceContext) -> anyhow::Result<super::RunningSource> {
        start(self, ctx)
    }
}

/// Start the polling engine (one thread with its own current-thread runtime,
/// docs/snmp-design.md §4).
fn start(sc: &SnmpSourceConfig, ctx: super::SourceContext) -> anyhow::Result<super::RunningSource> {
    use anyhow::Context;
    use nmsd_pipeline::Batch;

    let id = ctx.id.clone();
    let plan = sc
        .plan()
        .map_err(relative)
        .map_err(|(k, m)| anyhow::anyhow!("[sources.{id}] {k}: {m}"))?;
    let devices = plan.devices.len();
    let board: nmsd_snmp::engine::StatusBoard = Default::default();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (bind4, bind6) = (sc.bind, sc.bind6);
    let shared = nmsd_snmp::engine::EngineShared {
        board: board.clone(),
        directory: ctx.interfaces.clone(),
        topology: Default::default(),
    };
    let topology = shared.topology.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let output = ctx.output.clone();
    let handle = std::thread::Builder::new()
        .name(format!("nmsd-snmp-{id}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the SNMP runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                // Each poll's rows go on as batches, under the queues' full policies.
                let emit = Box::new(move |o: nmsd_snmp::engine::PollOutput| {
                    output.send(Batch::SnmpInterfaces(Arc::new(o.interfaces)));
                    output.send(Batch::SnmpDevices(Arc::new(vec![o.device])));
                    output.send(Batch::TopologyLinks(Arc::new(o.links)));
                    output.send(Batch::SnmpCustom(Arc::new(o.custom)));
                });
                match nmsd_snmp::engine::Engine::new(plan, bind4, bind6, emit, shared).await {
                    Ok(engine) => {
                        let _ = ready_tx.send(Ok(()));
                        engine.run(rx).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!(
                            "cannot bind the SNMP polling socket ({bind4} / {bind6}): {e}"
                        )));
                    }
                }
            });
        })
        .context("cannot start the SNMP thread")?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("{e}"),
        Err(_) => anyhow::bail!("the SNMP thread stopped during start-up"),
    }
    tracing::info!(source = %id, devices, "polling SNMP devices");
    let mut running = super::RunningSource {
        devices: Some(board),
        topology: Some(topology),
        max_series: sc.prometheus_max_series,
        ..Default::default()
    };
    running.stoppable.push((
        Box::new(move || {
            let _ = tx.try_send(nmsd_snmp::engine::Command::Stop);
        }),
        handle,
    ));
    running
        .status
        .insert("devices".into(), serde_json::Value::from(devices));

    Ok(running)
}
