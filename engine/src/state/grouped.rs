//! [`GroupedTable`]: a column family of `group ‖ member → value` entries, held in memory by
//! group. A join side is one (group: the join key; member: the row), so that a probe finds
//! every row of a key with one hash lookup instead of a RocksDB prefix scan.
//!
//! The on-disk layout is the column family's own (`group bytes ‖ member bytes → value`); this
//! cache adds no encoding. A group is either wholly in memory or not at all: a group is read
//! from RocksDB with one prefix scan on its first use, and evicted whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use openclaw_storage::{MemoryBudget, StateWrite, Store};

use crate::EngineResult;

/// A value of a [`GroupedTable`]: fixed-size, with an encoding owned by its operator.
pub trait StateValue: Copy + Default {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Self;
    /// Whether the entry no longer exists: it is deleted from the store at the next flush.
    fn is_absent(&self) -> bool;
}

/// Bytes a member costs besides its key: its slot in a B-tree node (a third of a node is
/// empty on average), the boxed key's allocation, the value and the flags.
const MEMBER_OVERHEAD_BYTES: usize = 96;
/// Bytes a group costs besides its key and members: its hash map slot, boxed key, B-tree
/// root and its place in the dirty list.
const GROUP_OVERHEAD_BYTES: usize = 160;

struct Member<V> {
    value: V,
    /// Changed since the last flush.
    dirty: bool,
    /// The store holds the entry (as of the last flush): an entry created and made absent
    /// between two flushes is never written at all.
    stored: bool,
}

struct Group<V> {
    /// In member order, as RocksDB holds them, so that output order does not depend on a hash.
    members: BTreeMap<Box<[u8]>, Member<V>>,
    /// The [`GroupedTable::clock`] of the group's last use, for eviction.
    last_used: u64,
    dirty: bool,
    bytes: usize,
}

/// A column family's entries grouped by key prefix, decoded in memory, written back at
/// [`GroupedTable::flush`].
pub struct GroupedTable<V: StateValue> {
    store: Store,
    cf: Arc<str>,
    groups: HashMap<Box<[u8]>, Group<V>>,
    /// Groups changed since the last flush.
    dirty: Vec<Box<[u8]>>,
    /// Every group the column family holds is in memory: a group not in `groups` is empty,
    /// and a miss needs no read. True for a table that started empty and never evicted.
    complete: bool,
    bytes: usize,
    /// Advances once per [`GroupedTable::load`] (once per chunk).
    clock: u64,
    budget: Arc<MemoryBudget>,
}

impl<V: StateValue> GroupedTable<V> {
    /// The table over column family `cf` (created by the caller).
    pub fn new(store: Store, cf: Arc<str>) -> EngineResult<Self> {
        let empty = super::cf_is_empty(&store, &cf)?;
        let budget = store.operator_cache().clone();
        Ok(Self { store, cf, groups: HashMap::new(), dirty: vec![], complete: empty, bytes: 0, clock: 0, budget })
    }

    pub fn cf(&self) -> &Arc<str> {
        &self.cf
    }

