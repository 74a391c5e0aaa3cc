//! The snapshot publisher: turns committed configuration into published
//! snapshots. Triggered by local writes, by PostgreSQL notifications from other
//! control planes, and by a periodic version poll as a backstop; bursts are
//! coalesced in a short window. A failed read or a config that does not compile
//! is never published: the previous snapshot stays current.

use super::Published;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tollgate_shared::Config;

/// Where committed configuration is read from (the store).
pub trait ConfigSource: Send + Sync + 'static {
    /// The current `config_version`, cheap: used by the periodic poll.
    fn version(&self) -> impl Future<Output = Result<u64, String>> + Send;
    /// Every entity and the version they belong to, in one consistent read.
    fn load(&self) -> impl Future<Output = Result<(u64, Config), String>> + Send;
}

/// Builds a publishable snapshot from a config (compile check, conversion,
/// hashing), or says why it cannot.
pub type BuildFn = Arc<dyn Fn(u64, Config) -> Result<Published, Vec<String>> + Send + Sync>;

/// Timing of the publisher.
#[derive(Debug, Clone, Copy)]
pub struct PublisherTiming {
    /// The shortest gap between two builds: changes arriving within it of
    /// the previous build are coalesced into the next one.
    pub coalesce: Duration,
    /// How often to compare the stored version with the published one.
    pub poll: Duration,
}

impl Default for PublisherTiming {
    fn default() -> Self {
        Self {
            coalesce: Duration::from_millis(10),
            poll: Duration::from_secs(2),
        }
    }
}

pub use crate::telemetry::PublisherStatus;

/// Runs until `shutdown`. `changes` is the store's version watch, which local
/// commits and the NOTIFY listener advance; a change seen while a build runs
/// triggers the next one.
pub async fn run<S: ConfigSource>(
    source: Arc<S>,
    build: BuildFn,
    mut changes: watch::Receiver<i64>,
    publish: watch::Sender<Option<Published>>,
    status: Arc<PublisherStatus>,
    timing: PublisherTiming,
    shutdown: CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let mut poll = tokio::time::interval(timing.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Build once at start, then on each trigger or when the poll sees a newer version.
    let mut pending = true;
    // A version whose config did not compile fails the same way every time:
    // the poll does not retry it (a read error, in contrast, is retried).
    let mut failed_version: Option<u64> = None;
    let mut last_build: Option<tokio::time::Instant> = None;
    loop {
        if !pending {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    pending = true;
                }
                _ = poll.tick() => {
                    let published = publish.borrow().as_ref().map(|p| p.snapshot.version);
                    match source.version().await {
                        Ok(v) => pending = published != Some(v) && failed_version != Some(v),
                        Err(e) => tracing::warn!(error = %e, "config version poll failed"),
                    }
                }
            }
            continue;
        }
        pending = false;
        // Leading edge: an isolated change is built at once; changes that
        // arrive within `coalesce` of the previous build share the next one.
        if let Some(previous) = last_build {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(previous + timing.coalesce) => {}
            }
        }
        last_build = Some(tokio::time::Instant::now());
        let started = std::time::Instant::now();
        let mut loaded_version = None;
        let result = match source.load().await {
            Ok((version, config)) => {
                loaded_version = Some(version);
                let unchanged = publish
                    .borrow()
                    .as_ref()
                    .is_some_and(|p| p.snapshot.version == version);
                if unchanged {
                    continue;
                }
                let build = build.clone();
                match tokio::task::spawn_blocking(move || build(version, config)).await {
                    Ok(r) => r,
                    Err(e) => Err(vec![format!("snapshot build aborted: {e}")]),
                }
            }
            Err(e) => Err(vec![format!("cannot read the configuration: {e}")]),
        };
        match result {
            Ok(published) => {
                tracing::info!(
                    version = published.snapshot.version,
                    hash = %published.snapshot.hash,
                    "published config snapshot"
                );
                publish.send_replace(Some(published));
                status.builds.fetch_add(1, Ordering::Relaxed);
                status
                    .last_build_ms
                    .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if let Ok(mut slot) = status.last_error.lock() {
                    *slot = None;
                }
            }
            Err(errors) => {
                failed_version = loaded_version;
                tracing::error!(errors = ?errors, "config snapshot not published");
                status.failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut slot) = status.last_error.lock() {
                    *slot = Some(errors.join("; "));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use tokio::sync::Notify;
    use tollgate_proto::v1::Snapshot;

    #[derive(Default)]
    struct FakeSource {
        version: AtomicU64,
        loads: AtomicUsize,
    }

    impl ConfigSource for FakeSource {
        async fn version(&self) -> Result<u64, String> {
            Ok(self.version.load(Ordering::SeqCst))
        }
        async fn load(&self) -> Result<(u64, Config), String> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok((self.version.load(Ordering::SeqCst), Config::default()))
        }
    }

    /// Builds everything except `reject_version`, and says so on `rejected`.
    fn builder(reject_version: u64, rejected: Arc<Notify>) -> BuildFn {
        Arc::new(move |version, _config| {
            if version == reject_version {
                rejected.notify_one();
                return Err(vec!["does not compile".into()]);
            }
            Ok(Published {
                snapshot: Arc::new(Snapshot {
                    version,
                    hash: format!("h{version}"),
                    config: Some(Default::default()),
                    built_at_ms: 0,
                }),
                plugins_used: Arc::default(),
            })
        })
    }

    async fn wait_version(rx: &mut watch::Receiver<Option<Published>>, version: u64) {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if rx.borrow_and_update().as_ref().map(|p| p.snapshot.version) == Some(version) {
                    return;
                }
                rx.changed().await.unwrap();
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn publishes_on_trigger_and_poll_and_never_publishes_a_failed_build() {
        let source = Arc::new(FakeSource::default());
        source.version.store(1, Ordering::SeqCst);
        let (trigger, changes) = watch::channel(0_i64);
        let rejected = Arc::new(Notify::new());
        let (tx, mut rx) = watch::channel(None);
        let status = Arc::new(PublisherStatus::default());
        let stop = CancellationToken::new();
        let timing = PublisherTiming {
            coalesce: Duration::from_millis(5),
            poll: Duration::from_millis(50),
        };
        tokio::spawn(run(
            source.clone(),
            builder(3, rejected.clone()),
            changes,
            tx,
            status.clone(),
            timing,
            stop.clone(),
        ));
        wait_version(&mut rx, 1).await;

        source.version.store(2, Ordering::SeqCst);
        trigger.send_replace(2);
        wait_version(&mut rx, 2).await;

        // Version 3 fails to build: 2 stays published and the failure is recorded.
        source.version.store(3, Ordering::SeqCst);
        trigger.send_replace(3);
        tokio::time::timeout(Duration::from_secs(5), rejected.notified())
            .await
            .unwrap();
        assert_eq!(rx.borrow().as_ref().unwrap().snapshot.version, 2);

        // Without a trigger, the poll notices version 4.
        source.version.store(4, Ordering::SeqCst);
        wait_version(&mut rx, 4).await;
        // The publisher is sequential: by now the failure of 3 is recorded.
        assert_eq!(status.failures.load(Ordering::SeqCst), 1);
        stop.cancel();
    }
}
