//! The `local` policy's counters: one fixed-size table per node, shared by
//! every rate-limiting instance and kept across config swaps (a keyed
//! resource). Lock-free: each slot is a word packing a 32-bit key tag with a
//! 32-bit count, changed only by compare-and-swap, plus the time the slot's
//! window stops mattering. Memory is bounded by the table size: a new window
//! takes a free or expired slot near its hash, and when every nearby slot
//! still holds a live window the one expiring soonest is evicted (counted).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots in the node's table: 2^17 windows (two 8-byte words each, 2 MiB),
/// about what Kong's default 12 MB shared dict holds.
pub const SLOTS: usize = 1 << 17;

/// How many neighbouring slots a key may occupy.
const PROBES: usize = 16;

const COUNT_MASK: u64 = 0xffff_ffff;

#[derive(Default)]
struct Slot {
    /// `tag << 32 | count`; 0 when never used.
    word: AtomicU64,
    /// Unix ms after which the window in this slot is no longer read; 0
    /// while being claimed (never evicted by expiry then).
    expires: AtomicU64,
}

/// Counters of the `local` policy for one node.
pub struct LocalCounters {
    slots: Box<[Slot]>,
    hasher: RandomState,
    /// Live windows evicted because their neighbourhood was full.
    evicted_live: AtomicU64,
    /// Expired windows whose slot was reused.
    reclaimed: AtomicU64,
}

impl std::fmt::Debug for LocalCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCounters")
            .field("slots", &self.slots.len())
            .field("evicted_live", &self.evicted_live())
            .field("reclaimed", &self.reclaimed())
            .finish()
    }
}

impl Default for LocalCounters {
    fn default() -> Self {
        LocalCounters::with_slots(SLOTS)
    }
}

/// Where one window's count lives: the home slot and the tag, derived from
/// the window key's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowKey {
    home: usize,
    tag: u64,
}

impl LocalCounters {
    /// A table of `slots` slots (rounded up to a power of two, at least `PROBES`).
    pub fn with_slots(slots: usize) -> LocalCounters {
        let slots = slots.max(PROBES).next_power_of_two();
        LocalCounters {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            hasher: RandomState::new(),
            evicted_live: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
        }
    }

    /// A hasher for the identity part of window keys (scope and
    /// identifier); finish it with [`LocalCounters::window_key`]. The keys
    /// are secret per node, so clients cannot aim collisions at a slot. An
    /// instance feeds its scope once and clones the hasher per request.
    pub fn identity_hasher(&self) -> DefaultHasher {
        self.hasher.build_hasher()
    }

