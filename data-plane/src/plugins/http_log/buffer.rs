//! The entries of one http-log queue waiting to be sent: a FIFO bounded by
//! `queue.max_entries` (and `queue.max_bytes` when set) that drops its
//! OLDEST entries to make room, as Kong's `kong/tools/queue.lua` does. Pure
//! bookkeeping, no I/O and no clock: the caller logs and counts what a push
//! or a take reports, after releasing the lock.

use std::collections::VecDeque;

/// Kong's `CAPACITY_WARNING_THRESHOLD`: one warning when the queue reaches
/// 80 % of `max_entries`, again only after it fell below.
const WARNING_SHARE_PERCENT: usize = 80;

#[derive(Debug)]
pub struct Buffer {
    entries: VecDeque<Box<[u8]>>,
    bytes: usize,
    max_entries: usize,
    max_bytes: Option<usize>,
    /// The 80 % warning was given and the queue has not fallen below since.
    warned: bool,
    /// Entries were dropped since the last batch was taken.
    dropping: bool,
}

/// What one push did, for the caller to count and log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Oldest entries dropped to make room.
    pub dropped: usize,
    /// The entry alone is larger than `max_bytes`: not queued.
    pub refused: bool,
    /// The queue just reached 80 % of `max_entries` (warn once).
    pub reached_warning: bool,
    /// This push began dropping entries (log once, until a batch is taken).
    pub started_dropping: bool,
}

/// What one take did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub batch: Vec<Box<[u8]>>,
    /// Entries had been dropped before this batch: sending resumed.
    pub resumed: bool,
}

impl Buffer {
    pub fn new(max_entries: usize, max_bytes: Option<usize>) -> Buffer {
        Buffer {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            warned: false,
            dropping: false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of the entries waiting.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends `entry`, dropping the oldest entries while the queue is full.
    pub fn push(&mut self, entry: Box<[u8]>) -> Pushed {
        let mut pushed = Pushed::default();
        if self.max_bytes.is_some_and(|max| entry.len() > max) {
            pushed.refused = true;
            return pushed;
        }
        let threshold = (self.max_entries * WARNING_SHARE_PERCENT).div_ceil(100);
        if self.entries.len() >= threshold {
            if !self.warned {
                self.warned = true;
                pushed.reached_warning = true;
            }
        } else {
            self.warned = false;
        }
        while self.entries.len() >= self.max_entries
            || self
                .max_bytes
                .is_some_and(|max| self.bytes + entry.len() > max)
        {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
            pushed.dropped += 1;
        }
        if pushed.dropped > 0 && !self.dropping {
            self.dropping = true;
            pushed.started_dropping = true;
        }
        self.bytes += entry.len();
        self.entries.push_back(entry);
        pushed
    }

    /// Takes up to `max` of the oldest entries.
    pub fn take(&mut self, max: usize) -> Taken {
        let count = max.max(1).min(self.entries.len());
        let batch: Vec<Box<[u8]>> = self.entries.drain(..count).collect();
        self.bytes -= batch.iter().map(|entry| entry.len()).sum::<usize>();
        let resumed = !batch.is_empty() && std::mem::take(&mut self.dropping);
        Taken { batch, resumed }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn entry(text: &str) -> Box<[u8]> {
        text.as_bytes().into()
    }

    fn texts(batch: &[Box<[u8]>]) -> Vec<&str> {
        batch
            .iter()
            .map(|entry| std::str::from_utf8(entry).unwrap())
            .collect()
    }

    #[test]
    fn entries_leave_in_order_in_batches() {
        let mut buffer = Buffer::new(10, None);
        for text in ["a", "b", "c"] {
            assert_eq!(buffer.push(entry(text)), Pushed::default());
        }
        assert_eq!(texts(&buffer.take(2).batch), ["a", "b"]);
        assert_eq!(texts(&buffer.take(2).batch), ["c"]);
        assert!(buffer.take(2).batch.is_empty());
        assert_eq!(buffer.bytes(), 0);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_entries_and_says_so_once() {
        let mut buffer = Buffer::new(3, None);
        for text in ["1", "2", "3"] {
            buffer.push(entry(text));
        }
        let first = buffer.push(entry("4"));
        assert_eq!((first.dropped, first.started_dropping), (1, true));
        let second = buffer.push(entry("5"));
        assert_eq!((second.dropped, second.started_dropping), (1, false));
        assert_eq!(buffer.len(), 3);
        let taken = buffer.take(10);
        assert_eq!(texts(&taken.batch), ["3", "4", "5"]);
        assert!(taken.resumed, "sending resumed after drops");
        assert!(!buffer.take(10).resumed);
        for text in ["6", "7", "8", "9"] {
            buffer.push(entry(text));
        }
        assert_eq!(texts(&buffer.take(10).batch), ["7", "8", "9"]);
    }

    #[test]
    fn the_capacity_warning_comes_once_per_crossing() {
        let mut buffer = Buffer::new(10, None);
        let warnings: Vec<bool> = (0..10)
            .map(|n| buffer.push(entry(&n.to_string())).reached_warning)
            .collect();
        // Kong checks before adding: the push that finds 8 entries warns.
        assert_eq!(warnings.iter().filter(|w| **w).count(), 1);
        assert!(warnings[8]);
        for n in 0..20 {
            assert!(!buffer.push(entry(&n.to_string())).reached_warning);
        }
        buffer.take(10);
        assert!(!buffer.push(entry("x")).reached_warning, "below again");
        let again = (0..10).any(|n| buffer.push(entry(&n.to_string())).reached_warning);
        assert!(again, "re-armed after falling below 80 %");
    }

    #[test]
    fn max_bytes_drops_oldest_and_refuses_an_entry_larger_than_the_queue() {
        let mut buffer = Buffer::new(100, Some(10));
        buffer.push(entry("aaaa"));
        buffer.push(entry("bbbb"));
        let pushed = buffer.push(entry("cccccc"));
        assert_eq!(pushed.dropped, 1);
        assert_eq!(buffer.bytes(), 10);
        let refused = buffer.push(entry("x".repeat(11).as_str()));
        assert!(refused.refused);
        assert_eq!(texts(&buffer.take(10).batch), ["bbbb", "cccccc"]);
    }

    #[test]
    fn memory_is_bounded_whatever_arrives() {
        let mut buffer = Buffer::new(1000, None);
        let mut dropped = 0;
        for n in 0..100_000 {
            dropped += buffer.push(entry(&n.to_string())).dropped;
        }
        assert_eq!(buffer.len(), 1000);
        assert_eq!(dropped, 99_000);
        let taken = buffer.take(1);
        assert_eq!(texts(&taken.batch), ["99000"], "the newest are kept");
    }
}
