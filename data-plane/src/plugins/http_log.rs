//! The live http-log queues (`tollgate_shared::runtime::LogQueues`): one
//! queue and one background task per distinct `HttpLogTarget`, shared by
//! every plugin instance naming an equal target and kept across config swaps
//! (the registry holds them weakly; the swap that drops the last user closes
//! the queue, whose task then sends what is left and ends).
//!
//! The log phase only calls [`LogQueue::enqueue`]: a lock, a push and a
//! wake-up, never the network. The task (one per queue, on the data plane's
//! runtime) takes the first waiting entry, waits up to
//! `max_coalescing_delay` for `max_batch_size` entries, sends the batch (the
//! bare object when `max_batch_size` is 1, a JSON array otherwise, as Kong),
//! and retries a failed batch after `min(max_retry_delay,
//! initial_retry_delay * 2^n)` until `max_retry_time` has passed since its
//! first attempt, then drops it. One batch is in flight at a time; entries
//! arriving meanwhile wait in the bounded buffer (`buffer.rs`), which drops
//! the oldest when full, so memory stays within `max_entries` (and
//! `max_bytes`) plus the batch in flight whatever the collector does.
//! `concurrency_limit: -1` sends every entry on its own task, at most
//! `max_entries` at once (beyond that, new entries are dropped).
//!
//! Counting (`HttpLogCounters`, node-wide, on `/status`): `sent` entries the
//! collector accepted, `retried` entries sent again after a failure (a batch
//! of n retried twice counts 2n), `dropped` entries lost (queue full, retry
//! time exceeded, larger than `max_bytes`), `queued` entries waiting now,
//! `sending` entries being sent now. At shutdown [`HttpLogQueues::flush`]
//! sends what is queued without waiting to fill batches, within the grace
//! period.

mod buffer;
mod sender;

use buffer::Buffer;
use bytes::Bytes;
use sender::Sender;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tollgate_shared::runtime::{HttpLogTarget, LogQueue, LogQueues, QueueSettings, SharedSet};

use crate::proxy::log_limit::LogLimiter;

/// The http-log counters of one data plane (all queues together). Kept in
/// one small struct so they can move into a metrics registry as they are.
#[derive(Debug, Default)]
pub struct HttpLogCounters {
    /// Entries the collector accepted (status below 300).
    pub sent: AtomicU64,
    /// Entries sent again after a failed attempt.
    pub retried: AtomicU64,
    /// Entries lost: the queue was full, the retry time ran out, or an entry
    /// was larger than `queue.max_bytes`.
    pub dropped: AtomicU64,
    /// Entries waiting to be sent now.
    pub queued: AtomicU64,
    /// Entries being sent now (taken from a queue, not yet sent or dropped).
    pub sending: AtomicU64,
    /// Queues alive now (one per distinct endpoint and queue settings).
    pub queues: AtomicU64,
}

impl HttpLogCounters {
    /// The `/status` form: `{sent, retried, dropped, queued, sending, queues}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "queued": self.queued.load(Ordering::Relaxed),
            "sending": self.sending.load(Ordering::Relaxed),
            "queues": self.queues.load(Ordering::Relaxed),
        })
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn sub(counter: &AtomicU64, n: usize) {
        counter.fetch_sub(n as u64, Ordering::Relaxed);
    }
}

/// Creates and shares the queues; lives as long as the data plane.
#[derive(Debug)]
pub struct HttpLogQueues {
    runtime: tokio::runtime::Handle,
    tls: Arc<rustls::ClientConfig>,
    counters: Arc<HttpLogCounters>,
    queues: SharedSet<HttpLogTarget, LiveQueue>,
    /// Set at shutdown: queues send what they hold without waiting to
    /// fill a batch.
    flushing: Arc<Flushing>,
}

/// The shutdown flag every queue watches.
#[derive(Debug, Default)]
struct Flushing {
    now: AtomicBool,
}

impl HttpLogQueues {
    /// Queues whose tasks run on `runtime` (compile runs on the config
    /// thread, outside it), sending `https` batches with `tls`.
    pub fn new(
        runtime: tokio::runtime::Handle,
        tls: Arc<rustls::ClientConfig>,
        counters: Arc<HttpLogCounters>,
    ) -> HttpLogQueues {
        HttpLogQueues {
            runtime,
            tls,
            counters,
            queues: SharedSet::default(),
            flushing: Arc::default(),
        }
    }

