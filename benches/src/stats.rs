//! Medians and ranges over repeated runs.

/// Median, minimum and maximum of some values (NaNs ignored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// `None` when there is no (non-NaN) value. The median of an even count is the mean of
    /// the two middle values.
    pub fn of<I: IntoIterator<Item = f64>>(values: I) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// "median [min–max]" with `f` formatting each value; just the median when there is one
    /// value or min and max look the same.
    pub fn show(&self, f: impl Fn(f64) -> String) -> String {
        let (lo, hi) = (f(self.min), f(self.max));
        if self.n == 1 || lo == hi {
            f(self.median)
        } else {
            format!("{} [{lo}–{hi}]", f(self.median))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Spread::of([3.0, 1.0, 2.0, f64::NAN]).expect("values");
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]).expect("values");
        assert_eq!(s.median, 2.5);
        assert!(Spread::of([]).is_none());
        assert_eq!(s.show(|v| format!("{v:.1}")), "2.5 [1.0–4.0]");
        assert_eq!(
            Spread::of([7.0]).expect("one").show(|v| format!("{v:.0}")),
            "7"
        );
    }
}
