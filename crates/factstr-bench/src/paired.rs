//! Runs a workload and its reference in the same minutes, alternating, so
//! that the machine's drift (a shared virtual machine whose disk and cores
//! change speed within minutes) lands on both sides alike.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::report::Measurement;
use crate::stats::Latencies;

/// One timed call: the events it handled and the time spent inside it.
pub(crate) struct Timed {
    pub(crate) events: u64,
    pub(crate) elapsed: Duration,
}

/// Times `call`, which handles `events` events. Whatever the caller does
/// before (building the batch) stays outside the clock.
pub(crate) fn time_call<T>(
    events: u64,
    call: impl FnOnce() -> Result<T, String>,
) -> Result<Timed, String> {
    let started = Instant::now();
    call()?;
    Ok(Timed {
        events,
        elapsed: started.elapsed(),
    })
}

/// What one side did over all its slices.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) events: u64,
    pub(crate) busy: Duration,
    pub(crate) latencies: Latencies,
}

impl Tally {
    pub(crate) fn add(&mut self, timed: &Timed) {
        self.calls += 1;
        self.events += timed.events;
        self.busy += timed.elapsed;
        self.latencies.record(timed.elapsed);
    }

    /// A row whose rates are per second spent inside the calls.
    pub(crate) fn measurement(&self, store: &str, workload: &str, variant: &str) -> Measurement {
        Measurement::new(
            store,
            workload,
            variant,
            self.calls,
            self.events,
            self.busy.as_secs_f64(),
        )
        .with_latencies(&self.latencies)
    }
}

/// One side of a paired workload: called with its own round number (0, 1,
/// ...), does one timed call.
pub(crate) type Side<'a> = &'a mut dyn FnMut(u64) -> Result<Timed, String>;

/// Gives each side `per_side` of wall time, in `slices` turns that
/// alternate between the sides (the first side first); a side stops early
/// once it has handled `event_cap` events.
pub(crate) fn alternate(
    sides: &mut [Side<'_>],
    per_side: Duration,
    slices: u32,
    event_cap: u64,
) -> Result<Vec<Tally>, String> {
    let slices = slices.max(1);
    let slice = per_side / slices;
    let mut tallies: Vec<Tally> = sides.iter().map(|_| Tally::default()).collect();
    for _ in 0..slices {
        for (side, tally) in sides.iter_mut().zip(tallies.iter_mut()) {
            let slice_ends = Instant::now() + slice;
            while Instant::now() < slice_ends && tally.events < event_cap {
                let timed = side(tally.calls)?;
                tally.add(&timed);
            }
        }
    }
    Ok(tallies)
}

/// One side of a repeated workload: called with the repetition's number
/// (0, 1, ... on each side), records its own timing.
pub(crate) type Repeat<'a> = &'a mut dyn FnMut(usize) -> Result<(), String>;

/// Runs `repetitions` calls of each side in `turns` turns of consecutive
/// calls, the sides taking turns (the first side first). A turn of calls in a
/// row keeps the caches warm for the side whose turn it is, as a program
/// calling one store would find them; alternating every call would charge
/// each side for the other's footprint (a 0.5.2 query reads its whole log).
pub(crate) fn take_turns(
    repetitions: usize,
    turns: u32,
    sides: &mut [Repeat<'_>],
) -> Result<(), String> {
    let per_turn = repetitions.div_ceil(turns.max(1) as usize).max(1);
    let mut done = 0;
    while done < repetitions {
        let now = per_turn.min(repetitions - done);
        for side in sides.iter_mut() {
            for number in done..done + now {
                side(number)?;
            }
        }
        done += now;
    }
    Ok(())
}

/// What a reference row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReferenceKind {
    /// The published crate ours replaces: the ratio is shown as `1.23x`.
    #[serde(rename = "published_0.5.2")]
    Published052,
    /// The bare engine doing the same writes or reads: the ratio is the
    /// share of the engine's rate the store reaches, shown as `48%`.
    BareEngine,
}

/// Which figure a comparison divides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Metric {
    /// Ours / reference events per second.
    EventsPerSecond,
    /// Reference p50 / ours p50 (latency: lower is better).
    P50Latency,
}

/// A store row against its reference row, measured in the same run.
/// `ratio` > 1 means the store row is faster.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Comparison {
    pub(crate) kind: ReferenceKind,
    pub(crate) reference_store: String,
    pub(crate) reference_variant: String,
    pub(crate) metric: Metric,
    pub(crate) ratio: f64,
    /// Reference p99 / ours p99, where both rows have latencies.
    pub(crate) p99_ratio: Option<f64>,
}

