use chrono::{DateTime, SubsecRound, Utc};

/// The commit time to record for a batch committing now: UTC, truncated to
/// whole microseconds (the resolution every store keeps), and never earlier
/// than `previous` so that commit times follow sequence order.
pub fn commit_timestamp(previous: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = Utc::now().trunc_subsecs(6);
    match previous {
        Some(previous) if previous > now => previous,
        _ => now,
    }
}
