//! SNMP device and interface series for /metrics, rendered from the status snapshot.
//!
//! They are not registered in the `metrics` recorder: it cannot delete a series (a device
//! removed from the config would live on), and these are bounded by config, not by traffic.
//! Per-interface series exist only for devices with `prometheus = true`, at most `max_series`.

use std::fmt::Write as _;

use super::DeviceStatus;

/// Escape a label value for the text exposition format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Append the series to `out`; returns how many interface series the cap left out.
pub fn render(devices: &[DeviceStatus], max_series: usize, out: &mut String) -> usize {
    let mut family = |name: &str, kind: &str, help: &str, rows: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        rows(out);
        out.push('\n');
    };
    family(
        "nmsd_snmp_device_up",
        "gauge",
        "1 when the device's last poll succeeded.",
        &mut |o| {
            for d in devices {
                let up = u8::from(d.state == "up");
                let _ = writeln!(o, "nmsd_snmp_device_up{{device=\"{}\"}} {up}", esc(&d.name));
            }
        },
    );
    family(
        "nmsd_snmp_device_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the device's last successful poll.",
        &mut |o| {
            for d in devices {
                if let Some(ms) = d.last_success_ms {
                    let _ = writeln!(
                        o,
                        "nmsd_snmp_device_last_success_timestamp_seconds{{device=\"{}\"}} {}",
                        esc(&d.name),
                        ms as f64 / 1000.0
                    );
                }
            }
        },
    );
    family(
        "nmsd_snmp_device_rtt_seconds",
        "gauge",
        "Smoothed request round-trip time.",
        &mut |o| {
            for d in devices {
                if let Some(r) = d.rtt_ms_ewma {
                    let _ = writeln!(
                        o,
                        "nmsd_snmp_device_rtt_seconds{{device=\"{}\"}} {}",
                        esc(&d.name),
                        r / 1000.0
                    );
                }
            }
        },
    );
    family(
        "nmsd_snmp_device_timeouts_total",
        "counter",
        "Request attempts to the device that timed out.",
        &mut |o| {
            for d in devices {
                let _ = writeln!(
                    o,
                    "nmsd_snmp_device_timeouts_total{{device=\"{}\"}} {}",
                    esc(&d.name),
                    d.timeouts
                );
            }
        },
    );
    family(
        "nmsd_snmp_device_consecutive_failures",
        "gauge",
        "Failed polls in a row (0 when the last one succeeded).",
        &mut |o| {
            for d in devices {
                let _ = writeln!(
                    o,
                    "nmsd_snmp_device_consecutive_failures{{device=\"{}\"}} {}",
                    esc(&d.name),
                    d.consecutive_failures
                );
            }
        },
    );
    // Per interface, opt-in and capped, in device-then-ifIndex order.
    let mut left = max_series;
    let mut capped = 0usize;
    let mut rows: Vec<(String, &super::IfGauges)> = Vec::new();
    for d in devices {
        for g in &d.gauges {
            if left == 0 {
                capped += 1;
                continue;
            }
            left -= 1;
            let labels = format!(
                "device=\"{}\",if_index=\"{}\",if_name=\"{}\"",
                esc(&d.name),
                g.if_index,
                esc(g.if_name.as_deref().unwrap_or(""))
            );
            rows.push((labels, g));
        }
    }
    type Get = fn(&super::IfGauges) -> Option<f64>;
    let series: [(&str, &str, Get); 5] = [
        (
            "nmsd_snmp_if_in_bps",
            "Inbound bits per second over the last poll interval.",
            |g| g.in_bps,
        ),
        (
            "nmsd_snmp_if_out_bps",
            "Outbound bits per second over the last poll interval.",
            |g| g.out_bps,
        ),
        (
            "nmsd_snmp_if_in_util_ratio",
            "Inbound utilization (0-1) of the interface speed.",
            |g| g.in_util.map(|u| u / 100.0),
        ),
        (
            "nmsd_snmp_if_out_util_ratio",
            "Outbound utilization (0-1) of the interface speed.",
            |g| g.out_util.map(|u| u / 100.0),
        ),
        ("nmsd_snmp_if_oper_up", "1 when ifOperStatus is up.", |g| {
            g.oper_up.map(|u| f64::from(u8::from(u)))
        }),
    ];
    for (name, help, get) in series {
        family(name, "gauge", help, &mut |o| {
            for (labels, g) in &rows {
                if let Some(v) = get(g) {
                    let _ = writeln!(o, "{name}{{{labels}}} {v}");
                }
            }
        });
    }
    family(
        "nmsd_snmp_prometheus_series_capped",
        "gauge",
        "Interface series left out by prometheus_max_series.",
        &mut |o| {
            let _ = writeln!(o, "nmsd_snmp_prometheus_series_capped {capped}");
        },
    );
    capped
}

#[cfg(test)]
mod tests {
    use super::super::IfGauges;
    use super::*;

    #[test]
    fn renders_escaped_and_capped() {
        let mut d = DeviceStatus {
            name: "core\"1".into(),
            state: "up",
            last_success_ms: Some(1500),
            rtt_ms_ewma: Some(2.0),
            ..DeviceStatus::default()
        };
        d.gauges = (1..=3)
            .map(|i| IfGauges {
                if_index: i,
                if_name: Some(format!("ge-0/0/{i}").into()),
                in_bps: Some(1000.0),
                out_bps: None,
                in_util: Some(50.0),
                out_util: None,
                oper_up: Some(true),
            })
            .collect();
        let mut out = String::new();
        let capped = render(&[d], 2, &mut out);
        assert_eq!(capped, 1);
        assert!(
            out.contains("nmsd_snmp_device_up{device=\"core\\\"1\"} 1"),
            "{out}"
        );
        assert!(out.contains("nmsd_snmp_if_in_util_ratio{device=\"core\\\"1\",if_index=\"2\",if_name=\"ge-0/0/2\"} 0.5"), "{out}");
        assert!(!out.contains("if_index=\"3\""), "capped: {out}");
        assert!(out.contains("nmsd_snmp_prometheus_series_capped 1"));
    }
}
