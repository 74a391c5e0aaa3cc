//! `sync_rate > 0` with the `redis` policy (kong-compat §4.6): requests are
//! judged against counts cached on this node (the value Redis had at the
//! last sync plus what this node counted since), and every `sync_rate`
//! seconds one request pushes the node's increments to Redis in one script
//! call and takes back the totals every node contributed. A key seen for
//! the first time is read from Redis first. Cheaper than a round trip per
//! request, at the price of Kong's inexactness between syncs.
//!
//! Bounded: entries leave at the first sync after their window expired, and
//! past [`MAX_ENTRIES`] a new key is counted synchronously instead.

use crate::runtime::ScriptCall;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// Keys cached per batch before new keys bypass the cache.
pub const MAX_ENTRIES: usize = 65_536;

/// The script of a sync: KEYS are counters; ARGV per key the amount to add
/// and the Unix second the counter may expire at (set when it has no
/// expiry yet). Returns every counter's total.
pub const SYNC_SCRIPT: &str = r"
local out = {}
for i = 1, #KEYS do
  local value = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  if redis.call('TTL', KEYS[i]) < 0 then
    redis.call('EXPIREAT', KEYS[i], ARGV[2 * i])
  end
  out[i] = value
end
return out
";

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The total Redis had at the last sync.
    synced: u64,
    /// Counted here since.
    pending: u64,
    /// Unix second after which the counter is no longer read.
    expires_s: i64,
}

/// One batch: the cached counters of the instances that share a Redis
/// server and a scope, kept across config swaps (a keyed resource).
#[derive(Debug, Default)]
pub struct Batch {
    entries: Mutex<HashMap<String, Entry>>,
    last_sync_ms: Mutex<i64>,
    syncing: AtomicBool,
}

/// A sync to send: the keys with their increments and expiries.
#[derive(Debug, Default)]
pub struct Pending {
    pub keys: Vec<String>,
    pub args: Vec<String>,
    deltas: Vec<u64>,
}

impl Batch {
    /// Of `keys`, the ones not cached yet; `None` when the cache is full and
    /// the request must be counted synchronously.
    pub fn missing<'a>(&self, keys: &'a [(String, i64)]) -> Option<Vec<&'a (String, i64)>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let missing: Vec<&(String, i64)> = keys
            .iter()
            .filter(|(key, _)| !entries.contains_key(key))
            .collect();
        (entries.len() + missing.len() <= MAX_ENTRIES).then_some(missing)
    }

    /// Records what Redis had for keys just read.
    pub fn seed(&self, keys: &[&(String, i64)], totals: &[i64]) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for ((key, expires_s), total) in keys.iter().zip(totals) {
            entries.entry(key.clone()).or_insert(Entry {
                synced: u64::try_from(*total).unwrap_or(0),
                pending: 0,
                expires_s: *expires_s,
            });
        }
    }

    /// The counts of `keys` as this node knows them (synced plus pending),
    /// and, when `count` accepts them, one more for each key of `counted`.
    pub fn judge<T>(
        &self,
        keys: &[(String, i64)],
        counted: &[usize],
        count: impl FnOnce(&[u64]) -> (T, bool),
    ) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let values: Vec<u64> = keys
            .iter()
            .map(|(key, _)| entries.get(key).map_or(0, |e| e.synced + e.pending))
            .collect();
        let (outcome, accepted) = count(&values);
        if accepted {
            for &index in counted {
                if let Some((key, _)) = keys.get(index) {
                    if let Some(entry) = entries.get_mut(key) {
                        entry.pending += 1;
                    }
                }
            }
        }
        outcome
    }

    /// The sync due at `now_ms` (at most one at a time), taking the pending
    /// counts out and forgetting expired counters.
    pub fn take_due(&self, now_ms: i64, every_ms: i64) -> Option<Pending> {
        {
            let mut last = self
                .last_sync_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now_ms - *last < every_ms || self.syncing.swap(true, Ordering::AcqRel) {
                return None;
            }
            *last = now_ms;
        }
        let now_s = now_ms.div_euclid(1000);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, entry| entry.expires_s > now_s);
        let mut pending = Pending::default();
        for (key, entry) in entries.iter_mut() {
            pending.keys.push(key.clone());
            pending.args.push(entry.pending.to_string());
            pending.args.push(entry.expires_s.to_string());
            pending.deltas.push(entry.pending);
            entry.pending = 0;
        }
        Some(pending)
    }

    /// Ends a sync: the totals Redis answered, or (`None`) a failure that
    /// puts the increments back for the next sync.
    pub fn finish(&self, sent: Pending, totals: Option<&[i64]>) {
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for (i, key) in sent.keys.iter().enumerate() {
                let Some(entry) = entries.get_mut(key) else {
                    continue;
                };
                match totals.and_then(|t| t.get(i)) {
                    Some(total) => entry.synced = u64::try_from(*total).unwrap_or(entry.synced),
                    None => entry.pending += sent.deltas.get(i).copied().unwrap_or(0),
                }
            }
        }
        self.syncing.store(false, Ordering::Release);
    }
}