    pub fn counters(&self) -> &Arc<HttpLogCounters> {
        &self.counters
    }

    /// At shutdown: sends what every queue holds at once (no coalescing
    /// wait) and waits until nothing is queued or being sent, or until
    /// `limit`; returns whether everything left. Retries go on as usual
    /// meanwhile, so a dead collector costs at most `limit`.
    pub async fn flush(&self, limit: Duration) -> bool {
        self.flushing.now.store(true, Ordering::Release);
        for queue in self.queues.live_values() {
            queue.state.wake.notify_one();
        }
        let deadline = Instant::now() + limit;
        loop {
            let queued = self.counters.queued.load(Ordering::Relaxed);
            let sending = self.counters.sending.load(Ordering::Relaxed);
            if queued == 0 && sending == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    queued,
                    sending,
                    "http-log: shutting down with entries not delivered"
                );
                return false;
            }
            tokio::time::sleep(FLUSH_POLL).await;
        }
    }
}

/// How often a flush looks whether the queues are empty.
const FLUSH_POLL: Duration = Duration::from_millis(10);

impl LogQueues for HttpLogQueues {
    fn queue(&self, target: &HttpLogTarget) -> Result<Arc<dyn LogQueue>, String> {
        let queue = self.queues.get_or_try_insert(target, || {
            let sender = Sender::new(target, &self.tls)?;
            Ok::<_, String>(Arc::new(LiveQueue::start(
                &self.runtime,
                target.queue.clone(),
                sender,
                Arc::clone(&self.counters),
                Arc::clone(&self.flushing),
            )))
        })?;
        Ok(queue)
    }
}

/// What the plugin instances hold; dropping the last one closes the queue.
#[derive(Debug)]
struct LiveQueue {
    state: Arc<QueueState>,
}

/// What the queue's task and the enqueuers share.
#[derive(Debug)]
struct QueueState {
    settings: QueueSettings,
    buffer: Mutex<Buffer>,
    wake: Notify,
    closed: AtomicBool,
    sender: Sender,
    counters: Arc<HttpLogCounters>,
    flushing: Arc<Flushing>,
    runtime: tokio::runtime::Handle,
    /// Sends in flight with `concurrency_limit: -1`.
    in_flight: AtomicUsize,
    /// Failed sends are logged at most this often (a dead collector fails
    /// every attempt of every batch).
    failure_log: LogLimiter,
}

/// Lines per second for failed sends of one queue.
const FAILURE_LINES_PER_SECOND: u64 = 5;

impl LiveQueue {
    fn start(
        runtime: &tokio::runtime::Handle,
        settings: QueueSettings,
        sender: Sender,
        counters: Arc<HttpLogCounters>,
        flushing: Arc<Flushing>,
    ) -> LiveQueue {
        counters.queues.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(QueueState {
            buffer: Mutex::new(Buffer::new(settings.max_entries, settings.max_bytes)),
            settings,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            sender,
            counters,
            flushing,
            runtime: runtime.clone(),
            in_flight: AtomicUsize::new(0),
            failure_log: LogLimiter::new(FAILURE_LINES_PER_SECOND),
        });
        if !state.settings.unbounded_concurrency {
            runtime.spawn(run(Arc::clone(&state)));
        }
        LiveQueue { state }
    }
}

impl Drop for LiveQueue {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::Release);
        self.state.wake.notify_one();
        if self.state.settings.unbounded_concurrency {
            self.state.counters.queues.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl LogQueue for LiveQueue {
    fn enqueue(&self, entry: &[u8]) {
        let state = &self.state;
        if state.settings.unbounded_concurrency {
            state.send_alone(entry);
            return;
        }
        let pushed = state
            .buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry.into());
        state.wake.notify_one();
        let counters = &state.counters;
        if pushed.refused {
            HttpLogCounters::add(&counters.dropped, 1);
            tracing::error!(
                queue = state.sender.address(),
                bytes = entry.len(),
                max_bytes = state.settings.max_bytes,
                "http-log: an entry larger than queue.max_bytes was dropped"
            );
            return;
        }
        HttpLogCounters::add(&counters.queued, 1);
        if pushed.dropped > 0 {
            HttpLogCounters::add(&counters.dropped, pushed.dropped);
            HttpLogCounters::sub(&counters.queued, pushed.dropped);
        }
        if pushed.reached_warning {
            tracing::warn!(
                queue = state.sender.address(),
                max_entries = state.settings.max_entries,
                "http-log: queue at 80% capacity"
            );
        }
        if pushed.started_dropping {
            tracing::error!(
                queue = state.sender.address(),
                max_entries = state.settings.max_entries,
                "http-log: queue full, dropping old entries until processing is successful again"
            );
        }
    }
}

