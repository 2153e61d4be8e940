//! `[sources.<id>] type = "pcap_file"`: a pcap or pcapng file into flows, at file speed or at
//! the speed it was recorded.
//!
//! One thread reads the file in 1 MiB chunks ([`nmsd_parsers::pcap`]), decodes each frame
//! ([`nmsd_parsers::packet`]) and accounts it in a [`FlowTable`]; expired flows go out in
//! batches like any source's rows. Time is the capture's: timeouts run on packet timestamps, so
//! a replay at file speed builds the flows the live traffic would have. At the end of the file
//! every flow still open is emitted and the source is done (the daemon keeps running).
//!
//! Records carry `exporter` = the configured `exporter` address (the observation point, 0.0.0.0
//! by default) and `in_if` = `interface_index`; the source id names the capture in the `source`
//! column, as a listener's id does (decision 0019).

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::packet_flows::FlowTableKeys;
use nmsd_parsers::packet::{self, LinkType, PacketError};
use nmsd_parsers::pcap::{CaptureError, CaptureReader, MAX_RECORD, Step};
use nmsd_pipeline::Batch;
use nmsd_pipeline::flow_table::{FlowTable, FlowTableConfig, FlowTableStats};
use nmsd_pipeline::records::FlowRecord;
use nmsd_pipeline::units::HumanDuration;
use serde::Deserialize;

/// How fast a file is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySpeed {
    /// As fast as it can be read and decoded.
    #[default]
    File,
    /// Frames are released at the pace of their timestamps.
    Recorded,
}

/// A capture file: `[sources.<id>] type = "pcap_file"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcapFileSourceConfig {
    /// The pcap or pcapng file.
    pub path: PathBuf,
    /// `file` (as fast as possible) or `recorded` (at the pace of the timestamps).
    #[serde(default)]
    pub speed: ReplaySpeed,
    /// The address flows carry as their exporter: the observation point the capture was taken
    /// at.
    #[serde(default = "default_exporter")]
    pub exporter: IpAddr,
    /// The flows' input interface index (`in_if`).
    #[serde(default)]
    pub interface_index: u32,
    /// Most flows tracked at once; a new flow past it evicts the least recently seen of a few.
    #[serde(default = "super::packet_flows::default_max_flows")]
    pub max_flows: usize,
    /// A flow is reported (and a new one started) after it has lasted this long.
    #[serde(default = "super::packet_flows::default_active_timeout")]
    pub active_timeout: HumanDuration,
    /// A flow is reported when it has seen no packet for this long.
    #[serde(default = "super::packet_flows::default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// A TCP flow is reported this long after its first FIN or RST.
    #[serde(default = "super::packet_flows::default_tcp_close_timeout")]
    pub tcp_close_timeout: HumanDuration,
}

fn default_exporter() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

impl PcapFileSourceConfig {
    /// The flow table this source builds, with `source` as the records' source index.
    pub fn table_config(&self, source: u8) -> FlowTableConfig {
        self.table_keys()
            .table_config(self.exporter, self.interface_index, source)
    }

    fn table_keys(&self) -> FlowTableKeys {
        FlowTableKeys {
            max_flows: self.max_flows,
            active_timeout: self.active_timeout,
            idle_timeout: self.idle_timeout,
            tcp_close_timeout: self.tcp_close_timeout,
        }
    }
}

impl super::SourceSpec for PcapFileSourceConfig {
    fn outputs(&self) -> nmsd_pipeline::StreamSet {
        nmsd_pipeline::StreamSet::of(&[nmsd_pipeline::StreamKind::Flows])
    }

    fn validate(&self) -> Result<(), (String, String)> {
        self.table_keys().validate()
    }

    fn check_environment(&self) -> Result<(), (String, String)> {
        File::open(&self.path)
            .map(|_| ())
            .map_err(|err| ("path".into(), format!("{}: {err}", self.path.display())))
    }

    fn flow_source(&self) -> bool {
        true
    }

