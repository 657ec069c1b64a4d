//! Latency samples and their percentiles.

use std::time::Duration;

/// Collected latencies of one workload.
#[derive(Default)]
pub(crate) struct Latencies {
    samples_us: Vec<f64>,
}

impl Latencies {
    pub(crate) fn record(&mut self, latency: Duration) {
        self.samples_us.push(latency.as_secs_f64() * 1e6);
    }

    pub(crate) fn record_us(&mut self, microseconds: f64) {
        self.samples_us.push(microseconds.max(0.0));
    }

    pub(crate) fn merge(&mut self, other: Latencies) {
        self.samples_us.extend(other.samples_us);
    }

    pub(crate) fn len(&self) -> usize {
        self.samples_us.len()
    }

    /// The `quantile` (0..=1) in microseconds, nearest-rank; `None` when empty.
    pub(crate) fn percentile_us(&self, quantile: f64) -> Option<f64> {
        if self.samples_us.is_empty() {
            return None;
        }
        let mut sorted = self.samples_us.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut latencies = Latencies::default();
        for microseconds in 1..=100 {
            latencies.record_us(f64::from(microseconds));
        }
        assert_eq!(latencies.percentile_us(0.5), Some(50.0));
        assert_eq!(latencies.percentile_us(0.99), Some(99.0));
        assert_eq!(latencies.percentile_us(1.0), Some(100.0));
        assert_eq!(Latencies::default().percentile_us(0.5), None);
    }
}
