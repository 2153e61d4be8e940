//! Packet decoder and capture-file reader: the first byte picks a link type, the rest is one
//! frame; the whole input is also read as a pcap/pcapng file in chunks of every size the
//! second byte says. Panics on any broken invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmsd_parsers::packet::{Fragment, LinkType, decode};
use nmsd_parsers::pcap::{CaptureReader, Step};

const LINKS: [LinkType; 5] = [
    LinkType::Ethernet,
    LinkType::RawIp,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Null,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    if let Ok(p) = decode(LINKS[usize::from(pick) % LINKS.len()], frame) {
        assert!(p.ip_len >= 20, "IP length {} below any header", p.ip_len);
        if p.fragment == Fragment::Later {
            assert_eq!((p.src_port, p.dst_port, p.tcp_flags), (0, 0, 0));
        }
    }

    // As a capture file, handed over in growing prefixes like a file read in chunks.
    let chunk = usize::from(frame.first().copied().unwrap_or(1)).max(1);
    let mut reader = CaptureReader::new();
    let (mut at, mut have) = (0usize, chunk.min(data.len()));
    loop {
        match reader.next(&data[at..have]) {
            Ok(Step::Frame(f, n)) => {
                assert!(n > 0 && at + n <= have);
                if let Some(link) = LinkType::from_pcap(f.linktype) {
                    let _ = decode(link, f.data);
                }
                at += n;
            }
            Ok(Step::Skip(n)) => {
                assert!(n > 0 && at + n <= have);
                at += n;
            }
            Ok(Step::NeedMore(n)) => {
                assert!(n > have - at, "asked for {n} bytes with {} in hand", have - at);
                if have == data.len() {
                    let _ = reader.finish(have - at);
                    break;
                }
                have = (have + chunk).min(data.len());
            }
            Err(_) => break,
        }
    }
});
