//! How long to wait before trying a failed backend operation again.

use std::time::Duration;

/// Exponential backoff for operations retried while a backend is unreachable
/// (reading committed batches, writing cursors, reconnecting): the first
/// retry waits [`FIRST`](Self::FIRST), each further one twice as long, up to
/// [`MAX`](Self::MAX); a success starts over.
///
/// ```
/// use std::time::Duration;
/// use factstr::backend::Backoff;
///
/// let mut backoff = Backoff::new();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The wait before the first retry.
    pub const FIRST: Duration = Duration::from_millis(50);
    /// The longest wait between two attempts.
    pub const MAX: Duration = Duration::from_secs(2);

    /// A backoff whose next delay is [`FIRST`](Self::FIRST).
    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay to wait now; the one after it is twice as long, at most
    /// [`MAX`](Self::MAX).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], Backoff::FIRST);
        assert!(
            delays
                .windows(2)
                .all(|pair| pair[1] == (pair[0] * 2).min(Backoff::MAX))
        );
        assert_eq!(delays[7], Backoff::MAX);
    }
}
