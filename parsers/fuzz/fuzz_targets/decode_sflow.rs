//! sFlow v5 decoder: one datagram per input. Panics on any broken invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmsd_parsers::sflow::{Sample, decode};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let result = decode(data, &mut out);
    if let Ok(h) = &result {
        assert!(out.len() <= h.samples as usize, "more samples than the header says");
    }
    for s in &out {
        if let (Sample::Flow(f), Ok(h)) = (s, &result)
            && let Some(r) = f.to_record(h, 0, 0)
        {
            let rate = u64::from(f.sampling_rate.max(1));
            assert_eq!(r.packets, rate);
            assert_eq!(r.bytes % rate, 0);
            assert_eq!(r.exporter, h.agent);
        }
    }
});
