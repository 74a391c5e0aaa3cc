//! Latency statistics: nearest-rank percentiles over a sorted vector, medians,
//! and the one-line summary every benchmark reports.

use std::time::Duration;

/// The nearest-rank percentile `pct` (0–100] of `sorted` (ascending): the
/// smallest value such that at least `pct`% of the samples are ≤ it.
pub fn percentile(sorted: &[Duration], pct: f64) -> Option<Duration> {
    if sorted.is_empty() || !(pct > 0.0 && pct <= 100.0) {
        return None;
    }
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied()
}

/// The median: the middle value, or the mean of the two middle values.
pub fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => sorted.get(n / 2).copied(),
        _ => {
            let low = sorted.get(n / 2 - 1)?;
            let high = sorted.get(n / 2)?;
            Some((*low + *high) / 2)
        }
    }
}

/// Count and distribution of a set of latency samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl LatencySummary {
    /// Summarises `samples` (any order); `None` when there are none.
    pub fn from_samples(mut samples: Vec<Duration>) -> Option<Self> {
        samples.sort_unstable();
        let count = samples.len();
        let total: Duration = samples.iter().sum();
        Some(Self {
            count,
            p50: percentile(&samples, 50.0)?,
            p99: percentile(&samples, 99.0)?,
            max: *samples.last()?,
            mean: total / u32::try_from(count).ok()?,
        })
    }
}

/// Milliseconds with two decimals, e.g. `1.25`.
pub fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

/// Operations per second over `elapsed`.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        let cases: &[(&[u64], f64, Option<u64>)] = &[
            (&[], 50.0, None),
            (&[7], 50.0, Some(7)),
            (&[7], 99.0, Some(7)),
            (&[1, 2], 50.0, Some(1)),
            (&[1, 2], 51.0, Some(2)),
            (&[1, 2, 3, 4, 5], 50.0, Some(3)),
            (&[1, 2, 3, 4, 5], 100.0, Some(5)),
            (&[1, 2, 3, 4, 5], 20.0, Some(1)),
            (&[1, 2, 3, 4, 5], 21.0, Some(2)),
            (&hundred, 50.0, Some(50)),
            (&hundred, 99.0, Some(99)),
            (&hundred, 99.5, Some(100)),
            (&hundred, 0.0, None),
            (&hundred, 101.0, None),
            (&hundred, f64::NAN, None),
        ];
        for (samples, pct, expected) in cases {
            let got = percentile(&millis(samples), *pct);
            assert_eq!(
                got,
                expected.map(Duration::from_millis),
                "p{pct} of {samples:?}"
            );
        }
    }

    #[test]
    fn p99_of_a_thousand_samples_ignores_the_ten_worst() {
        let mut samples: Vec<u64> = vec![1; 990];
        samples.extend([1000; 10]);
        let summary = LatencySummary::from_samples(millis(&samples)).unwrap();
        assert_eq!(summary.p99, Duration::from_millis(1));
        assert_eq!(summary.max, Duration::from_millis(1000));
        assert_eq!(summary.count, 1000);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&millis(&[9, 1, 5])), Some(Duration::from_millis(5)));
        assert_eq!(
            median(&millis(&[40, 10, 30, 20])),
            Some(Duration::from_millis(25))
        );
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let summary = LatencySummary::from_samples(millis(&[30, 10, 20, 40])).unwrap();
        assert_eq!(summary.p50, Duration::from_millis(20));
        assert_eq!(summary.p99, Duration::from_millis(40));
        assert_eq!(summary.mean, Duration::from_millis(25));
        assert_eq!(LatencySummary::from_samples(Vec::new()), None);
    }

    #[test]
    fn formatting_and_rates() {
        assert_eq!(ms(Duration::from_micros(1250)), "1.25");
        assert!((rate(500, Duration::from_secs(2)) - 250.0).abs() < 1e-9);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }
}
