//! The shipped `config.toml` and `docs/configuration.md` cannot drift from the config structs.
//!
//! What a table accepts is asked of serde itself: a probe key is inserted under each table
//! header and the unknown-field error lists the keys that table takes (so a key added to any
//! struct, nested ones included, is seen without a list kept by hand). Every registered source,
//! processor and sink type must have a table in `config.toml` (commented out for types that
//! need a device or a port to do anything; this test uncomments them), every key must be
//! shown in its table, and every key must have a row in `docs/configuration.md` whose default,
//! when it has one, is the value `config.toml` shows and the value the struct's `Default`
//! gives (checked by removing the line and parsing again: nothing may change).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nmsd_pipeline::component::ComponentKind;

use crate::config::Config;
use crate::registry::Registry;

const SHIPPED: &str = include_str!("../../config.toml");
const DOC: &str = include_str!("../../docs/configuration.md");

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("config.toml"), text).map_err(|e| e.to_string())
}

/// `# key = value` and `# [table]` lines below a commented-out component table, uncommented:
/// the example tables of `config.toml` become live. Prose comments stay comments.
fn uncomment_examples(text: &str) -> String {
    let mut in_example = false;
    let mut out = String::new();
    for line in text.lines() {
        let body = line.strip_prefix("# ").unwrap_or("");
        if line.starts_with('[') {
            in_example = false;
        } else if body.starts_with('[') && header_name(body).is_some() {
            in_example = true;
        }
        let is_toml = body.starts_with('[') || key_of(body).is_some();
        if in_example && is_toml {
            out.push_str(body);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `[a.b]` or `[[a.b]]` → `a.b`.
fn header_name(line: &str) -> Option<&str> {
    let line = line.split(" #").next()?.trim();
    let name = line
        .strip_prefix("[[")
        .and_then(|l| l.strip_suffix("]]"))
        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        .then_some(name)
}

/// `key = value` → `key`.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    .then_some(key)
}

/// One table of the config text.
#[derive(Debug)]
struct Table {
    /// Index of its header line.
    header_line: usize,
    /// The header as written (`[sources.snmp.defaults]`).
    header: String,
    /// Where the docs list it: `general`, `pipeline.sampling_override`, `sources.snmp` (the
    /// component's type, not its id), `sources.snmp.defaults`.
    doc_name: String,
    /// Key lines (commented or not): key → (line index, the line without `# `).
    keys: BTreeMap<String, (usize, String)>,
}

fn tables(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    // Component ids → types, from each component's `type = "..."` line.
    let mut types = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in &lines {
        if let Some(h) = header_name(line) {
            current = Some(h.to_string());
        } else if let (Some(h), Some(t)) = (&current, line.strip_prefix("type = \"")) {
            types.insert(h.clone(), t.trim_end_matches('"').to_string());
        }
    }
    let mut out: Vec<Table> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.strip_prefix("# ").unwrap_or(line);
        if let Some(h) = line.starts_with('[').then(|| header_name(line)).flatten() {
            let parts: Vec<&str> = h.splitn(3, '.').collect();
            let doc_name = match parts.as_slice() {
                [kind @ ("sources" | "processors" | "sinks"), id, rest @ ..] => {
                    let root = format!("{kind}.{id}");
                    let ty = types
                        .get(&root)
                        .cloned()
                        .unwrap_or_else(|| format!("?{id}"));
                    std::iter::once(format!("{kind}.{ty}"))
                        .chain(rest.iter().map(|r| r.to_string()))
                        .collect::<Vec<_>>()
                        .join(".")
                }
                _ => h.to_string(),
            };
            out.push(Table {
                header_line: i,
                header: line.split(" #").next().unwrap_or(line).trim().to_string(),
                doc_name,
                keys: BTreeMap::new(),
            });
        } else if let (Some(t), Some(k)) = (out.last_mut(), key_of(body)) {
            t.keys.insert(k.to_string(), (i, body.to_string()));
        }
    }
    out
}

/// The keys serde allows where `probe` is inserted, from the unknown-field error; `None` when
/// the error is of another kind (a map, which takes any key).
fn allowed_keys_after(text: &str, line: usize, at: usize, probe: &str) -> Option<Vec<String>> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[line].insert_str(at, probe);
    let e = parse(&lines.join("\n")).err()?;
    if !e.contains("zz_probe") {
        return None;
    }
    if e.contains("there are no fields") {
        return Some(Vec::new());
    }
    let list = e.split_once("expected ")?.1.lines().next()?;
    // "`a`, `b` or `c`": every other backtick-separated piece is a key.
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every table's (and inline table's) accepted keys, by doc name.
fn accepted(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for t in tables(text) {
        let live_header = !text
            .lines()
            .nth(t.header_line)
            .unwrap_or("")
            .starts_with('#');
        assert!(live_header, "{}", t.header);
        let at = text.lines().nth(t.header_line).unwrap_or("").len();
        let keys = allowed_keys_after(text, t.header_line, at, "\nzz_probe = 0")
            .unwrap_or_else(|| panic!("{}: no key list from the probe", t.header));
        let set: BTreeSet<String> = keys
            .into_iter()
            .filter(|k| k != "type" && k != "inputs")
            .collect();
        out.entry(t.doc_name.clone())
            .or_insert_with(BTreeSet::new)
            .extend(set);
        // Arrays of inline tables (`communities = [{ name = ... }]`): probe inside the first.
        for (key, (line, _)) in &t.keys {
            let raw = text.lines().nth(*line).unwrap_or("");
            if let Some(pos) = raw.find("= [{")
                && let Some(keys) = allowed_keys_after(text, *line, pos + 4, " zz_probe = 0,")
            {
                out.insert(format!("{}.{key}", t.doc_name), keys.into_iter().collect());
            }
        }
    }
    out
}

