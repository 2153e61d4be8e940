//! NetFlow v5 decoder: a sequence of datagrams (see the crate docs for the framing), each with
//! its version field forced to 5, through a small-limits `FlowDecoder`; then expiry and a
//! persist snapshot / restore round trip. Panics on any broken invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nmsd_parsers_fuzz::run_decode_target(data, 5);
});