    /// The key of the window starting at `start_ms` of a period (`period`
    /// is any small distinct number) for an identity hash. The identity is
    /// already a keyed hash, so the window's part is mixed in by a plain
    /// integer mixer (SplitMix64's finalizer) rather than hashed again.
    pub fn window_key(&self, identity: u64, period: u8, start_ms: i64) -> WindowKey {
        let window = (start_ms as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(period);
        let mut hash = identity ^ window.rotate_left(32);
        hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        hash ^= hash >> 31;
        let tag = (hash >> 32).max(1);
        WindowKey {
            home: (hash as usize) & (self.slots.len() - 1),
            tag,
        }
    }

    fn probe(&self, key: WindowKey) -> impl Iterator<Item = &Slot> {
        let mask = self.slots.len() - 1;
        (0..PROBES).map(move |i| &self.slots[(key.home + i) & mask])
    }

    /// The count of a window, 0 when it has none.
    pub fn get(&self, key: WindowKey) -> u64 {
        self.probe(key)
            .map(|slot| slot.word.load(Ordering::Acquire))
            .find(|word| word >> 32 == key.tag)
            .map_or(0, |word| word & COUNT_MASK)
    }

    /// Adds one to a window's count and returns the new count. The window
    /// stays readable until `expires_ms`.
    pub fn increment(&self, key: WindowKey, expires_ms: i64, now_ms: i64) -> u64 {
        let expires_ms = u64::try_from(expires_ms).unwrap_or(0).max(1);
        let now_ms = u64::try_from(now_ms).unwrap_or(0);
        loop {
            if let Some(count) = self.add_existing(key) {
                return count;
            }
            if let Some(count) = self.claim(key, expires_ms, now_ms) {
                return count;
            }
        }
    }

    /// Takes back one increment (a rejected request is not counted).
    pub fn decrement(&self, key: WindowKey) {
        for slot in self.probe(key) {
            let mut word = slot.word.load(Ordering::Acquire);
            while word >> 32 == key.tag {
                if word & COUNT_MASK == 0 {
                    return;
                }
                match slot.word.compare_exchange_weak(
                    word,
                    word - 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return,
                    Err(current) => word = current,
                }
            }
        }
    }

    fn add_existing(&self, key: WindowKey) -> Option<u64> {
        for slot in self.probe(key) {
            let mut word = slot.word.load(Ordering::Acquire);
            while word >> 32 == key.tag {
                let count = word & COUNT_MASK;
                // A count saturates: a limit beyond 2^32 - 1 never rejects.
                let next = if count == COUNT_MASK { word } else { word + 1 };
                match slot.word.compare_exchange_weak(
                    word,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some(next & COUNT_MASK),
                    Err(current) => word = current,
                }
            }
        }
        None
    }

    /// Puts a new window with count 1 in a free slot, else an expired one,
    /// else the live one expiring first. `None` when another request changed
    /// the neighbourhood meanwhile (the caller looks again).
    fn claim(&self, key: WindowKey, expires_ms: u64, now_ms: u64) -> Option<u64> {
        let fresh = key.tag << 32 | 1;
        for slot in self.probe(key) {
            let word = slot.word.load(Ordering::Acquire);
            if word >> 32 == key.tag {
                return None;
            }
            if word == 0 {
                if slot
                    .word
                    .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    slot.expires.store(expires_ms, Ordering::Release);
                    return Some(1);
                }
                return None;
            }
        }
        let mut victim: Option<(&Slot, u64)> = None;
        for slot in self.probe(key) {
            let expires = slot.expires.load(Ordering::Acquire);
            if expires == 0 {
                continue;
            }
            if victim.is_none_or(|(_, best)| expires < best) {
                victim = Some((slot, expires));
            }
        }
        let (slot, expires) = victim?;
        // Owning the slot is winning the swap of its expiry; the count word
        // is then replaced whole.
        slot.expires
            .compare_exchange(expires, 0, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        slot.word.store(fresh, Ordering::Release);
        slot.expires.store(expires_ms, Ordering::Release);
        if expires <= now_ms {
            self.reclaimed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.evicted_live.fetch_add(1, Ordering::Relaxed);
        }
        Some(1)
    }

    /// Live windows evicted so far because the table was full around them.
    pub fn evicted_live(&self) -> u64 {
        self.evicted_live.load(Ordering::Relaxed)
    }

    /// Expired windows whose slot was reused so far.
    pub fn reclaimed(&self) -> u64 {
        self.reclaimed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_per_window_and_takes_back() {
        let table = LocalCounters::with_slots(1024);
        let a = table.window_key(1, 0, 60_000);
        let b = table.window_key(1, 0, 120_000);
        assert_eq!(table.increment(a, 120_000, 60_500), 1);
        assert_eq!(table.increment(a, 120_000, 60_600), 2);
        assert_eq!(table.increment(b, 180_000, 120_100), 1);
        table.decrement(a);
        assert_eq!(table.get(a), 1);
        assert_eq!(table.get(b), 1);
        assert_eq!(table.get(table.window_key(2, 0, 60_000)), 0);
    }

    #[test]
    fn memory_is_bounded_and_expired_windows_are_reused() {
        let table = LocalCounters::with_slots(64);
        // A flood of distinct identifiers in one window evicts live windows
        // (counted) rather than growing.
        for identity in 0..10_000u64 {
            let key = table.window_key(identity, 1, 0);
            assert_eq!(table.increment(key, 60_000, 10), 1);
        }
        assert!(table.evicted_live() >= 10_000 - 64);
        assert_eq!(table.reclaimed(), 0);
        // The next window reuses the expired slots.
        for identity in 0..64u64 {
            let key = table.window_key(identity, 1, 60_000);
            table.increment(key, 120_000, 60_001);
        }
        assert!(table.reclaimed() > 0);
    }

    #[test]
    fn concurrent_increments_are_all_counted() {
        let table = Arc::new(LocalCounters::with_slots(1024));
        let keys: Vec<WindowKey> = (0..8).map(|i| table.window_key(i, 2, 0)).collect();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let table = Arc::clone(&table);
                let keys = keys.clone();
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        for key in &keys {
                            table.increment(*key, 1_000, 1);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for key in keys {
            assert_eq!(table.get(key), 20_000);
        }
    }
}
