//! Triage a fuzz input: decode its datagrams with nmsd and with the oracle, side by side.
//!
//! ```text
//! cargo run --manifest-path parsers/fuzz/Cargo.toml --example replay -- FILE [--small]
//! ```
//!
//! Prints, per datagram, its frame fields, nmsd's result and error counters and every record
//! of both decoders. `--small` decodes with the decode targets' small limits and clock steps
//! instead of the differential target's unbounded limits and still clock.

use nmsd_testkit::oracle::{Oracle, compare_records};
use nmsd_parsers::{DecodeError, FlowDecoder};
use nmsd_parsers_fuzz::{STEPS_MS, T0_MS, frames, small_limits, unbounded_limits};

fn main() {
    let mut path = None;
    let mut small = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--small" => small = true,
            _ => path = Some(a),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: replay FILE [--small]");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).expect("read input");
    let limits = if small {
        small_limits()
    } else {
        unbounded_limits()
    };
    let mut nmsd = FlowDecoder::new(limits);
    let mut oracle = Oracle::new();
    let mut now = T0_MS;
    for (i, f) in frames(&data).enumerate() {
        if small {
            now += STEPS_MS[f.step];
            if f.step == 7 {
                nmsd.expire(now);
            }
        }
        let d = f.payload;
        println!(
            "== datagram {i}: {} bytes from {} (step {}): {}",
            d.len(),
            f.exporter,
            f.step,
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let before = nmsd.stats().errors;
        let mut ours = Vec::new();
        let result = nmsd.decode(f.exporter, d, now, &mut ours);
        let after = nmsd.stats().errors;
        let kinds: Vec<_> = DecodeError::KINDS
            .iter()
            .zip(before.iter().zip(after))
            .filter(|(_, (b, a))| a > *b)
            .map(|(k, (b, a))| format!("{k} x{}", a - b))
            .collect();
        println!(
            "nmsd: {result:?}, errors {kinds:?}, templates {}",
            nmsd.template_count()
        );
        for r in &ours {
            println!("  nmsd   {r:?}");
        }
        match oracle.decode(f.exporter, d) {
            Ok(theirs) => {
                println!("oracle: {} records", theirs.len());
                for r in &theirs {
                    println!("  oracle {r:?}");
                }
                match compare_records(&ours, &theirs) {
                    Ok(()) => println!("agree"),
                    Err(m) => println!("DISAGREE: {m}"),
                }
            }
            Err(e) => println!("oracle: {e}"),
        }
    }
}
