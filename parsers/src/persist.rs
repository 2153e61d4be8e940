//! Template cache snapshots, so the first datagram after a restart decodes.
//!
//! The format is line-based text, one template or sampling state per line, because an operator
//! may want to read it and because a damaged line should cost that line, not the whole cache:
//!
//! ```text
//! # nmsd template cache v1
//! T <version> <exporter> <domain> <refreshed_ms> <template_id> <d|o<scope>> <id>:<len>[:<pen>],...
//! S <version> <exporter> <domain> <default_interval> <system_init_ms|-> <sampler>:<interval>,...|-
//! ```
//! `<version>` is `5`, `9` or `10`, followed by `@<source>` for domains of a flow source other
//! than the first (files written before sources were told apart have no suffix).
//! This module only formats and parses; the caller reads and writes the file.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::decoder::FlowDecoder;
use crate::domain::{DomainKey, SamplingState};
use crate::record::FlowVersion;
use crate::template::{FieldSpec, TemplateDef, TemplateKind};

const HEADER: &str = "# nmsd template cache v1";

/// What a restore found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub templates: usize,
    pub sampling_states: usize,
    /// Lines that could not be read or whose template no longer compiles, with the first reason.
    pub skipped: usize,
    pub first_problem: Option<String>,
}

/// Every template and sampling state the decoder knows, as text.
pub fn snapshot(decoder: &FlowDecoder) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    let mut domains: Vec<_> = decoder.domains().collect();
    domains.sort_by_key(|(k, _)| **k);
    for (key, dom) in domains {
        let v = match key.source {
            0 => key.version.as_u8().to_string(),
            src => format!("{}@{src}", key.version.as_u8()),
        };
        let mut ids: Vec<_> = dom.templates.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(t) = dom.templates.get(&id) else {
                continue;
            };
            let kind = match t.def.kind {
                TemplateKind::Data => "d".to_string(),
                TemplateKind::Options { scope_fields } => format!("o{scope_fields}"),
            };
            let _ = write!(
                s,
                "T {v} {} {} {} {id} {kind} ",
                key.exporter, key.domain, t.refreshed_ms
            );
            for (i, f) in t.def.fields.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{}:{}", f.id, f.len);
                if f.enterprise != 0 {
                    let _ = write!(s, ":{}", f.enterprise);
                }
            }
            s.push('\n');
        }
        let sm = &dom.sampling;
        if sm.default_interval > 1 || !sm.samplers.is_empty() || sm.system_init_ms.is_some() {
            let init = sm.system_init_ms.map_or("-".to_string(), |i| i.to_string());
            let samplers = if sm.samplers.is_empty() {
                "-".to_string()
            } else {
                sm.samplers
                    .iter()
                    .map(|(id, i)| format!("{id}:{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let _ = writeln!(
                s,
                "S {v} {} {} {} {init} {samplers}",
                key.exporter, key.domain, sm.default_interval
            );
        }
    }
    s
}

/// Load a snapshot into the decoder. Bad lines are skipped and counted, never fatal: a damaged
/// cache must not keep the collector from starting.
pub fn restore(decoder: &mut FlowDecoder, text: &str) -> RestoreSummary {
    let mut summary = RestoreSummary::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let result = match line.as_bytes().first() {
            Some(b'T') => restore_template(decoder, line).map(|_| summary.templates += 1),
            Some(b'S') => restore_sampling(decoder, line).map(|_| summary.sampling_states += 1),
            _ => Err("unknown record type".to_string()),
        };
        if let Err(why) = result {
            summary.skipped += 1;
            summary
                .first_problem
                .get_or_insert_with(|| format!("line {}: {why}", n + 1));
        }
    }
    summary
}

fn parse_key(parts: &[&str]) -> Result<DomainKey, String> {
    let (version, source) = match parts.first().map(|v| v.split_once('@').unwrap_or((v, "0"))) {
        Some((v, src)) => (
            v,
            src.parse::<u8>()
                .map_err(|_| format!("bad source {src:?}"))?,
        ),
        None => return Err("missing version".into()),
    };
    let version = match version {
        "5" => FlowVersion::NetflowV5,
        "9" => FlowVersion::NetflowV9,
        "10" => FlowVersion::Ipfix,
        other => return Err(format!("bad version {other:?}")),
    };
    let exporter: IpAddr = parts
        .get(1)
        .ok_or("missing exporter")?
        .parse()
        .map_err(|e| format!("bad exporter address: {e}"))?;
    let domain: u32 = parts
        .get(2)
        .ok_or("missing domain")?
        .parse()
        .map_err(|e| format!("bad domain: {e}"))?;
    Ok(DomainKey {
        exporter,
        domain,
        version,
        source,
    })
}

fn num<T: std::str::FromStr>(s: Option<&&str>, what: &str) -> Result<T, String> {
    s.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

fn restore_template(decoder: &mut FlowDecoder, line: &str) -> Result<(), String> {
    let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
    if parts.len() != 7 {
        return Err(format!("expected 7 fields, found {}", parts.len()));
    }
    let key = parse_key(&parts)?;
    let refreshed: u64 = num(parts.get(3), "refresh time")?;
    let id: u16 = num(parts.get(4), "template id")?;
    let kind = match parts[5] {
        "d" => TemplateKind::Data,
        o if o.starts_with('o') => TemplateKind::Options {
            scope_fields: o[1..].parse().map_err(|_| "bad scope count")?,
        },
        _ => return Err("bad template kind".into()),
    };
    let mut fields = Vec::new();
    for f in parts[6].split(',') {
        let mut it = f.split(':');
        let id = num(it.next().as_ref(), "field id")?;
        let len = num(it.next().as_ref(), "field length")?;
        let enterprise = match it.next() {
            Some(p) => p.parse().map_err(|_| "bad enterprise number")?,
            None => 0,
        };
        fields.push(FieldSpec {
            id,
            len,
            enterprise,
        });
    }
    decoder
        .restore_template(key, TemplateDef { id, kind, fields }, refreshed)
        .map_err(|e| e.to_string())
}

fn restore_sampling(decoder: &mut FlowDecoder, line: &str) -> Result<(), String> {
    let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
    if parts.len() != 6 {
        return Err(format!("expected 6 fields, found {}", parts.len()));
    }
    let key = parse_key(&parts)?;
    let default_interval = num(parts.get(3), "default interval")?;
    let system_init_ms = match parts[4] {
        "-" => None,
        v => Some(v.parse().map_err(|_| "bad system init time")?),
    };
    let mut samplers = Vec::new();
    if parts[5] != "-" {
        for p in parts[5].split(',') {
            let (id, i) = p.split_once(':').ok_or("bad sampler")?;
            samplers.push((
                id.parse().map_err(|_| "bad sampler id")?,
                i.parse().map_err(|_| "bad sampler interval")?,
            ));
        }
    }
    let state = SamplingState {
        default_interval,
        samplers,
        system_init_ms,
    };
    decoder
        .restore_sampling(key, state, 0)
        .map_err(|e| e.to_string())
}
