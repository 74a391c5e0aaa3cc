//! Graceful shutdown: one trigger that every accept loop and connection
//! watches, and a drain counter of live client connections to wait on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Fires the shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves once shutdown was triggered (or the trigger is gone).
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownSignal(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.0.subscribe())
    }
}

impl ShutdownSignal {
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

/// Counts live connections; [`Drain::wait_idle`] resolves when none is left.
#[derive(Debug, Default)]
pub struct Drain {
    live: AtomicUsize,
    idle: Notify,
}

/// One live connection; dropping it ends it for the [`Drain`].
#[derive(Debug)]
pub struct DrainGuard(Arc<Drain>);

impl Drain {
    pub fn enter(self: &Arc<Self>) -> DrainGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        DrainGuard(Arc::clone(self))
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