impl Comparison {
    /// Compares `ours` with `reference` by `metric`; `None` when a figure is
    /// missing or zero.
    pub(crate) fn of(
        ours: &Measurement,
        reference: &Measurement,
        kind: ReferenceKind,
        metric: Metric,
    ) -> Option<Self> {
        let ratio = match metric {
            Metric::EventsPerSecond => {
                quotient(ours.events_per_second, reference.events_per_second)
            }
            Metric::P50Latency => quotient(reference.p50_us?, ours.p50_us?),
        }?;
        let p99_ratio = ours
            .p99_us
            .zip(reference.p99_us)
            .and_then(|(ours, reference)| quotient(reference, ours));
        Some(Self {
            kind,
            reference_store: reference.store.clone(),
            reference_variant: reference.variant.clone(),
            metric,
            ratio,
            p99_ratio,
        })
    }

    /// The ratio as the table prints it.
    pub(crate) fn shown(&self) -> String {
        match self.kind {
            ReferenceKind::Published052 => format!("{:.2}x", self.ratio),
            ReferenceKind::BareEngine => format!("{:.0}%", self.ratio * 100.0),
        }
    }
}

fn quotient(numerator: f64, denominator: f64) -> Option<f64> {
    (numerator > 0.0 && denominator > 0.0).then(|| numerator / denominator)
}

/// Attaches the comparison of `ours` with `reference` to `ours` and returns
/// both rows, ours first.
pub(crate) fn compared(
    mut ours: Measurement,
    reference: Measurement,
    kind: ReferenceKind,
    metric: Metric,
) -> [Measurement; 2] {
    ours.compared = Comparison::of(&ours, &reference, kind, metric);
    [ours, reference]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(events_per_second_over_one_second: u64, p50_us: f64) -> Measurement {
        let mut latencies = Latencies::default();
        latencies.record_us(p50_us);
        Measurement::new("s", "w", "v", 1, events_per_second_over_one_second, 1.0)
            .with_latencies(&latencies)
    }

    #[test]
    fn a_ratio_above_one_means_ours_is_faster() {
        let ours = row(300, 10.0);
        let reference = row(100, 40.0);
        let by_rate = Comparison::of(
            &ours,
            &reference,
            ReferenceKind::Published052,
            Metric::EventsPerSecond,
        )
        .unwrap();
        assert!((by_rate.ratio - 3.0).abs() < 1e-9);
        assert_eq!(by_rate.shown(), "3.00x");
        let by_latency = Comparison::of(
            &ours,
            &reference,
            ReferenceKind::BareEngine,
            Metric::P50Latency,
        )
        .unwrap();
        assert!((by_latency.ratio - 4.0).abs() < 1e-9);
        assert_eq!(by_latency.shown(), "400%");
        assert!(
            Comparison::of(
                &ours,
                &row(0, 1.0),
                ReferenceKind::BareEngine,
                Metric::EventsPerSecond
            )
            .is_none()
        );
    }

    #[test]
    fn repetitions_come_in_turns_of_consecutive_calls() {
        let calls = std::cell::RefCell::new(Vec::new());
        let mut first = |number: usize| {
            calls.borrow_mut().push(('a', number));
            Ok(())
        };
        let mut second = |number: usize| {
            calls.borrow_mut().push(('b', number));
            Ok(())
        };
        take_turns(5, 2, &mut [&mut first, &mut second]).unwrap();
        assert_eq!(
            calls.into_inner(),
            [
                ('a', 0),
                ('a', 1),
                ('a', 2),
                ('b', 0),
                ('b', 1),
                ('b', 2),
                ('a', 3),
                ('a', 4),
                ('b', 3),
                ('b', 4)
            ]
        );
    }

    #[test]
    fn sides_take_turns_and_stop_at_the_cap() {
        let mut order = Vec::new();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        {
            let mut one = |round: u64| {
                first.push(round);
                Ok(Timed {
                    events: 10,
                    elapsed: Duration::from_micros(1),
                })
            };
            let mut two = |round: u64| {
                second.push(round);
                Ok(Timed {
                    events: 1,
                    elapsed: Duration::from_micros(1),
                })
            };
            let tallies =
                alternate(&mut [&mut one, &mut two], Duration::from_millis(20), 4, 30).unwrap();
            order.push(tallies[0].events);
            order.push(tallies[1].events);
        }
        assert_eq!(order[0], 30, "the first side stops at the cap");
        assert_eq!(first, vec![0, 1, 2]);
        assert!(order[1] > 3, "the second side runs every slice");
        assert_eq!(second.iter().copied().max(), Some(order[1] - 1));
    }
}
