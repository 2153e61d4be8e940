//! `[sources.<id>] type = "snmp_traps"`: the SNMP trap and INFORM receiver (v1, v2c, v3), a
//! thread per listen address, writing the `traps` stream.

use std::net::SocketAddr;
use std::sync::Arc;

use nmsd_pipeline::units::ByteSize;
use nmsd_snmp::engine::plan::Credentials;
use serde::Deserialize;

use super::snmp::{
    ProfileConfig, SecretSource, SnmpConfigError, profile_credentials, validate_profiles,
};

/// `[sources.<id>] type = "snmp_traps"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpTrapsSourceConfig {
    /// Where traps arrive (162 needs CAP_NET_BIND_SERVICE, which the systemd unit grants).
    #[serde(default = "default_trap_listen")]
    pub listen: Vec<SocketAddr>,
    /// Communities accepted for v1/v2c, each with a name stored instead of the community.
    #[serde(default)]
    pub communities: Vec<TrapCommunityConfig>,
    /// Names of the v3 profiles below whose users are accepted for TRAP and INFORM.
    #[serde(default)]
    pub users: Vec<String>,
    /// v3 credential profiles (the same shape as an snmp source's `profiles`).
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
    /// nmsd's engine ID for v3 INFORM, hex; generated and kept in the state directory if unset.
    pub engine_id: Option<String>,
    /// SO_RCVBUF per listen address: what a burst can queue while the receiver catches up.
    /// Above `net.core.rmem_max` it needs root or CAP_NET_ADMIN (SO_RCVBUFFORCE).
    #[serde(default = "default_trap_receive_buffer")]
    pub receive_buffer: ByteSize,
}

/// The kernel doubles the request and counts ~830 bytes per small trap: ~40,000 traps.
fn default_trap_receive_buffer() -> ByteSize {
    ByteSize(16 << 20)
}

impl SnmpTrapsSourceConfig {
    /// The receive buffer to ask for, in bytes.
    pub fn receive_buffer_bytes(&self) -> usize {
        usize::try_from(self.receive_buffer.0).unwrap_or(usize::MAX)
    }
}

fn default_trap_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], 162))]
}

/// One entry of `communities`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapCommunityConfig {
    pub name: String,
    pub community: SecretSource,
}

impl SnmpTrapsSourceConfig {
    /// Checks that need no I/O; keys relative to the source's table.
    pub fn validate(&self) -> Result<(), SnmpConfigError> {
        let e = |k: String, m: String| Err((k, m));
        validate_profiles(&self.profiles, "")?;
        for (i, u) in self.users.iter().enumerate() {
            match self.profiles.iter().find(|p| &p.name == u) {
                Some(p) if p.version == "3" => {}
                Some(_) => {
                    return e(
                        format!("users[{i}]"),
                        format!("profile \"{u}\" is not a v3 profile"),
                    );
                }
                None => {
                    return e(
                        format!("users[{i}]"),
                        format!("no profile named \"{u}\" in this source's profiles"),
                    );
                }
            }
        }
        if self.listen.is_empty() {
            return e("listen".into(), "at least one address to listen on".into());
        }
        if !(64 << 10..=1 << 30).contains(&self.receive_buffer.0) {
            return e(
                "receive_buffer".into(),
                "must be between 64KiB and 1GiB".into(),
            );
        }
        if let Some(id) = &self.engine_id
            && (id.len() < 10
                || id.len() > 64
                || !id.len().is_multiple_of(2)
                || !id.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return e("engine_id".into(), "must be 5 to 32 bytes in hex".into());
        }
        Ok(())
    }

    /// The receiver's configuration: secrets read, keys derived. `engine` is nmsd's engine ID
    /// and boots (see `state::snmp_engine`).
    pub fn trap_config(
        &self,
        engine: (Vec<u8>, u32),
    ) -> Result<nmsd_snmp::traps::TrapConfig, SnmpConfigError> {
        let mut communities = Vec::new();
        for (i, c) in self.communities.iter().enumerate() {
            communities.push(nmsd_snmp::traps::TrapCommunity {
                name: c.name.clone(),
                community: c
                    .community
                    .read()
                    .map_err(|m| (format!("communities[{i}].community"), m))?,
            });
        }
        let mut users = Vec::new();
        for (i, u) in self.users.iter().enumerate() {
            let Some(j) = self.profiles.iter().position(|p| &p.name == u) else {
                return Err((format!("users[{i}]"), format!("no profile named \"{u}\"")));
            };
            let creds = profile_credentials(&self.profiles[j], &format!("profiles[{j}]"))?;
            if let Credentials::V3 { user, keys } = creds {
                users.push(nmsd_snmp::traps::TrapUser {
                    name: user.to_vec(),
                    keys,
                });
            }
        }
        Ok(nmsd_snmp::traps::TrapConfig {
            communities,
            users,
            engine_id: engine.0,
            engine_boots: engine.1,
        })
    }
}

impl super::SourceSpec for SnmpTrapsSourceConfig {
    fn outputs(&self) -> nmsd_pipeline::StreamSet {
        nmsd_pipeline::StreamSet::of(&[nmsd_pipeline::StreamKind::Traps])
    }

    fn validate(&self) -> Result<(), (String, String)> {
        SnmpTrapsSourceConfig::validate(self)
    }

    /// Secrets are read (and keys derived) here, so `check-config` reports a missing one.
    fn check_environment(&self) -> Result<(), (String, String)> {
        self.trap_config((vec![0; 5], 0)).map(|_| ())
    }

    fn start(&self, ctx: super::SourceContext) -> anyhow::Result<super::RunningSource> {
        use anyhow::Context;
        let id = ctx.id.clone();
        // Every trap source keeps its own engine identity (v3 INFORMs are addressed to it).
        let engine = crate::state::snmp_engine(&ctx.state_dir, &id, self.engine_id.as_deref())?;
        let tc = Arc::new(
            self.trap_config(engine)
                .map_err(|(k, m)| anyhow::anyhow!("[sources.{id}] {k}: {m}"))?,
        );
        let mut running = super::RunningSource::default();
        for addr in &self.listen {
            let addr = *addr;
            let sock = nmsd_snmp::traps::TrapSocket::bind(addr, self.receive_buffer_bytes())
                .with_context(|| {
                    format!(
                        "cannot listen for traps on {addr}; ports below 1024 need root or \
                         CAP_NET_BIND_SERVICE"
                    )
                })?;
            let receive_buffer = sock.receive_buffer();
            let receiver = nmsd_snmp::traps::TrapReceiver::new(tc.clone());
            let stop = ctx.stop.clone();
            let output = ctx.output.clone();
            let h = std::thread::Builder::new()
                .name(format!("nmsd-traps-{}", addr.port()))
                .spawn(move || {
                    // Batches, under the queues' full policies; refusals are counted there.
                    nmsd_snmp::traps::run(sock, receiver, stop, Default::default(), |rows| {
                        output.send(nmsd_pipeline::Batch::Traps(Arc::new(rows)));
                        true
                    })
                })
                .context("cannot start a trap receiver thread")?;
            running.threads.push(h);
            tracing::info!(source = %id, %addr, receive_buffer, "receiving SNMP traps and informs");
        }
        running.status.insert(
            "listen".into(),
            serde_json::Value::from(
                self.listen
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>(),
            ),
        );
        Ok(running)
    }
}