    /// Bytes held in memory.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Makes sure `groups` are in memory (reading the missing ones from RocksDB), and marks
    /// them used now.
    pub fn load<'a>(&mut self, groups: impl IntoIterator<Item = &'a [u8]>) -> EngineResult<()> {
        self.clock += 1;
        for g in groups {
            if let Some(group) = self.groups.get_mut(g) {
                group.last_used = self.clock;
                continue;
            }
            if self.complete {
                continue;
            }
            let mut members = BTreeMap::new();
            let mut bytes = GROUP_OVERHEAD_BYTES + g.len();
            self.store.scan_prefix(&self.cf, g, false, |key, value| {
                bytes += key.len() - g.len() + MEMBER_OVERHEAD_BYTES;
                members.insert(Box::from(&key[g.len()..]), Member { value: V::decode(value), dirty: false, stored: true });
                true
            })?;
            // An empty group is kept too, so that the next probe of the key reads nothing.
            self.add_bytes(bytes);
            self.groups.insert(Box::from(g), Group { members, last_used: self.clock, dirty: false, bytes });
        }
        Ok(())
    }

    /// The members of `group` with their values, in member order; nothing when the group is
    /// empty. The group must have been [`Self::load`]ed.
    pub fn members(&self, group: &[u8]) -> impl DoubleEndedIterator<Item = (&[u8], &V)> {
        self.groups.get(group).into_iter().flat_map(|g| g.members.iter().map(|(m, v)| (m.as_ref(), &v.value)))
    }

    /// The value of `member` of `group`, if stored; the group must have been loaded.
    pub fn get(&self, group: &[u8], member: &[u8]) -> Option<V> {
        self.groups.get(group)?.members.get(member).map(|m| m.value)
    }

    /// Whether the store holds `member` of `group` (as of the last flush).
    pub fn is_stored(&self, group: &[u8], member: &[u8]) -> bool {
        self.groups.get(group).and_then(|g| g.members.get(member)).is_some_and(|m| m.stored)
    }

    /// Changes (or creates, from the default) the value of `member` of `group`; the group
    /// must have been loaded. It is written at the next [`Self::flush`].
    pub fn update(&mut self, group: &[u8], member: &[u8], change: impl FnOnce(&mut V)) {
        let clock = self.clock;
        let mut grown = 0;
        let g = self.groups.entry(Box::from(group)).or_insert_with(|| {
            grown += GROUP_OVERHEAD_BYTES + group.len();
            Group { members: BTreeMap::new(), last_used: clock, dirty: false, bytes: GROUP_OVERHEAD_BYTES + group.len() }
        });
        let m = match g.members.get_mut(member) {
            Some(m) => m,
            None => {
                let bytes = member.len() + MEMBER_OVERHEAD_BYTES;
                g.bytes += bytes;
                grown += bytes;
                g.members.entry(Box::from(member)).or_insert(Member { value: V::default(), dirty: false, stored: false })
            }
        };
        change(&mut m.value);
        m.dirty = true;
        if !g.dirty {
            g.dirty = true;
            self.dirty.push(Box::from(group));
        }
        self.add_bytes(grown);
    }

    /// Forgets `member` of `group` in memory, for an entry the caller deleted from the store
    /// itself (a flushed table's expired rows).
    pub fn forget(&mut self, group: &[u8], member: &[u8]) {
        let Some(g) = self.groups.get_mut(group) else { return };
        if let Some(m) = g.members.remove(member) {
            debug_assert!(!m.dirty, "only flushed entries are forgotten");
            let bytes = member.len() + MEMBER_OVERHEAD_BYTES;
            g.bytes -= bytes;
            self.bytes -= bytes;
            self.budget.shrink(bytes);
        }
    }

    /// Forgets every group (they stay in the store): after deletes the cache cannot place.
    pub fn forget_all(&mut self) {
        debug_assert!(self.dirty.is_empty(), "only a flushed table forgets");
        self.groups.clear();
        self.budget.shrink(self.bytes);
        self.bytes = 0;
        self.complete = false;
    }

    /// Forgets every group below `bound`, changed or not, for a range the caller deletes
    /// from the store itself. Returns whether the store may hold any of it (so whether that
    /// delete is needed): always for an incomplete table.
    pub fn forget_below(&mut self, bound: &[u8]) -> bool {
        self.forget_range(&[], bound)
    }

    /// [`Self::forget_below`] for the groups in `from..bound` only.
    pub fn forget_range(&mut self, from: &[u8], bound: &[u8]) -> bool {
        let mut stored = !self.complete;
        let mut freed = 0;
        self.groups.retain(|key, g| {
            if key.as_ref() >= bound || key.as_ref() < from {
                return true;
            }
            stored |= g.members.values().any(|m| m.stored);
            freed += g.bytes;
            false
        });
        self.bytes -= freed;
        self.budget.shrink(freed);
        stored
    }

    /// Adds every change since the last flush to `write`; absent entries become deletes.
    pub fn flush(&mut self, write: &mut StateWrite) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(g) = self.groups.get_mut(&key) else { continue };
            g.dirty = false;
            let mut freed = 0;
            g.members.retain(|member, m| {
                if !m.dirty {
                    return true;
                }
                m.dirty = false;
                let mut full = key.to_vec();
                full.extend_from_slice(member);
                if m.value.is_absent() {
                    if m.stored {
                        write.delete(&self.cf, full);
                    }
                    freed += member.len() + MEMBER_OVERHEAD_BYTES;
                    false
                } else {
                    write.put(&self.cf, full, m.value.encode());
                    m.stored = true;
                    true
                }
            });
            g.bytes -= freed;
            if g.members.is_empty() && self.complete {
                freed += g.bytes;
                self.groups.remove(&key);
            }
            self.bytes -= freed;
            self.budget.shrink(freed);
        }
    }

    /// After a [`Self::flush`]: evicts the least recently used groups while this table holds
    /// more than its share of the budget.
    pub fn evict_to_budget(&mut self) {
        debug_assert!(self.dirty.is_empty(), "only a flushed table evicts");
        let target = self.budget.share_of(self.bytes);
        if self.bytes <= target {
            return;
        }
        let mut by_age: Vec<(u64, Box<[u8]>)> = self.groups.iter().map(|(k, g)| (g.last_used, k.clone())).collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        let mut freed = 0;
        for (_, key) in by_age {
            if self.bytes - freed <= target {
                break;
            }
            if let Some(g) = self.groups.remove(&key) {
                freed += g.bytes;
            }
        }
        self.bytes -= freed;
        self.budget.shrink(freed);
        self.complete = false;
    }

    fn add_bytes(&mut self, bytes: usize) {
        self.bytes += bytes;
        self.budget.grow(bytes);
    }
}

