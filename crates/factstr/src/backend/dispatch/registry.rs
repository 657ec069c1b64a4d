//! The registry of one dispatcher: published position, registered streams,
//! durable names claimed in this process, and the delivery threads still
//! running.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use super::pool::Pool;
use super::subscription::Subscription;
use super::{CommittedLog, STOPPING_STREAM_PATIENCE};
use crate::EventStoreError;
use crate::backend::sync::lock;

#[derive(Debug)]
pub(super) struct DispatchCore {
    pub(super) registry: Mutex<Registry>,
    /// Signalled whenever a durable name is released or the dispatcher
    /// closes.
    pub(super) claims_released: Condvar,
    pub(super) next_stream_id: AtomicU64,
    /// Streams whose delivery has not ended, registered or not.
    pub(super) running: Mutex<Vec<Arc<Subscription>>>,
    /// Signalled whenever a delivery ends.
    pub(super) delivery_ended: Condvar,
    /// The workers that deliver streams without a thread of their own.
    pub(super) pool: Arc<Pool>,
}

#[derive(Debug)]
pub(super) struct Registry {
    pub(super) last_published: u64,
    /// Streams that receive publications.
    pub(super) subscriptions: Vec<Arc<Subscription>>,
    /// Durable names claimed in this process, with the stream holding each
    /// (`None` while its registration is still starting).
    pub(super) active_durable_names: HashMap<String, Option<Weak<Subscription>>>,
    pub(super) closed: bool,
}

impl DispatchCore {
    pub(super) fn new(last_published: u64) -> Self {
        Self {
            registry: Mutex::new(Registry {
                last_published,
                subscriptions: Vec::new(),
                active_durable_names: HashMap::new(),
                closed: false,
            }),
            claims_released: Condvar::new(),
            next_stream_id: AtomicU64::new(1),
            running: Mutex::new(Vec::new()),
            delivery_ended: Condvar::new(),
            pool: Arc::new(Pool::new()),
        }
    }

    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Removes `subscription` from the publications and asks it to deliver
    /// what was published so far, then stop.
    pub(super) fn stop(&self, subscription: &Arc<Subscription>, reason: crate::StreamStopReason) {
        let mut registry = self.registry();
        registry
            .subscriptions
            .retain(|registered| registered.id != subscription.id);
        subscription.request_stop(reason, registry.last_published);
    }

    /// Claims `name` in this process. A name whose stream was asked to stop
    /// but is still delivering its last batches becomes free when that
    /// stream ends: wait for it (at most [`STOPPING_STREAM_PATIENCE`]),
    /// unless this is that stream's own delivery thread, which would wait for
    /// itself.
    pub(super) fn take_name(&self, name: &str) -> Result<(), EventStoreError> {
        let deadline = Instant::now() + STOPPING_STREAM_PATIENCE;
        let mut registry = self.registry();
        loop {
            if registry.closed {
                return Err(EventStoreError::backend("the store is closed"));
            }
            let holder = match registry.active_durable_names.get(name) {
                None => {
                    registry.active_durable_names.insert(name.to_owned(), None);
                    return Ok(());
                }
                Some(holder) => holder.as_ref().and_then(Weak::upgrade),
            };
            let stopping_elsewhere = holder
                .as_ref()
                .is_some_and(|holder| lock(&holder.state).stopping() && !holder.delivering_here());
            let left = deadline.saturating_duration_since(Instant::now());
            if !stopping_elsewhere || left.is_zero() {
                let still = if stopping_elsewhere {
                    " (it was unsubscribed, but is still delivering the batches committed before)"
                } else {
                    ""
                };
                return Err(EventStoreError::backend(format!(
                    "durable stream `{name}` is already active{still}"
                )));
            }
            registry = self
                .claims_released
                .wait_timeout(registry, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Releases a durable name: first the store's claim (so a process that
    /// sees the name free can claim it in the store too), then ours.
    pub(super) fn release_name(&self, log: Option<&dyn CommittedLog>, name: &str) {
        if let Some(log) = log {
            log.close_durable_stream(name);
        }
        self.registry().active_durable_names.remove(name);
        self.claims_released.notify_all();
    }

    /// Forgets a delivery that ended.
    pub(super) fn delivery_ended(&self, id: u64) {
        lock(&self.running).retain(|subscription| subscription.id != id);
        self.delivery_ended.notify_all();
    }
}
