//! Background persistence of applied snapshots. The sync client acknowledges a
//! config as soon as it is swapped in; writing it to the cache (fsync, rename,
//! directory fsync) happens here, off the acknowledgement path.
//!
//! One task, fed by a `watch` channel holding only the latest applied
//! snapshot: a burst of applies while a write is in progress coalesces into one
//! more write of the newest, and since the task writes one snapshot at a time,
//! always the newest it has seen, an older snapshot can never land on disk
//! after a newer one. Failures are logged and counted; the config keeps serving.

use super::{Persist, SyncStatus};
use crate::cache::{CacheError, SnapshotCache};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1::Snapshot;

/// Where snapshots are written; the cache in production, a controllable
/// store in tests.
pub(crate) trait SnapshotStore: Send + Sync + 'static {
    fn store(&self, snapshot: &Snapshot) -> Result<(), CacheError>;
}

impl SnapshotStore for SnapshotCache {
    fn store(&self, snapshot: &Snapshot) -> Result<(), CacheError> {
        SnapshotCache::store(self, snapshot)
    }
}

/// The sending side: hand it each applied snapshot, in apply order.
#[derive(Debug, Clone)]
pub(crate) struct PersistQueue {
    latest: watch::Sender<Option<Arc<Persist>>>,
}

impl PersistQueue {
    /// Replaces the snapshot waiting to be written (if any) by `snapshot`.
    /// Called on the compile thread: the replaced snapshot, if the writer had
    /// not picked it up, is dropped here rather than on an async worker.
    pub(crate) fn push(&self, snapshot: Persist) {
        drop(self.latest.send_replace(Some(Arc::new(snapshot))));
    }
}

/// The persistence task; [`Persister::finish`] writes what is still pending
/// and stops it.
#[derive(Debug)]
pub(crate) struct Persister {
    queue: PersistQueue,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Persister {
    /// Starts the task on the current runtime.
    pub(crate) fn spawn(store: Arc<dyn SnapshotStore>, status: Arc<SyncStatus>) -> Persister {
        let (latest, pending) = watch::channel(None);
        let stop = CancellationToken::new();
        let task = tokio::spawn(write_loop(store, pending, status, stop.clone()));
        Persister {
            queue: PersistQueue { latest },
            stop,
            task,
        }
    }

    pub(crate) fn queue(&self) -> PersistQueue {
        self.queue.clone()
    }

    /// Stops the task once the write in progress and the newest pending
    /// snapshot (if any) are written. Pushes after this are not written.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "config persistence task failed");
        }
    }
}

async fn write_loop(
    store: Arc<dyn SnapshotStore>,
    mut pending: watch::Receiver<Option<Arc<Persist>>>,
    status: Arc<SyncStatus>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            // A pending snapshot is written before a stop is noticed.
            biased;
            changed = pending.changed() => {
                if changed.is_err() {
                    // Every sender is gone and nothing is pending.
                    return;
                }
            }
            () = stop.cancelled() => {
                let last = {
                    let latest = pending.borrow_and_update();
                    latest.has_changed().then(|| latest.clone()).flatten()
                };
                if let Some(snapshot) = last {
                    write(&store, snapshot, &status).await;
                }
                return;
            }
        }
        let latest = pending.borrow_and_update().clone();
        if let Some(snapshot) = latest {
            write(&store, snapshot, &status).await;
        }
    }
}