/// A sync under way. Dropped before [`SyncGuard::finish`] (the request
/// went away mid-call), it puts the increments back and ends the sync, so
/// a lost request never stops syncing.
#[derive(Debug)]
pub struct SyncGuard<'a> {
    batch: &'a Batch,
    pending: Option<Pending>,
}

impl<'a> SyncGuard<'a> {
    pub fn new(batch: &'a Batch, pending: Pending) -> SyncGuard<'a> {
        SyncGuard {
            batch,
            pending: Some(pending),
        }
    }

    /// The sync script call: the keys with their increments and expiries.
    pub fn call(&self) -> ScriptCall {
        match &self.pending {
            Some(pending) => ScriptCall::of(&pending.keys, &pending.args),
            None => ScriptCall::default(),
        }
    }

    /// Ends the sync with the totals Redis answered (`None`: it failed).
    pub fn finish(mut self, totals: Option<&[i64]>) {
        if let Some(pending) = self.pending.take() {
            self.batch.finish(pending, totals);
        }
    }
}

impl Drop for SyncGuard<'_> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.batch.finish(pending, None);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn counts_locally_between_syncs_and_takes_totals_back() {
        let batch = Batch::default();
        let keys = vec![("k".to_string(), 100)];
        let missing = batch.missing(&keys).unwrap();
        assert_eq!(missing.len(), 1);
        batch.seed(&missing, &[3]);
        assert!(batch.missing(&keys).unwrap().is_empty());
        for expected in [3, 4] {
            let seen = batch.judge(&keys, &[0], |values| (values[0], true));
            assert_eq!(seen, expected);
        }
        // Not accepted: not counted.
        assert_eq!(batch.judge(&keys, &[0], |values| (values[0], false)), 5);
        assert_eq!(batch.judge(&keys, &[0], |values| (values[0], false)), 5);

        assert!(batch.take_due(50, 100).is_none(), "not due yet");
        let sent = batch.take_due(10_000, 100).unwrap();
        assert_eq!(sent.keys, ["k"]);
        assert_eq!(sent.args, ["2", "100"]);
        assert!(batch.take_due(20_000, 100).is_none(), "one sync at a time");
        // Another node added 10 meanwhile.
        batch.finish(sent, Some(&[15]));
        assert_eq!(batch.judge(&keys, &[], |values| (values[0], false)), 15);

        // A failed sync keeps the increments for the next one.
        batch.judge(&keys, &[0], |_| ((), true));
        let sent = batch.take_due(30_000, 100).unwrap();
        batch.finish(sent, None);
        let sent = batch.take_due(40_000, 100).unwrap();
        assert_eq!(sent.args, ["1", "100"]);
        batch.finish(sent, Some(&[16]));
        // A sync whose request went away puts its increments back.
        batch.judge(&keys, &[0], |_| ((), true));
        drop(SyncGuard::new(&batch, batch.take_due(50_000, 100).unwrap()));
        let sent = batch.take_due(60_000, 100).unwrap();
        assert_eq!(sent.args, ["1", "100"]);
        batch.finish(sent, Some(&[17]));
        // Expired counters are forgotten at the next sync.
        let sent = batch.take_due(200_000, 100).unwrap();
        assert!(sent.keys.is_empty());
        batch.finish(sent, Some(&[]));
        assert_eq!(batch.missing(&keys).unwrap().len(), 1);
    }
}