impl QueueState {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closed, or the data plane is shutting down: no coalescing wait.
    fn is_flushing(&self) -> bool {
        self.is_closed() || self.flushing.now.load(Ordering::Acquire)
    }

    fn waiting(&self) -> usize {
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// `concurrency_limit: -1`: the entry gets its own task.
    fn send_alone(self: &Arc<Self>, entry: &[u8]) {
        let limit = self.settings.max_entries;
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            HttpLogCounters::add(&self.counters.dropped, 1);
            if self.failure_log.admit().is_some() {
                tracing::error!(
                    queue = self.sender.address(),
                    limit,
                    "http-log: too many sends in flight, entry dropped"
                );
            }
            return;
        }
        let state = Arc::clone(self);
        let body = payload(&[entry.into()], self.settings.max_batch_size);
        HttpLogCounters::add(&self.counters.sending, 1);
        self.runtime.spawn(async move {
            state.deliver(body, 1).await;
            HttpLogCounters::sub(&state.counters.sending, 1);
            state.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Sends one batch, retrying as the queue settings say, and counts.
    async fn deliver(&self, body: Bytes, entries: usize) {
        let started = Instant::now();
        let mut retry = 0u32;
        loop {
            let error = match self.sender.send(body.clone()).await {
                Ok(()) => {
                    HttpLogCounters::add(&self.counters.sent, entries);
                    return;
                }
                Err(error) => error,
            };
            if let Some(suppressed) = self.failure_log.admit() {
                tracing::warn!(
                    queue = self.sender.address(),
                    %error,
                    suppressed,
                    "http-log: handler could not process entries"
                );
            }
            if started.elapsed() > self.settings.max_retry_time {
                HttpLogCounters::add(&self.counters.dropped, entries);
                tracing::error!(
                    queue = self.sender.address(),
                    entries,
                    "http-log: could not send entries due to max_retry_time exceeded; the entries were lost"
                );
                return;
            }
            tokio::time::sleep(self.settings.retry_delay(retry)).await;
            retry = retry.saturating_add(1);
            HttpLogCounters::add(&self.counters.retried, entries);
        }
    }
}

/// The body of a batch: the bare object when batches hold one entry by
/// configuration, a JSON array otherwise (even of one entry), as Kong.
fn payload(batch: &[Box<[u8]>], max_batch_size: usize) -> Bytes {
    if max_batch_size == 1 {
        if let [only] = batch {
            return Bytes::copy_from_slice(only);
        }
    }
    let length = 2 + batch.iter().map(|entry| entry.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(length);
    body.push(b'[');
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(entry);
    }
    body.push(b']');
    Bytes::from(body)
}

/// The queue's task: batch, send, repeat; ends once the queue is closed and
/// empty.
async fn run(state: Arc<QueueState>) {
    let settings = &state.settings;
    loop {
        // Wait for a first entry (`Notify` keeps a wake-up that came while
        // nobody waited, so none is missed).
        while state.waiting() == 0 {
            if state.is_closed() {
                state.counters.queues.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            state.wake.notified().await;
        }
        // Coalesce: up to `max_batch_size` entries or `max_coalescing_delay`
        // after the first, whichever comes first; a closed queue flushes now.
        let deadline = Instant::now() + settings.max_coalescing_delay;
        while state.waiting() < settings.max_batch_size && !state.is_flushing() {
            tokio::select! {
                () = state.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let taken = state
            .buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(settings.max_batch_size);
        if taken.batch.is_empty() {
            continue;
        }
        // Counted as sending before it stops counting as queued, so a
        // flush never sees both at zero while a batch changes hands.
        HttpLogCounters::add(&state.counters.sending, taken.batch.len());
        HttpLogCounters::sub(&state.counters.queued, taken.batch.len());
        if taken.resumed {
            tracing::info!(
                queue = state.sender.address(),
                "http-log: queue resumed processing"
            );
        }
        let body = payload(&taken.batch, settings.max_batch_size);
        let entries = taken.batch.len();
        drop(taken);
        state.deliver(body, entries).await;
        HttpLogCounters::sub(&state.counters.sending, entries);
    }
}

#[cfg(test)]
mod tests;