async fn write(store: &Arc<dyn SnapshotStore>, snapshot: Arc<Persist>, status: &SyncStatus) {
    let version = snapshot.version();
    let store = Arc::clone(store);
    // Encoding and fsync block; the last reference to the snapshot is usually
    // this one, so a large config is also freed off the async workers.
    let outcome =
        tokio::task::spawn_blocking(move || snapshot.with_message(|message| store.store(message)))
            .await;
    match outcome {
        Ok(Ok(())) => status.record_persisted(version),
        Ok(Err(e)) => {
            status.persist_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(version, error = %e, "could not persist the config");
        }
        Err(e) => {
            status.persist_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(version, error = %e, "config persistence task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::{mpsc, Mutex};

    fn snapshot(version: u64) -> Snapshot {
        Snapshot {
            version,
            hash: format!("{version:064x}"),
            config: Some(Default::default()),
            built_at_ms: 0,
        }
    }

    /// Announces each write as it starts, then waits for a release; fails
    /// the versions listed in `fail`.
    struct GatedStore {
        entered: tokio::sync::mpsc::UnboundedSender<u64>,
        release: Mutex<mpsc::Receiver<()>>,
        fail: Vec<u64>,
        written: Mutex<Vec<u64>>,
    }

    struct Gate {
        entered: tokio::sync::mpsc::UnboundedReceiver<u64>,
        release: mpsc::Sender<()>,
    }

    fn gated(fail: Vec<u64>) -> (Arc<GatedStore>, Gate) {
        let (entered_tx, entered) = tokio::sync::mpsc::unbounded_channel();
        let (release, release_rx) = mpsc::channel();
        let store = GatedStore {
            entered: entered_tx,
            release: Mutex::new(release_rx),
            fail,
            written: Mutex::new(Vec::new()),
        };
        (Arc::new(store), Gate { entered, release })
    }

    impl SnapshotStore for GatedStore {
        fn store(&self, snapshot: &Snapshot) -> Result<(), CacheError> {
            let _ = self.entered.send(snapshot.version);
            let _ = self.release.lock().unwrap().recv();
            if self.fail.contains(&snapshot.version) {
                return Err(CacheError::Corrupt {
                    path: "test".into(),
                    reason: "refused by the test",
                });
            }
            self.written.lock().unwrap().push(snapshot.version);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_ends_with_the_newest_snapshot_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SnapshotCache::new(dir.path());
        let status = Arc::new(SyncStatus::default());
        let persister = Persister::spawn(Arc::new(cache.clone()), Arc::clone(&status));
        let queue = persister.queue();
        for version in 1..=50 {
            queue.push(Persist::Message(snapshot(version)));
        }
        status.wait_persisted(50).await;
        assert_eq!(cache.load().unwrap().unwrap().version, 50);
        assert_eq!(status.persist_failures.load(Ordering::Relaxed), 0);
        persister.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_are_in_order_coalesced_and_flushed_on_finish() {
        let (store, mut gate) = gated(Vec::new());
        let status = Arc::new(SyncStatus::default());
        let persister = Persister::spawn(store.clone(), Arc::clone(&status));
        let queue = persister.queue();
        queue.push(Persist::Message(snapshot(1)));
        assert_eq!(gate.entered.recv().await, Some(1));
        // While 1 is being written, 2..=4 arrive: only the newest is written next.
        for version in 2..=4 {
            queue.push(Persist::Message(snapshot(version)));
        }
        for _ in 0..4 {
            gate.release.send(()).unwrap();
        }
        persister.finish().await;
        assert_eq!(*store.written.lock().unwrap(), vec![1, 4]);
        assert_eq!(status.persisted_version(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_counted_and_the_next_one_still_happens() {
        let (store, mut gate) = gated(vec![1]);
        let status = Arc::new(SyncStatus::default());
        let persister = Persister::spawn(store.clone(), Arc::clone(&status));
        persister.queue().push(Persist::Message(snapshot(1)));
        assert_eq!(gate.entered.recv().await, Some(1));
        persister.queue().push(Persist::Message(snapshot(2)));
        for _ in 0..2 {
            gate.release.send(()).unwrap();
        }
        persister.finish().await;
        assert_eq!(status.persist_failures.load(Ordering::Relaxed), 1);
        assert_eq!(*store.written.lock().unwrap(), vec![2]);
        assert_eq!(status.persisted_version(), 2);
    }

    #[tokio::test]
    async fn a_real_cache_write_failure_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the cache directory should be: writes fail.
        let blocked = dir.path().join("not-a-dir");
        std::fs::write(&blocked, b"x").unwrap();
        let status = Arc::new(SyncStatus::default());
        let persister =
            Persister::spawn(Arc::new(SnapshotCache::new(&blocked)), Arc::clone(&status));
        persister.queue().push(Persist::Message(snapshot(1)));
        persister.finish().await;
        assert_eq!(status.persist_failures.load(Ordering::Relaxed), 1);
        assert_eq!(status.persisted_version(), 0);
    }

    /// A sink that accepts everything and remembers the last one.
    #[derive(Default)]
    struct AcceptingSink(Mutex<Option<(u64, String)>>);

    impl crate::sync::SnapshotSink for AcceptingSink {
        fn apply(&self, snapshot: &Snapshot) -> Result<(), Vec<String>> {
            *self.0.lock().unwrap() = Some((snapshot.version, snapshot.hash.clone()));
            Ok(())
        }
        fn applied(&self) -> Option<(u64, String)> {
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ack_does_not_wait_for_the_write() {
        use tollgate_proto::v1::data_plane_message::Kind;
        let (store, mut gate) = gated(Vec::new());
        let status = Arc::new(SyncStatus::default());
        let persister = Persister::spawn(store.clone(), Arc::clone(&status));
        let queue = persister.queue();
        let sink: Arc<dyn crate::sync::SnapshotSink> = Arc::new(AcceptingSink::default());
        let reply = crate::sync::apply(snapshot(7), &sink, Some(&queue), &status).await;
        assert!(
            matches!(reply.kind, Some(Kind::Ack(ref ack)) if ack.version == 7),
            "{reply:?}"
        );
        // The write of 7 has started (or is about to) but is held by the gate:
        // nothing is on "disk" although the Ack is out.
        assert_eq!(gate.entered.recv().await, Some(7));
        assert!(store.written.lock().unwrap().is_empty());
        assert_eq!(status.persisted_version(), 0);
        gate.release.send(()).unwrap();
        status.wait_persisted(7).await;
        assert_eq!(*store.written.lock().unwrap(), vec![7]);
        persister.finish().await;
    }
}