    fn start(&self, ctx: super::SourceContext) -> anyhow::Result<super::RunningSource> {
        let cfg = self.clone();
        let table = self.table_config(ctx.flow_source_index);
        let id = ctx.id.clone();
        let output = ctx.output;
        let stop = ctx.stop;
        let thread = std::thread::Builder::new()
            .name(format!("nmsd-pcap-{id}"))
            .spawn(move || {
                let metrics = ReplayMetrics::new(&id);
                let result = replay_file(&cfg.path, table, cfg.speed, &stop, |flows| {
                    metrics.flows(&flows);
                    output.send(Batch::flows(flows));
                    output.tick_if_due();
                });
                output.flush();
                match result {
                    Ok(s) => {
                        metrics.finish(&s);
                        tracing::info!(
                            source = %id,
                            frames = s.frames,
                            malformed = s.malformed,
                            flows = s.flows,
                            evicted = s.table.evicted,
                            "{}: capture read to the end",
                            cfg.path.display()
                        );
                    }
                    Err(e) => {
                        tracing::error!(source = %id, "{}: {e}", cfg.path.display());
                    }
                }
            })?;
        let mut running = super::RunningSource::default();
        running.threads.push(thread);
        running
            .status
            .insert("path".into(), self.path.display().to_string().into());
        Ok(running)
    }
}

/// Per-source counters, labelled `source`.
struct ReplayMetrics {
    flows: metrics::Counter,
    syn: metrics::Counter,
    syn_ack: metrics::Counter,
    rst: metrics::Counter,
    icmp_unreachable: metrics::Counter,
    source: String,
}

impl ReplayMetrics {
    fn new(source: &str) -> Self {
        let l = [("source", source.to_string())];
        ReplayMetrics {
            flows: metrics::counter!("nmsd_packet_flows_total", &l),
            syn: metrics::counter!("nmsd_packet_tcp_syn_total", &l),
            syn_ack: metrics::counter!("nmsd_packet_tcp_syn_ack_total", &l),
            rst: metrics::counter!("nmsd_packet_tcp_rst_total", &l),
            icmp_unreachable: metrics::counter!("nmsd_packet_icmp_unreachable_total", &l),
            source: source.to_string(),
        }
    }

    fn flows(&self, flows: &[FlowRecord]) {
        self.flows.increment(flows.len() as u64);
    }

    fn finish(&self, s: &ReplayStats) {
        self.syn.increment(s.table.syn);
        self.syn_ack.increment(s.table.syn_ack);
        self.rst.increment(s.table.rst);
        self.icmp_unreachable.increment(s.table.icmp_unreachable);
        let l = [("source", self.source.clone())];
        metrics::counter!("nmsd_packet_frames_total", &l).increment(s.frames);
        metrics::counter!("nmsd_flow_table_evicted_total", &l).increment(s.table.evicted);
        for (kind, n) in PacketError::KINDS.iter().zip(s.malformed_by_kind) {
            metrics::counter!(
                "nmsd_packet_frames_malformed_total",
                "source" => self.source.clone(),
                "kind" => *kind
            )
            .increment(n);
        }
        metrics::counter!(
            "nmsd_packet_frames_malformed_total",
            "source" => self.source.clone(),
            "kind" => "unknown_link_type"
        )
        .increment(s.unknown_link_type);
    }
}

/// Why a file could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

/// What a replay saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub frames: u64,
    /// Frames that did not decode (counted, skipped), all kinds.
    pub malformed: u64,
    /// By [`PacketError::KINDS`] position.
    pub malformed_by_kind: [u64; PacketError::KINDS.len()],
    /// Frames of a link type the decoder does not read.
    pub unknown_link_type: u64,
    pub flows: u64,
    pub table: FlowTableStats,
    /// Stopped before the end (shutdown).
    pub stopped: bool,
}

/// Flows handed out at a time.
const BATCH_FLOWS: usize = 1024;
/// File bytes read at a time.
const CHUNK: usize = 1 << 20;

