//! Reading Prometheus text exposition: sums of counters by name.

/// Sum of every sample of `name` (all label sets). `None` when no sample of it exists.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // Exactly this metric: the name ends at a label set or at the space before the value.
        let value = match rest.as_bytes().first() {
            Some(b'{') => rest.rfind('}').map(|i| &rest[i + 1..]),
            Some(b' ') => Some(rest),
            _ => None,
        };
        let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) else {
            continue;
        };
        *total.get_or_insert(0.0) += v;
    }
    total
}

/// Sum of the samples of `name` whose label set contains `label="value"`.
pub fn sum_where(text: &str, name: &str, label: &str, value: &str) -> Option<f64> {
    let needle = format!("{label}=\"{value}\"");
    let filtered: String = text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&needle))
        .collect::<Vec<_>>()
        .join("\n");
    sum(&filtered, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_ignores_prefix_matches() {
        let t = "# TYPE a_total counter\na_total{x=\"1\"} 2\na_total{x=\"2\"} 3.5\na_total_more 100\nb 1\n";
        assert_eq!(sum(t, "a_total"), Some(5.5));
        assert_eq!(sum(t, "b"), Some(1.0));
        assert_eq!(sum(t, "c"), None);
        assert_eq!(sum_where(t, "a_total", "x", "2"), Some(3.5));
    }
}
