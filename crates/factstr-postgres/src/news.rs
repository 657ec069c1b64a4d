//! Commit news: what the notification task tells the publisher about
//! commits it has not published yet.
//!
//! The news is bounded whatever the commit rate: the greatest sequence
//! number known to be committed and a count of (re)started listenings, in
//! one `watch` value, never a queue of batches.

use tokio::sync::watch;

/// What the publisher knows about commits it has not seen yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommitNews {
    /// The greatest sequence number some process is known to have committed.
    pub(crate) known_committed: u64,
    /// How often listening (re)started; each time, commits may have been
    /// missed before.
    pub(crate) listenings: u64,
}

/// Where commit news is sent.
pub(crate) type NewsSender = watch::Sender<CommitNews>;

/// Records that some process committed up to `last`.
pub(crate) fn tell_committed(news: &NewsSender, last: u64) {
    news.send_if_modified(|news| {
        let newer = last > news.known_committed;
        news.known_committed = news.known_committed.max(last);
        newer
    });
}

/// Records that listening (re)started.
pub(crate) fn tell_listening(news: &NewsSender) {
    news.send_modify(|news| news.listenings += 1);
}
