//! The gateway's config thread: one dedicated OS thread that compiles configs
//! and frees the ones they replace.
//!
//! Why it frees old configs: a request holds the config it started with, and
//! if the last holder is a proxy worker, that worker would pay for freeing the
//! whole table (milliseconds to tens of milliseconds for a large one) in the
//! middle of serving. Retired configs are kept here until nobody else holds
//! them and dropped on this thread.
//!
//! It runs at the workers' priority on purpose. Measured with wrk against
//! `tollgate-dp` on 2 cores while 10k-route configs were reloaded every 2 s:
//! at nice +10 the proxy's p99 under saturating load was about 1.5-2x worse
//! than at nice 0 (at moderate load no difference was measurable). The likely
//! cause is priority inversion: the config thread allocates and frees hundreds
//! of megabytes, holding kernel memory-map locks the workers then wait for
//! while it is starved of CPU.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// While configs wait to be freed, how often the thread looks at them.
const REAP_EVERY: Duration = Duration::from_millis(50);

type Job = Box<dyn FnOnce() + Send>;

enum Message {
    Run(Job),
    Retire(Arc<dyn Any + Send + Sync>),
}

/// A job did not finish: it panicked, or the thread it was sent to is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the job panicked or its thread is gone")]
pub struct JobAborted;

/// Handle to the config thread; the thread ends when the handle is dropped.
#[derive(Debug)]
pub struct ConfigThread {
    sender: Option<mpsc::Sender<Message>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Run(_) => "Run",
            Message::Retire(_) => "Retire",
        })
    }
}

impl ConfigThread {
    /// Starts the thread. If the OS refuses a thread, the handle still works:
    /// jobs run on tokio's blocking pool and retired values are dropped where
    /// they are retired.
    pub fn spawn() -> ConfigThread {
        let (sender, receiver) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("tollgate-config".into())
            .spawn(move || serve(receiver));
        match started {
            Ok(_) => ConfigThread {
                sender: Some(sender),
            },
            Err(error) => {
                tracing::error!(%error, "cannot start the config thread; compiling on the blocking pool");
                ConfigThread { sender: None }
            }
        }
    }

    /// Runs `job` on the config thread and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobAborted> {
        let Some(sender) = &self.sender else {
            return tokio::task::spawn_blocking(job)
                .await
                .map_err(|_| JobAborted);
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panicking job must not take the thread down with it: the
            // caller learns it from the dropped channel.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
                let _ = done.send(value);
            }
        });
        sender.send(Message::Run(job)).map_err(|_| JobAborted)?;
        result.await.map_err(|_| JobAborted)
    }

    /// Hands `value` over to be dropped on the config thread once nobody else
    /// holds it.
    pub fn retire<T: Send + Sync + 'static>(&self, value: Arc<T>) {
        if let Some(sender) = &self.sender {
            // If the thread is gone the value comes back and is dropped here.
            let _ = sender.send(Message::Retire(value));
        }
    }
}

fn serve(receiver: mpsc::Receiver<Message>) {
    let mut retired: Vec<Arc<dyn Any + Send + Sync>> = Vec::new();
    loop {
        let message = if retired.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(REAP_EVERY)
        };
        match message {
            Ok(Message::Run(job)) => job(),
            Ok(Message::Retire(value)) => retired.push(value),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Only this thread still holds a value whose count is 1, and no one
        // can take a new reference from it: dropping it here is the last drop.
        retired.retain(|value| Arc::strong_count(value) > 1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Reports which thread dropped it.
    struct Tracked(tokio::sync::mpsc::UnboundedSender<Option<String>>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_string));
        }
    }

    #[tokio::test]
    async fn jobs_run_on_the_config_thread() {
        let thread = ConfigThread::spawn();
        let name = thread
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("tollgate-config"));
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_thread_keeps_working() {
        let thread = ConfigThread::spawn();
        let outcome = thread.run(|| -> u32 { panic!("compile bug") }).await;
        assert_eq!(outcome, Err(JobAborted));
        assert_eq!(thread.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_retired_value_is_dropped_on_the_thread_after_its_last_user() {
        let thread = ConfigThread::spawn();
        let (tx, mut dropped_by) = tokio::sync::mpsc::unbounded_channel();
        let value = Arc::new(Tracked(tx));
        let user = Arc::clone(&value);
        thread.retire(value);
        // Still in use by a "request": the pass after this job keeps it.
        thread.run(|| ()).await.unwrap();
        assert!(dropped_by.try_recv().is_err());
        // The request ends on this (non-config) thread, which must not free it.
        drop(user);
        assert_eq!(
            dropped_by.recv().await,
            Some(Some("tollgate-config".to_string()))
        );
    }
}
