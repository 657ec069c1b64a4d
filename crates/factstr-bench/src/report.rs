//! Results: one row per measured workload, printed as a table and written as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::paired::{Comparison, ReferenceKind};
use crate::stats::Latencies;
use crate::stores::StoreKind;

/// One measured workload on one store.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Measurement {
    pub(crate) store: String,
    pub(crate) workload: String,
    pub(crate) variant: String,
    pub(crate) operations: u64,
    pub(crate) events: u64,
    pub(crate) seconds: f64,
    pub(crate) operations_per_second: f64,
    pub(crate) events_per_second: f64,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) note: String,
    /// This row against its reference row of the same run, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) compared: Option<Comparison>,
}

impl Measurement {
    pub(crate) fn new(
        store: &str,
        workload: &str,
        variant: &str,
        operations: u64,
        events: u64,
        seconds: f64,
    ) -> Self {
        let per_second = |count: u64| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        Self {
            store: store.to_owned(),
            workload: workload.to_owned(),
            variant: variant.to_owned(),
            operations,
            events,
            seconds,
            operations_per_second: per_second(operations),
            events_per_second: per_second(events),
            p50_us: None,
            p99_us: None,
            note: String::new(),
            compared: None,
        }
    }

    pub(crate) fn with_latencies(mut self, latencies: &Latencies) -> Self {
        self.p50_us = latencies.percentile_us(0.50);
        self.p99_us = latencies.percentile_us(0.99);
        self
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// A whole run: where, when, how, and the rows.
#[derive(Serialize)]
pub(crate) struct Document {
    machine: Machine,
    quick: bool,
    stores: Vec<String>,
    total_seconds: f64,
    measurements: Vec<Measurement>,
}

#[derive(Serialize)]
struct Machine {
    hostname: String,
    cpu: String,
    cores: usize,
    os: String,
}

impl Document {
    pub(crate) fn new(
        quick: bool,
        stores: &[StoreKind],
        measurements: Vec<Measurement>,
        total: Duration,
    ) -> Self {
        Self {
            machine: Machine::read(),
            quick,
            stores: stores.iter().map(ToString::to_string).collect(),
            total_seconds: total.as_secs_f64(),
            measurements,
        }
    }

    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nFACTSTR benchmark{} on {} ({} cores, {})\n",
            if self.quick { " (--quick)" } else { "" },
            self.machine.cpu,
            self.machine.cores,
            self.machine.os
        );
        let _ = writeln!(
            out,
            "{:<13} {:<10} {:<46} {:>11} {:>12} {:>9} {:>9} {:>7}  note",
            "store", "workload", "variant", "ops/s", "events/s", "p50 µs", "p99 µs", "vs ref"
        );
        let _ = writeln!(out, "{}", "-".repeat(127));
        for row in &self.measurements {
            let _ = writeln!(
                out,
                "{:<13} {:<10} {:<46} {:>11} {:>12} {:>9} {:>9} {:>7}  {}",
                row.store,
                row.workload,
                row.variant,
                thousands(row.operations_per_second),
                thousands(row.events_per_second),
                row.p50_us.map_or("-".to_owned(), micros),
                row.p99_us.map_or("-".to_owned(), micros),
                row.compared
                    .as_ref()
                    .map_or(String::new(), Comparison::shown),
                row.note
            );
        }
        out.push_str(&self.side_by_side(ReferenceKind::Published052));
        out.push_str(&self.side_by_side(ReferenceKind::BareEngine));
        out
    }

    /// The comparisons of one kind, one line each: the two figures compared
    /// and their ratio.
    fn side_by_side(&self, kind: ReferenceKind) -> String {
        let compared: Vec<(usize, &Measurement, &Comparison)> = self
            .measurements
            .iter()
            .enumerate()
            .filter_map(|(index, row)| Some((index, row, row.compared.as_ref()?)))
            .filter(|(_, _, comparison)| comparison.kind == kind)
            .collect();
        if compared.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        let _ = match kind {
            ReferenceKind::Published052 => writeln!(
                out,
                "\nSide by side with the published 0.5.2, same run (ratio > 1: ours is faster;\n\
                 events/s: ours / 0.5.2; p50: 0.5.2 / ours)\n"
            ),
            ReferenceKind::BareEngine => writeln!(
                out,
                "\nEach store row against the bare engine, same run (share of the engine's rate;\n\
                 events/s: store / bare; p50: bare / store)\n"
            ),
        };
        let _ = writeln!(
            out,
            "{:<9} {:<10} {:<46} {:>9} {:>14} {:>14} {:>8} {:>8}",
            "store", "workload", "variant", "by", "ours", "reference", "ratio", "p99"
        );
        let _ = writeln!(out, "{}", "-".repeat(124));
        let mut logarithms = Vec::new();
        let mut lowest: Option<(f64, String)> = None;
        for (index, row, comparison) in compared {
            // A reference row follows the row compared with it.
            let reference = self.measurements[index..].iter().find(|candidate| {
                candidate.store == comparison.reference_store
                    && candidate.variant == comparison.reference_variant
                    && candidate.workload == row.workload
            });
            let (by, ours, theirs) = match comparison.metric {
                crate::paired::Metric::EventsPerSecond => (
                    "events/s",
                    thousands(row.events_per_second),
                    reference.map_or("-".to_owned(), |reference| {
                        thousands(reference.events_per_second)
                    }),
                ),
                crate::paired::Metric::P50Latency => (
                    "p50 µs",
                    row.p50_us.map_or("-".to_owned(), micros),
                    reference
                        .and_then(|reference| reference.p50_us)
                        .map_or("-".to_owned(), micros),
                ),
            };
            let p99 = match (kind, comparison.p99_ratio) {
                (ReferenceKind::Published052, Some(ratio)) => format!("{ratio:.2}x"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<9} {:<10} {:<46} {:>9} {:>14} {:>14} {:>8} {:>8}",
                row.store,
                row.workload,
                row.variant,
                by,
                ours,
                theirs,
                comparison.shown(),
                p99
            );
            logarithms.push(comparison.ratio.ln());
            if lowest
                .as_ref()
                .is_none_or(|(ratio, _)| comparison.ratio < *ratio)
            {
                lowest = Some((
                    comparison.ratio,
                    format!("{} {} {}", row.store, row.workload, row.variant),
                ));
            }
        }
        if let (ReferenceKind::Published052, Some((ratio, name))) = (kind, lowest) {
            let mean = (logarithms.iter().sum::<f64>() / logarithms.len() as f64).exp();
            let _ = writeln!(
                out,
                "geometric mean of {} ratios: {mean:.2}x; lowest: {ratio:.2}x ({name})",
                logarithms.len()
            );
        }
        out
    }

    pub(crate) fn write(&self, path: &Path) -> Result<(), String> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        let json = serde_json::to_string_pretty(self).map_err(|error| error.to_string())?;
        std::fs::write(path, json)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }
}

impl Machine {
    fn read() -> Self {
        let hostname = std::fs::read_to_string("/etc/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split(':').nth(1))
                    .map(|model| model.trim().to_owned())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        Self {
            hostname,
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

fn thousands(value: f64) -> String {
    if value <= 0.0 {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn micros(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_for_reading() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(0.0), "-");
        assert_eq!(micros(12.345), "12.3");
        assert_eq!(micros(1234.5), "1234");
    }
}