impl<V: StateValue> Drop for GroupedTable<V> {
    fn drop(&mut self) {
        self.budget.shrink(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::state::Count;

    fn temp_store(name: &str, cache_bytes: usize) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("openclaw-grouped-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_with_cache(&dir, cache_bytes).unwrap();
        store.create_cf("t", openclaw_storage::CfKind::Plain).unwrap();
        (store, dir)
    }

    fn stored(store: &Store) -> Vec<(Vec<u8>, i64)> {
        let mut out = vec![];
        store.scan("t", None, |k, v| {
            out.push((k.to_vec(), Count::decode(v).0));
            true
        }).unwrap();
        out
    }

    #[test]
    fn changes_reach_the_store_only_at_a_flush_and_read_back_after_eviction() {
        let (store, dir) = temp_store("flush", 8 << 20);
        let mut t = GroupedTable::<Count>::new(store.clone(), Arc::from("t")).unwrap();
        t.load([&b"a"[..], b"b"]).unwrap();
        t.update(b"a", b"1", |c| c.0 += 2);
        t.update(b"b", b"2", |c| c.0 += 1);
        assert!(stored(&store).is_empty(), "nothing is written before the flush");
        let mut write = StateWrite::default();
        t.flush(&mut write);
        store.write_state(write).unwrap();
        assert_eq!(stored(&store), vec![(b"a1".to_vec(), 2), (b"b2".to_vec(), 1)]);

        // A deleted entry becomes a delete; an evicted group is read back whole.
        t.load([&b"b"[..]]).unwrap();
        t.update(b"b", b"2", |c| c.0 -= 1);
        let mut write = StateWrite::default();
        t.flush(&mut write);
        store.write_state(write).unwrap();
        assert_eq!(stored(&store), vec![(b"a1".to_vec(), 2)]);
        // An entry created and deleted between two flushes is never written.
        t.load([&b"c"[..]]).unwrap();
        t.update(b"c", b"3", |c| c.0 += 1);
        t.update(b"c", b"3", |c| c.0 -= 1);
        let mut write = StateWrite::default();
        t.flush(&mut write);
        assert!(write.is_empty(), "nothing to write");
        t.forget_all();
        assert_eq!(t.held_bytes(), 0);
        assert_eq!(t.members(b"a").count(), 0, "forgotten");
        t.load([&b"a"[..]]).unwrap();
        assert_eq!(t.get(b"a", b"1"), Some(Count(2)), "read back from the store");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_table_over_its_budget_evicts_its_oldest_groups_and_stays_correct() {
        // 64 KiB of state budget: half of it for operator caches.
        let (store, dir) = temp_store("evict", 64 << 10);
        let mut t = GroupedTable::<Count>::new(store.clone(), Arc::from("t")).unwrap();
        for g in 0u32..2_000 {
            let key = g.to_be_bytes();
            t.load([&key[..]]).unwrap();
            t.update(&key, b"m", |c| c.0 += g as i64 + 1);
            if g % 100 == 99 {
                let mut write = StateWrite::default();
                t.flush(&mut write);
                store.write_state(write).unwrap();
                t.evict_to_budget();
                assert!(t.held_bytes() <= store.operator_cache().limit_bytes(), "{} bytes held", t.held_bytes());
            }
        }
        assert!(t.held_bytes() <= 32 << 10);
        for g in [0u32, 999, 1_999] {
            let key = g.to_be_bytes();
            t.load([&key[..]]).unwrap();
            assert_eq!(t.get(&key, b"m"), Some(Count(g as i64 + 1)));
        }
        assert_eq!(stored(&store).len(), 2_000);
        drop(t);
        assert_eq!(store.operator_cache().used_bytes(), 0, "a dropped table releases its budget");
        let _ = std::fs::remove_dir_all(dir);
    }
}
