//! `persist::restore` on arbitrary text: never panics, and whatever it restored survives a
//! snapshot / restore round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmsd_parsers::{FlowDecoder, persist};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut decoder = FlowDecoder::new(nmsd_parsers_fuzz::small_limits());
    let summary = persist::restore(&mut decoder, &text);
    // Every template the decoder holds came from a line counted as restored.
    assert!(decoder.template_count() <= summary.templates, "{summary:?}");
    nmsd_parsers_fuzz::check_persist_round_trip(&decoder);
});
