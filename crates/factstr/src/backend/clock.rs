use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SubsecRound, Timelike, Utc};

/// The commit time to record for a batch committing now: UTC, truncated to
/// whole microseconds (the resolution every store keeps), and never earlier
/// than `previous` so that commit times follow sequence order.
pub fn commit_timestamp(previous: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = within_second_of(previous).unwrap_or_else(|| Utc::now().trunc_subsecs(6));
    match previous {
        Some(previous) if previous > now => previous,
        _ => now,
    }
}

/// Now, built from `previous` when it is in the same second: only the
/// fraction changes, which spares the calendar arithmetic of a full
/// conversion (appends call this under their lock).
fn within_second_of(previous: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let previous = previous?;
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let seconds = i64::try_from(since_epoch.as_secs()).ok()?;
    if seconds != previous.timestamp() {
        return None;
    }
    previous.with_nanosecond(since_epoch.subsec_micros() * 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_are_whole_microseconds_and_never_go_back() {
        let first = commit_timestamp(None);
        assert_eq!(first.nanosecond() % 1_000, 0);
        let mut previous = first;
        for _ in 0..10_000 {
            let next = commit_timestamp(Some(previous));
            assert!(next >= previous);
            assert_eq!(next.nanosecond() % 1_000, 0);
            previous = next;
        }
        let now = Utc::now();
        assert!((now - previous).num_seconds().abs() <= 1);
        let future = now + chrono::Duration::hours(1);
        assert_eq!(commit_timestamp(Some(future)), future);
    }

    #[test]
    fn a_commit_time_in_the_same_second_keeps_the_date() {
        let previous = Utc::now().trunc_subsecs(0);
        if let Some(now) = within_second_of(Some(previous)) {
            assert_eq!(now.timestamp(), previous.timestamp());
            assert!(now >= previous);
        }
    }
}