/// Read `path` through a flow table, handing expired flows to `emit` in batches of up to 1,024,
/// and every open flow at the end. Stops early (and still flushes) when `stop` is set. At
/// recorded speed, `emit` also gets an empty batch every 100 ms while the replay waits for the
/// next packet's time, so the caller's timers run through a quiet stretch of the capture.
pub fn replay_file(
    path: &Path,
    table: FlowTableConfig,
    speed: ReplaySpeed,
    stop: &AtomicBool,
    mut emit: impl FnMut(Vec<FlowRecord>),
) -> Result<ReplayStats, ReplayError> {
    let mut file = File::open(path)?;
    let mut table = FlowTable::new(table);
    let mut reader = CaptureReader::new();
    let mut stats = ReplayStats::default();
    let mut buf = vec![0u8; CHUNK];
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    let mut out: Vec<FlowRecord> = Vec::with_capacity(BATCH_FLOWS);
    // Packet time of the last expiry scan, and (recorded speed) where the capture started in
    // packet time and wall time.
    let mut last_scan_ms = 0u64;
    let mut pace: Option<(u64, Instant)> = None;
    let hand_out = |emit: &mut dyn FnMut(Vec<FlowRecord>),
                    out: &mut Vec<FlowRecord>,
                    stats: &mut ReplayStats| {
        while !out.is_empty() {
            let n = out.len().min(BATCH_FLOWS);
            stats.flows += n as u64;
            emit(out.drain(..n).collect());
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            stats.stopped = true;
            break;
        }
        let step = reader.next(&buf[start..end])?;
        match step {
            Step::Frame(frame, n) => {
                start += n;
                stats.frames += 1;
                let ts_ms = frame.ts_ns / 1_000_000;
                if speed == ReplaySpeed::Recorded {
                    let (t0, wall0) = *pace.get_or_insert((frame.ts_ns, Instant::now()));
                    let due = wall0 + Duration::from_nanos(frame.ts_ns.saturating_sub(t0));
                    // Sleep in slices so a stop is seen within 100 ms even across a long gap.
                    while let Some(wait) = due.checked_duration_since(Instant::now()) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(wait.min(Duration::from_millis(100)));
                        emit(Vec::new());
                    }
                }
                match LinkType::from_pcap(frame.linktype) {
                    None => stats.unknown_link_type += 1,
                    Some(link) => match packet::decode(link, frame.data) {
                        Ok(p) => table.add(ts_ms, &p, &mut out),
                        Err(e) => {
                            stats.malformed += 1;
                            if let Some(i) = PacketError::KINDS.iter().position(|k| *k == e.kind())
                            {
                                stats.malformed_by_kind[i] += 1;
                            }
                        }
                    },
                }
                if ts_ms >= last_scan_ms + 1000 {
                    last_scan_ms = ts_ms;
                    table.expire(ts_ms, &mut out);
                }
                if out.len() >= BATCH_FLOWS {
                    hand_out(&mut emit, &mut out, &mut stats);
                }
            }
            Step::Skip(n) => start += n,
            Step::NeedMore(need) => {
                if eof {
                    reader.finish(end - start)?;
                    break;
                }
                if need > MAX_RECORD as usize + 64 {
                    // The reader refuses longer records itself; this guards the buffer should
                    // that ever change.
                    return Err(CaptureError::RecordTooLarge {
                        offset: 0,
                        len: need as u64,
                        max: MAX_RECORD,
                    }
                    .into());
                }
                // Keep the unread tail, grow if one record is larger than the buffer, refill.
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
                if buf.len() < need {
                    buf.resize(need, 0);
                }
                let n = file.read(&mut buf[end..])?;
                if n == 0 {
                    eof = true;
                }
                end += n;
            }
        }
    }
    table.flush(&mut out);
    hand_out(&mut emit, &mut out, &mut stats);
    stats.table = table.stats();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_of(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut f = 0xA1B2_C3D4u32.to_le_bytes().to_vec();
        f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        for (ts_us, d) in frames {
            f.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
            f.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
            f.extend_from_slice(&(d.len() as u32).to_le_bytes());
            f.extend_from_slice(&(d.len() as u32).to_le_bytes());
            f.extend_from_slice(d);
        }
        f
    }

    fn udp_frame(sport: u16, payload: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = (28 + payload) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend(std::iter::repeat_n(0u8, payload));
        f
    }

    #[test]
    fn a_file_larger_than_the_read_chunk_builds_its_flows() {
        let dir = std::env::temp_dir().join(format!("nmsd-pcap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        // ~2.3 MB: records straddle the 1 MiB chunks. Two flows, 20 s apart in the middle so
        // the first goes idle; an ARP frame is counted as malformed (not IP).
        let mut frames = Vec::new();
        for i in 0..1500u64 {
            let ts = 1_700_000_000_000_000 + i * 1000 + if i >= 750 { 20_000_000 } else { 0 };
            frames.push((ts, udp_frame(if i < 750 { 1 } else { 2 }, 1472)));
        }
        frames.push((1_700_000_030_000_000, {
            let mut arp = vec![0u8; 12];
            arp.extend_from_slice(&[0x08, 0x06]);
            arp.extend_from_slice(&[0; 28]);
            arp
        }));
        std::fs::write(&path, pcap_of(&frames)).unwrap();
        let mut got = Vec::new();
        let stop = AtomicBool::new(false);
        let cfg = FlowTableConfig {
            idle_timeout_ms: 10_000,
            ..FlowTableConfig::default()
        };
        let s = replay_file(&path, cfg, ReplaySpeed::File, &stop, |b| got.extend(b)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((s.frames, s.malformed, s.flows), (1501, 1, 2));
        assert_eq!(s.table.expired_idle, 1, "the first flow went idle mid-file");
        let total: u64 = got.iter().map(|r| r.bytes).sum();
        assert_eq!(total, 1500 * 1500);
        assert!(got.iter().all(|r| r.packets == 750));
    }

    /// Hostile frames: every frame of the packet decoder's fuzz corpus, every truncation of
    /// each, and each with one byte flipped at every position, in one Ethernet capture. Each is
    /// read, then built into a flow or counted as malformed (by kind); none stops the file.
    #[test]
    fn fuzz_corpus_frames_truncated_and_flipped_are_built_or_counted() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../parsers/fuzz/corpus/decode_packet");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&corpus)
            .expect("the committed corpus")
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .filter_map(|d| d.get(1..).map(<[u8]>::to_vec))
            .collect();
        seeds.push(udp_frame(9, 20));
        let mut frames = Vec::new();
        let mut ts = 1_700_000_000_000_000u64;
        let mut push = |f: Vec<u8>| {
            ts += 10;
            frames.push((ts, f));
        };
        for seed in &seeds {
            for cut in 0..=seed.len() {
                push(seed[..cut].to_vec());
            }
            for at in 0..seed.len() {
                let mut f = seed.clone();
                f[at] ^= 0xA5;
                push(f);
            }
        }
        let n = frames.len() as u64;
        let dir = std::env::temp_dir().join(format!("nmsd-pcap-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.pcap");
        std::fs::write(&path, pcap_of(&frames)).unwrap();
        let stop = AtomicBool::new(false);
        let mut got = Vec::new();
        let s = replay_file(
            &path,
            FlowTableConfig::default(),
            ReplaySpeed::File,
            &stop,
            |b| got.extend(b),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.frames, n, "every frame read");
        assert!(s.malformed > n / 4, "{} of {n} malformed", s.malformed);
        assert_eq!(s.malformed_by_kind.iter().sum::<u64>(), s.malformed);
        assert_eq!(
            s.table.packets + s.malformed,
            n,
            "each frame is built into a flow or counted"
        );
        assert_eq!(got.iter().map(|r| r.packets).sum::<u64>(), s.table.packets);
        assert!(got.iter().all(|r| r.bytes >= 20 * r.packets));
    }

    #[test]
    fn recorded_speed_keeps_the_gaps_and_a_stop_ends_the_wait() {
        let dir = std::env::temp_dir().join(format!("nmsd-pcap-pace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.pcap");
        let t0 = 1_700_000_000_000_000u64;
        std::fs::write(
            &path,
            pcap_of(&[(t0, udp_frame(1, 10)), (t0 + 300_000, udp_frame(1, 10))]),
        )
        .unwrap();
        let stop = AtomicBool::new(false);
        let cfg = FlowTableConfig::default();
        let started = Instant::now();
        let s = replay_file(&path, cfg, ReplaySpeed::Recorded, &stop, |_| {}).unwrap();
        assert_eq!(s.frames, 2);
        assert!(started.elapsed() >= Duration::from_millis(300));
        // A gap of an hour: the stop flag ends the wait within the 100 ms slice.
        std::fs::write(
            &path,
            pcap_of(&[
                (t0, udp_frame(1, 10)),
                (t0 + 3_600_000_000, udp_frame(1, 10)),
            ]),
        )
        .unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        let s = replay_file(&path, cfg, ReplaySpeed::Recorded, &stop, |_| {}).unwrap();
        setter.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(s.stopped);
        assert_eq!(s.flows, 1, "what was read is still flushed");
    }

    #[test]
    fn a_missing_or_foreign_file_is_an_error() {
        let stop = AtomicBool::new(false);
        let cfg = FlowTableConfig::default();
        let r = replay_file(
            Path::new("/nonexistent/x.pcap"),
            cfg,
            ReplaySpeed::File,
            &stop,
            |_| {},
        );
        assert!(matches!(r, Err(ReplayError::Io(_))));
        let dir = std::env::temp_dir().join(format!("nmsd-pcap-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pcap");
        std::fs::write(&path, b"this is not a capture file at all").unwrap();
        let r = replay_file(&path, cfg, ReplaySpeed::File, &stop, |_| {});
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            r,
            Err(ReplayError::Capture(CaptureError::NotACapture(_)))
        ));
    }
}