/// The doc's tables: section (from the heading's first backticked span, with `<id>` replaced
/// by the type named in the heading) → key → default cell.
fn doc_tables() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut component_type = String::new();
    for line in DOC.lines() {
        if line.starts_with('#') {
            let spans: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
            if let Some(t) = spans.get(1).and_then(|s| s.strip_prefix("type = \"")) {
                component_type = t.trim_end_matches('"').to_string();
            }
            section = spans
                .first()
                .map(|s| s.replace("<id>", &component_type))
                .map(|s| header_name(&s).unwrap_or(&s).to_string());
            continue;
        }
        let Some(section) = &section else { continue };
        // `\|` is a pipe inside a cell (between a type's alternatives).
        let unescaped = line.replace("\\|", "/");
        let cells: Vec<&str> = unescaped.split('|').map(str::trim).collect();
        // | `key` | type | default | meaning |
        if cells.len() >= 5 && cells[1].starts_with('`') {
            let key = cells[1].trim_matches('`').to_string();
            let prev = out
                .entry(section.clone())
                .or_default()
                .insert(key.clone(), cells[3].to_string());
            assert!(
                prev.is_none(),
                "docs/configuration.md: {section} {key} twice"
            );
            assert!(
                !cells[2].is_empty() && !cells[4].is_empty(),
                "{section} {key}: {line}"
            );
        }
    }
    out
}

/// Keys accepted but deliberately not shown in config.toml, with why.
const NOT_SHOWN: &[(&str, &str)] = &[
    // Trap profiles are v3 users; v1/v2c communities are the source's `communities` key. The
    // profile struct is shared with the snmp source, so it accepts (and ignores) a community.
    ("sources.snmp_traps.profiles", "community"),
];

#[test]
fn every_component_type_has_a_table_in_the_shipped_config() {
    let text = uncomment_examples(SHIPPED);
    let shown: BTreeSet<String> = tables(&text).into_iter().map(|t| t.doc_name).collect();
    let registry = Registry::builtin();
    for (kind, table) in [
        (ComponentKind::Source, "sources"),
        (ComponentKind::Processor, "processors"),
        (ComponentKind::Sink, "sinks"),
    ] {
        for ty in registry.names(kind) {
            assert!(
                shown.contains(&format!("{table}.{ty}")),
                "{table} type \"{ty}\" has no table in config.toml (commented out is fine)"
            );
        }
    }
}

#[test]
fn shipped_config_shows_every_accepted_key_in_its_table() {
    let text = uncomment_examples(SHIPPED);
    parse(&text).unwrap_or_else(|e| panic!("config.toml with its examples uncommented: {e}"));
    let all = tables(&text);
    for (section, keys) in accepted(&text) {
        for key in keys {
            if NOT_SHOWN.contains(&(section.as_str(), key.as_str())) {
                continue;
            }
            let shown = all.iter().filter(|t| t.doc_name == section).any(|t| {
                t.keys.contains_key(&key)
                    || all
                        .iter()
                        .any(|sub| sub.doc_name == format!("{section}.{key}"))
            }) || {
                // Keys of inline tables: shown inside the parent's line.
                let (parent, field) = section.rsplit_once('.').unwrap_or(("", ""));
                all.iter().filter(|t| t.doc_name == parent).any(|t| {
                    t.keys
                        .get(field)
                        .is_some_and(|(_, l)| l.contains(&format!("{key} = ")))
                })
            };
            assert!(
                shown,
                "[{section}] {key} is not shown in the shipped config.toml"
            );
        }
    }
}

#[test]
fn configuration_md_lists_every_key_and_its_defaults_are_the_structs() {
    let text = uncomment_examples(SHIPPED);
    let baseline = format!(
        "{:?}",
        parse(&text).expect("uncommented config.toml parses")
    );
    let accepted = accepted(&text);
    let docs = doc_tables();
    let doc_sections: BTreeSet<&String> = docs.keys().collect();
    let accepted_sections: BTreeSet<&String> = accepted
        .keys()
        .filter(|s| !accepted[*s].is_empty())
        .collect();
    assert_eq!(
        doc_sections, accepted_sections,
        "docs/configuration.md tables vs what the config structs accept"
    );
    let all = tables(&text);
    for (section, keys) in &accepted {
        let documented: BTreeSet<String> = docs
            .get(section)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(&documented, keys, "docs/configuration.md [{section}]");
        for (key, default) in docs.get(section).into_iter().flatten() {
            // A default in backticks is a TOML value; prose ("required", "none") is not checked.
            let value = default.strip_prefix('`').and_then(|d| d.strip_suffix('`'));
            let Some(value) = value.filter(|v| !v.contains('`')) else {
                continue;
            };
            let table = all
                .iter()
                .find(|t| t.doc_name == *section && t.keys.contains_key(key))
                .unwrap_or_else(|| {
                    panic!("[{section}] {key} has a default but no line in config.toml")
                });
            let (line, body) = &table.keys[key];
            let shown = body
                .split_once(" = ")
                .map(|(_, v)| v.split("  #").next().unwrap_or(v).trim())
                .unwrap_or("");
            assert_eq!(
                shown, value,
                "[{section}] {key}: config.toml and docs disagree"
            );
            // Without the line the struct's Default fills it in: nothing may change.
            let without: Vec<&str> = text
                .lines()
                .enumerate()
                .filter(|(i, _)| i != line)
                .map(|(_, l)| l)
                .collect();
            let parsed = parse(&without.join("\n")).unwrap_or_else(|e| {
                panic!("[{section}] {key} documented with a default but required: {e}")
            });
            assert_eq!(
                format!("{parsed:?}"),
                baseline,
                "[{section}] {key} = {value} is not the struct's default"
            );
        }
    }
}
