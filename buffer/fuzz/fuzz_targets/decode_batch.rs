//! `codec::decode` on arbitrary bytes: never panics, and whatever it decodes encodes again and
//! decodes to the same rows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmsd_buffer::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = codec::decode(data) {
        let mut again = Vec::new();
        codec::encode(&batch, &mut again).expect("a decoded batch encodes");
        // Interface tables may come out smaller (unused or repeated entries are not kept),
        // so compare what the bytes decode to, not the bytes.
        let round = codec::decode(&again).expect("re-encoded bytes decode");
        assert_eq!(format!("{batch:?}"), format!("{round:?}"));
    }
});
