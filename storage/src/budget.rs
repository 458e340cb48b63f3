//! The memory budget of the operators' decoded state caches, shared by every operator of one
//! store. Operators count what they hold; at a checkpoint barrier, once their changes are
//! written, an operator over its share evicts its least recently used state (it stays in
//! RocksDB and is read back on the next use).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes the operators' caches may hold together, and what they hold now.
#[derive(Debug)]
pub struct MemoryBudget {
    limit_bytes: usize,
    used_bytes: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit_bytes: usize) -> Self {
        Self { limit_bytes, used_bytes: AtomicUsize::new(0) }
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Records that a cache grew by `bytes`.
    pub fn grow(&self, bytes: usize) {
        self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records that a cache shrank by `bytes` (at most what it recorded growing).
    pub fn shrink(&self, bytes: usize) {
        let before = self.used_bytes.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "a cache released more than it held");
    }

    /// What a cache holding `held_bytes` should shrink to: its share of the limit in
    /// proportion to what it holds, or all of it while the caches together fit.
    pub fn share_of(&self, held_bytes: usize) -> usize {
        let used = self.used_bytes().max(1);
        if used <= self.limit_bytes {
            return held_bytes;
        }
        (held_bytes as u128 * self.limit_bytes as u128 / used as u128) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_over_the_limit_shrink_in_proportion() {
        let budget = MemoryBudget::new(100);
        budget.grow(60);
        assert_eq!(budget.share_of(60), 60, "within the limit, nothing shrinks");
        budget.grow(140);
        assert_eq!(budget.share_of(60), 30);
        assert_eq!(budget.share_of(140), 70);
        budget.shrink(100);
        assert_eq!(budget.used_bytes(), 100);
    }
}
