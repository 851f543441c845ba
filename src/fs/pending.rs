//! Inodes waiting for their settle time, ordered by when they are due.
//!
//! A burst of closes (untar, a logger rotating, 10,000 small files) schedules one
//! seal per file; the settle timer must find the earliest and the due ones
//! without scanning everything each time it wakes, or the burst turns quadratic.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::store::{Reason, Writer};

pub(super) struct Pending {
    pub due: Instant,
    pub reason: Reason,
    pub writer: Option<Writer>,
    /// The file's path and backing (dev, ino) when scheduled: the kernel may
    /// forget a closed file's inode before its seal is due, and the seal then
    /// finds the file by this path if it still is that backing file.
    pub found_at: Option<(Vec<u8>, (u64, u64))>,
}

#[derive(Default)]
pub(super) struct PendingSet {
    by_ino: HashMap<u64, Pending>,
    queue: BTreeSet<(Instant, u64)>,
}

impl PendingSet {
    /// Schedule (or reschedule) `ino`. Returns true when it is now the earliest,
    /// i.e. when a sleeping timer must be woken to honour it.
    pub fn insert(&mut self, ino: u64, p: Pending) -> bool {
        let earliest = self.next_due().is_none_or(|d| p.due < d);
        self.queue.insert((p.due, ino));
        if let Some(old) = self.by_ino.insert(ino, p) {
            self.queue.remove(&(old.due, ino));
        }
        earliest
    }

    pub fn remove(&mut self, ino: &u64) -> Option<Pending> {
        let p = self.by_ino.remove(ino)?;
        self.queue.remove(&(p.due, *ino));
        Some(p)
    }

    /// Move `ino`'s due time (if it is scheduled), keeping what it records.
    pub fn postpone(&mut self, ino: u64, due: Instant) {
        if let Some(p) = self.by_ino.get_mut(&ino) {
            self.queue.remove(&(p.due, ino));
            p.due = due;
            self.queue.insert((due, ino));
        }
    }

    pub fn set_reason(&mut self, ino: u64, reason: Reason) {
        if let Some(p) = self.by_ino.get_mut(&ino) {
            p.reason = reason;
        }
    }

    pub fn get(&self, ino: &u64) -> Option<&Pending> {
        self.by_ino.get(ino)
    }

    pub fn contains_key(&self, ino: &u64) -> bool {
        self.by_ino.contains_key(ino)
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn inos(&self) -> Vec<u64> {
        self.by_ino.keys().copied().collect()
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.queue.first().map(|&(d, _)| d)
    }

    /// The inodes due at `now`, earliest first (they stay scheduled until sealed).
    pub fn due(&self, now: Instant) -> Vec<u64> {
        self.queue
            .iter()
            .take_while(|&&(d, _)| d <= now)
            .map(|&(_, i)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(due: Instant) -> Pending {
        Pending {
            due,
            reason: Reason::Close,
            writer: None,
            found_at: None,
        }
    }

    #[test]
    fn ordered_by_due_and_rescheduling_moves_an_entry() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut s = PendingSet::default();
        assert!(s.insert(1, p(t + ms(30))));
        assert!(!s.insert(2, p(t + ms(40))), "later entry needs no wake-up");
        assert!(s.insert(3, p(t + ms(10))), "earlier entry needs a wake-up");
        assert_eq!(s.next_due(), Some(t + ms(10)));
        assert_eq!(s.due(t + ms(35)), vec![3, 1]);
        // Rescheduling 3 later drops its old slot.
        assert!(!s.insert(3, p(t + ms(50))));
        assert_eq!(s.next_due(), Some(t + ms(30)));
        assert_eq!(s.due(t + ms(45)), vec![1, 2]);
        assert_eq!(s.remove(&1).map(|p| p.due), Some(t + ms(30)));
        assert!(s.remove(&1).is_none());
        assert!(!s.contains_key(&1) && s.contains_key(&2));
        assert_eq!(s.due(t + ms(100)), vec![2, 3]);
        s.postpone(2, t + ms(200));
        s.postpone(9, t + ms(1)); // not scheduled: nothing to move
        assert_eq!(s.due(t + ms(100)), vec![3]);
        assert_eq!(s.get(&2).map(|p| p.due), Some(t + ms(200)));
        let mut all = s.inos();
        all.sort();
        assert_eq!(all, vec![2, 3]);
        s.remove(&2);
        s.remove(&3);
        assert_eq!(s.next_due(), None);
        assert!(s.due(t + ms(1000)).is_empty());
    }
}
